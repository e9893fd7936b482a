"""Archives, checked against the server at 56ba9c25 (paths relative to the letta repository):
the default archive an agent's first passage creates, GET /v1/archives/ and /{archive_id},
DELETE /v1/archives/{archive_id} and /{archive_id}/passages/{passage_id}, the state file, and --compat
no-archive-batch (the server before 0.16.4)."""

import json
import os
import re
import tempfile
import unittest

from emu_helpers import DB_ERROR, ORG, Emulator, EmulatorTestCase, make_agent, masked, read_404

MISSING_ARCHIVE = "archive-00000000-0000-4000-8000-000000000000"
MISSING_PASSAGE = "passage-00000000-0000-4000-8000-000000000000"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


class ArchivesTest(EmulatorTestCase):
    def passage(self, agent, text="first"):
        r = self.c.post("/v1/agents/%s/archival-memory" % agent["id"], {"text": text})
        self.assertEqual(r.status, 200, r)
        return r.json[0]

    def agents_with_archives(self, n):
        """n agents, each with its archive (created in this order)."""
        out = []
        for i in range(n):
            a = make_agent(self.c, name="bot%d" % i)
            out.append(self.passage(a)["archive_id"])
        return out

    def test_first_passage_creates_the_default_archive(self):
        """archive_manager.get_or_create_default_archive_for_agent_async: "<name>'s Archive", the
        agent's embedding_config, description "Default archive created automatically", native
        provider; metadata_ is a nullable column nothing sets (null); one archive per agent."""
        a = make_agent(self.c, name="ann")
        self.assertEqual(self.c.get("/v1/archives/", query={"agent_id": a["id"]}).json, [])
        archive_id = self.passage(a)["archive_id"]
        self.assertEqual(self.passage(a, "second")["archive_id"], archive_id)
        r = self.c.get("/v1/archives/", query={"agent_id": a["id"]})
        self.assertEqual(r.status, 200)
        [arc] = r.json
        self.assertEqual(arc, self.c.get("/v1/archives/" + archive_id).json)
        self.assertEqual((arc["id"], arc["name"], arc["description"], arc["vector_db_provider"], arc["metadata"]),
                         (archive_id, "ann's Archive", "Default archive created automatically", "native", None))
        self.assertEqual((arc["embedding_config"], arc["organization_id"]), (a["embedding_config"], ORG))
        self.assertTrue(arc["created_by_id"].startswith("user-"))
        self.assertRegex(arc["created_at"], STAMP)
        self.assertEqual(sorted(arc), sorted(["created_by_id", "last_updated_by_id", "created_at", "updated_at",
                                              "name", "description", "organization_id", "vector_db_provider",
                                              "embedding_config", "metadata", "id"]))
        self.assertEqual([x["id"] for x in self.admin_state()["archives"]], [archive_id])

    def test_agent_without_embedding_has_an_archive_without_config(self):
        a = make_agent(self.c, embedding=None)
        archive_id = self.passage(a)["archive_id"]
        self.assertIsNone(self.c.get("/v1/archives/" + archive_id).json["embedding_config"])

    def test_list_agent_id_is_checked(self):
        """list_archives_async: raise_on_invalid_id (400), then validate_agent_exists_async raises
        LettaAgentNotFoundError, which app.py answers 404 "Agent not found"."""
        r = self.c.get("/v1/archives/", query={"agent_id": "bot"})
        self.assertEqual((r.status, r.json), (400, {"detail": "INVALID_ARGUMENT: Invalid agent ID format: bot. "
                                                              "Expected format: 'agent-<uuid4>'"}))
        r = self.c.get("/v1/archives/", query={"agent_id": "agent-00000000-0000-4000-8000-000000000000"})
        self.assertEqual((r.status, r.json), (404, {"detail": "Agent not found"}))

    def test_list_order_limit_and_name(self):
        """routers/v1/archives.py:list_archives: order desc by default, limit 50; list_async: LIMIT
        as given (0 is none, negative a Postgres error); name is an exact match."""
        a, b, c = self.agents_with_archives(3)
        ids = lambda **q: [x["id"] for x in self.c.get("/v1/archives/", query=q).json]   # noqa: E731
        self.assertEqual(ids(), [c, b, a])
        self.assertEqual(ids(order="asc"), [a, b, c])
        self.assertEqual(ids(limit=2), [c, b])
        self.assertEqual(ids(limit=0), [])
        self.assertEqual(masked(self.c.get("/v1/archives/", query={"limit": -1})), (500, DB_ERROR))
        self.assertEqual(ids(name="bot1's Archive"), [b])
        self.assertEqual(ids(name="bot1"), [])
        self.assertEqual(self.c.get("/v1/archives/", query={"order": "up"}).status, 422)

    def test_list_cursors(self):
        """sqlalchemy_base.py:_list_preprocess: before/after compare (created_at, id) by the order;
        both give a window (LIMIT 2*limit, then the middle, _list_postprocess); an unknown cursor is
        NoResultFound 404; before older than after a ValueError 400."""
        a, b, c, d, e = self.agents_with_archives(5)
        ids = lambda **q: [x["id"] for x in self.c.get("/v1/archives/", query=q).json]   # noqa: E731
        self.assertEqual(ids(order="asc", after=a), [b, c, d, e])
        self.assertEqual(ids(order="asc", before=c), [a, b])
        self.assertEqual(ids(after=c), [b, a])                  # desc: after = older
        self.assertEqual(ids(before=c), [e, d])                 # desc: before = newer
        self.assertEqual(ids(after=a, before=e), [d, c, b])
        self.assertEqual(ids(after=a, before=e, limit=1), [c])
        self.assertEqual(ids(order="asc", after=a, before=e, limit=1), [c])
        r = self.c.get("/v1/archives/", query={"after": MISSING_ARCHIVE})
        self.assertEqual((r.status, r.json), (404, {"detail": "No Archive found with id %s" % MISSING_ARCHIVE}))
        r = self.c.get("/v1/archives/", query={"after": e, "before": a})
        self.assertEqual((r.status, r.json), (400, {"detail": "'before' reference must be later than 'after' reference"}))

    def test_retrieve(self):
        """archive_manager.get_archive_by_id_async: read_async's NoResultFound text; ArchiveId 422."""
        self.assertEqual(masked(self.c.get("/v1/archives/" + MISSING_ARCHIVE)), (404, read_404("Archive", MISSING_ARCHIVE)))
        self.assertEqual(self.c.get("/v1/archives/archive-nope").status, 422)

    def test_archive_outlives_its_agent_and_its_passages(self):
        """orm/archives_agents.py: deleting the agent deletes only the link; an archive stays when
        its passages are gone (it is a row of its own)."""
        a = make_agent(self.c)
        p = self.passage(a)
        self.assertEqual(self.c.delete("/v1/agents/" + a["id"]).status, 200)
        self.assertEqual(self.c.get("/v1/archives/" + p["archive_id"]).status, 200)
        self.assertEqual(self.c.delete("/v1/archives/%s/passages/%s" % (p["archive_id"], p["id"])).status, 204)
        self.assertEqual([x["id"] for x in self.c.get("/v1/archives/").json], [p["archive_id"]])
        r = self.c.post("/v1/archives/%s/passages" % p["archive_id"], {"text": "again"})
        self.assertEqual((r.status, r.json["embedding_config"]), (200, a["embedding_config"]))
        self.assertEqual(self.c.get("/v1/archives/", query={"agent_id": a["id"]}).status, 404)

    def test_delete_passage_from_archive(self):
        """routers/v1/archives.py:delete_passage_from_archive (status_code=204, returns None: an
        empty body, no content-length); delete_passage_from_archive_async: the archive (404), the
        passage (404), its archive (ValueError 400), a hard delete."""
        a, b = make_agent(self.c), make_agent(self.c)
        p, q = self.passage(a), self.passage(b)
        url = "/v1/archives/%s/passages/%s"
        r = self.c.delete(url % (p["archive_id"], q["id"]))
        self.assertEqual((r.status, r.json), (400, {"detail": "Passage %s does not belong to archive %s"
                                                              % (q["id"], p["archive_id"])}))
        r = self.c.delete(url % (p["archive_id"], p["id"]))
        self.assertEqual((r.status, r.body, r.headers.get("content-type")), (204, b"", "application/json"))
        self.assertNotIn("content-length", r.headers)
        self.assertEqual(self.c.get("/v1/agents/%s/archival-memory" % a["id"]).json, [])
        r = self.c.delete(url % (p["archive_id"], p["id"]))
        self.assertEqual((r.status, r.json), (404, {"detail": "Agent passage with id %s not found in database." % p["id"]}))
        self.assertEqual(masked(self.c.delete(url % (MISSING_ARCHIVE, q["id"]))), (404, read_404("Archive", MISSING_ARCHIVE)))
        self.assertEqual(self.c.delete(url % (p["archive_id"], "passage-x")).status, 422)
        self.assertEqual(self.c.get("/v1/health/").status, 200)       # the connection is still usable

    def test_delete_archive_takes_its_passages_and_the_agents_link(self):
        """routers/v1/archives.py:delete_archive (status_code=204); archive_manager.delete_archive_async
        (read_async: 404, then hard_delete_async). archival_passages.archive_id and archives_agents
        are ON DELETE CASCADE (orm/mixins.py:ArchiveMixin, orm/archives_agents.py): the passages go,
        and the agent's next passage makes it a new archive."""
        a = make_agent(self.c, name="ann")
        archive_id = self.passage(a)["archive_id"]
        self.passage(a, "second")
        r = self.c.delete("/v1/archives/%s" % archive_id)
        self.assertEqual((r.status, r.body), (204, b""))
        self.assertEqual(masked(self.c.get("/v1/archives/%s" % archive_id)), (404, read_404("Archive", archive_id)))
        self.assertEqual(masked(self.c.delete("/v1/archives/%s" % archive_id)), (404, read_404("Archive", archive_id)))
        self.assertEqual(self.c.get("/v1/agents/%s/archival-memory" % a["id"]).json, [])
        self.assertEqual(self.c.get("/v1/archives/", query={"agent_id": a["id"]}).json, [])
        again = self.passage(a, "third")["archive_id"]
        self.assertNotEqual(again, archive_id)
        self.assertEqual([x["id"] for x in self.c.get("/v1/archives/", query={"agent_id": a["id"]}).json], [again])
        self.assertEqual(self.c.delete("/v1/archives/archive-x").status, 422)

    def test_batch_route_path_methods(self):
        """Starlette routing: GET on the batch path names its first route (POST); DELETE of
        .../passages/batch reaches the passage route, whose PassageId refuses "batch" (422)."""
        archive_id = self.passage(make_agent(self.c))["archive_id"]
        r = self.c.get("/v1/archives/%s/passages/batch" % archive_id)
        self.assertEqual((r.status, r.headers["allow"]), (405, "POST"))
        self.assertEqual(self.c.delete("/v1/archives/%s/passages/batch" % archive_id).status, 422)

    def test_commit_then_fail_fault_on_the_batch_route(self):
        """faults.py: commit-500 runs the batch, then answers 500: the passages are there."""
        a = make_agent(self.c)
        archive_id = self.passage(a)["archive_id"]
        self.set_faults("kind=commit-500,route=POST /v1/archives/*/passages/batch,times=1")
        url = "/v1/archives/%s/passages/batch" % archive_id
        r = self.c.post(url, {"passages": [{"text": "x"}, {"text": "y"}]})
        self.assertEqual((r.status, r.json), (500, {"detail": "An unknown error occurred"}))
        self.assertEqual(len(self.c.get("/v1/agents/%s/archival-memory" % a["id"]).json), 3)
        self.assertEqual(self.c.post(url, {"passages": [{"text": "z"}]}).status, 200)


class NoArchiveBatchTest(EmulatorTestCase):
    """--compat no-archive-batch: 0.16.3's archives.py (release commit 7544027cd) has no batch
    route (25e9539a6, first in 0.16.4); its path matches DELETE /{archive_id}/passages/{passage_id}."""
    emulator_args = ("--compat", "no-archive-batch")

    def test_batch_route_is_405_allow_delete(self):
        a = make_agent(self.c)
        archive_id = self.c.post("/v1/agents/%s/archival-memory" % a["id"], {"text": "x"}).json[0]["archive_id"]
        r = self.c.post("/v1/archives/%s/passages/batch" % archive_id, {"passages": [{"text": "y"}]})
        self.assertEqual((r.status, r.json, r.headers["allow"]), (405, {"detail": "Method Not Allowed"}, "DELETE"))
        self.assertEqual(self.c.post("/v1/archives/%s/passages" % archive_id, {"text": "y"}).status, 200)
        self.assertEqual(len(self.c.get("/v1/agents/%s/archival-memory" % a["id"]).json), 2)


class ArchiveStateFileTest(unittest.TestCase):
    def test_archives_survive_a_restart(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "state.json")
            emu = Emulator("--state-file", path)
            try:
                c = emu.client()
                a = make_agent(c)
                p = c.post("/v1/agents/%s/archival-memory" % a["id"], {"text": "x"}).json[0]
                c.delete("/v1/archives/%s/passages/%s" % (p["archive_id"], p["id"]))
                before = c.get("/v1/archives/" + p["archive_id"]).json
                c.close()
            finally:
                self.assertEqual(emu.stop(), 0)
            emu = Emulator("--state-file", path)
            try:
                c = emu.client()
                self.assertEqual(c.get("/v1/archives/", query={"agent_id": a["id"]}).json, [before])
                c.close()
            finally:
                self.assertEqual(emu.stop(), 0)

    def test_state_file_without_archives_table_still_loads(self):
        """A state file of an older emulator: the archive was the agent's _archive_embedding_config
        plus its passages. The rows are rebuilt from them."""
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "state.json")
            emu = Emulator("--state-file", path)
            try:
                c = emu.client()
                a = make_agent(c, name="old")
                p = c.post("/v1/agents/%s/archival-memory" % a["id"], {"text": "x"}).json[0]
                c.close()
            finally:
                self.assertEqual(emu.stop(), 0)
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            del data["archives"]
            data["agents"][0]["_archive_embedding_config"] = a["embedding_config"]
            with open(path, "w", encoding="utf-8") as f:
                json.dump(data, f)
            emu = Emulator("--state-file", path)
            try:
                c = emu.client()
                arc = c.get("/v1/archives/" + p["archive_id"]).json
                self.assertEqual((arc["name"], arc["embedding_config"]), ("old's Archive", a["embedding_config"]))
                self.assertEqual(c.post("/v1/archives/%s/passages/batch" % p["archive_id"],
                                        {"passages": [{"text": "y"}]}).status, 200)
                c.close()
            finally:
                self.assertEqual(emu.stop(), 0)


if __name__ == "__main__":
    unittest.main()

"""Identities: what an Identity shows (never its links), list (filters, order, cursors, limits), count,
create (500 for unknown link ids, 409 duplicate), upsert (404 for a new key unless --compat
upsert-creates; replace semantics), retrieve, modify (merge/append, 409 on a taken key), delete,
properties, agents/blocks of an identity, and agent<->identity attach/detach. Each test names the
server source (Letta 0.16.8) that decides the behaviour."""

import unittest

from emu_helpers import (ACTOR, LEGACY_HEADERS, MISSING_AGENT, MISSING_BLOCK, MISSING_IDENTITY, ORG, TS,
                         UNKNOWN, WHEN_RX, EmulatorTestCase, make_agent, make_block, make_identity, masked, read_404)


def duplicate_409(key, project="null"):
    return ("A unique constraint was violated for Identity. Check your input for duplicates: "
            "(sqlalchemy.dialects.postgresql.asyncpg.IntegrityError) "
            "<class 'asyncpg.exceptions.UniqueViolationError'>: "
            "duplicate key value violates unique constraint \"unique_identifier_key_project_id_organization_id\"\n"
            "DETAIL:  Key (identifier_key, project_id, organization_id)=(%s, %s, %s) already exists."
            % (key, project, ORG))


class IdentitiesTest(EmulatorTestCase):
    def ids(self, path, query=None):
        r = self.c.get(path, query=query)
        self.assertEqual(r.status, 200, r)
        return [x["id"] for x in r.json]

    def agent_identity_ids(self, agent):
        return self.c.get("/v1/agents/" + agent["id"], query={"include": ["agent.identities"]}).json["identity_ids"]

    def test_create_returns_identity_without_its_links(self):
        """orm/identity.py:Identity.to_pydantic hard-codes agent_ids and block_ids to []; the links
        exist and are read through /agents, /blocks and the agent's identity_ids."""
        a, b = make_agent(self.c), make_block(self.c, "l")
        i = make_identity(self.c, "user_123", "John Doe", agent_ids=[a["id"]], block_ids=[b["id"]],
                          properties=[{"key": "age", "value": 3, "type": "number"}])
        self.assertRegex(i["id"], r"^identity-[0-9a-f]{8}-")
        self.assertEqual((i["identifier_key"], i["name"], i["identity_type"]), ("user_123", "John Doe", "user"))
        self.assertEqual((i["agent_ids"], i["block_ids"], i["project_id"]), ([], [], None))
        self.assertEqual(i["properties"], [{"key": "age", "value": 3, "type": "number"}])
        self.assertEqual(self.c.get("/v1/identities/" + i["id"]).json["block_ids"], [])
        self.assertEqual(self.c.get("/v1/identities/").json[0]["agent_ids"], [])
        self.assertEqual(self.ids("/v1/identities/%s/agents" % i["id"]), [a["id"]])
        self.assertEqual(self.ids("/v1/identities/%s/blocks" % i["id"]), [b["id"]])
        self.assertEqual(self.agent_identity_ids(a), [i["id"]])
        self.assertEqual(self.admin_state()["identities"][0]["block_ids"], [b["id"]])   # admin view: links

    def test_identity_inside_agent_state_has_no_links_but_agent_lists_its_id(self):
        """orm/agent.py:to_pydantic_async: identities = [i.to_pydantic() ...] (links []),
        identity_ids = [i.id ...]."""
        a = make_agent(self.c)
        i = make_identity(self.c, "u1", agent_ids=[a["id"]])
        r = self.c.get("/v1/agents/" + a["id"], query={"include": ["agent.identities"]}).json
        self.assertEqual(r["identity_ids"], [i["id"]])
        self.assertEqual((r["identities"][0]["id"], r["identities"][0]["agent_ids"]), (i["id"], []))

    def test_create_duplicate_key_is_409_with_the_constraint_text(self):
        """identity_manager.py:_create_identity_async -> create_async -> sqlalchemy_base.py:
        _handle_dbapi_error (23505) -> UniqueConstraintViolationError -> app.py 409. NULL project ids
        collide (postgresql_nulls_not_distinct); another project is another key."""
        make_identity(self.c, "dup")
        r = self.c.post("/v1/identities/", {"identifier_key": "dup", "name": "x", "identity_type": "user"})
        self.assertEqual((r.status, r.json), (409, {"detail": duplicate_409("dup")}))
        make_identity(self.c, "dup", project_id="p2")
        r = self.c.post("/v1/identities/", {"identifier_key": "dup", "name": "x", "identity_type": "user",
                                            "project_id": "p2"})
        self.assertEqual((r.status, r.json), (409, {"detail": duplicate_409("dup", "p2")}))

    def test_create_with_unknown_or_repeated_link_ids_is_500(self):
        """identity_manager.py:_process_relationship_async raises sqlalchemy.exc.NoResultFound when
        fewer rows than ids come back (unknown or repeated id); app.py maps only letta's own
        NoResultFound, so generic_error_handler answers 500. Links are checked before the insert."""
        a = make_agent(self.c)
        make_identity(self.c, "taken")
        for extra in ({"agent_ids": [MISSING_AGENT]}, {"block_ids": [MISSING_BLOCK]},
                      {"agent_ids": [a["id"], a["id"]]}):
            r = self.c.post("/v1/identities/", dict(extra, identifier_key="k", name="n", identity_type="user"))
            self.assertEqual((r.status, r.json), (500, UNKNOWN), extra)
        r = self.c.post("/v1/identities/", {"identifier_key": "taken", "name": "n", "identity_type": "user",
                                            "agent_ids": [MISSING_AGENT]})
        self.assertEqual(r.status, 500)
        self.assertEqual(self.c.get("/v1/identities/count").json, 1)

    def test_create_validates_identity_type_and_link_id_format(self):
        """schemas/identity.py:IdentityCreate (IdentityType enum, List[AgentId] with the id pattern)."""
        r = self.c.post("/v1/identities/", {"identifier_key": "k", "name": "n", "identity_type": "person"})
        self.assertEqual(r.status, 422)
        self.assertIn("identity_type", r.json["detail"])
        r = self.c.post("/v1/identities/", {"identifier_key": "k", "name": "n", "identity_type": "user",
                                            "agent_ids": ["agent-1"]})
        self.assertEqual(r.status, 422)

    def test_retrieve_and_404_detail(self):
        """identity_manager.py:get_identity_async -> IdentityModel.read_async raises letta's
        NoResultFound -> app.py _error_handler_404 with str(exc)."""
        i = make_identity(self.c, "k")
        self.assertEqual(self.c.get("/v1/identities/" + i["id"]).json, i)
        r = self.c.get("/v1/identities/" + MISSING_IDENTITY)
        self.assertEqual(masked(r), (404, read_404("Identity", MISSING_IDENTITY)))

    def test_list_filters_order_and_count(self):
        """identity_manager.py:list_identities_async: name via query_text (lower(name) LIKE
        '%text%', so _ is a wildcard), exact project_id/identifier_key/identity_type; order desc by
        default (routers/v1/identities.py); count is size_async over every identity."""
        make_identity(self.c, "a", "Alice", "user")
        make_identity(self.c, "b", "Bob", "org")
        make_identity(self.c, "c", "Carol", "user", project_id="p1")
        keys = lambda q=None: [i["identifier_key"] for i in self.c.get("/v1/identities/", query=q).json]  # noqa
        self.assertEqual(keys(), ["c", "b", "a"])
        self.assertEqual(keys({"identity_type": "user"}), ["c", "a"])
        self.assertEqual(keys({"identifier_key": "b"}), ["b"])
        self.assertEqual(keys({"name": "ALI"}), ["a"])
        self.assertEqual(keys({"name": "c_r"}), ["c"])           # LIKE: _ matches the 'a' of Carol
        self.assertEqual(keys({"project_id": "p1"}), ["c"])
        self.assertEqual(keys({"limit": 1, "order": "asc"}), ["a"])
        self.assertEqual(self.c.get("/v1/identities/count").json, 3)

    def test_list_limits(self):
        """list_identities_async asks list_async for limit+1 rows (None when limit is 0) and trims:
        limit=0 lists everything, -1 nothing, -2 reaches Postgres as LIMIT -1 (DBAPIError -> 500)."""
        for k in "abc":
            make_identity(self.c, k)
        self.assertEqual(len(self.c.get("/v1/identities/", query={"limit": 0}).json), 3)
        self.assertEqual(self.c.get("/v1/identities/", query={"limit": -1}).json, [])
        r = self.c.get("/v1/identities/", query={"limit": -2})
        self.assertEqual((r.status, r.json), (500, {"detail": "A database error occurred."}))

    def test_list_cursors(self):
        """orm/sqlalchemy_base.py:list_async: an unknown (or deleted) cursor is a 404; `before` keeps
        the first `limit` rows in list order, not the nearest; before+after keep the window between
        them whatever the order, and a reversed pair is a ValueError (400)."""
        ids = [make_identity(self.c, "k%d" % n)["id"] for n in range(6)]
        q = lambda **kw: self.ids("/v1/identities/", kw)  # noqa: E731
        self.assertEqual(q(after=ids[3]), [ids[2], ids[1], ids[0]])
        self.assertEqual(q(after=ids[3], order="asc"), ids[4:])
        self.assertEqual(q(before=ids[4], order="asc", limit=2), ids[:2])
        self.assertEqual(q(before=ids[1], limit=2), [ids[5], ids[4]])
        self.assertEqual(q(after=ids[1], before=ids[4]), [ids[3], ids[2]])
        self.assertEqual(q(after=ids[1], before=ids[4], order="asc"), [ids[2], ids[3]])
        r = self.c.get("/v1/identities/", query={"after": ids[4], "before": ids[1]})
        self.assertEqual((r.status, r.json),
                         (400, {"detail": "'before' reference must be later than 'after' reference"}))
        self.c.delete("/v1/identities/" + ids[0])
        for cursor in (ids[0], "nonsense"):
            r = self.c.get("/v1/identities/", query={"after": cursor})
            self.assertEqual((r.status, r.json), (404, {"detail": "No Identity found with id %s" % cursor}))

    def test_patch_merges_properties_and_appends_links(self):
        """identity_manager.py:_update_identity_async(replace=False): properties merged by key,
        agent_ids/block_ids extended with the new ones."""
        a1, a2 = make_agent(self.c), make_agent(self.c)
        b1 = make_block(self.c, "l")
        i = make_identity(self.c, "k", agent_ids=[a1["id"]],
                          properties=[{"key": "x", "value": "1", "type": "string"},
                                      {"key": "y", "value": "2", "type": "string"}])
        r = self.c.patch("/v1/identities/" + i["id"], {
            "name": "New", "agent_ids": [a2["id"], a1["id"]], "block_ids": [b1["id"]],
            "properties": [{"key": "y", "value": "22", "type": "string"},
                           {"key": "z", "value": True, "type": "boolean"}]}).json
        self.assertEqual((r["name"], r["agent_ids"], r["block_ids"]), ("New", [], []))
        self.assertEqual([(p["key"], p["value"]) for p in r["properties"]], [("x", "1"), ("y", "22"), ("z", True)])
        self.assertEqual(set(self.ids("/v1/identities/%s/agents" % i["id"])), {a1["id"], a2["id"]})
        self.assertEqual(self.ids("/v1/identities/%s/blocks" % i["id"]), [b1["id"]])

    def test_patch_unknown_link_is_500_and_changes_nothing(self):
        """_process_relationship_async raises before update_async; the session rolls back."""
        i = make_identity(self.c, "k")
        r = self.c.patch("/v1/identities/" + i["id"], {"name": "changed", "agent_ids": [MISSING_AGENT]})
        self.assertEqual((r.status, r.json), (500, UNKNOWN))
        self.assertEqual(self.c.get("/v1/identities/" + i["id"]).json["name"], "k")

    def test_patch_identifier_key_onto_a_taken_one_is_409(self):
        """update_async flushes the new key -> unique_identifier_key_project_id_organization_id."""
        make_identity(self.c, "taken")
        i = make_identity(self.c, "mine")
        r = self.c.patch("/v1/identities/" + i["id"], {"identifier_key": "taken"})
        self.assertEqual((r.status, r.json), (409, {"detail": duplicate_409("taken")}))
        self.assertEqual(self.c.patch("/v1/identities/" + i["id"], {"identifier_key": "mine"}).status, 200)
        other = make_identity(self.c, "taken", project_id="p")
        self.assertEqual(self.c.patch("/v1/identities/" + other["id"], {"identifier_key": "free"}).status, 200)

    def test_patch_404_and_unknown_fields(self):
        """update_identity_async: read_async raises letta's NoResultFound, which its `except
        NoResultFound` (sqlalchemy's) does not catch; IdentityUpdate forbids extra fields."""
        i = make_identity(self.c, "k")
        self.assertEqual(self.c.patch("/v1/identities/" + i["id"], {"project_id": "p"}).status, 422)
        r = self.c.patch("/v1/identities/" + MISSING_IDENTITY, {"name": "x"})
        self.assertEqual(masked(r), (404, read_404("Identity", MISSING_IDENTITY)))

    def test_put_upsert_of_a_new_key_is_404(self):
        """identity_manager.py:upsert_identity_async looks the key up with read_async, which raises:
        the create branch is unreachable on 0.16.8."""
        body = {"identifier_key": "new", "name": "N", "identity_type": "user"}
        r = self.c.put("/v1/identities/", body)
        self.assertEqual(masked(r), (404, {"detail": "Identity not found with identifier_key='new', project_id='None', "
                                                     "organization_id='%s', %s" % (ORG, ACTOR)}))
        self.assertEqual(len(WHEN_RX.findall(r.json["detail"])), 2)
        r = self.c.put("/v1/identities/", dict(body, project_id="p1"))
        self.assertIn("identifier_key='new', project_id='p1',", r.json["detail"])
        self.assertEqual(self.c.get("/v1/identities/count").json, 0)

    def test_put_upsert_replaces_only_what_the_body_carries(self):
        """upsert_identity_async -> _update_identity_async(replace=True) with an IdentityUpdate built
        without block_ids: name/type replaced, agent_ids and properties replaced when given ([]
        clears), left alone when omitted; block_ids ignored."""
        a1, a2 = make_agent(self.c), make_agent(self.c)
        b1, b2 = make_block(self.c, "l1"), make_block(self.c, "l2")
        i = make_identity(self.c, "u", agent_ids=[a1["id"]], block_ids=[b1["id"]],
                          properties=[{"key": "p", "value": "1", "type": "string"}])
        r = self.c.put("/v1/identities/", {"identifier_key": "u", "name": "U2", "identity_type": "other",
                                           "block_ids": [b2["id"]]}).json
        self.assertEqual((r["id"], r["name"], r["identity_type"]), (i["id"], "U2", "other"))
        self.assertEqual(r["properties"], [{"key": "p", "value": "1", "type": "string"}])
        self.assertEqual(self.ids("/v1/identities/%s/agents" % i["id"]), [a1["id"]])
        self.assertEqual(self.ids("/v1/identities/%s/blocks" % i["id"]), [b1["id"]])
        r = self.c.put("/v1/identities/", {"identifier_key": "u", "name": "U3", "identity_type": "user",
                                           "agent_ids": [a2["id"]], "properties": []}).json
        self.assertEqual((r["properties"], r["agent_ids"]), ([], []))
        self.assertEqual(self.ids("/v1/identities/%s/agents" % i["id"]), [a2["id"]])
        self.c.put("/v1/identities/", {"identifier_key": "u", "name": "U3", "identity_type": "user", "agent_ids": []})
        self.assertEqual(self.ids("/v1/identities/%s/agents" % i["id"]), [])
        r = self.c.put("/v1/identities/", {"identifier_key": "u", "name": "bad", "identity_type": "user",
                                           "agent_ids": [MISSING_AGENT]})
        self.assertEqual((r.status, r.json), (500, UNKNOWN))
        self.assertEqual(self.c.get("/v1/identities/" + i["id"]).json["name"], "U3")
        self.assertEqual(self.c.get("/v1/identities/count").json, 1)

    def test_put_properties_replaces_the_list(self):
        """upsert_identity_properties_async -> _update_identity_async(replace=True)."""
        i = make_identity(self.c, "k", properties=[{"key": "a", "value": "1", "type": "string"}])
        r = self.c.put("/v1/identities/%s/properties" % i["id"], [{"key": "b", "value": {"j": 1}, "type": "json"}])
        self.assertEqual(r.json["properties"], [{"key": "b", "value": {"j": 1}, "type": "json"}])
        self.assertEqual(r.json["agent_ids"], [])
        r = self.c.put("/v1/identities/%s/properties" % MISSING_IDENTITY, [])
        self.assertEqual(masked(r), (404, read_404("Identity", MISSING_IDENTITY)))

    def test_delete_returns_null_then_404_and_drops_the_links(self):
        """delete_identity_async: read_async (404), session.delete; identities_agents rows cascade."""
        a = make_agent(self.c)
        i = make_identity(self.c, "k", agent_ids=[a["id"]])
        self.assertEqual(self.agent_identity_ids(a), [i["id"]])
        r = self.c.delete("/v1/identities/" + i["id"])
        self.assertEqual((r.status, r.json), (200, None))
        self.assertEqual(self.c.get("/v1/identities/" + i["id"]).status, 404)
        r = self.c.delete("/v1/identities/" + i["id"])
        self.assertEqual(masked(r), (404, read_404("Identity", i["id"])))
        self.assertEqual(self.agent_identity_ids(a), [])

    def test_agent_identity_attach_detach(self):
        """routers/v1/agents.py:attach_identity_to_agent answers null; identity_manager.py:
        attach_agent_async is idempotent, detach of an unattached agent does nothing."""
        a = make_agent(self.c, name="bot")
        i = make_identity(self.c, "k")
        path = "/v1/agents/%s/identities/%%s/%s" % (a["id"], i["id"])
        for _ in range(2):
            r = self.c.patch(path % "attach")
            self.assertEqual((r.status, r.json), (200, None))
        self.assertEqual(self.ids("/v1/identities/%s/agents" % i["id"]), [a["id"]])
        self.assertEqual(self.agent_identity_ids(a), [i["id"]])
        self.assertEqual(self.c.get("/v1/identities/" + i["id"]).json["agent_ids"], [])
        for _ in range(2):
            r = self.c.patch(path % "detach")
            self.assertEqual((r.status, r.json), (200, None))
        self.assertEqual(self.ids("/v1/identities/%s/agents" % i["id"]), [])

    def test_agent_identity_attach_errors(self):
        """attach_agent_async: raise_on_invalid_id(identity_id) -> LettaInvalidArgumentError (400,
        'INVALID_ARGUMENT: ...'); then IdentityModel.read_async and AgentModel.read_async (404)."""
        a = make_agent(self.c)
        i = make_identity(self.c, "k")
        r = self.c.patch("/v1/agents/%s/identities/attach/identity-1" % a["id"])
        self.assertEqual((r.status, r.json), (400, {"detail": "INVALID_ARGUMENT: Invalid identity ID format: "
                                                              "identity-1. Expected format: 'identity-<uuid4>'"}))
        r = self.c.patch("/v1/agents/%s/identities/attach/%s" % (MISSING_AGENT, MISSING_IDENTITY))
        self.assertEqual(masked(r), (404, read_404("Identity", MISSING_IDENTITY)))
        r = self.c.patch("/v1/agents/%s/identities/detach/%s" % (MISSING_AGENT, i["id"]))
        self.assertEqual(masked(r), (404, read_404("Agent", MISSING_AGENT)))

    def test_agents_of_identity_order_cursor_and_relationships(self):
        """list_agents_for_identity_async: AgentModel.list_async (desc by default, unknown cursor 404),
        agents converted with include_relationships=[]: only `include` loads relations, for every
        client version."""
        a1 = make_agent(self.c, memory_blocks=[{"label": "human", "value": "H"}], tags=["t"])
        a2 = make_agent(self.c)
        i = make_identity(self.c, "k", agent_ids=[a1["id"], a2["id"]])
        path = "/v1/identities/%s/agents" % i["id"]
        self.assertEqual(self.ids(path), [a2["id"], a1["id"]])
        self.assertEqual(self.ids(path, {"order": "asc", "limit": 1}), [a1["id"]])
        r = self.c.get(path, headers=LEGACY_HEADERS).json
        self.assertEqual((r[1]["blocks"], r[1]["tags"]), ([], []))
        r = self.c.get(path, query={"include": ["agent.blocks"]}).json
        self.assertEqual(([b["label"] for b in r[1]["blocks"]], r[1]["tags"]), (["human"], ["t"]))
        r = self.c.get(path, query={"after": MISSING_AGENT})
        self.assertEqual((r.status, r.json), (404, {"detail": "No Agent found with id %s" % MISSING_AGENT}))
        r = self.c.get("/v1/identities/%s/agents" % MISSING_IDENTITY)
        self.assertEqual(masked(r), (404, read_404("Identity", MISSING_IDENTITY)))

    def test_blocks_of_identity(self):
        """list_blocks_for_identity_async: BlockModel.list_async (desc, no hidden/template filter,
        limit 0 = LIMIT 0, negative = database error); block.to_pydantic() without the tags relation
        loaded, so tags are []."""
        b1 = make_block(self.c, "Persona_k", tags=["x"])
        b2 = make_block(self.c, "secret", hidden=True, is_template=True)
        i = make_identity(self.c, "k", block_ids=[b1["id"], b2["id"]])
        r = self.c.get("/v1/identities/%s/blocks" % i["id"]).json
        self.assertEqual([x["id"] for x in r], [b2["id"], b1["id"]])
        self.assertEqual(r[1]["tags"], [])
        self.assertEqual(self.c.get("/v1/identities/%s/blocks" % i["id"], query={"limit": 0}).json, [])  # LIMIT 0
        r = self.c.get("/v1/identities/%s/blocks" % i["id"], query={"limit": -1})
        self.assertEqual((r.status, r.json), (500, {"detail": "A database error occurred."}))
        r = self.c.get("/v1/identities/%s/blocks" % i["id"], query={"before": MISSING_BLOCK})
        self.assertEqual((r.status, r.json), (404, {"detail": "No Block found with id %s" % MISSING_BLOCK}))

    def test_deleting_agent_removes_it_from_identities(self):
        a = make_agent(self.c)
        i = make_identity(self.c, "k", agent_ids=[a["id"]])
        self.c.delete("/v1/agents/" + a["id"])
        self.assertEqual(self.ids("/v1/identities/%s/agents" % i["id"]), [])


class UpsertCreatesCompatTest(EmulatorTestCase):
    """--compat upsert-creates: the behaviour of servers before 0.16 (emu_core.py:COMPAT_SWITCHES),
    where upsert_identity_async's create branch was reachable."""
    emulator_args = ("--compat", "upsert-creates")

    def test_put_of_a_new_key_creates_it_with_its_links(self):
        b = make_block(self.c, "l")
        r = self.c.put("/v1/identities/", {"identifier_key": "new", "name": "N", "identity_type": "user",
                                           "block_ids": [b["id"]]})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json["block_ids"], [])
        self.assertEqual([x["id"] for x in self.c.get("/v1/identities/%s/blocks" % r.json["id"]).json], [b["id"]])
        self.assertEqual(self.c.put("/v1/identities/", {"identifier_key": "new", "name": "N2",
                                                        "identity_type": "user"}).json["id"], r.json["id"])


if __name__ == "__main__":
    unittest.main()

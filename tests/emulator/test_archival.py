"""Archival memory (passages): list (after/before/limit/search/ascending), create (an array),
search ({results, count}, top_k default 5, tags + tag_match_mode, date range), delete, modify
(removed: 405), org-wide passage search, and the archive insert routes."""

import unittest

from emu_helpers import EmulatorTestCase, make_agent


class ArchivalTest(EmulatorTestCase):
    def setUp(self):
        super().setUp()
        self.agent = make_agent(self.c)
        self.base = "/v1/agents/%s/archival-memory" % self.agent["id"]

    def add(self, text, **extra):
        r = self.c.post(self.base, dict(extra, text=text))
        self.assertEqual(r.status, 200, r)
        return r.json[0]

    def test_create_returns_an_array_with_one_passage(self):
        r = self.c.post(self.base, {"text": "I like coffee", "tags": ["food"]})
        self.assertEqual(r.status, 200)
        self.assertIsInstance(r.json, list)
        p = r.json[0]
        self.assertRegex(p["id"], r"^passage-[0-9a-f]{8}-")
        self.assertEqual((p["text"], p["tags"], p["is_deleted"], p["metadata"]), ("I like coffee", ["food"], False, {}))
        self.assertIsNone(p["embedding"])
        self.assertIsNone(p["file_id"])
        self.assertTrue(p["archive_id"].startswith("archive-"))

    def test_create_requires_text_and_rejects_oversize_with_400(self):
        self.assertEqual(self.c.post(self.base, {"tags": []}).status, 422)
        r = self.c.post(self.base, {"text": "x" * 40000})
        self.assertEqual(r.status, 400)
        self.assertIn("token limit", r.json["detail"])

    def test_create_with_created_at(self):
        p = self.add("old", created_at="2024-01-15T09:30:00Z")
        self.assertTrue(p["created_at"].startswith("2024-01-15T09:30:00"))

    def test_list_ascending_default_limit_search_and_cursors(self):
        ps = [self.add("note %d" % i) for i in range(5)]
        ids = [p["id"] for p in ps]
        self.assertEqual([p["id"] for p in self.c.get(self.base).json], ids)
        self.assertEqual([p["id"] for p in self.c.get(self.base, query={"ascending": "false"}).json], ids[::-1])
        self.assertEqual([p["id"] for p in self.c.get(self.base, query={"limit": 2, "after": ids[1]}).json], ids[2:4])
        self.assertEqual([p["id"] for p in self.c.get(self.base, query={"before": ids[2]}).json], ids[:2])
        self.assertEqual([p["text"] for p in self.c.get(self.base, query={"search": "NOTE 3"}).json], ["note 3"])

    def test_list_for_unknown_agent_is_404(self):
        r = self.c.get("/v1/agents/agent-00000000-0000-4000-8000-000000000000/archival-memory")
        self.assertEqual(r.status, 404)

    def test_search_returns_results_and_count_best_match_first(self):
        self.add("the cat sleeps", tags=["pets"])
        self.add("coffee in the morning", tags=["food", "morning"])
        self.add("tea at night", tags=["food"])
        r = self.c.get(self.base + "/search", query={"query": "morning coffee"})
        self.assertEqual(r.status, 200)
        body = r.json
        self.assertEqual(set(body), {"results", "count"})
        self.assertEqual(body["count"], len(body["results"]))
        top = body["results"][0]
        self.assertEqual((top["content"], top["tags"]), ("coffee in the morning", ["food", "morning"]))
        self.assertIsInstance(top["timestamp"], str)
        self.assertTrue(top["timestamp"].endswith("+00:00"))

    def test_search_top_k_defaults_to_5(self):
        for i in range(8):
            self.add("item %d" % i)
        self.assertEqual(self.c.get(self.base + "/search", query={"query": "item"}).json["count"], 5)
        self.assertEqual(self.c.get(self.base + "/search", query={"query": "item", "top_k": 7}).json["count"], 7)

    def test_search_requires_query(self):
        r = self.c.get(self.base + "/search")
        self.assertEqual(r.status, 422)
        self.assertIn("'loc': ('query', 'query')", r.json["detail"])

    def test_search_tags_any_and_all(self):
        self.add("a", tags=["x"])
        self.add("b", tags=["x", "y"])
        self.add("c", tags=["z"])
        texts = lambda q: sorted(r["content"] for r in self.c.get(self.base + "/search", query=q).json["results"])  # noqa
        self.assertEqual(texts({"query": "q", "tags": ["x", "y"]}), ["a", "b"])
        self.assertEqual(texts({"query": "q", "tags": ["x", "y"], "tag_match_mode": "all"}), ["b"])
        self.assertEqual(self.c.get(self.base + "/search", query={"query": "q", "tag_match_mode": "some"}).status, 422)

    def test_search_date_range_accepts_dates_and_datetimes(self):
        self.add("jan", created_at="2024-01-10T12:00:00Z")
        self.add("feb", created_at="2024-02-10T12:00:00Z")
        self.add("mar", created_at="2024-03-10T12:00:00Z")
        texts = lambda q: sorted(r["content"] for r in self.c.get(self.base + "/search", query=dict(q, query="x")).json["results"])  # noqa
        self.assertEqual(texts({"start_datetime": "2024-02-01", "end_datetime": "2024-02-10"}), ["feb"])
        self.assertEqual(texts({"start_datetime": "2024-02-01T00:00:00+00:00"}), ["feb", "mar"])
        self.assertEqual(texts({"end_datetime": "2024-01-31T23:59:59Z"}), ["jan"])
        self.assertEqual(self.c.get(self.base + "/search", query={"query": "x", "start_datetime": "nope"}).status, 422)

    def test_search_timestamp_uses_agent_timezone(self):
        a = make_agent(self.c, timezone="America/Los_Angeles")
        base = "/v1/agents/%s/archival-memory" % a["id"]
        self.c.post(base, {"text": "t", "created_at": "2026-01-01T18:00:00Z"})
        ts = self.c.get(base + "/search", query={"query": "t"}).json["results"][0]["timestamp"]
        self.assertEqual(ts, "2026-01-01T10:00:00-08:00")

    def test_delete_returns_message_and_404_after(self):
        p = self.add("bye")
        r = self.c.delete(self.base + "/" + p["id"])
        self.assertEqual(r.json, {"message": "Memory id=%s successfully deleted" % p["id"]})
        self.assertEqual(self.c.delete(self.base + "/" + p["id"]).status, 404)
        self.assertEqual(self.c.get(self.base).json, [])

    def test_modify_passage_is_405_as_the_route_was_removed(self):
        p = self.add("x")
        r = self.c.patch(self.base + "/" + p["id"], {"text": "y"})
        self.assertEqual((r.status, r.json), (405, {"detail": "Method Not Allowed"}))
        self.assertEqual(r.headers["allow"], "DELETE")
        self.assertEqual(self.c.get(self.base).json[0]["text"], "x")

    def test_org_wide_passage_search(self):
        self.add("blue sky", tags=["t"])
        other = make_agent(self.c)
        self.c.post("/v1/agents/%s/archival-memory" % other["id"], {"text": "blue sea"})
        r = self.c.post("/v1/passages/search", {"query": "blue sky"}).json
        self.assertEqual(len(r), 2)
        self.assertEqual(r[0]["passage"]["text"], "blue sky")
        self.assertGreater(r[0]["score"], r[1]["score"])
        r = self.c.post("/v1/passages/search", {"query": "blue", "agent_id": other["id"]}).json
        self.assertEqual([x["passage"]["text"] for x in r], ["blue sea"])

    def test_archive_insert_one_and_batch(self):
        archive = self.admin_state()["agents"][0]["archive_id"]
        r = self.c.post("/v1/archives/%s/passages" % archive, {"text": "one", "metadata": {"k": 1}})
        self.assertEqual((r.status, r.json["text"], r.json["metadata"]), (200, "one", {"k": 1}))
        r = self.c.post("/v1/archives/%s/passages/batch" % archive, {"passages": [{"text": "a"}, {"text": "b"}]})
        self.assertEqual([p["text"] for p in r.json], ["a", "b"])
        self.assertEqual(len(self.c.get(self.base).json), 3)
        self.assertEqual(self.c.post("/v1/archives/archive-00000000-0000-4000-8000-000000000000/passages",
                                     {"text": "x"}).status, 404)
        self.assertEqual(self.c.post("/v1/archives/archive-nope/passages", {"text": "x"}).status, 422)


if __name__ == "__main__":
    unittest.main()

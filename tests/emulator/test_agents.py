"""Agents: create (minimal body), list (filters, pagination, order), retrieve, context, delete,
and the legacy/1.x relationship loading of ENDPOINTS.md §2."""

import unittest

from emu_helpers import LEGACY_HEADERS, SDK_HEADERS, EmulatorTestCase, make_agent, make_identity

UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


class AgentsTest(EmulatorTestCase):
    def test_create_with_empty_body_returns_agent_state_with_nulls(self):
        r = self.c.post("/v1/agents/", {})
        self.assertEqual(r.status, 200)
        a = r.json
        self.assertRegex(a["id"], "^agent-" + UUID4 + "$")
        for field in ("description", "metadata", "project_id", "last_run_completion", "pending_approval"):
            self.assertIn(field, a)
            self.assertIsNone(a[field], field)
        self.assertEqual(a["blocks"], [])
        self.assertEqual(a["agent_type"], "letta_v1_agent")
        self.assertEqual(a["llm_config"]["context_window"], 32000)

    def test_create_with_memory_blocks_creates_and_attaches_them(self):
        a = make_agent(self.c, name="bot", memory_blocks=[{"label": "human", "value": "H"},
                                                          {"label": "persona", "value": "P"}], tags=["x"])
        self.assertEqual([b["label"] for b in a["blocks"]], ["human", "persona"])
        self.assertEqual(a["memory"]["blocks"][1]["value"], "P")
        self.assertEqual(a["tags"], ["x"])
        st = self.admin_state()
        self.assertEqual(len(st["blocks"]), 2)
        self.assertEqual(st["agents"][0]["block_labels"], ["human", "persona"])

    def test_create_with_unknown_block_id_is_404(self):
        r = self.c.post("/v1/agents/", {"block_ids": ["block-00000000-0000-4000-8000-000000000000"]})
        self.assertEqual(r.status, 404)
        self.assertIn("not found", r.json["detail"])

    def test_create_with_two_blocks_of_one_label_is_409(self):
        r = self.c.post("/v1/agents/", {"memory_blocks": [{"label": "human", "value": "a"},
                                                          {"label": "human", "value": "b"}]})
        self.assertEqual(r.status, 409)

    def test_create_with_bad_field_type_is_422_with_string_detail(self):
        r = self.c.post("/v1/agents/", {"name": 5})
        self.assertEqual(r.status, 422)
        self.assertIsInstance(r.json["detail"], str)
        self.assertIn("'loc': ('body', 'name')", r.json["detail"])

    def test_retrieve_returns_the_agent_and_404_for_unknown(self):
        a = make_agent(self.c, name="one")
        self.assertEqual(self.c.get("/v1/agents/" + a["id"]).json["name"], "one")
        r = self.c.get("/v1/agents/agent-00000000-0000-4000-8000-000000000000")
        self.assertEqual(r.status, 404)
        self.assertIsInstance(r.json["detail"], str)

    def test_malformed_agent_id_is_422(self):
        for bad in ("agent-123", "agent-ZZZZZZZZ-0000-4000-8000-000000000000", "block-" + "0" * 36):
            r = self.c.get("/v1/agents/" + bad)
            self.assertEqual(r.status, 422, bad)
            self.assertIn("agent_id", r.json["detail"])

    def test_list_defaults_to_newest_first_and_limit_50(self):
        ids = [make_agent(self.c, name="a%02d" % i)["id"] for i in range(55)]
        page = self.c.get("/v1/agents/").json
        self.assertEqual(len(page), 50)
        self.assertEqual([a["id"] for a in page], ids[::-1][:50])

    def test_list_pages_with_after_until_empty_page(self):
        ids = [make_agent(self.c, name="p%d" % i)["id"] for i in range(7)]
        seen, after = [], None
        while True:
            q = {"limit": 3, "order": "asc"}
            if after:
                q["after"] = after
            page = self.c.get("/v1/agents/", query=q).json
            if not page:
                break
            seen += [a["id"] for a in page]
            after = page[-1]["id"]
        self.assertEqual(seen, ids)

    def test_list_before_returns_the_items_just_before_the_cursor(self):
        ids = [make_agent(self.c)["id"] for _ in range(6)]
        page = self.c.get("/v1/agents/", query={"before": ids[4], "limit": 2, "order": "asc"}).json
        self.assertEqual([a["id"] for a in page], ids[2:4])

    def test_list_filters_by_name_tags_and_identity(self):
        a = make_agent(self.c, name="alpha", tags=["t1", "t2"])
        b = make_agent(self.c, name="beta", tags=["t2"])
        ident = make_identity(self.c, "k1", agent_ids=[b["id"]])
        names = lambda q: sorted(x["name"] for x in self.c.get("/v1/agents/", query=q).json)  # noqa: E731
        self.assertEqual(names({"name": "alpha"}), ["alpha"])
        self.assertEqual(names({"tags": ["t1", "t2"]}), ["alpha", "beta"])
        self.assertEqual(names({"tags": ["t1", "t2"], "match_all_tags": "true"}), ["alpha"])
        self.assertEqual(names({"identity_id": ident["id"]}), ["beta"])
        self.assertEqual(names({"identifier_keys": ["k1"]}), ["beta"])
        self.assertEqual(names({"query_text": "LPH"}), ["alpha"])
        self.assertTrue(a["id"])

    def test_sdk_1x_client_gets_no_relationships_unless_included(self):
        a = make_agent(self.c, memory_blocks=[{"label": "human", "value": "H"}], tags=["t"])
        r = self.c.get("/v1/agents/" + a["id"], headers=SDK_HEADERS).json
        self.assertEqual((r["blocks"], r["memory"]["blocks"], r["tags"]), ([], [], []))
        r = self.c.get("/v1/agents/" + a["id"], headers=SDK_HEADERS, query={"include": ["agent.blocks"]}).json
        self.assertEqual([b["label"] for b in r["blocks"]], ["human"])
        self.assertEqual(r["tags"], [])

    def test_legacy_user_agent_gets_all_relationships(self):
        a = make_agent(self.c, memory_blocks=[{"label": "human", "value": "H"}], tags=["t"])
        for ua in ("letta-client/0.1.324", "curl/8.5.0", "python-requests/2.31", "letta-client/2.0.0"):
            r = self.c.get("/v1/agents/" + a["id"], headers={"User-Agent": ua}).json
            self.assertEqual([b["label"] for b in r["blocks"]], ["human"], ua)
            self.assertEqual(r["tags"], ["t"], ua)

    def test_client_detection_rules(self):
        a = make_agent(self.c, memory_blocks=[{"label": "human", "value": "H"}])
        cases = {
            "letta-client/1.3.0": 0,                 # 1.x by User-Agent
            "@letta-ai/letta-client/1.12.1": 0,
            "MyScript": 1,                           # no '/' -> legacy
            "Letta/JS 1.12.1": 1,                    # not the letta-client form -> legacy
        }
        for ua, n in cases.items():
            r = self.c.get("/v1/agents/" + a["id"], headers={"User-Agent": ua}).json
            self.assertEqual(len(r["blocks"]), n, ua)
        # the Stainless header wins over any User-Agent
        r = self.c.get("/v1/agents/" + a["id"], headers={"User-Agent": "curl/8",
                                                         "X-Stainless-Package-Version": "1.0.0"}).json
        self.assertEqual(r["blocks"], [])

    def test_include_relationships_param_limits_loading_for_legacy_clients(self):
        a = make_agent(self.c, memory_blocks=[{"label": "human", "value": "H"}], tags=["t"])
        r = self.c.get("/v1/agents/" + a["id"], headers=LEGACY_HEADERS,
                       query={"include_relationships": ["tags"]}).json
        self.assertEqual((r["blocks"], r["tags"]), ([], ["t"]))

    def test_include_identities_fills_identities(self):
        a = make_agent(self.c)
        ident = make_identity(self.c, "u1", agent_ids=[a["id"]])
        r = self.c.get("/v1/agents/" + a["id"], query={"include": ["agent.identities"]}).json
        self.assertEqual(r["identity_ids"], [ident["id"]])
        self.assertEqual(r["identities"][0]["identifier_key"], "u1")

    def test_context_reports_core_memory_and_counts(self):
        a = make_agent(self.c, memory_blocks=[{"label": "human", "value": "Name: Bob"}])
        self.c.post("/v1/agents/%s/messages" % a["id"], {"input": "hello"})
        ctx = self.c.get("/v1/agents/%s/context" % a["id"]).json
        self.assertIn("<human>\nName: Bob\n</human>", ctx["core_memory"])
        self.assertEqual(ctx["num_messages"], 3)
        self.assertEqual(ctx["context_window_size_max"], 32000)
        self.assertEqual(ctx["messages"][0]["role"], "user")

    def test_delete_returns_message_and_removes_agent_but_keeps_blocks(self):
        a = make_agent(self.c, memory_blocks=[{"label": "human", "value": "H"}])
        r = self.c.delete("/v1/agents/" + a["id"])
        self.assertEqual((r.status, r.json), (200, {"message": "Agent id=%s successfully deleted" % a["id"]}))
        self.assertEqual(self.c.get("/v1/agents/" + a["id"]).status, 404)
        self.assertEqual(self.c.delete("/v1/agents/" + a["id"]).status, 404)
        self.assertEqual(len(self.admin_state()["blocks"]), 1)


if __name__ == "__main__":
    unittest.main()

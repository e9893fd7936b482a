"""Global blocks: create, retrieve, modify (PATCH semantics), delete, list quirks (limit 50,
templates and hidden blocks left out, filters), count, agents of a block, block<->identity links,
and --flaky-block-list."""

import unittest

from emu_helpers import EmulatorTestCase, make_agent, make_block, make_identity

UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


class BlocksTest(EmulatorTestCase):
    def test_create_returns_block_response_with_defaults(self):
        b = make_block(self.c, "Persona_bob", "Bob likes jazz")
        self.assertRegex(b["id"], "^block-" + UUID4 + "$")
        self.assertEqual((b["label"], b["value"], b["limit"]), ("Persona_bob", "Bob likes jazz", 100000))
        self.assertEqual((b["metadata"], b["tags"], b["is_template"], b["read_only"]), ({}, [], False, False))
        self.assertIsNone(b["description"])
        self.assertNotIn("created_at", b)

    def test_create_requires_value_and_label(self):
        r = self.c.post("/v1/blocks/", {"label": "x"})
        self.assertEqual(r.status, 422)
        self.assertIn("'loc': ('body', 'value')", r.json["detail"])
        r = self.c.post("/v1/blocks/", {"label": "x", "value": {"not": "a string"}})
        self.assertEqual(r.status, 422)

    def test_nul_bytes_are_stripped_from_value(self):
        self.assertEqual(make_block(self.c, "x", "a\x00b")["value"], "ab")

    def test_retrieve_and_404_and_422(self):
        b = make_block(self.c, "l")
        self.assertEqual(self.c.get("/v1/blocks/" + b["id"]).json, b)
        self.assertEqual(self.c.get("/v1/blocks/block-00000000-0000-4000-8000-000000000000").status, 404)
        self.assertEqual(self.c.get("/v1/blocks/agent-00000000-0000-4000-8000-000000000000").status, 422)

    def test_modify_is_partial_and_ignores_explicit_null(self):
        b = make_block(self.c, "l", "old", description="d")
        r = self.c.patch("/v1/blocks/" + b["id"], {"value": "new", "description": None})
        self.assertEqual(r.status, 200)
        self.assertEqual((r.json["value"], r.json["description"], r.json["label"]), ("new", "d", "l"))
        self.assertEqual(self.c.get("/v1/blocks/" + b["id"]).json["value"], "new")

    def test_oversize_value_is_accepted_as_0_16(self):
        r = self.c.post("/v1/blocks/", {"label": "l", "value": "x" * 20, "limit": 10})
        self.assertEqual(r.status, 200)

    def test_delete_returns_null_and_detaches_everywhere(self):
        b = make_block(self.c, "l")
        a = make_agent(self.c, block_ids=[b["id"]])
        ident = make_identity(self.c, "k", block_ids=[b["id"]])
        r = self.c.delete("/v1/blocks/" + b["id"])
        self.assertEqual((r.status, r.body), (200, b"null"))
        self.assertEqual(self.c.get("/v1/blocks/" + b["id"]).status, 404)
        st = self.admin_state()
        self.assertEqual(st["agents"][0]["block_ids"], [])
        self.assertEqual(st["identities"][0]["block_ids"], [])
        self.assertEqual(self.c.delete("/v1/blocks/" + b["id"]).status, 404)
        self.assertTrue(a and ident)

    def test_list_pages_at_50_oldest_first(self):
        ids = [make_block(self.c, "b%d" % i)["id"] for i in range(60)]
        page = self.c.get("/v1/blocks/").json
        self.assertEqual([b["id"] for b in page], ids[:50])
        rest = self.c.get("/v1/blocks/", query={"after": page[-1]["id"]}).json
        self.assertEqual([b["id"] for b in rest], ids[50:])
        self.assertEqual(self.c.get("/v1/blocks/", query={"after": rest[-1]["id"]}).json, [])

    def test_list_leaves_out_templates_and_hidden_blocks(self):
        make_block(self.c, "plain")
        make_block(self.c, "tmpl", is_template=True, template_name="T1")
        make_block(self.c, "secret", hidden=True)
        labels = lambda q=None: [b["label"] for b in self.c.get("/v1/blocks/", query=q).json]  # noqa: E731
        self.assertEqual(labels(), ["plain"])
        self.assertEqual(labels({"templates_only": "true"}), ["tmpl"])
        self.assertEqual(labels({"show_hidden_blocks": "true"}), ["plain", "secret"])
        self.assertEqual(self.c.get("/v1/blocks/count").json, 1)
        self.assertEqual(labels({"templates_only": "true", "name": "T1"}), ["tmpl"])

    def test_list_filters(self):
        a = make_block(self.c, "human", "Alice likes TEA", tags=["x", "y"], description="about alice")
        make_block(self.c, "persona", "bot", tags=["y"])
        ident = make_identity(self.c, "alice", block_ids=[a["id"]])
        agent = make_agent(self.c, block_ids=[a["id"]])
        labels = lambda q: sorted(b["label"] for b in self.c.get("/v1/blocks/", query=q).json)  # noqa: E731
        self.assertEqual(labels({"label": "human"}), ["human"])
        self.assertEqual(labels({"identity_id": ident["id"]}), ["human"])
        self.assertEqual(labels({"identifier_keys": ["alice"]}), ["human"])
        self.assertEqual(labels({"tags": ["y"]}), ["human", "persona"])
        self.assertEqual(labels({"tags": ["x", "y"], "match_all_tags": "true"}), ["human"])
        self.assertEqual(labels({"value_search": "tea"}), ["human"])
        self.assertEqual(labels({"label_search": "ers"}), ["persona"])
        self.assertEqual(labels({"description_search": "ALICE"}), ["human"])
        self.assertEqual(labels({"connected_to_agents_count_gt": 0}), ["human"])
        self.assertEqual(labels({"connected_to_agents_count_eq": [0]}), ["persona"])
        self.assertEqual(labels({"order": "desc", "limit": 1}), ["persona"])
        self.assertTrue(agent)

    def test_list_label_filter_is_validated(self):
        self.assertEqual(self.c.get("/v1/blocks/", query={"label": "bad label!"}).status, 422)
        self.assertEqual(self.c.get("/v1/blocks/", query={"identity_id": "identity-1"}).status, 422)

    def test_agents_for_block(self):
        b = make_block(self.c, "shared")
        a1 = make_agent(self.c, name="a1", block_ids=[b["id"]])
        make_agent(self.c, name="a2")
        r = self.c.get("/v1/blocks/%s/agents" % b["id"]).json
        self.assertEqual([a["id"] for a in r], [a1["id"]])

    def test_block_identity_attach_detach(self):
        b = make_block(self.c, "l")
        ident = make_identity(self.c, "k")
        r = self.c.patch("/v1/blocks/%s/identities/attach/%s" % (b["id"], ident["id"]))
        self.assertEqual((r.status, r.json["id"]), (200, b["id"]))
        self.assertEqual(self.c.get("/v1/identities/" + ident["id"]).json["block_ids"], [b["id"]])
        self.c.patch("/v1/blocks/%s/identities/attach/%s" % (b["id"], ident["id"]))   # idempotent
        self.assertEqual(self.c.get("/v1/identities/" + ident["id"]).json["block_ids"], [b["id"]])
        r = self.c.patch("/v1/blocks/%s/identities/detach/%s" % (b["id"], ident["id"]))
        self.assertEqual(r.status, 200)
        self.assertEqual(self.c.get("/v1/identities/" + ident["id"]).json["block_ids"], [])
        r = self.c.patch("/v1/blocks/%s/identities/attach/identity-00000000-0000-4000-8000-000000000000" % b["id"])
        self.assertEqual((r.status, r.json["detail"]), (404, "Identity not found"))


class FlakyBlockListTest(EmulatorTestCase):
    emulator_args = ("--flaky-block-list", "0.5", "--seed", "7")

    def test_flaky_list_drops_rows_but_retrieve_by_id_always_works(self):
        ids = [make_block(self.c, "b%d" % i)["id"] for i in range(40)]
        listed = [b["id"] for b in self.c.get("/v1/blocks/").json]
        self.assertLess(len(listed), 35)
        self.assertGreater(len(listed), 5)
        self.assertTrue(set(listed) <= set(ids))
        for bid in ids:
            self.assertEqual(self.c.get("/v1/blocks/" + bid).status, 200)


if __name__ == "__main__":
    unittest.main()

"""Identities: list (filters, order), count, create (409 duplicate, 404 unknown refs), upsert (PUT
replace semantics, block_ids ignored for an existing identity), retrieve, modify (PATCH merge and
append), delete, properties, agents/blocks of an identity, and agent<->identity attach/detach."""

import unittest

from emu_helpers import EmulatorTestCase, make_agent, make_block, make_identity

MISSING_AGENT = "agent-00000000-0000-4000-8000-000000000000"


class IdentitiesTest(EmulatorTestCase):
    def test_create_returns_identity(self):
        i = make_identity(self.c, "user_123", "John Doe", properties=[{"key": "age", "value": 3, "type": "number"}])
        self.assertRegex(i["id"], r"^identity-[0-9a-f]{8}-")
        self.assertEqual((i["identifier_key"], i["name"], i["identity_type"]), ("user_123", "John Doe", "user"))
        self.assertEqual((i["agent_ids"], i["block_ids"], i["project_id"]), ([], [], None))
        self.assertEqual(i["properties"], [{"key": "age", "value": 3, "type": "number"}])

    def test_create_duplicate_key_is_409(self):
        make_identity(self.c, "dup")
        r = self.c.post("/v1/identities/", {"identifier_key": "dup", "name": "x", "identity_type": "user"})
        self.assertEqual(r.status, 409)
        self.assertIsInstance(r.json["detail"], str)
        # same key in another project is allowed
        make_identity(self.c, "dup", project_id="p2")

    def test_create_with_unknown_refs_is_404_items_not_found_in_agents(self):
        r = self.c.post("/v1/identities/", {"identifier_key": "k", "name": "n", "identity_type": "user",
                                            "agent_ids": [MISSING_AGENT]})
        self.assertEqual(r.status, 404)
        self.assertTrue(r.json["detail"].startswith("Items not found in agents:"))
        r = self.c.post("/v1/identities/", {"identifier_key": "k", "name": "n", "identity_type": "user",
                                            "block_ids": ["block-00000000-0000-4000-8000-000000000000"]})
        self.assertTrue(r.json["detail"].startswith("Items not found in agents:"))   # sic

    def test_create_validates_identity_type(self):
        r = self.c.post("/v1/identities/", {"identifier_key": "k", "name": "n", "identity_type": "person"})
        self.assertEqual(r.status, 422)
        self.assertIn("identity_type", r.json["detail"])

    def test_retrieve_and_404_detail(self):
        i = make_identity(self.c, "k")
        self.assertEqual(self.c.get("/v1/identities/" + i["id"]).json, i)
        r = self.c.get("/v1/identities/identity-00000000-0000-4000-8000-000000000000")
        self.assertEqual((r.status, r.json), (404, {"detail": "Identity not found"}))

    def test_list_filters_and_count(self):
        make_identity(self.c, "a", "Alice", "user")
        make_identity(self.c, "b", "Bob", "org")
        make_identity(self.c, "c", "Carol", "user", project_id="p1")
        keys = lambda q=None: [i["identifier_key"] for i in self.c.get("/v1/identities/", query=q).json]  # noqa
        self.assertEqual(keys(), ["c", "b", "a"])                   # newest first
        self.assertEqual(keys({"identity_type": "user"}), ["c", "a"])
        self.assertEqual(keys({"identifier_key": "b"}), ["b"])
        self.assertEqual(keys({"name": "ali"}), ["a"])
        self.assertEqual(keys({"project_id": "p1"}), ["c"])
        self.assertEqual(keys({"limit": 1, "order": "asc"}), ["a"])
        self.assertEqual(self.c.get("/v1/identities/count").json, 3)

    def test_patch_merges_properties_and_appends_ids(self):
        a1, a2 = make_agent(self.c), make_agent(self.c)
        b1 = make_block(self.c, "l")
        i = make_identity(self.c, "k", agent_ids=[a1["id"]],
                          properties=[{"key": "x", "value": "1", "type": "string"},
                                      {"key": "y", "value": "2", "type": "string"}])
        r = self.c.patch("/v1/identities/" + i["id"], {
            "name": "New", "agent_ids": [a2["id"], a1["id"]], "block_ids": [b1["id"]],
            "properties": [{"key": "y", "value": "22", "type": "string"},
                           {"key": "z", "value": True, "type": "boolean"}]}).json
        self.assertEqual(r["name"], "New")
        self.assertEqual(r["agent_ids"], [a1["id"], a2["id"]])
        self.assertEqual(r["block_ids"], [b1["id"]])
        self.assertEqual({p["key"]: p["value"] for p in r["properties"]}, {"x": "1", "y": "22", "z": True})
        self.assertEqual(self.c.patch("/v1/identities/" + i["id"], {"agent_ids": [MISSING_AGENT]}).status, 404)

    def test_patch_rejects_unknown_fields(self):
        i = make_identity(self.c, "k")
        r = self.c.patch("/v1/identities/" + i["id"], {"project_id": "p"})
        self.assertEqual(r.status, 422)

    def test_put_upsert_creates_then_replaces_but_ignores_block_ids(self):
        a1, a2 = make_agent(self.c), make_agent(self.c)
        b1, b2 = make_block(self.c, "l1"), make_block(self.c, "l2")
        body = {"identifier_key": "u", "name": "U", "identity_type": "user", "agent_ids": [a1["id"]],
                "block_ids": [b1["id"]], "properties": [{"key": "p", "value": "1", "type": "string"}]}
        created = self.c.put("/v1/identities/", body).json
        self.assertEqual((created["agent_ids"], created["block_ids"]), ([a1["id"]], [b1["id"]]))
        body.update(name="U2", identity_type="other", agent_ids=[a2["id"]], block_ids=[b2["id"]], properties=[])
        updated = self.c.put("/v1/identities/", body).json
        self.assertEqual(updated["id"], created["id"])
        self.assertEqual((updated["name"], updated["identity_type"]), ("U2", "other"))
        self.assertEqual(updated["agent_ids"], [a2["id"]])            # replaced
        self.assertEqual(updated["block_ids"], [b1["id"]])            # ignored on update
        self.assertEqual(updated["properties"], [])
        self.assertEqual(self.c.get("/v1/identities/count").json, 1)

    def test_put_properties_replaces_the_list(self):
        i = make_identity(self.c, "k", properties=[{"key": "a", "value": "1", "type": "string"}])
        r = self.c.put("/v1/identities/%s/properties" % i["id"], [{"key": "b", "value": {"j": 1}, "type": "json"}])
        self.assertEqual(r.json["properties"], [{"key": "b", "value": {"j": 1}, "type": "json"}])

    def test_delete_returns_null_then_404(self):
        i = make_identity(self.c, "k")
        r = self.c.delete("/v1/identities/" + i["id"])
        self.assertEqual((r.status, r.json), (200, None))
        self.assertEqual(self.c.get("/v1/identities/" + i["id"]).status, 404)
        self.assertEqual(self.c.delete("/v1/identities/" + i["id"]).status, 404)

    def test_agent_identity_attach_detach_and_identity_agent_list(self):
        a = make_agent(self.c, name="bot")
        i = make_identity(self.c, "k")
        r = self.c.patch("/v1/agents/%s/identities/attach/%s" % (a["id"], i["id"]))
        self.assertEqual((r.status, r.json), (200, None))
        self.assertEqual(self.c.get("/v1/identities/" + i["id"]).json["agent_ids"], [a["id"]])
        self.assertEqual([x["name"] for x in self.c.get("/v1/identities/%s/agents" % i["id"]).json], ["bot"])
        self.assertEqual(self.admin_state()["agents"][0]["identity_ids"], [i["id"]])
        r = self.c.patch("/v1/agents/%s/identities/detach/%s" % (a["id"], i["id"]))
        self.assertEqual((r.status, r.json), (200, None))
        self.assertEqual(self.c.get("/v1/identities/" + i["id"]).json["agent_ids"], [])
        r = self.c.patch("/v1/agents/%s/identities/attach/%s" % (MISSING_AGENT, i["id"]))
        self.assertEqual(r.status, 404)

    def test_blocks_of_identity(self):
        b = make_block(self.c, "Persona_k")
        i = make_identity(self.c, "k", block_ids=[b["id"]])
        self.assertEqual([x["id"] for x in self.c.get("/v1/identities/%s/blocks" % i["id"]).json], [b["id"]])

    def test_deleting_agent_removes_it_from_identities(self):
        a = make_agent(self.c)
        i = make_identity(self.c, "k", agent_ids=[a["id"]])
        self.c.delete("/v1/agents/" + a["id"])
        self.assertEqual(self.c.get("/v1/identities/" + i["id"]).json["agent_ids"], [])


if __name__ == "__main__":
    unittest.main()

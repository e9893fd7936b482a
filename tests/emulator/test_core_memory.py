"""Agent core-memory blocks: retrieve/modify by label, list ordered by block id, attach
(idempotent, 409 on a taken label), detach (404 when not attached), whole core memory."""

import unittest

from emu_helpers import EmulatorTestCase, make_agent, make_block


class CoreMemoryTest(EmulatorTestCase):
    def setUp(self):
        super().setUp()
        self.agent = make_agent(self.c, memory_blocks=[{"label": "human", "value": "H"},
                                                       {"label": "persona", "value": "P"}])
        self.base = "/v1/agents/%s/core-memory" % self.agent["id"]

    def test_retrieve_by_label_and_404_message(self):
        r = self.c.get(self.base + "/blocks/human")
        self.assertEqual((r.status, r.json["value"]), (200, "H"))
        r = self.c.get(self.base + "/blocks/nope")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json["detail"], "No block with label 'nope' found for agent '%s'" % self.agent["id"])

    def test_modify_by_label_changes_the_shared_block(self):
        r = self.c.patch(self.base + "/blocks/human", {"value": "Name: Ann"})
        self.assertEqual(r.json["value"], "Name: Ann")
        bid = r.json["id"]
        self.assertEqual(self.c.get("/v1/blocks/" + bid).json["value"], "Name: Ann")

    def test_attach_is_idempotent_and_returns_agent_state(self):
        b = make_block(self.c, "Persona_x")
        for _ in range(2):
            r = self.c.patch(self.base + "/blocks/attach/" + b["id"])
            self.assertEqual(r.status, 200)
            self.assertEqual([x["label"] for x in r.json["blocks"]], ["human", "persona", "Persona_x"])
        self.assertEqual(self.admin_state()["agents"][0]["block_labels"], ["human", "persona", "Persona_x"])

    def test_attach_second_block_with_same_label_is_409(self):
        b = make_block(self.c, "human", "other human")
        r = self.c.patch(self.base + "/blocks/attach/" + b["id"])
        self.assertEqual(r.status, 409)
        self.assertIsInstance(r.json["detail"], str)
        self.assertEqual(len(self.admin_state()["agents"][0]["block_ids"]), 2)

    def test_attach_unknown_block_is_404(self):
        r = self.c.patch(self.base + "/blocks/attach/block-00000000-0000-4000-8000-000000000000")
        self.assertEqual(r.status, 404)

    def test_detach_and_404_when_not_attached(self):
        b = make_block(self.c, "Persona_y")
        self.c.patch(self.base + "/blocks/attach/" + b["id"])
        r = self.c.patch(self.base + "/blocks/detach/" + b["id"])
        self.assertEqual(r.status, 200)
        self.assertEqual([x["label"] for x in r.json["blocks"]], ["human", "persona"])
        r = self.c.patch(self.base + "/blocks/detach/" + b["id"])
        self.assertEqual(r.status, 404)
        self.assertIn("No block with id '%s' found for agent" % b["id"], r.json["detail"])
        # the block itself survives a detach
        self.assertEqual(self.c.get("/v1/blocks/" + b["id"]).status, 200)

    def test_attach_with_body_or_wrong_method(self):
        b = make_block(self.c, "z")
        self.assertEqual(self.c.post(self.base + "/blocks/attach/" + b["id"]).status, 405)

    def test_list_is_ordered_by_block_id_desc_and_pages_by_id(self):
        for i in range(4):
            self.c.patch(self.base + "/blocks/attach/" + make_block(self.c, "extra%d" % i)["id"])
        ids = sorted(b["id"] for b in self.c.get(self.base + "/blocks").json)
        desc = [b["id"] for b in self.c.get(self.base + "/blocks").json]
        self.assertEqual(desc, ids[::-1])
        page = self.c.get(self.base + "/blocks", query={"limit": 2, "after": desc[1]}).json
        self.assertEqual([b["id"] for b in page], desc[2:4])
        asc = self.c.get(self.base + "/blocks", query={"order": "asc", "after": ids[0]}).json
        self.assertEqual([b["id"] for b in asc], ids[1:])

    def test_whole_core_memory(self):
        m = self.c.get(self.base).json
        self.assertEqual([b["label"] for b in m["blocks"]], ["human", "persona"])
        self.assertEqual(m["file_blocks"], [])


if __name__ == "__main__":
    unittest.main()

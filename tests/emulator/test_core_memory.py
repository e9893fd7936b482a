"""Agent core-memory blocks: retrieve/modify by label, list ordered and paged by block id, attach
(idempotent, 409 on a taken label), detach (404 when not attached), the whole core memory. Each
test names the server source (Letta 0.16.8) that decides what it checks."""

import unittest

from emu_helpers import MISSING_AGENT, MISSING_BLOCK, EmulatorTestCase, make_agent, make_block

READ_404 = ("%s not found with id='['%s']', access level in ['read'] for actor='id='user-00000000-0000-4000-"
            "8000-000000000000' organization_id='org-00000000-0000-4000-8000-000000000000' name='default_user' ")


class CoreMemoryTest(EmulatorTestCase):
    def setUp(self):
        super().setUp()
        self.agent = make_agent(self.c, memory_blocks=[{"label": "human", "value": "H"},
                                                       {"label": "persona", "value": "P"}])
        self.base = "/v1/agents/%s/core-memory" % self.agent["id"]

    def assert_read_404(self, r, model, ident):
        """orm/sqlalchemy_base.py:read_async: NoResultFound naming the query and the actor."""
        self.assertEqual(r.status, 404)
        self.assertTrue(r.json["detail"].startswith(READ_404 % (model, ident)), r.json["detail"])
        self.assertTrue(r.json["detail"].endswith(" is_deleted=False'"), r.json["detail"])

    def test_retrieve_by_label_and_404_messages(self):
        """agent_manager.py:get_block_with_label_async."""
        r = self.c.get(self.base + "/blocks/human")
        self.assertEqual((r.status, r.json["value"]), (200, "H"))
        r = self.c.get(self.base + "/blocks/nope")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json["detail"], "No block with label 'nope' found for agent '%s'" % self.agent["id"])
        self.assert_read_404(self.c.get("/v1/agents/%s/core-memory/blocks/human" % MISSING_AGENT),
                             "Agent", MISSING_AGENT)

    def test_modify_by_label_changes_the_shared_block(self):
        """agent_manager.py:modify_block_by_label_async."""
        r = self.c.patch(self.base + "/blocks/human", {"value": "Name: Ann", "description": None})
        self.assertEqual(r.json["value"], "Name: Ann")
        self.assertTrue(r.json["description"].startswith("The human block"))
        bid = r.json["id"]
        self.assertEqual(self.c.get("/v1/blocks/" + bid).json["value"], "Name: Ann")
        self.assertEqual(self.c.patch(self.base + "/blocks/nope", {"value": "x"}).status, 404)
        self.assert_read_404(self.c.patch("/v1/agents/%s/core-memory/blocks/human" % MISSING_AGENT, {"value": "x"}),
                             "Agent", MISSING_AGENT)

    def test_attach_is_idempotent_and_returns_the_whole_agent(self):
        """agent_manager.py:attach_block_async: skip when attached, update_async moves updated_at
        anyway; the answer is to_pydantic_async() with every relationship, whatever the client."""
        b = make_block(self.c, "Persona_x")
        stamps = []
        for _ in range(2):
            r = self.c.patch(self.base + "/blocks/attach/" + b["id"])
            self.assertEqual(r.status, 200)
            self.assertEqual([x["label"] for x in r.json["blocks"]], ["human", "persona", "Persona_x"])
            stamps.append(r.json["updated_at"])
        self.assertLess(self.agent["updated_at"], stamps[0])
        self.assertLess(stamps[0], stamps[1])
        self.assertEqual(self.admin_state()["agents"][0]["block_labels"], ["human", "persona", "Persona_x"])

    def test_attach_second_block_with_same_label_is_409(self):
        """blocks_agents' unique_label_per_agent; sqlalchemy_base.py:_handle_dbapi_error."""
        b = make_block(self.c, "human", "other human")
        r = self.c.patch(self.base + "/blocks/attach/" + b["id"])
        self.assertEqual(r.status, 409)
        self.assertTrue(r.json["detail"].startswith(
            "A unique constraint was violated for Agent. Check your input for duplicates: "), r.json["detail"])
        self.assertIn('unique constraint "unique_label_per_agent"\nDETAIL:  Key (agent_id, block_label)=(%s, human) '
                      "already exists." % self.agent["id"], r.json["detail"])
        self.assertEqual(len(self.admin_state()["agents"][0]["block_ids"]), 2)

    def test_attach_unknown_agent_or_block_is_404(self):
        """attach_block_async reads the agent, then the block, with read_async."""
        b = make_block(self.c, "z")
        self.assert_read_404(self.c.patch(self.base + "/blocks/attach/" + MISSING_BLOCK), "Block", MISSING_BLOCK)
        self.assert_read_404(self.c.patch("/v1/agents/%s/core-memory/blocks/attach/%s" % (MISSING_AGENT, b["id"])),
                             "Agent", MISSING_AGENT)

    def test_detach_and_404_when_not_attached(self):
        """agent_manager.py:detach_block_async: 404 with the actor id when nothing was removed;
        the block survives."""
        b = make_block(self.c, "Persona_y")
        self.c.patch(self.base + "/blocks/attach/" + b["id"])
        r = self.c.patch(self.base + "/blocks/detach/" + b["id"])
        self.assertEqual(r.status, 200)
        self.assertEqual([x["label"] for x in r.json["blocks"]], ["human", "persona"])
        for bid in (b["id"], MISSING_BLOCK):
            r = self.c.patch(self.base + "/blocks/detach/" + bid)
            self.assertEqual((r.status, r.json["detail"]),
                             (404, "No block with id '%s' found for agent '%s' with actor id: "
                                   "'user-00000000-0000-4000-8000-000000000000'" % (bid, self.agent["id"])))
        self.assertEqual(self.c.get("/v1/blocks/" + b["id"]).status, 200)
        self.assert_read_404(self.c.patch("/v1/agents/%s/core-memory/blocks/detach/%s" % (MISSING_AGENT, b["id"])),
                             "Agent", MISSING_AGENT)

    def test_attach_with_wrong_method_is_405(self):
        b = make_block(self.c, "z")
        r = self.c.post(self.base + "/blocks/attach/" + b["id"])
        self.assertEqual((r.status, r.headers["allow"]), (405, "PATCH"))

    def test_list_is_ordered_and_paged_by_block_id(self):
        """agent_manager.py:list_agent_blocks_async: ORDER BY id, cursors compared as ids (an
        unknown one too), the LIMIT takes the start of the order."""
        for i in range(4):
            self.c.patch(self.base + "/blocks/attach/" + make_block(self.c, "extra%d" % i)["id"])
        ids = sorted(b["id"] for b in self.c.get(self.base + "/blocks").json)
        desc = [b["id"] for b in self.c.get(self.base + "/blocks").json]
        self.assertEqual(desc, ids[::-1])
        page = self.c.get(self.base + "/blocks", query={"limit": 2, "after": desc[1]}).json
        self.assertEqual([b["id"] for b in page], desc[2:4])
        asc = self.c.get(self.base + "/blocks", query={"order": "asc", "after": ids[0]}).json
        self.assertEqual([b["id"] for b in asc], ids[1:])
        page = self.c.get(self.base + "/blocks", query={"limit": 2, "before": desc[5]}).json
        self.assertEqual([b["id"] for b in page], desc[:2])
        page = self.c.get(self.base + "/blocks", query={"order": "asc", "after": "block-8"}).json
        self.assertEqual([b["id"] for b in page], [i for i in ids if i > "block-8"])
        self.assertEqual(len(self.c.get(self.base + "/blocks", query={"limit": 0}).json), 6)
        self.assertEqual(self.c.get(self.base + "/blocks", query={"limit": -1}).status, 500)
        self.assert_read_404(self.c.get("/v1/agents/%s/core-memory/blocks" % MISSING_AGENT), "Agent", MISSING_AGENT)

    def test_block_tags_show_in_the_list_but_not_in_agent_state(self):
        """list_agent_blocks_async reads BlocksTags; orm/block.py:Block.to_pydantic (AgentState,
        Memory) never loads them."""
        b = make_block(self.c, "tagged", tags=["t1"])
        self.c.patch(self.base + "/blocks/attach/" + b["id"])
        listed = {x["label"]: x["tags"] for x in self.c.get(self.base + "/blocks").json}
        self.assertEqual(listed["tagged"], ["t1"])
        self.assertEqual(self.c.get(self.base + "/blocks/tagged").json["tags"], ["t1"])
        memory = self.c.get(self.base).json
        self.assertEqual({x["label"]: x["tags"] for x in memory["blocks"]}["tagged"], [])

    def test_whole_core_memory(self):
        """server.py:get_agent_memory_async: the memory of get_agent_by_id_async (404 text)."""
        m = self.c.get(self.base).json
        self.assertEqual([b["label"] for b in m["blocks"]], ["human", "persona"])
        self.assertEqual((m["file_blocks"], m["git_enabled"], m["prompt_template"], m["agent_type"]),
                         ([], False, "", "letta_v1_agent"))
        r = self.c.get("/v1/agents/%s/core-memory" % MISSING_AGENT)
        self.assertEqual((r.status, r.json), (404, {"detail": "Agent with ID %s not found" % MISSING_AGENT}))


if __name__ == "__main__":
    unittest.main()

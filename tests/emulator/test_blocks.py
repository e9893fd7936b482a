"""Global blocks: create (defaults, human/persona description, tags), retrieve, modify (PATCH
semantics, no-op writes, label clash), delete, list (limit 50, templates and hidden blocks left out,
filters, cursors, id order with join filters), count, agents of a block, block<->identity links, and
the --flaky-block-list test switch. Each test names the server source (Letta 0.16.8) it checks."""

import unittest

from emu_helpers import (DB_ERROR, LEGACY_HEADERS, MISSING_BLOCK, MISSING_IDENTITY, ORG, TS, UUID4,
                         EmulatorTestCase, make_agent, make_block, make_identity, masked, read_404)

HUMAN_DESCRIPTION = ("The human block: Stores key details about the person you are conversing with, allowing "
                     "for more personalized and friend-like conversation.")


class BlocksTest(EmulatorTestCase):
    def labels(self, query=None, path="/v1/blocks/"):
        r = self.c.get(path, query=query)
        self.assertEqual(r.status, 200, r)
        return [b["label"] for b in r.json]

    def test_create_returns_block_response_with_defaults(self):
        """schemas/block.py:CreateBlock defaults; BlockResponse has no timestamps."""
        b = make_block(self.c, "Persona_bob", "Bob likes jazz")
        self.assertRegex(b["id"], "^block-" + UUID4 + "$")
        self.assertEqual((b["label"], b["value"], b["limit"]), ("Persona_bob", "Bob likes jazz", 100000))
        self.assertEqual((b["metadata"], b["tags"], b["is_template"], b["read_only"]), ({}, [], False, False))
        self.assertEqual((b["description"], b["hidden"], b["preserve_on_migration"]), (None, None, False))
        self.assertNotIn("created_at", b)

    def test_create_null_fields_take_the_column_defaults(self):
        """block_manager.py:create_or_update_block_async dumps with exclude_none, so null metadata and
        preserve_on_migration fall back to the ORM defaults ({} and False); unknown fields are ignored
        (BaseBlock extra="ignore")."""
        b = make_block(self.c, "l", metadata=None, preserve_on_migration=None, tags=None, colour="red")
        self.assertEqual((b["metadata"], b["preserve_on_migration"], b["tags"]), ({}, False, []))
        self.assertNotIn("colour", b)

    def test_create_human_block_answers_the_default_description_once(self):
        """create_or_update_block_async creates with no_refresh=True: the unset description is not on
        the ORM object, so orm/block.py:to_pydantic's Human schema fills its default in the answer;
        the row keeps NULL, which GET shows."""
        b = make_block(self.c, "human", "H")
        self.assertEqual(b["description"], HUMAN_DESCRIPTION)
        self.assertTrue(make_block(self.c, "persona", "P")["description"].startswith("The persona block: "))
        self.assertIsNone(self.c.get("/v1/blocks/" + b["id"]).json["description"])
        self.assertEqual(make_block(self.c, "human", "H", description="mine")["description"], "mine")

    def test_create_tags_answer_as_given_and_are_stored_once(self):
        """create_or_update_block_async answers the tags it was given; blocks_tags rows are inserted
        ON CONFLICT DO NOTHING, so a repeated tag is stored once."""
        b = make_block(self.c, "l", tags=["x", "x", "y"])
        self.assertEqual(b["tags"], ["x", "x", "y"])
        self.assertEqual(self.c.get("/v1/blocks/" + b["id"]).json["tags"], ["x", "y"])

    def test_create_validation(self):
        """CreateBlock: label required, value a string, limit an int."""
        self.assertEqual(self.c.post("/v1/blocks/", {"value": "v"}).status, 422)
        self.assertEqual(self.c.post("/v1/blocks/", {"label": "x", "value": {"not": "a string"}}).status, 422)
        self.assertEqual(self.c.post("/v1/blocks/", {"label": "x", "value": "v", "limit": None}).status, 422)

    def test_create_without_value_gets_an_empty_string(self):
        """schemas/block.py:CreateBlock.ensure_value_is_string (mode="before") turns a missing or null
        value into "" before validation."""
        for body in ({"label": "x"}, {"label": "x", "value": None}):
            r = self.c.post("/v1/blocks/", body)
            self.assertEqual((r.status, r.json["value"]), (200, ""))

    def test_nul_bytes_are_stripped_from_value(self):
        """BaseBlock.sanitize_value_null_bytes."""
        b = make_block(self.c, "x", "a\x00b")
        self.assertEqual(b["value"], "ab")
        self.assertEqual(self.c.patch("/v1/blocks/" + b["id"], {"value": "c\x00d"}).json["value"], "cd")

    def test_retrieve_and_404_and_422(self):
        """routers/v1/blocks.py:retrieve_block raises its own NoResultFound text."""
        b = make_block(self.c, "l")
        self.assertEqual(self.c.get("/v1/blocks/" + b["id"]).json, b)
        r = self.c.get("/v1/blocks/" + MISSING_BLOCK)
        self.assertEqual((r.status, r.json), (404, {"detail": "Block with id '%s' not found" % MISSING_BLOCK}))
        self.assertEqual(self.c.get("/v1/blocks/agent-00000000-0000-4000-8000-000000000000").status, 422)

    def test_modify_is_partial_and_ignores_explicit_null_and_unknown_fields(self):
        """block_manager.py:update_block_async: model_dump(exclude_unset=True, exclude_none=True);
        BlockUpdate ignores fields it does not have."""
        b = make_block(self.c, "l", "old", description="d")
        r = self.c.patch("/v1/blocks/" + b["id"], {"value": "new", "description": None, "created_by_id": "x"})
        self.assertEqual(r.status, 200)
        self.assertEqual((r.json["value"], r.json["description"], r.json["label"]), ("new", "d", "l"))
        self.assertEqual(r.json["created_by_id"], b["created_by_id"])
        self.assertEqual(self.c.get("/v1/blocks/" + b["id"]).json["value"], "new")

    def test_modify_tags_answer_as_given_and_are_stored_once(self):
        """update_block_async: new tags replace the tag rows (_replace_block_pivot_rows_async, ON
        CONFLICT DO NOTHING) and the answer carries them as given; tags omitted -> unchanged."""
        b = make_block(self.c, "l", "v", tags=["a"])
        path = "/v1/blocks/" + b["id"]
        self.assertEqual(self.c.patch(path, {"tags": ["b", "b"]}).json["tags"], ["b", "b"])
        self.assertEqual(self.c.get(path).json["tags"], ["b"])
        self.assertEqual(self.c.patch(path, {"value": "w"}).json["tags"], ["b"])

    def test_modify_label_onto_a_label_the_agent_has_is_409(self):
        """blocks_agents' FK (block_id, block_label) ON UPDATE CASCADE carries the new label, which
        breaks unique_label_per_agent; update_async -> _handle_dbapi_error -> 409."""
        b1, b2 = make_block(self.c, "human"), make_block(self.c, "persona")
        a = make_agent(self.c, block_ids=[b1["id"], b2["id"]])
        r = self.c.patch("/v1/blocks/" + b2["id"], {"label": "human"})
        self.assertEqual(r.status, 409)
        self.assertEqual(r.json["detail"], (
            "A unique constraint was violated for Block. Check your input for duplicates: "
            "(sqlalchemy.dialects.postgresql.asyncpg.IntegrityError) "
            "<class 'asyncpg.exceptions.UniqueViolationError'>: "
            "duplicate key value violates unique constraint \"unique_label_per_agent\"\n"
            "DETAIL:  Key (agent_id, block_label)=(%s, human) already exists." % a["id"]))
        self.assertEqual(self.c.get("/v1/blocks/" + b2["id"]).json["label"], "persona")
        self.assertEqual(self.c.patch("/v1/blocks/" + b2["id"], {"label": "other"}).status, 200)

    def test_modify_and_delete_404(self):
        """update_block_async / delete_block_async read with BlockModel.read_async."""
        r = self.c.patch("/v1/blocks/" + MISSING_BLOCK, {"value": "x"})
        self.assertEqual(masked(r), (404, read_404("Block", MISSING_BLOCK)))
        r = self.c.delete("/v1/blocks/" + MISSING_BLOCK)
        self.assertEqual(masked(r), (404, read_404("Block", MISSING_BLOCK)))

    def test_oversize_value_is_accepted_as_0_16(self):
        """Block limits are metadata only since 'deprecate enforcing block limits'."""
        r = self.c.post("/v1/blocks/", {"label": "l", "value": "x" * 20, "limit": 10})
        self.assertEqual(r.status, 200)

    def test_delete_returns_null_and_detaches_everywhere(self):
        """delete_block_async deletes blocks_agents rows; identities_blocks rows cascade."""
        b = make_block(self.c, "l")
        a = make_agent(self.c, block_ids=[b["id"]])
        ident = make_identity(self.c, "k", block_ids=[b["id"]])
        r = self.c.delete("/v1/blocks/" + b["id"])
        self.assertEqual((r.status, r.body), (200, b"null"))
        self.assertEqual(self.c.get("/v1/blocks/" + b["id"]).status, 404)
        self.assertEqual(self.c.get("/v1/agents/" + a["id"], query={"include": ["agent.blocks"]}).json["blocks"], [])
        self.assertEqual(self.c.get("/v1/identities/%s/blocks" % ident["id"]).json, [])

    def test_list_pages_at_50_oldest_first(self):
        """routers/v1/blocks.py:list_blocks: limit 50, order asc."""
        ids = [make_block(self.c, "b%d" % i)["id"] for i in range(60)]
        page = self.c.get("/v1/blocks/").json
        self.assertEqual([b["id"] for b in page], ids[:50])
        rest = self.c.get("/v1/blocks/", query={"after": page[-1]["id"]}).json
        self.assertEqual([b["id"] for b in rest], ids[50:])
        self.assertEqual(self.c.get("/v1/blocks/", query={"after": rest[-1]["id"]}).json, [])

    def test_list_cursors_and_limits(self):
        """block_manager.py:get_blocks_async: unknown or deleted cursors are ignored; `before` keeps
        the first `limit` rows in list order; `if limit:` so 0 lists everything; a negative limit
        reaches Postgres (DBAPIError -> 500)."""
        ids = [make_block(self.c, "b%d" % i)["id"] for i in range(5)]
        q = lambda **kw: [b["id"] for b in self.c.get("/v1/blocks/", query=kw).json]  # noqa: E731
        self.assertEqual(q(before=ids[4], limit=2), ids[:2])
        self.assertEqual(q(before=ids[0], order="desc", limit=2), [ids[4], ids[3]])
        self.assertEqual(q(after=ids[1], before=ids[4]), ids[2:4])
        self.assertEqual(q(limit=0), ids)
        self.c.delete("/v1/blocks/" + ids[2])
        self.assertEqual(q(after=ids[2]), [ids[0], ids[1], ids[3], ids[4]])
        self.assertEqual(q(after=MISSING_BLOCK, limit=1), ids[:1])
        r = self.c.get("/v1/blocks/", query={"limit": -1})
        self.assertEqual((r.status, r.json), (500, DB_ERROR))

    def test_list_leaves_out_templates_and_hidden_blocks(self):
        """get_blocks_async: is_template == templates_only; hidden blocks only with the
        undocumented show_hidden_blocks (a FastAPI bool: bad values are a 422)."""
        make_block(self.c, "plain")
        make_block(self.c, "tmpl", is_template=True, template_name="T1")
        make_block(self.c, "secret", hidden=True)
        self.assertEqual(self.labels(), ["plain"])
        self.assertEqual(self.labels({"templates_only": "true"}), ["tmpl"])
        self.assertEqual(self.labels({"show_hidden_blocks": "on"}), ["plain", "secret"])
        self.assertEqual(self.labels({"templates_only": "true", "name": "T1"}), ["tmpl"])
        self.assertEqual(self.c.get("/v1/blocks/", query={"show_hidden_blocks": "maybe"}).status, 422)

    def test_count(self):
        """routers/v1/blocks.py:count_blocks: no filter -> size_async (every block, templates and
        hidden too); with a filter, count_blocks_async (is_template == templates_only, hidden kept)."""
        make_block(self.c, "plain", tags=["x"])
        make_block(self.c, "tmpl", is_template=True, template_name="T1")
        make_block(self.c, "secret", hidden=True, tags=["x"])
        count = lambda q=None: self.c.get("/v1/blocks/count", query=q).json  # noqa: E731
        self.assertEqual(count(), 3)
        self.assertEqual(count({"tags": ["x"]}), 2)
        self.assertEqual(count({"templates_only": "true"}), 1)
        self.assertEqual(count({"label": "tmpl"}), 0)
        self.assertEqual(count({"label": "tmpl", "templates_only": "true"}), 1)

    def test_list_filters(self):
        """get_blocks_async: exact label/name/project_id; label_search (skipped when label is given),
        description_search and value_search are ILIKE '%x%' (so _ is a wildcard); tags ANY or ALL
        (HAVING count = len(tags): a repeated tag never matches)."""
        a = make_block(self.c, "human", "Alice likes TEA", tags=["x", "y"], description="about alice",
                       project_id="p1")
        make_block(self.c, "persona", "bot_1", tags=["y"])
        self.assertEqual(self.labels({"label": "human"}), ["human"])
        self.assertEqual(self.labels({"project_id": "p1"}), ["human"])
        self.assertEqual(self.labels({"tags": ["y"]}), ["human", "persona"])
        self.assertEqual(self.labels({"tags": ["x", "y"], "match_all_tags": "true"}), ["human"])
        self.assertEqual(self.labels({"tags": ["x", "x"], "match_all_tags": "true"}), [])
        self.assertEqual(self.labels({"value_search": "tea"}), ["human"])
        self.assertEqual(self.labels({"value_search": "s_t"}), ["human"])          # "s T" in "likes TEA"
        self.assertEqual(self.labels({"value_search": "t\\_1"}), ["persona"])      # escaped: a real _
        self.assertEqual(self.labels({"label_search": "ers"}), ["persona"])
        self.assertEqual(self.labels({"label_search": "ers", "label": "human"}), ["human"])
        self.assertEqual(self.labels({"description_search": "ALICE"}), ["human"])
        self.assertEqual(self.labels({"order": "desc", "limit": 1}), ["persona"])
        self.assertTrue(a)

    def test_list_agent_count_and_identity_filters(self):
        """get_blocks_async: the agent-count subquery is an inner join unless lt or eq 0 is asked
        (blocks without agents drop out of gt=-1); identity filters join the identities. Those
        filters add DISTINCT ON (id), so the rows come in block-id order; identity_id together with
        identifier_keys joins the same tables twice (database error)."""
        blocks = [make_block(self.c, "b%d" % i) for i in range(6)]
        agent = make_agent(self.c, block_ids=[blocks[0]["id"]])
        ident = make_identity(self.c, "alice", block_ids=[b["id"] for b in blocks[1:]])
        ids = lambda q: [b["id"] for b in self.c.get("/v1/blocks/", query=q).json]  # noqa: E731
        self.assertEqual(ids({"connected_to_agents_count_gt": -1}), [blocks[0]["id"]])
        self.assertEqual(ids({"connected_to_agents_count_gt": 0}), [blocks[0]["id"]])
        self.assertEqual(len(ids({"connected_to_agents_count_lt": 1})), 5)
        self.assertEqual(len(ids({"connected_to_agents_count_eq": [0, 1]})), 6)
        linked = sorted(b["id"] for b in blocks[1:])
        self.assertEqual(ids({"identity_id": ident["id"]}), linked)
        self.assertEqual(ids({"identifier_keys": ["alice"], "order": "desc"}), linked[::-1])
        r = self.c.get("/v1/blocks/", query={"identity_id": ident["id"], "identifier_keys": ["alice"]})
        self.assertEqual((r.status, r.json), (500, DB_ERROR))
        self.assertTrue(agent)

    def test_list_label_filter_is_validated(self):
        """validators.py:BlockLabelQuery / IdentityIdQuery patterns."""
        self.assertEqual(self.c.get("/v1/blocks/", query={"label": "bad label!"}).status, 422)
        self.assertEqual(self.c.get("/v1/blocks/", query={"identity_id": "identity-1"}).status, 422)

    def test_agents_for_block(self):
        """block_manager.py:get_agents_for_block_async: desc by default, no 404 for an unknown block,
        agents converted with include_relationships=[] (only `include` counts, also for legacy
        clients)."""
        b = make_block(self.c, "shared")
        a1 = make_agent(self.c, name="a1", block_ids=[b["id"]])
        a2 = make_agent(self.c, name="a2", block_ids=[b["id"]])
        make_agent(self.c, name="a3")
        path = "/v1/blocks/%s/agents" % b["id"]
        self.assertEqual([a["id"] for a in self.c.get(path).json], [a2["id"], a1["id"]])
        self.assertEqual([a["id"] for a in self.c.get(path, query={"order": "asc", "limit": 1}).json], [a1["id"]])
        self.assertEqual(self.c.get(path, headers=LEGACY_HEADERS).json[0]["blocks"], [])
        self.assertEqual(len(self.c.get(path, query={"include": ["agent.blocks"]}).json[0]["blocks"]), 1)
        r = self.c.get("/v1/blocks/%s/agents" % MISSING_BLOCK)
        self.assertEqual((r.status, r.json), (200, []))

    def test_block_identity_attach_detach(self):
        """routers/v1/blocks.py:attach_identity_to_block answers the block; identity_manager.py:
        attach_block_async is idempotent; the link shows in /identities/{id}/blocks only."""
        b = make_block(self.c, "l")
        ident = make_identity(self.c, "k")
        blocks_of = lambda: [x["id"] for x in self.c.get("/v1/identities/%s/blocks" % ident["id"]).json]  # noqa
        for _ in range(2):
            r = self.c.patch("/v1/blocks/%s/identities/attach/%s" % (b["id"], ident["id"]))
            self.assertEqual((r.status, r.json), (200, b))
        self.assertEqual(blocks_of(), [b["id"]])
        self.assertEqual(self.c.get("/v1/identities/" + ident["id"]).json["block_ids"], [])
        r = self.c.patch("/v1/blocks/%s/identities/detach/%s" % (b["id"], ident["id"]))
        self.assertEqual((r.status, r.json["id"]), (200, b["id"]))
        self.assertEqual(blocks_of(), [])

    def test_block_identity_attach_errors(self):
        """attach_block_async: raise_on_invalid_id(identity_id) (400), then the identity is read
        (404), then the block (404)."""
        b = make_block(self.c, "l")
        ident = make_identity(self.c, "k")
        r = self.c.patch("/v1/blocks/%s/identities/attach/identity-1" % b["id"])
        self.assertEqual((r.status, r.json), (400, {"detail": "INVALID_ARGUMENT: Invalid identity ID format: "
                                                              "identity-1. Expected format: 'identity-<uuid4>'"}))
        r = self.c.patch("/v1/blocks/%s/identities/attach/%s" % (MISSING_BLOCK, MISSING_IDENTITY))
        self.assertEqual(masked(r), (404, read_404("Identity", MISSING_IDENTITY)))
        r = self.c.patch("/v1/blocks/%s/identities/detach/%s" % (MISSING_BLOCK, ident["id"]))
        self.assertEqual(masked(r), (404, read_404("Block", MISSING_BLOCK)))


class FlakyBlockListTest(EmulatorTestCase):
    """--flaky-block-list is a deliberate test switch (not server behaviour): GET /v1/blocks/ drops a
    fraction of its rows, so lettash is shown never to rely on the list for discovery."""
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

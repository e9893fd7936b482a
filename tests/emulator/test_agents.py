"""Agents: create (model, name and embedding checks, defaults, links), list (filters, order,
cursors, hidden agents), count, retrieve and the legacy/1.x relationship loading, modify, delete
and its side effects, context, and the model lists. Each test names the server source
(Letta 0.16.8, letta/...) that decides what it checks."""

import unittest

from emu_helpers import (LEGACY_HEADERS, MISSING_AGENT, MISSING_BLOCK, MISSING_IDENTITY, SDK_HEADERS, UUID4,
                         Emulator, EmulatorTestCase, make_agent, make_block, make_identity)

MODEL = "openai/gpt-4o-mini"
ACTOR_404 = ("%s not found with id='['%s']', access level in ['read'] for actor='id='user-00000000-0000-4000-"
             "8000-000000000000' organization_id='org-00000000-0000-4000-8000-000000000000' name='default_user' "
             "created_at=datetime.datetime(")


class CreateTest(EmulatorTestCase):
    def test_create_without_model_or_llm_config_is_400(self):
        """server.py:create_agent_async: no llm_config, no model, settings.default_llm_handle unset."""
        r = self.c.post("/v1/agents/", {})
        self.assertEqual((r.status, r.json), (400, {"detail": "INVALID_ARGUMENT: Must specify either model or "
                                                              "llm_config in request"}))
        self.assertEqual(self.admin_state()["agents"], [])

    def test_model_handle_without_provider_is_400_before_any_422(self):
        """schemas/agent.py:CreateAgent.validate_model raises LettaInvalidArgumentError (not a
        ValueError): pydantic stops, app.py answers 400 even when other fields are invalid."""
        want = (400, {"detail": "INVALID_ARGUMENT: The model handle should be in the format provider/model-name"})
        for bad in ("gpt-4o-mini", "openai/", "/gpt-4o-mini"):
            r = self.c.post("/v1/agents/", {"model": bad})
            self.assertEqual((r.status, r.json), want, bad)
        r = self.c.post("/v1/agents/", {"model": "gpt", "tags": 5})
        self.assertEqual(r.status, 400)

    def test_unknown_model_handle_is_404(self):
        """provider_manager.py:get_llm_config_from_handle -> NoResultFound -> server.py
        HandleNotFoundError (404, "NOT_FOUND: ...", errors.py:LettaError.__str__)."""
        r = self.c.post("/v1/agents/", {"model": "openai/gpt-nope"})
        self.assertEqual((r.status, r.json),
                         (404, {"detail": "NOT_FOUND: Handle openai/gpt-nope not found, must be one of []"}))

    def test_name_with_invalid_characters_is_500_before_anything_else(self):
        """schemas/agent.py:CreateAgent.validate_name raises AgentExportProcessingError, which
        app.py maps to 500; name is the first field, so it wins over the model checks."""
        r = self.c.post("/v1/agents/", {"name": "a/b", "model": "nope", "tags": 5})
        self.assertEqual(r.status, 500)
        self.assertEqual(r.json["detail"],
                         "Export failed: Agent name 'a/b' contains invalid characters. Only letters (any language), "
                         "digits, spaces, hyphens, underscores, and apostrophes are allowed. Please avoid "
                         "filesystem-unsafe characters like: / \\ : * ? \" < > |")
        for ok in ("Ünïcode name", "it's-fine_1", ""):
            self.assertEqual(self.c.post("/v1/agents/", {"name": ok, "model": MODEL}).json["name"], ok)

    def test_embedding_handle_checks(self):
        """CreateAgent.validate_embedding raises ValueError: a 422 value_error; an unknown handle
        is 400 (server.py:get_embedding_config_from_handle_async); none means no embedding config
        (settings.default_embedding_handle is unset)."""
        r = self.c.post("/v1/agents/", {"model": MODEL, "embedding": "text-embedding-3-small"})
        self.assertEqual(r.status, 422)
        self.assertIn("'msg': 'Value error, The embedding handle should be in the format provider/model-name'",
                      r.json["detail"])
        self.assertIn("ValueError('The embedding handle should", r.json["detail"])
        r = self.c.post("/v1/agents/", {"model": MODEL, "embedding": "openai/nope"})
        self.assertEqual((r.status, r.json),
                         (400, {"detail": "INVALID_ARGUMENT: Embedding model openai/nope not found"}))
        a = self.c.post("/v1/agents/", {"model": MODEL}).json
        self.assertEqual((a["embedding"], a["embedding_config"]), (None, None))
        a = make_agent(self.c, embedding="openai/text-embedding-3-small")
        self.assertEqual((a["embedding"], a["embedding_config"]["embedding_dim"]),
                         ("openai/text-embedding-3-small", 1536))

    def test_defaults_of_a_minimal_agent(self):
        """utils.py:create_random_username (AdjectiveNoun); derive_system_message (letta_v1 prompt);
        DEFAULT_TIMEZONE; LLMConfig.apply_reasoning_setting_to_config turns reasoning off for a
        letta_v1_agent on a plain model; AgentState.set_file_defaults_based_on_context_window."""
        a = self.c.post("/v1/agents/", {"model": MODEL}).json
        self.assertRegex(a["id"], "^agent-" + UUID4 + "$")
        self.assertRegex(a["name"], r"^[A-Z][a-z]+[A-Z][a-z]+$")
        self.assertTrue(a["system"].startswith("<base_instructions>\nYou are a helpful self-improving agent"))
        self.assertEqual((a["agent_type"], a["timezone"], a["model"], a["tags"], a["blocks"]),
                         ("letta_v1_agent", "UTC", MODEL, [], []))
        llm = a["llm_config"]
        self.assertEqual((llm["handle"], llm["model"], llm["context_window"], llm["enable_reasoner"],
                          llm["put_inner_thoughts_in_kwargs"], llm["provider_name"]),
                         (MODEL, "gpt-4o-mini", 128000, False, False, "openai"))
        self.assertEqual(a["model_settings"]["provider_type"], "openai")
        self.assertEqual((a["max_files_open"], a["per_file_view_window_char_limit"]), (10, 25000))
        for field in ("description", "metadata", "project_id", "last_run_completion", "pending_approval", "hidden"):
            self.assertIsNone(a[field], field)
        self.assertEqual(self.c.post("/v1/agents/", {"model": MODEL, "system": ""}).json["system"], "")

    def test_memory_blocks_are_created_and_human_persona_get_descriptions(self):
        """agent_manager.py:create_agent_async gives DEFAULT_BLOCKS' descriptions to human/persona."""
        a = make_agent(self.c, name="bot", memory_blocks=[{"label": "human", "value": "H"},
                                                          {"label": "persona", "value": "P", "description": "mine"},
                                                          {"label": "notes", "value": "N"}], tags=["x"])
        self.assertEqual([b["label"] for b in a["blocks"]], ["human", "persona", "notes"])
        self.assertTrue(a["blocks"][0]["description"].startswith("The human block: Stores key details"))
        self.assertEqual([b["description"] for b in a["blocks"][1:]], ["mine", None])
        self.assertEqual(a["memory"]["blocks"][1]["value"], "P")
        self.assertEqual(a["tags"], ["x"])
        self.assertEqual(self.admin_state()["agents"][0]["block_labels"], ["human", "persona", "notes"])

    def test_unknown_block_ids_and_second_block_of_a_label_are_skipped(self):
        """create_agent_async: SELECT id, label FROM block WHERE id IN (...) drops unknown ids; the
        pivot insert is ON CONFLICT DO NOTHING, so a label taken already is dropped silently."""
        b = make_block(self.c, "human", "existing")
        a = make_agent(self.c, block_ids=[MISSING_BLOCK, b["id"]],
                       memory_blocks=[{"label": "human", "value": "new"}, {"label": "persona", "value": "P"}])
        self.assertEqual([(x["label"], x["value"]) for x in a["blocks"]], [("human", "existing"), ("persona", "P")])
        self.assertEqual(len(self.admin_state()["blocks"]), 3)      # the dropped block was still created

    def test_unknown_identity_is_409_and_memory_blocks_stay(self):
        """The identities_agents insert breaks its foreign key: IntegrityError, 409 (app.py); the
        memory blocks were committed before (block_manager.batch_create_blocks_async)."""
        r = self.c.post("/v1/agents/", {"model": MODEL, "identity_ids": [MISSING_IDENTITY],
                                        "memory_blocks": [{"label": "human", "value": "H"}]})
        self.assertEqual(r.status, 409)
        self.assertIn('violates foreign key constraint "identities_agents_identity_id_fkey"', r.json["detail"])
        st = self.admin_state()
        self.assertEqual((len(st["agents"]), len(st["blocks"])), (0, 1))

    def test_identities_tags_and_hidden(self):
        """Tags are pivot rows (duplicates collapse); the git-memory tag is stripped without a git
        memory repo (server.py:create_agent_async); role:subagent makes the agent hidden."""
        i = make_identity(self.c, "u1")
        a = make_agent(self.c, identity_ids=[i["id"]], tags=["a", "a", "git-memory-enabled", "b"])
        self.assertEqual((a["tags"], a["identity_ids"], a["memory"]["git_enabled"]), (["a", "b"], [i["id"]], False))
        self.assertEqual(self.admin_state()["agents"][0]["identity_ids"], [i["id"]])
        self.assertTrue(make_agent(self.c, tags=["role:subagent"])["hidden"])

    def test_llm_config_alone_is_enough(self):
        """server.py:create_agent_async uses a given llm_config as it is (no handle lookup)."""
        cfg = {"model": "local-model", "model_endpoint_type": "openai", "context_window": 8000,
               "handle": "custom/local-model"}
        a = self.c.post("/v1/agents/", {"llm_config": cfg}).json
        self.assertEqual((a["model"], a["llm_config"]["context_window"], a["max_files_open"]),
                         ("custom/local-model", 8000, 3))

    def test_file_limits_are_400(self):
        """CreateAgent.validate_max_files_open / validate_per_file_view_window_char_limit."""
        r = self.c.post("/v1/agents/", {"model": MODEL, "max_files_open": 1001})
        self.assertEqual((r.status, r.json), (400, {"detail": "INVALID_ARGUMENT: max_files_open cannot exceed 1000. "
                                                              "Got: 1001"}))
        self.assertEqual(make_agent(self.c, max_files_open=3)["max_files_open"], 3)

    def test_bad_field_type_is_422_with_string_detail(self):
        r = self.c.post("/v1/agents/", {"name": 5, "model": MODEL})
        self.assertEqual(r.status, 422)
        self.assertIsInstance(r.json["detail"], str)
        self.assertIn("'loc': ('body', 'name')", r.json["detail"])

    def test_workflow_agent_autoclears_and_other_types_reason(self):
        """create_agent_async: workflow_agent forces message_buffer_autoclear; a non-v1 agent on a
        plain model gets reasoning through inner thoughts (apply_reasoning_setting_to_config)."""
        a = make_agent(self.c, agent_type="workflow_agent")
        self.assertEqual(a["message_buffer_autoclear"], True)
        self.assertEqual((a["llm_config"]["enable_reasoner"], a["llm_config"]["put_inner_thoughts_in_kwargs"]),
                         (True, True))


class ListTest(EmulatorTestCase):
    def names(self, **query):
        return [x["name"] for x in self.c.get("/v1/agents/", query=query).json]

    def test_defaults_to_newest_first_and_limit_50(self):
        """routers/v1/agents.py:list_agents: order desc, limit 50."""
        ids = [make_agent(self.c, name="a%02d" % i)["id"] for i in range(55)]
        page = self.c.get("/v1/agents/").json
        self.assertEqual([a["id"] for a in page], ids[::-1][:50])
        self.assertEqual(len(self.c.get("/v1/agents/", query={"limit": 0}).json), 55)

    def test_pages_with_after_until_empty_page(self):
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

    def test_before_gives_the_first_rows_of_the_order(self):
        """agent_manager_helper.py:_apply_pagination_async filters by the cursor and the LIMIT
        takes the start of the order: not the rows nearest the cursor."""
        ids = [make_agent(self.c)["id"] for _ in range(6)]
        page = self.c.get("/v1/agents/", query={"before": ids[4], "limit": 2, "order": "asc"}).json
        self.assertEqual([a["id"] for a in page], ids[0:2])
        page = self.c.get("/v1/agents/", query={"before": ids[1], "limit": 2}).json
        self.assertEqual([a["id"] for a in page], [ids[5], ids[4]])

    def test_unknown_or_deleted_cursor_is_ignored(self):
        """_apply_pagination_async: the cursor row is looked up; none found, no filter."""
        ids = [make_agent(self.c)["id"] for _ in range(3)]
        self.c.delete("/v1/agents/" + ids[1])
        for cursor in (MISSING_AGENT, ids[1]):
            self.assertEqual(len(self.c.get("/v1/agents/", query={"after": cursor}).json), 2)

    def test_deprecated_ascending_and_sort_by_lose_to_the_defaults(self):
        """list_agents: final_ascending = (order == "asc") if order else ascending, and order
        defaults to "desc"."""
        ids = [make_agent(self.c)["id"] for _ in range(3)]
        got = [a["id"] for a in self.c.get("/v1/agents/", query={"ascending": "true", "sort_by": "x"}).json]
        self.assertEqual(got, ids[::-1])

    def test_order_by_last_run_completion_puts_nulls_last_both_ways(self):
        """_apply_pagination_async: nulls_last(order(last_run_completion)), then id."""
        a, b, c = (make_agent(self.c, name=n) for n in ("a", "b", "c"))
        self.c.patch("/v1/agents/" + a["id"], {"last_run_completion": "2025-01-02T00:00:00Z"})
        self.c.patch("/v1/agents/" + c["id"], {"last_run_completion": "2025-01-01T00:00:00Z"})
        self.assertEqual(self.names(order_by="last_run_completion"), ["a", "c", "b"])
        self.assertEqual(self.names(order_by="last_run_completion", order="asc"), ["c", "a", "b"])
        # paging forward from a non-NULL value never reaches the NULL rows (_cursor_filter says so)
        self.assertEqual(self.names(order_by="last_run_completion", order="asc", after=c["id"]), ["a"])
        self.assertEqual(self.names(order_by="last_run_completion", order="asc", after=a["id"]), [])
        self.assertEqual(self.names(order_by="last_run_completion", after=c["id"]), ["b"])
        self.c.patch("/v1/agents/" + b["id"], {"description": "touched"})
        self.assertEqual(self.names(order_by="updated_at")[0], "b")

    def test_negative_limit_is_a_database_error(self):
        """LIMIT -1 fails in Postgres: DBAPIError, app.py:dbapi_error_handler."""
        r = self.c.get("/v1/agents/", query={"limit": -1})
        self.assertEqual((r.status, r.json), (500, {"detail": "A database error occurred."}))

    def test_filters_by_name_tags_text_and_identity(self):
        """agent_manager_helper.py:_apply_filters (name exact, query_text ILIKE '%..%' with its
        wildcards), _apply_tag_filter (any / all), _apply_identity_filters (a join)."""
        a = make_agent(self.c, name="alpha", tags=["t1", "t2"])
        b = make_agent(self.c, name="beta", tags=["t2"])
        make_identity(self.c, "k1", agent_ids=[b["id"]])
        ident = make_identity(self.c, "k2", agent_ids=[b["id"]])
        sort = lambda q: sorted(self.names(**q))  # noqa: E731
        self.assertEqual(sort({"name": "alpha"}), ["alpha"])
        self.assertEqual(sort({"tags": ["t1", "t2"]}), ["alpha", "beta"])
        self.assertEqual(sort({"tags": ["t1", "t2"], "match_all_tags": "true"}), ["alpha"])
        self.assertEqual(sort({"identity_id": ident["id"]}), ["beta"])
        self.assertEqual(sort({"identifier_keys": ["k1"]}), ["beta"])
        self.assertEqual(sort({"identifier_keys": ["k1", "k2"]}), ["beta", "beta"])   # one row per join match
        self.assertEqual(sort({"query_text": "LPH"}), ["alpha"])
        self.assertEqual(sort({"query_text": "b_t"}), ["beta"])
        self.assertEqual(sort({"query_text": "%"}), ["alpha", "beta"])
        r = self.c.get("/v1/agents/", query={"identity_id": ident["id"], "identifier_keys": ["k1"]})
        self.assertEqual(r.status, 500)
        self.assertTrue(a["id"])

    def test_hidden_agents_are_left_out_of_list_and_count(self):
        """list_agents_async / count_agents_async: hidden IS NULL OR hidden = false unless
        show_hidden_agents (a query parameter outside the schema)."""
        make_agent(self.c, name="shown")
        make_agent(self.c, name="hid", hidden=True)
        self.assertEqual(self.names(), ["shown"])
        self.assertEqual(sorted(self.names(show_hidden_agents="true")), ["hid", "shown"])
        self.assertEqual(self.c.get("/v1/agents/count").json, 1)
        self.assertEqual(self.c.get("/v1/agents/count", query={"show_hidden_agents": "true"}).json, 2)

    def test_count_applies_the_list_filters(self):
        """routers/v1/agents.py:count_agents -> count_agents_async."""
        make_agent(self.c, name="x1", tags=["a"])
        make_agent(self.c, name="x2", tags=["b"])
        self.assertEqual(self.c.get("/v1/agents/count").json, 2)
        self.assertEqual(self.c.get("/v1/agents/count", query={"tags": ["a"]}).json, 1)
        self.assertEqual(self.c.get("/v1/agents/count", query={"name": "nope"}).json, 0)


class RetrieveTest(EmulatorTestCase):
    def test_retrieve_and_404_text(self):
        """agent_manager.py:get_agent_by_id_async: NoResultFound("Agent with ID ... not found")."""
        a = make_agent(self.c, name="one")
        self.assertEqual(self.c.get("/v1/agents/" + a["id"]).json["name"], "one")
        r = self.c.get("/v1/agents/" + MISSING_AGENT)
        self.assertEqual((r.status, r.json), (404, {"detail": "Agent with ID %s not found" % MISSING_AGENT}))

    def test_malformed_agent_id_is_422_with_example(self):
        """app.py:custom_request_validation_handler rewrites path id errors and adds examples."""
        for bad in ("agent-123", "agent-ZZZZZZZZ-0000-4000-8000-000000000000", "block-" + "0" * 36):
            r = self.c.get("/v1/agents/" + bad)
            self.assertEqual(r.status, 422, bad)
            self.assertIn("\"String should match pattern 'agent-{uuid4}'\"", r.json["detail"])
            self.assertIn("'type': 'string_pattern_mismatch'", r.json["detail"])
            self.assertEqual(r.json["examples"], ["agent-123e4567-e89b-42d3-8456-426614174000"])
            self.assertEqual(r.json["trace_id"], "")

    def test_sdk_1x_client_gets_no_relationships_unless_included(self):
        """routers/v1/agents.py:retrieve_agent: a 1.x client gets include_relationships=[];
        orm/agent.py:to_pydantic_async loads tags along with agent.blocks."""
        a = make_agent(self.c, memory_blocks=[{"label": "human", "value": "H"}], tags=["t"])
        r = self.c.get("/v1/agents/" + a["id"], headers=SDK_HEADERS).json
        self.assertEqual((r["blocks"], r["memory"]["blocks"], r["tags"]), ([], [], []))
        r = self.c.get("/v1/agents/" + a["id"], headers=SDK_HEADERS, query={"include": ["agent.blocks"]}).json
        self.assertEqual(([b["label"] for b in r["blocks"]], r["tags"]), (["human"], ["t"]))
        r = self.c.get("/v1/agents/" + a["id"], headers=SDK_HEADERS, query={"include": ["agent.tags"]}).json
        self.assertEqual((r["blocks"], r["tags"]), ([], ["t"]))

    def test_legacy_user_agent_gets_all_relationships(self):
        a = make_agent(self.c, memory_blocks=[{"label": "human", "value": "H"}], tags=["t"])
        for ua in ("letta-client/0.1.324", "curl/8.5.0", "python-requests/2.31", "letta-client/2.0.0"):
            r = self.c.get("/v1/agents/" + a["id"], headers={"User-Agent": ua}).json
            self.assertEqual([b["label"] for b in r["blocks"]], ["human"], ua)
            self.assertEqual(r["tags"], ["t"], ua)

    def test_client_detection_rules(self):
        """utils.py:is_1_0_sdk_version, including its edge cases (an empty User-Agent or an empty
        Stainless header count as absent; the version is what follows the last '/')."""
        a = make_agent(self.c, memory_blocks=[{"label": "human", "value": "H"}])
        cases = {
            "letta-client/1.3.0": 0,                 # 1.x by User-Agent
            "@letta-ai/letta-client/1.12.1": 0,
            "letta-client/1.0 (extra)": 0,           # "1.0 (extra)": major "1"
            "letta-client/1.0-beta.1": 0,
            "": 0,                                   # empty: as if absent
            "MyScript": 1,                           # no '/' -> legacy
            "Letta/JS 1.12.1": 1,                    # not the letta-client form -> legacy
            "letta-client/1": 1,                     # no '.' in the version
            "x/letta-client/1.0": 1,
        }
        for ua, n in cases.items():
            r = self.c.get("/v1/agents/" + a["id"], headers={"User-Agent": ua}).json
            self.assertEqual(len(r["blocks"]), n, ua)
        # the Stainless header wins over any User-Agent, unless it is empty
        r = self.c.get("/v1/agents/" + a["id"], headers={"User-Agent": "curl/8",
                                                         "X-Stainless-Package-Version": "1.0.0"}).json
        self.assertEqual(r["blocks"], [])
        r = self.c.get("/v1/agents/" + a["id"], headers={"User-Agent": "curl/8", "X-Stainless-Package-Version": ""})
        self.assertEqual(len(r.json["blocks"]), 1)

    def test_include_relationships_names_and_include_precedence(self):
        """get_column_names_from_includes_params: legacy names are "memory", "identity_ids", "tags"
        ("blocks" means nothing); when `include` is given it alone decides what is loaded."""
        a = make_agent(self.c, memory_blocks=[{"label": "human", "value": "H"}], tags=["t"])
        get = lambda q: self.c.get("/v1/agents/" + a["id"], headers=LEGACY_HEADERS, query=q).json  # noqa: E731
        r = get({"include_relationships": ["tags"]})
        self.assertEqual((r["blocks"], r["tags"]), ([], ["t"]))
        r = get({"include_relationships": ["memory"]})
        self.assertEqual((len(r["blocks"]), r["tags"]), (1, ["t"]))
        r = get({"include_relationships": ["blocks"]})
        self.assertEqual((r["blocks"], r["tags"]), ([], []))
        r = get({"include_relationships": ["memory"], "include": ["agent.tags"]})
        self.assertEqual((r["blocks"], r["tags"]), ([], ["t"]))
        r = get({"include": ["agent.tags"]})
        self.assertEqual((r["blocks"], r["tags"]), ([], ["t"]))

    def test_include_identities_fills_identities(self):
        a = make_agent(self.c)
        ident = make_identity(self.c, "u1", agent_ids=[a["id"]])
        r = self.c.get("/v1/agents/" + a["id"], query={"include": ["agent.identities"]}).json
        self.assertEqual(r["identity_ids"], [ident["id"]])
        self.assertEqual(r["identities"][0]["identifier_key"], "u1")

    def test_list_uses_the_same_relationship_rules(self):
        make_agent(self.c, memory_blocks=[{"label": "human", "value": "H"}])
        self.assertEqual(self.c.get("/v1/agents/").json[0]["blocks"], [])
        self.assertEqual(len(self.c.get("/v1/agents/", headers=LEGACY_HEADERS).json[0]["blocks"]), 1)


class ModifyTest(EmulatorTestCase):
    def test_fields_change_and_null_or_missing_fields_stay(self):
        """agent_manager.py:update_agent_async: scalar fields are set when not None; updated_at
        moves; UpdateAgent has no name validator."""
        a = make_agent(self.c, name="old", description="d", metadata={"k": 1}, timezone="Europe/Paris")
        r = self.c.patch("/v1/agents/" + a["id"], {"name": "new/name", "description": None, "system": "sys",
                                                   "metadata": {"x": 2}, "timezone": "UTC", "hidden": True})
        self.assertEqual(r.status, 200)
        b = r.json
        self.assertEqual((b["name"], b["description"], b["system"], b["metadata"], b["timezone"]),
                         ("new/name", "d", "sys", {"x": 2}, "UTC"))
        self.assertIsNone(b["hidden"])            # hidden is not among the updated columns
        self.assertGreater(b["updated_at"], a["updated_at"])
        self.assertEqual(self.c.get("/v1/agents/" + a["id"]).json["name"], "new/name")

    def test_model_and_embedding_changes(self):
        """server.py:update_agent_async: a new model gets a fresh config from the handle (reasoning
        flags as the handle gives them); unknown handles: 404 (before the agent is looked up)
        and 400 for an embedding."""
        a = make_agent(self.c)
        b = self.c.patch("/v1/agents/" + a["id"], {"model": "openai/gpt-4o", "context_window_limit": 9000}).json
        self.assertEqual((b["model"], b["llm_config"]["context_window"], b["llm_config"]["enable_reasoner"]),
                         ("openai/gpt-4o", 9000, True))
        r = self.c.patch("/v1/agents/" + MISSING_AGENT, {"model": "openai/nope"})
        self.assertEqual(r.status, 404)
        self.assertIn("Handle openai/nope not found", r.json["detail"])
        r = self.c.patch("/v1/agents/" + a["id"], {"embedding": "nope"})
        self.assertEqual((r.status, r.json), (400, {"detail": "INVALID_ARGUMENT: Embedding model nope not found"}))

    def test_unknown_agent_is_404_from_read_async(self):
        """update_agent_async reads with AgentModel.read_async: its NoResultFound names the query."""
        r = self.c.patch("/v1/agents/" + MISSING_AGENT, {"name": "x"})
        self.assertEqual(r.status, 404)
        self.assertTrue(r.json["detail"].startswith(ACTOR_404 % ("Agent", MISSING_AGENT)), r.json["detail"])

    def test_block_ids_replace_the_links(self):
        """_replace_pivot_rows_async: new rows ON CONFLICT DO NOTHING, then the old rows not in the
        new set are deleted, so replacing a block by another of its label leaves neither; an unknown
        id is a KeyError (generic 500) and changes nothing."""
        a = make_agent(self.c, memory_blocks=[{"label": "human", "value": "H"}, {"label": "persona", "value": "P"}])
        human, persona = a["blocks"][0]["id"], a["blocks"][1]["id"]
        extra = make_block(self.c, "notes")
        b = self.c.patch("/v1/agents/" + a["id"], {"block_ids": [persona, extra["id"]]}).json
        self.assertEqual(sorted(x["label"] for x in b["blocks"]), ["notes", "persona"])
        other = make_block(self.c, "persona", "other persona")
        b = self.c.patch("/v1/agents/" + a["id"], {"block_ids": [other["id"], extra["id"]]}).json
        self.assertEqual([x["label"] for x in b["blocks"]], ["notes"])
        r = self.c.patch("/v1/agents/" + a["id"], {"block_ids": [human, MISSING_BLOCK], "name": "z"})
        self.assertEqual((r.status, r.json), (500, {"detail": "An unknown error occurred"}))
        after = self.c.get("/v1/agents/" + a["id"], headers=LEGACY_HEADERS).json
        self.assertEqual(([x["label"] for x in after["blocks"]], after["name"] == "z"), (["notes"], False))

    def test_identity_ids_and_tags_replace_the_links(self):
        """_replace_pivot_rows_async for identities_agents (an unknown id breaks the foreign key:
        409, nothing changes) and agents_tags."""
        i1, i2 = make_identity(self.c, "k1"), make_identity(self.c, "k2")
        a = make_agent(self.c, identity_ids=[i1["id"]], tags=["a"])
        b = self.c.patch("/v1/agents/" + a["id"], {"identity_ids": [i2["id"]], "tags": ["b", "c", "b"]}).json
        self.assertEqual((b["identity_ids"], b["tags"]), ([i2["id"]], ["b", "c"]))
        r = self.c.patch("/v1/agents/" + a["id"], {"identity_ids": [MISSING_IDENTITY], "tags": []})
        self.assertEqual(r.status, 409)
        self.assertEqual(self.c.get("/v1/agents/" + a["id"], headers=LEGACY_HEADERS).json["tags"], ["b", "c"])
        b = self.c.patch("/v1/agents/" + a["id"], {"identity_ids": [], "tags": []}).json
        self.assertEqual((b["identity_ids"], b["tags"]), ([], []))

    def test_git_memory_tag_set_by_update_shows_in_memory(self):
        """update_agent_async writes the tags as given; orm/agent.py:to_pydantic_async sets
        memory.git_enabled from them."""
        a = make_agent(self.c)
        b = self.c.patch("/v1/agents/" + a["id"], {"tags": ["git-memory-enabled"]}).json
        self.assertEqual((b["tags"], b["memory"]["git_enabled"]), (["git-memory-enabled"], True))

    def test_file_limit_on_update_is_400(self):
        a = make_agent(self.c)
        r = self.c.patch("/v1/agents/" + a["id"], {"per_file_view_window_char_limit": 2 ** 31})
        self.assertEqual(r.status, 400)
        self.assertIn("per_file_view_window_char_limit cannot exceed 2147483647", r.json["detail"])


class DeleteTest(EmulatorTestCase):
    def test_delete_returns_message_and_cascades(self):
        """routers/v1/agents.py:delete_agent; agent_manager.py:delete_agent_async deletes the row:
        block and identity links, messages and runs go; blocks and identities stay; the archive
        keeps its passages but they are no longer the agent's."""
        a = make_agent(self.c, memory_blocks=[{"label": "human", "value": "H"}])
        ident = make_identity(self.c, "k", agent_ids=[a["id"]])
        self.c.post("/v1/agents/%s/messages" % a["id"], {"input": "hi"})
        self.c.post("/v1/agents/%s/archival-memory" % a["id"], {"text": "p"})
        r = self.c.delete("/v1/agents/" + a["id"])
        self.assertEqual((r.status, r.json), (200, {"message": "Agent id=%s successfully deleted" % a["id"]}))
        self.assertEqual(self.c.get("/v1/agents/" + a["id"]).status, 404)
        r = self.c.delete("/v1/agents/" + a["id"])
        self.assertEqual(r.status, 404)
        self.assertTrue(r.json["detail"].startswith(ACTOR_404 % ("Agent", a["id"])))
        st = self.admin_state()
        self.assertEqual((len(st["blocks"]), len(st["identities"]), st["runs"], st["messages"]), (1, 1, [], {}))
        self.assertEqual(self.c.get("/v1/identities/%s/agents" % ident["id"]).json, [])


class ContextTest(EmulatorTestCase):
    def test_context_reports_core_memory_and_counts(self):
        """agent_manager.py:get_context_window / context_window_calculator.py: in-context messages
        are message_ids; context_window_size_max is the llm_config's; 404 as get_agent_by_id_async."""
        a = make_agent(self.c, memory_blocks=[{"label": "human", "value": "Name: Bob"}])
        self.c.post("/v1/agents/%s/messages" % a["id"], {"input": "hello"})
        ctx = self.c.get("/v1/agents/%s/context" % a["id"]).json
        in_context = self.c.get("/v1/agents/" + a["id"]).json["message_ids"]
        self.assertTrue(ctx["core_memory"].startswith("<memory_blocks>"), ctx["core_memory"])
        self.assertIn("<value>\nName: Bob\n</value>", ctx["core_memory"])
        self.assertTrue(ctx["system_prompt"].startswith("<base_instructions>"))
        self.assertTrue(ctx["external_memory_summary"].startswith("<memory_metadata>"))
        self.assertEqual(ctx["num_messages"], len(in_context))
        self.assertEqual([m["id"] for m in ctx["messages"]], in_context)
        self.assertEqual(ctx["messages"][0]["role"], "system")
        self.assertGreaterEqual(ctx["num_recall_memory"], len(in_context))
        self.assertEqual(ctx["context_window_size_max"], 128000)
        self.assertEqual(ctx["functions_definitions"], [])
        self.assertEqual(self.c.get("/v1/agents/%s/context" % MISSING_AGENT).json,
                         {"detail": "Agent with ID %s not found" % MISSING_AGENT})


class ModelsTest(EmulatorTestCase):
    def test_models_list_the_default_handles_in_provider_order(self):
        """routers/v1/llms.py:list_llm_models -> server.py:list_llm_models_async (sorted by
        PROVIDER_ORDER, provider, model name) -> schemas/model.py:Model.from_llm_config."""
        models = self.c.get("/v1/models/").json
        self.assertEqual([m["handle"] for m in models], ["openai/gpt-4o", "openai/gpt-4o-mini"])
        m = models[1]
        self.assertEqual((m["name"], m["display_name"], m["provider_type"], m["provider_name"], m["model_type"],
                          m["max_context_window"], m["model_endpoint"], m["provider_category"]),
                         ("gpt-4o-mini", "gpt-4o-mini", "openai", "openai", "llm", 128000,
                          "https://api.openai.com/v1", "base"))
        emb = self.c.get("/v1/models/embedding").json
        self.assertEqual([(e["handle"], e["name"], e["provider_name"], e["model_type"], e["embedding_dim"])
                          for e in emb], [("openai/text-embedding-3-small", "text-embedding-3-small", "openai",
                                           "embedding", 1536)])

    def test_model_filters(self):
        """list_llm_models_async: provider_category without "base" leaves only BYOK providers
        (none here); provider_name and provider_type filter the base ones."""
        get = lambda q: [m["handle"] for m in self.c.get("/v1/models/", query=q).json]  # noqa: E731
        self.assertEqual(get({"provider_category": ["byok"]}), [])
        self.assertEqual(len(get({"provider_category": ["base", "byok"]})), 2)
        self.assertEqual(get({"provider_name": "anthropic"}), [])
        self.assertEqual(len(get({"provider_type": "openai"})), 2)
        self.assertEqual(self.c.get("/v1/models/", query={"provider_type": "nope"}).status, 422)


class ModelsOptionTest(unittest.TestCase):
    def test_models_option_sets_what_is_listed_and_accepted(self):
        emu = Emulator("--models", "anthropic/claude-x,openai/gpt-4o-mini,letta/letta-free",
                       "--embedding-models", "openai/text-embedding-3-small,letta/letta-free")
        try:
            c = emu.client()
            self.assertEqual([m["handle"] for m in c.get("/v1/models/").json],
                             ["letta/letta-free", "openai/gpt-4o-mini", "anthropic/claude-x"])
            self.assertEqual([m["handle"] for m in c.get("/v1/models/embedding").json],
                             ["letta/letta-free", "openai/text-embedding-3-small"])
            self.assertEqual(c.post("/v1/agents/", {"model": "anthropic/claude-x"}).status, 200)
            self.assertEqual(c.post("/v1/agents/", {"model": "openai/gpt-4o"}).status, 404)
            c.close()
        finally:
            emu.stop()


if __name__ == "__main__":
    unittest.main()

"""Messages: create (sync and streamed), list, modify. Each test names the server source it
checks (Letta 0.16.8, paths relative to the letta repository). Runs: test_runs.py."""

import json
import unittest

from emu_helpers import (LEGACY_HEADERS, MISSING_AGENT, SDK_HEADERS, EmulatorTestCase, make_agent, make_block,
                         make_identity)

MISSING_MESSAGE = "message-00000000-0000-4000-8000-000000000000"


def otid_from_id(message_id, index):
    n = (int(message_id[len("message-"):].replace("-", ""), 16) & ~0x7F) | index
    h = "%032x" % n
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


class MessagesTest(EmulatorTestCase):
    def setUp(self):
        super().setUp()
        self.agent = make_agent(self.c, memory_blocks=[{"label": "human", "value": "h"},
                                                       {"label": "persona", "value": "p"}])
        self.base = "/v1/agents/%s/messages" % self.agent["id"]

    def send(self, text, **extra):
        r = self.c.post(self.base, dict(extra, input=text))
        self.assertEqual(r.status, 200, r)
        return r.json

    def history(self, **query):
        r = self.c.get(self.base, query=query)
        self.assertEqual(r.status, 200, r)
        return r.json

    def run_of(self, run_id):
        return self.c.get("/v1/runs/" + run_id).json

    # --- the reply (deliberate: no LLM) -----------------------------------------------------
    def test_reply_shows_attached_block_labels_and_sender(self):
        persona = make_block(self.c, "Persona_alice", "likes tea")
        ident = make_identity(self.c, "alice")
        self.c.patch("/v1/agents/%s/core-memory/blocks/attach/%s" % (self.agent["id"], persona["id"]))
        r = self.c.post(self.base, {"messages": [{"role": "user", "content": "hello", "sender_id": ident["id"]}]})
        self.assertEqual(r.status, 200)
        reply = r.json["messages"][-1]
        self.assertEqual(reply["message_type"], "assistant_message")
        self.assertEqual(reply["content"], "[blocks: human,persona,Persona_alice] [sender: %s] you said: hello"
                         % ident["id"])
        self.c.patch("/v1/agents/%s/core-memory/blocks/detach/%s" % (self.agent["id"], persona["id"]))
        r = self.c.post(self.base, {"input": "again"})
        self.assertEqual(r.json["messages"][-1]["content"], "[blocks: human,persona] [sender: none] you said: again")

    def test_sync_response_reasoning_and_reply_share_the_row_id(self):
        """agents/letta_agent_v3.py:step returns LettaResponse; schemas/message.py:
        Message._convert_reasoning_messages makes both messages of one row with the row's id and
        otids from generate_otid_from_id; schemas/usage.py: run_ids stays null."""
        r = self.c.post(self.base, {"messages": [{"role": "user", "content": [{"type": "text", "text": "a b"}]}]}).json
        self.assertEqual([m["message_type"] for m in r["messages"]], ["reasoning_message", "assistant_message"])
        reasoning, reply = r["messages"]
        self.assertEqual(reasoning["id"], reply["id"])
        self.assertEqual((reasoning["otid"], reply["otid"]),
                         (otid_from_id(reply["id"], 0), otid_from_id(reply["id"], 1)))
        self.assertEqual(reasoning["source"], "reasoner_model")
        self.assertEqual(r["stop_reason"], {"message_type": "stop_reason", "stop_reason": "end_turn"})
        self.assertEqual((r["usage"]["message_type"], r["usage"]["step_count"], r["usage"]["run_ids"]),
                         ("usage_statistics", 1, None))
        self.assertIsNone(r["logprobs"])
        self.assertRegex(reply["date"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
        self.assertTrue(reply["run_id"].startswith("run-"))
        self.assertIsNone(reply["seq_id"])

    def test_include_return_message_types_filters_the_sync_reply(self):
        """letta_agent_v3.py:step filters response_letta_messages by include_return_message_types."""
        r = self.send("x", include_return_message_types=["assistant_message"])
        self.assertEqual([m["message_type"] for m in r["messages"]], ["assistant_message"])

    # --- history -------------------------------------------------------------------------------
    def test_history_starts_with_the_compiled_system_message(self):
        """agent_manager.py:_generate_initial_message_sequence_async: a letta_v1_agent starts with
        only its system message, compiled by prompt_generator.py (system prompt, <memory_blocks>,
        <memory_metadata>)."""
        msgs = self.history()
        self.assertEqual([m["message_type"] for m in msgs], ["system_message"])
        system = msgs[0]["content"]
        self.assertTrue(system.startswith(self.agent["system"]))
        self.assertIn("<memory_blocks>\nThe following memory blocks are currently engaged", system)
        self.assertIn("<value>\nh\n</value>", system)
        self.assertIn("- AGENT_ID: %s" % self.agent["id"], system)
        self.assertIsNone(msgs[0]["otid"])
        agent = self.c.get("/v1/agents/" + self.agent["id"]).json
        self.assertEqual(agent["message_ids"], [msgs[0]["id"]])

    def test_a_block_change_recompiles_the_system_message_in_place(self):
        """agent_manager.py:rebuild_system_prompt_async (after modify_block_for_agent): the memory
        is no longer in the system message, so it is recompiled (same id) with the recall count."""
        self.send("one")
        before = self.history(order="asc")[0]
        r = self.c.patch("/v1/agents/%s/core-memory/blocks/human" % self.agent["id"], {"value": "Name: Bob"})
        self.assertEqual(r.status, 200)
        after = self.history(order="asc")[0]
        self.assertEqual(after["id"], before["id"])
        self.assertIn("<value>\nName: Bob\n</value>", after["content"])
        self.assertIn("- 0 previous messages between you and the user", before["content"])
        self.assertIn("- 0 previous messages between you and the user", after["content"])   # all in context

    def test_other_agent_types_start_with_the_login_event(self):
        """helpers/agent_manager_helper.py:initialize_message_sequence_async: system message, then
        the login event (system.py:get_login_event, kept packed: it has no "message")."""
        r = self.c.post("/v1/agents/", {"model": "openai/gpt-4o-mini", "agent_type": "memgpt_v2_agent"})
        self.assertEqual(r.status, 200, r)
        msgs = self.c.get("/v1/agents/%s/messages" % r.json["id"]).json
        self.assertEqual([m["message_type"] for m in msgs], ["system_message", "user_message"])
        login = json.loads(msgs[1]["content"])
        self.assertEqual((login["type"], login["last_login"]), ("login", "Never (first login)"))

    def test_default_desc_selects_the_newest_rows_and_lists_them_oldest_first(self):
        """server.py:get_agent_recall_async: list_messages(ascending=False) picks the newest
        `limit` rows, the page is reversed back, so it always reads oldest-first."""
        self.send("one")
        self.send("two")
        msgs = self.history()
        self.assertEqual([m["message_type"] for m in msgs],
                         ["system_message", "user_message", "reasoning_message", "assistant_message",
                          "user_message", "reasoning_message", "assistant_message"])
        self.assertEqual(msgs[-1]["content"][-3:], "two")
        newest = self.history(limit=2)
        self.assertEqual([m["message_type"] for m in newest],
                         ["user_message", "reasoning_message", "assistant_message"])   # 2 rows
        self.assertEqual(newest[0]["content"], "two")
        oldest = self.history(limit=2, order="asc")
        self.assertEqual([m["message_type"] for m in oldest], ["system_message", "user_message"])
        self.assertEqual(self.history(), self.history(order="asc"))

    def test_after_is_newer_and_before_is_older_in_both_orders(self):
        """message_manager.py:list_messages: after -> sequence_id > cursor's, before -> <, whatever
        the order."""
        self.send("one")
        self.send("two")
        msgs = self.history(order="asc")
        first_user = msgs[1]["id"]
        for order in ("asc", "desc"):
            after = self.history(after=first_user, order=order)
            self.assertEqual(after, msgs[2:], order)
            before = self.history(before=msgs[4]["id"], order=order)       # the second user message
            self.assertEqual(before, msgs[:4], order)
        self.assertEqual(self.history(after=first_user, limit=1, order="desc"), msgs[-2:])   # newest row
        self.assertEqual(self.history(after=first_user, limit=1, order="asc"), msgs[2:4])

    def test_unknown_cursor_is_404_and_another_agents_message_is_a_cursor(self):
        """message_manager.py:list_messages raises NoResultFound (404) for a cursor that is no message;
        any stored message is a cursor (the lookup has no agent filter)."""
        r = self.c.get(self.base, query={"after": MISSING_MESSAGE})
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json["detail"], "No message found with id '%s' for agent '%s'."
                         % (MISSING_MESSAGE, self.agent["id"]))
        self.assertEqual(self.c.get(self.base, query={"before": MISSING_MESSAGE}).status, 404)
        other = make_agent(self.c)
        other_first = self.c.get("/v1/agents/%s/messages" % other["id"]).json[0]["id"]   # newer than ours
        self.send("x")
        r = self.c.get(self.base, query={"before": other_first})
        self.assertEqual([m["message_type"] for m in r.json], ["system_message"])

    def test_list_for_unknown_agent_is_404_agent_not_found(self):
        """message_manager.py:list_messages -> validate_agent_exists_async raises
        LettaAgentNotFoundError, which app.py answers "Agent not found"."""
        r = self.c.get("/v1/agents/%s/messages" % MISSING_AGENT)
        self.assertEqual((r.status, r.json["detail"]), (404, "Agent not found"))

    def test_include_return_message_types_is_applied_after_the_page(self):
        """Message.to_letta_messages_from_list filters the rows already fetched with `limit`."""
        self.send("one")
        only_users = self.history(limit=1, include_return_message_types=["user_message"])
        self.assertEqual(only_users, [])           # the newest row is the reply
        users = self.history(include_return_message_types=["user_message"])
        self.assertEqual([m["content"] for m in users], ["one"])

    def test_group_id_is_stored_and_filters_the_list(self):
        """helpers/message_helper.py:_convert_message_create_to_message keeps group_id;
        message_manager.py:list_messages filters on it."""
        self.c.post(self.base, {"messages": [{"role": "user", "content": "in g", "group_id": "group-1"}]})
        self.send("no group")
        got = self.history(group_id="group-1")
        self.assertEqual([(m["message_type"], m["content"]) for m in got], [("user_message", "in g")])
        self.assertEqual(self.history(group_id="group-2"), [])

    def test_otid_is_generated_when_the_client_sends_none(self):
        """schemas/message.py:MessageCreateBase.generate_otid_if_missing (uuid4, no prefix)."""
        self.c.post(self.base, {"messages": [{"role": "user", "content": "x", "sender_id": "agent-x", "otid": "o1"}]})
        self.send("y")
        users = self.history(include_return_message_types=["user_message"])
        self.assertEqual((users[0]["sender_id"], users[0]["otid"]), ("agent-x", "o1"))
        self.assertRegex(users[1]["otid"], r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

    def test_one_text_part_is_listed_as_a_string_several_as_parts(self):
        """schemas/message.py:Message._convert_user_message: one TextContent -> its text."""
        self.c.post(self.base, {"messages": [{"role": "user", "content": [{"type": "text", "text": "solo"}]}]})
        self.c.post(self.base, {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                                          {"type": "text", "text": "b"}]}]})
        users = self.history(include_return_message_types=["user_message"])
        self.assertEqual(users[0]["content"], "solo")
        self.assertEqual(users[1]["content"], [{"type": "text", "text": "a", "signature": None},
                                               {"type": "text", "text": "b", "signature": None}])

    def test_a_packed_user_message_is_listed_unpacked(self):
        """system.py:unpack_message shows the inner text of a {"type": "user_message"} JSON text."""
        self.send(json.dumps({"type": "user_message", "message": "inner", "time": "now"}))
        self.assertEqual(self.history(include_return_message_types=["user_message"])[0]["content"], "inner")

    # --- request validation ----------------------------------------------------------------------
    def test_empty_content_is_400_and_the_run_fails(self):
        """helpers/message_helper.py:_convert_message_create_to_message raises ValueError; app.py
        answers 400; routers/v1/agents.py:send_message marks the run failed with metadata.error."""
        for content in ("", []):
            r = self.c.post(self.base, {"messages": [{"role": "user", "content": content}]})
            self.assertEqual((r.status, r.json), (400, {"detail": "Message content is empty or invalid"}))
        run = self.c.get("/v1/runs/", query={"agent_id": self.agent["id"], "limit": 1}).json[0]
        self.assertEqual((run["status"], run["stop_reason"], run["metadata"]),
                         ("failed", None, {"run_type": "send_message", "error": "Message content is empty or invalid"}))
        self.assertEqual(len(self.history()), 1)          # only the system message

    def test_role_other_than_user_system_assistant_is_422(self):
        """schemas/message.py:MessageCreate.role is a Literal; every member of MessageCreateUnion
        fails, so pydantic reports four errors."""
        r = self.c.post(self.base, {"messages": [{"role": "tool", "content": "x"}]})
        self.assertEqual(r.status, 422)
        self.assertIn("trace_id", r.json)
        detail = r.json["detail"]
        self.assertTrue(detail.startswith("[{'type': 'literal_error', 'loc': ('body', 'messages', 0, "
                                          "'function-after[generate_otid_if_missing(), MessageCreate]', 'role')"))
        self.assertIn("'loc': ('body', 'messages', 0, 'function-after[generate_otid_if_missing(), "
                      "ToolReturnCreate]', 'tool_returns'), 'msg': 'Field required'", detail)

    def test_both_input_and_messages_or_neither_is_422(self):
        """schemas/letta_request.py:LettaRequest.validate_input_or_messages."""
        r = self.c.post(self.base, {"input": "x", "messages": [{"role": "user", "content": "y"}]})
        self.assertEqual(r.status, 422)
        self.assertIn("'msg': \"Value error, Cannot specify both 'input' and 'messages'. Use one or the other.\"",
                      r.json["detail"])
        self.assertIn("'ctx': {'error': ValueError(\"Cannot specify both", r.json["detail"])
        r = self.c.post(self.base + "/async", {})
        self.assertEqual(r.status, 422)
        self.assertIn("Value error, Must specify either 'input' or 'messages'.", r.json["detail"])

    def test_empty_messages_is_422_on_the_send_route_only(self):
        """routers/v1/agents.py:send_message raises HTTPException(422, "Messages must not be empty");
        the stream route has no such check: the agent loop's input_messages[0] fails in the stream."""
        r = self.c.post(self.base, {"messages": []})
        self.assertEqual((r.status, r.json), (422, {"detail": "Messages must not be empty"}))
        st, _, events = self.c.stream(self.base + "/stream", {"messages": [], "include_pings": False})
        self.assertEqual(st, 200)
        self.assertEqual(events[1][0], "error")
        self.assertEqual(json.loads(events[1][1])["detail"], "list index out of range")

    def test_stream_only_options_without_streaming_are_one_422(self):
        """routers/v1/agents.py:send_message joins the streaming-option errors in one detail."""
        r = self.c.post(self.base, {"input": "x", "stream_tokens": True, "background": True})
        self.assertEqual(r.status, 422)
        self.assertEqual(r.json["detail"], "Streaming options set without streaming enabled. stream_tokens can only "
                         "be true when streaming=true; background can only be true when streaming=true. Either set "
                         "streaming=true or use default values for streaming options.")
        r = self.c.post(self.base, {"input": "x", "include_pings": False})
        self.assertIn("include_pings can only be set to false when streaming=true", r.json["detail"])

    def test_approval_without_a_pending_request_is_400(self):
        """agents/helpers.py:_prepare_in_context_messages_no_persist_async raises ValueError."""
        r = self.c.post(self.base, {"messages": [{"type": "approval", "approvals": []}]})
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json["detail"], "Cannot process approval response: No tool call is currently awaiting "
                         "approval. Please send a regular message to interact with the agent.")

    def test_unknown_agent_texts_differ_by_route(self):
        """send_message: agent_manager.get_agent_by_id_async (NoResultFound text); async:
        run_manager.create_run -> validate_agent_exists_async ("Agent not found")."""
        r = self.c.post("/v1/agents/%s/messages" % MISSING_AGENT, {"input": "x"})
        self.assertEqual((r.status, r.json["detail"]), (404, "Agent with ID %s not found" % MISSING_AGENT))
        st, _, body = self.c.stream("/v1/agents/%s/messages/stream" % MISSING_AGENT, {"input": "x"})
        self.assertEqual((st, json.loads(body)["detail"]), (404, "Agent with ID %s not found" % MISSING_AGENT))
        r = self.c.post("/v1/agents/%s/messages/async" % MISSING_AGENT, {"input": "x"})
        self.assertEqual((r.status, r.json["detail"]), (404, "Agent not found"))

    def test_modify_message_validates_the_body_then_is_405(self):
        """routers/v1/agents.py:modify_message: LettaMessageUpdateUnion (discriminator message_type)
        is validated, then the route always raises 405."""
        path = self.base + "/" + MISSING_MESSAGE
        r = self.c.patch(path, {"message_type": "user_message", "content": "x"})
        self.assertEqual(r.status, 405)
        self.assertEqual(r.json["detail"], "Message editing is no longer supported. Messages are immutable as they "
                         "may be shared across multiple conversations via forking.")
        r = self.c.patch(path, {"content": "x"})
        self.assertEqual(r.status, 422)
        self.assertIn("'type': 'union_tag_not_found'", r.json["detail"])
        r = self.c.patch(path, {"message_type": "reasoning_message"})
        self.assertEqual(r.status, 422)
        self.assertIn("'loc': ('body', 'reasoning_message', 'reasoning')", r.json["detail"])

    # --- streams -------------------------------------------------------------------------------
    def stream_events(self, body, path=None, headers=None):
        st, hdrs, events = self.c.stream(path or self.base, body, headers=headers)
        self.assertEqual(st, 200, events)
        return hdrs, events

    def test_stream_starts_with_a_run_ping_and_every_seq_id_is_null(self):
        """streaming_service.py:prepend_initial_run_ping, then letta_agent_v3.py:stream chunks and
        get_finish_chunks_for_stream; seq_id is only set by the Redis background stream."""
        hdrs, events = self.stream_events({"input": "hi", "streaming": True})
        self.assertEqual(hdrs["content-type"], "text/event-stream; charset=utf-8")
        self.assertEqual(events[-1], (None, "[DONE]"))
        data = [json.loads(d) for _, d in events[:-1]]
        self.assertEqual([d["message_type"] for d in data],
                         ["ping", "reasoning_message", "assistant_message", "stop_reason", "usage_statistics"])
        run_id = data[1]["run_id"]
        self.assertEqual(data[0]["run_id"], run_id)
        self.assertTrue(data[0]["id"].startswith("ping-"))
        self.assertTrue(all(d["seq_id"] is None for d in data[:3]))
        self.assertIsNone(data[-1]["run_ids"])
        self.assertIn("you said: hi", data[2]["content"])
        run = self.run_of(run_id)
        self.assertEqual((run["status"], run["stop_reason"], run["background"], run["metadata"]),
                         ("completed", "end_turn", False, {"run_type": "send_message"}))

    def test_include_pings_false_sends_no_ping(self):
        _, events = self.stream_events({"input": "hi", "include_pings": False}, self.base + "/stream")
        self.assertNotIn("ping", [json.loads(d)["message_type"] for _, d in events[:-1]])

    def test_stream_tokens_sends_deltas_sharing_one_id(self):
        _, events = self.stream_events({"input": "hello there", "streaming": True, "stream_tokens": True,
                                        "include_pings": False})
        chunks = [json.loads(d) for _, d in events[:-1]]
        assistant = [c for c in chunks if c["message_type"] == "assistant_message"]
        self.assertGreater(len(assistant), 3)
        self.assertEqual(len({c["id"] for c in assistant}), 1)
        self.assertEqual("".join(c["content"] for c in assistant),
                         "[blocks: human,persona] [sender: none] you said: hello there")

    def test_legacy_client_streaming_true_is_422_but_stream_route_works(self):
        r = self.c.post(self.base, {"input": "hi", "streaming": True}, headers=LEGACY_HEADERS)
        self.assertEqual(r.status, 422)
        self.assertEqual(r.json["detail"], "streaming=true is only supported for SDK v1.0+ clients.")
        _, events = self.stream_events({"input": "hi"}, self.base + "/stream", headers=LEGACY_HEADERS)
        self.assertEqual(events[-1][1], "[DONE]")
        self.stream_events({"input": "hi", "streaming": True}, headers=SDK_HEADERS)

    def test_stream_return_types_filter(self):
        _, events = self.stream_events({"input": "x", "include_pings": False,
                                        "include_return_message_types": ["assistant_message"]}, self.base + "/stream")
        self.assertEqual([json.loads(d)["message_type"] for _, d in events[:-1]],
                         ["assistant_message", "stop_reason", "usage_statistics"])

    def test_background_stream_without_redis_is_503_and_the_run_fails(self):
        """streaming_service.py:create_agent_stream raises LettaServiceUnavailableError (app.py: 503,
        detail str(exc) with the INTERNAL_SERVER_ERROR code) after creating the run."""
        st, _, body = self.c.stream(self.base, {"input": "x", "streaming": True, "background": True})
        detail = ("INTERNAL_SERVER_ERROR: Background streaming requires Redis to be running. Please ensure Redis "
                  "is properly configured. LETTA_REDIS_HOST: None, LETTA_REDIS_PORT: 6379")
        self.assertEqual((st, json.loads(body)), (503, {"detail": detail}))
        run = self.c.get("/v1/runs/", query={"agent_id": self.agent["id"]}).json[0]
        self.assertEqual((run["status"], run["stop_reason"], run["background"], run["metadata"]["error"]),
                         ("failed", None, True, detail))
        self.assertEqual(len(self.history()), 1)

    def test_stream_error_after_the_first_chunk_has_no_done_and_the_run_completes(self):
        """letta_agent_v3.py:stream: a mid-stream error yields stop_reason and `event: error`
        (internal_error) and returns; streaming_service.py:_create_error_aware_stream then takes the
        run as completed with the loop's stop reason llm_api_error. Nothing is stored (the step
        failed before _checkpoint_messages)."""
        self.set_faults("kind=stream-error,times=1")
        _, events = self.stream_events({"input": "boom", "include_pings": False}, self.base + "/stream")
        self.assertEqual([e[0] for e in events], [None, None, "error"])
        self.assertEqual(json.loads(events[0][1])["message_type"], "reasoning_message")
        self.assertEqual(json.loads(events[1][1]), {"message_type": "stop_reason", "stop_reason": "llm_api_error"})
        err = json.loads(events[2][1])
        self.assertEqual((err["message_type"], err["error_type"], err["message"], err["seq_id"]),
                         ("error_message", "internal_error", "An error occurred during agent execution.", None))
        run = self.run_of(err["run_id"])
        self.assertEqual((run["status"], run["stop_reason"]), ("completed", "llm_api_error"))
        self.assertEqual(len(self.history()), 1)
        self.assertEqual(self.c.get("/v1/agents/" + self.agent["id"]).json["last_stop_reason"], "llm_api_error")

    def test_stream_error_before_any_chunk_is_llm_error_then_done(self):
        """With no chunk sent the loop re-raises the LLMError and _create_error_aware_stream answers
        llm_error, [DONE], and fails the run with metadata.error = the error message object."""
        self.set_faults("kind=stream-error,times=1")
        _, events = self.stream_events({"input": "boom", "include_pings": False,
                                        "include_return_message_types": ["assistant_message"]}, self.base + "/stream")
        self.assertEqual([e[0] for e in events], [None, "error", None])
        self.assertEqual(events[-1][1], "[DONE]")
        err = json.loads(events[1][1])
        self.assertEqual((err["error_type"], err["message"]), ("llm_error", "An error occurred with the LLM request."))
        run = self.run_of(err["run_id"])
        self.assertEqual((run["status"], run["stop_reason"], run["metadata"]["error"]),
                         ("failed", "llm_api_error", err))

    def test_bad_input_on_a_stream_is_an_error_event(self):
        """A ValueError before the first chunk: _create_error_aware_stream's generic branch."""
        _, events = self.stream_events({"messages": [{"role": "user", "content": ""}]}, self.base + "/stream")
        data = [d for _, d in events]
        self.assertEqual(json.loads(data[0])["message_type"], "ping")
        self.assertEqual(json.loads(data[1]), {"message_type": "stop_reason", "stop_reason": "error"})
        self.assertEqual(events[2][0], "error")
        err = json.loads(data[2])
        self.assertEqual((err["error_type"], err["message"], err["detail"]),
                         ("internal_error", "An unknown error occurred with the LLM streaming request.",
                          "Message content is empty or invalid"))
        self.assertEqual(data[3], "[DONE]")
        run = self.run_of(err["run_id"])
        self.assertEqual((run["status"], run["stop_reason"], run["metadata"]["error"]["detail"]),
                         ("failed", "error", "Message content is empty or invalid"))


if __name__ == "__main__":
    unittest.main()

"""Messages (create, list, stream, async, cancel, modify) and runs (retrieve, list, messages,
usage, steps, stream)."""

import json
import time
import unittest

from emu_helpers import LEGACY_HEADERS, SDK_HEADERS, EmulatorTestCase, make_agent, make_block, make_identity


def wait_run(c, run_id, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = c.get("/v1/runs/" + run_id).json
        if run["status"] in ("completed", "failed", "cancelled"):
            return run
        time.sleep(0.02)
    raise AssertionError("run %s did not finish" % run_id)


class MessagesTest(EmulatorTestCase):
    emulator_args = ("--run-delay-ms", "500")

    def setUp(self):
        super().setUp()
        self.agent = make_agent(self.c, memory_blocks=[{"label": "human", "value": "h"},
                                                       {"label": "persona", "value": "p"}])
        self.base = "/v1/agents/%s/messages" % self.agent["id"]

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
        # after detaching, the reply no longer shows the persona block
        self.c.patch("/v1/agents/%s/core-memory/blocks/detach/%s" % (self.agent["id"], persona["id"]))
        r = self.c.post(self.base, {"input": "again"})
        self.assertEqual(r.json["messages"][-1]["content"], "[blocks: human,persona] [sender: none] you said: again")

    def test_sync_response_shape(self):
        r = self.c.post(self.base, {"messages": [{"role": "user", "content": [{"type": "text", "text": "a b"}]}]}).json
        self.assertEqual([m["message_type"] for m in r["messages"]], ["reasoning_message", "assistant_message"])
        self.assertEqual(r["stop_reason"], {"message_type": "stop_reason", "stop_reason": "end_turn"})
        self.assertEqual(r["usage"]["message_type"], "usage_statistics")
        self.assertEqual(r["usage"]["step_count"], 1)
        self.assertIsNone(r["logprobs"])
        m = r["messages"][1]
        self.assertRegex(m["date"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
        self.assertTrue(m["run_id"].startswith("run-"))
        self.assertIsNone(m["sender_id"])

    def test_empty_messages_is_422(self):
        r = self.c.post(self.base, {"messages": []})
        self.assertEqual(r.status, 422)
        self.assertIn("Messages must not be empty", r.json["detail"])

    def test_stream_only_options_without_streaming_are_422(self):
        for extra in ({"stream_tokens": True}, {"include_pings": False}, {"background": True}):
            r = self.c.post(self.base, dict(extra, input="x"))
            self.assertEqual(r.status, 422, extra)
            self.assertIsInstance(r.json["detail"], str)

    def test_message_for_unknown_agent_is_404(self):
        r = self.c.post("/v1/agents/agent-00000000-0000-4000-8000-000000000000/messages", {"input": "x"})
        self.assertEqual(r.status, 404)

    def test_list_messages_newest_first_with_pagination_and_type_filter(self):
        self.c.post(self.base, {"input": "one"})
        self.c.post(self.base, {"input": "two"})
        msgs = self.c.get(self.base).json
        self.assertEqual(len(msgs), 6)
        self.assertEqual(msgs[0]["message_type"], "assistant_message")
        self.assertTrue(msgs[0]["content"].endswith("two"))
        self.assertEqual(msgs[-1]["content"], "one")
        asc = self.c.get(self.base, query={"order": "asc", "limit": 2}).json
        self.assertEqual([m["message_type"] for m in asc], ["user_message", "reasoning_message"])
        nxt = self.c.get(self.base, query={"order": "asc", "limit": 2, "after": asc[-1]["id"]}).json
        self.assertEqual(nxt[0]["message_type"], "assistant_message")
        only = self.c.get(self.base, query={"include_return_message_types": ["user_message"]}).json
        self.assertEqual([m["content"] for m in only], ["two", "one"])

    def test_user_message_echoes_sender_id_and_otid(self):
        self.c.post(self.base, {"messages": [{"role": "user", "content": "x", "sender_id": "agent-x", "otid": "o1"}]})
        user = self.c.get(self.base, query={"include_return_message_types": ["user_message"]}).json[0]
        self.assertEqual((user["sender_id"], user["otid"]), ("agent-x", "o1"))

    def test_modify_message_is_405_message_editing_removed(self):
        r = self.c.patch(self.base + "/message-00000000-0000-4000-8000-000000000000",
                         {"message_type": "user_message", "content": "x"})
        self.assertEqual(r.status, 405)
        self.assertTrue(r.json["detail"].startswith("Message editing is no longer supported."))

    # --- streaming ----------------------------------------------------------------------
    def test_streaming_true_sends_sse_events_in_order(self):
        st, hdrs, events = self.c.stream(self.base, {"input": "hi", "streaming": True})
        self.assertEqual(st, 200)
        self.assertEqual(hdrs["content-type"], "text/event-stream; charset=utf-8")
        data = [e[1] for e in events]
        self.assertEqual(data[-1], "[DONE]")
        types = [json.loads(d)["message_type"] for d in data[:-1]]
        self.assertEqual(types, ["ping", "reasoning_message", "assistant_message", "stop_reason", "usage_statistics"])
        self.assertTrue(all(e[0] is None for e in events))
        self.assertIn("you said: hi", json.loads(data[2])["content"])

    def test_include_pings_false_sends_no_ping(self):
        _, _, events = self.c.stream(self.base, {"input": "hi", "streaming": True, "include_pings": False})
        self.assertNotIn("ping", [json.loads(e[1])["message_type"] for e in events[:-1]])

    def test_stream_tokens_sends_deltas_sharing_one_id(self):
        _, _, events = self.c.stream(self.base, {"input": "hello there", "streaming": True,
                                                 "stream_tokens": True, "include_pings": False})
        chunks = [json.loads(e[1]) for e in events[:-1]]
        assistant = [c for c in chunks if c["message_type"] == "assistant_message"]
        self.assertGreater(len(assistant), 3)
        self.assertEqual(len({c["id"] for c in assistant}), 1)
        self.assertEqual("".join(c["content"] for c in assistant),
                         "[blocks: human,persona] [sender: none] you said: hello there")

    def test_legacy_client_streaming_true_is_422_but_stream_route_works(self):
        r = self.c.post(self.base, {"input": "hi", "streaming": True}, headers=LEGACY_HEADERS)
        self.assertEqual(r.status, 422)
        self.assertEqual(r.json["detail"], "streaming=true is only supported for SDK v1.0+ clients.")
        st, _, events = self.c.stream(self.base + "/stream", {"input": "hi"}, headers=LEGACY_HEADERS)
        self.assertEqual(st, 200)
        self.assertEqual(events[-1][1], "[DONE]")
        st, _, _ = self.c.stream(self.base, {"input": "hi", "streaming": True}, headers=SDK_HEADERS)
        self.assertEqual(st, 200)

    def test_stream_return_types_filter(self):
        _, _, events = self.c.stream(self.base + "/stream", {"input": "x", "include_pings": False,
                                                             "include_return_message_types": ["assistant_message"]})
        self.assertEqual([json.loads(e[1])["message_type"] for e in events[:-1]],
                         ["assistant_message", "stop_reason", "usage_statistics"])

    # --- async runs ---------------------------------------------------------------------
    def test_async_run_goes_created_running_completed(self):
        run = self.c.post(self.base + "/async", {"input": "later"}).json
        self.assertEqual((run["status"], run["background"]), ("created", True))
        self.assertTrue(run["id"].startswith("run-"))
        seen = {run["status"]}
        deadline = time.time() + 10
        while time.time() < deadline:
            status = self.c.get("/v1/runs/" + run["id"]).json["status"]
            seen.add(status)
            if status == "completed":
                break
            time.sleep(0.02)
        self.assertEqual(seen, {"created", "running", "completed"})
        done = self.c.get("/v1/runs/" + run["id"]).json
        self.assertEqual(done["stop_reason"], "end_turn")
        self.assertIsNotNone(done["completed_at"])
        msgs = self.c.get("/v1/runs/%s/messages" % run["id"]).json
        self.assertEqual([m["message_type"] for m in msgs], ["user_message", "reasoning_message", "assistant_message"])
        self.assertTrue(msgs[-1]["content"].endswith("you said: later"))

    def test_async_run_fail_fault_ends_failed(self):
        self.set_faults("kind=run-fail,times=1")
        run = self.c.post(self.base + "/async", {"input": "x"}).json
        done = wait_run(self.c, run["id"])
        self.assertEqual((done["status"], done["stop_reason"]), ("failed", "error"))
        self.assertIn("error", done["metadata"])

    def test_cancel_active_run_and_409_when_none(self):
        run = self.c.post(self.base + "/async", {"input": "x"}).json
        r = self.c.post(self.base + "/cancel", {"run_ids": [run["id"]]})
        self.assertEqual(r.json, {run["id"]: "cancelled"})
        time.sleep(0.6)                  # past the run delay: it must not complete anyway
        self.assertEqual(self.c.get("/v1/runs/" + run["id"]).json["status"], "cancelled")
        self.assertEqual(self.c.post(self.base + "/cancel", {}).status, 409)

    def test_runs_list_filters_and_order(self):
        self.c.post(self.base, {"input": "sync"})
        other = make_agent(self.c)
        self.c.post("/v1/agents/%s/messages" % other["id"], {"input": "x"})
        run = self.c.post(self.base + "/async", {"input": "a"}).json
        runs = self.c.get("/v1/runs/").json
        self.assertEqual(len(runs), 3)
        self.assertEqual(runs[0]["id"], run["id"])
        mine = self.c.get("/v1/runs/", query={"agent_id": self.agent["id"]}).json
        self.assertEqual(len(mine), 2)
        active = self.c.get("/v1/runs/", query={"active": "true"}).json
        self.assertEqual([r["id"] for r in active], [run["id"]])
        bg = self.c.get("/v1/runs/", query={"background": "true"}).json
        self.assertEqual([r["id"] for r in bg], [run["id"]])
        wait_run(self.c, run["id"])
        done = self.c.get("/v1/runs/", query={"statuses": ["completed"]}).json
        self.assertEqual(len(done), 3)

    def test_unknown_run_is_404(self):
        self.assertEqual(self.c.get("/v1/runs/run-nope").status, 404)
        self.assertEqual(self.c.get("/v1/runs/run-nope/messages").status, 404)

    def test_run_usage_steps_and_stream_replay(self):
        run = self.c.post(self.base + "/async", {"input": "replay me"}).json
        st, _, events = self.c.stream("/v1/runs/%s/stream" % run["id"], {"include_pings": False})
        self.assertEqual(st, 200)
        types = [json.loads(e[1])["message_type"] for e in events[:-1]]
        self.assertEqual(types, ["reasoning_message", "assistant_message", "stop_reason", "usage_statistics"])
        usage = self.c.get("/v1/runs/%s/usage" % run["id"]).json
        self.assertGreater(usage["total_tokens"], 0)
        steps = self.c.get("/v1/runs/%s/steps" % run["id"]).json
        self.assertEqual(steps[0]["run_id"], run["id"])
        sync = self.c.post(self.base, {"input": "x"}).json
        sync_run = sync["messages"][0]["run_id"]
        self.assertEqual(self.c.stream("/v1/runs/%s/stream" % sync_run, {})[0], 400)


if __name__ == "__main__":
    unittest.main()

"""Runs: async messages, cancel, list, retrieve, messages, usage, steps, stream, delete, callbacks.
Each test names the server source it checks (Letta 0.16.8)."""

import http.server
import json
import re
import threading
import time
import unittest

from emu_helpers import EmulatorTestCase, make_agent

MISSING_RUN = "run-00000000-0000-4000-8000-000000000000"
NAIVE_TS = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$"


def wait_run(c, run_id, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = c.get("/v1/runs/" + run_id).json
        if run["status"] in ("completed", "failed", "cancelled"):
            return run
        time.sleep(0.02)
    raise AssertionError("run %s did not finish" % run_id)


class RunsTest(EmulatorTestCase):
    emulator_args = ("--run-delay-ms", "300")

    def setUp(self):
        super().setUp()
        self.agent = make_agent(self.c, memory_blocks=[{"label": "human", "value": "h"}])
        self.base = "/v1/agents/%s/messages" % self.agent["id"]

    def async_run(self, text="later", **extra):
        r = self.c.post(self.base + "/async", dict(extra, input=text))
        self.assertEqual(r.status, 200, r)
        return r.json

    def sync_run_id(self, text="x", **extra):
        r = self.c.post(self.base, dict(extra, input=text))
        self.assertEqual(r.status, 200, r)
        return r.json["messages"][0]["run_id"]

    # --- async runs ----------------------------------------------------------------------------
    def test_active_runs_lists_unfinished_runs_newest_first(self):
        """routers/v1/runs.py:list_active_runs: run_manager.list_runs with statuses created/running,
        the agent_id filter and limit 100, newest first; finished runs are gone from it."""
        first, second = self.async_run("one"), self.async_run("two")
        self.sync_run_id()                                  # finished at once: never active
        active = self.c.get("/v1/runs/active").json
        self.assertEqual([r["id"] for r in active], [second["id"], first["id"]])
        other = make_agent(self.c)
        self.assertEqual(self.c.get("/v1/runs/active", query={"agent_id": other["id"]}).json, [])
        self.assertEqual(len(self.c.get("/v1/runs/active", query={"agent_id": self.agent["id"]}).json), 2)
        wait_run(self.c, first["id"])
        wait_run(self.c, second["id"])
        self.assertEqual(self.c.get("/v1/runs/active").json, [])

    def test_async_run_goes_from_created_to_completed_without_running(self):
        """routers/v1/agents.py:send_message_async creates the run (created) and
        _process_message_background only ever sets the terminal status."""
        run = self.async_run()
        self.assertEqual((run["status"], run["background"], run["metadata"]),
                         ("created", True, {"run_type": "send_message_async", "lettuce": None}))
        seen = {run["status"]}
        deadline = time.time() + 10
        while time.time() < deadline:
            cur = self.c.get("/v1/runs/" + run["id"]).json
            seen.add(cur["status"])
            if cur["status"] == "completed":
                break
            time.sleep(0.02)
        self.assertEqual(seen, {"created", "completed"})
        self.assertEqual(cur["stop_reason"], "end_turn")
        self.assertRegex(cur["completed_at"], NAIVE_TS)       # orm/run.py: a naive DateTime column
        self.assertIsNone(cur["total_duration_ns"])           # only list_runs fills it (run_metrics)
        msgs = self.c.get("/v1/runs/%s/messages" % run["id"]).json
        self.assertEqual([m["message_type"] for m in msgs], ["user_message", "reasoning_message", "assistant_message"])
        self.assertTrue(msgs[-1]["content"].endswith("you said: later"))

    def test_run_fail_fault_fails_the_run_with_a_string_error_and_stores_nothing(self):
        """agents.py:_process_message_background: an exception -> failed, stop_reason error,
        metadata.error = str(e); the step is failed (step_manager.update_step_error_async) and no
        message is stored (letta_agent_v3.py:_step persists only after the LLM call)."""
        self.set_faults("kind=run-fail,times=1")
        done = wait_run(self.c, self.async_run("x")["id"])
        self.assertEqual((done["status"], done["stop_reason"]), ("failed", "error"))
        self.assertIsInstance(done["metadata"]["error"], str)
        self.assertEqual(done["metadata"]["run_type"], "send_message_async")
        self.assertEqual(len(self.c.get(self.base).json), 1)
        steps = self.c.get("/v1/runs/%s/steps" % done["id"]).json
        self.assertEqual((steps[0]["status"], steps[0]["stop_reason"], steps[0]["error_type"]),
                         ("failed", "llm_api_error", "LLMError"))
        self.assertEqual(self.c.get("/v1/runs/%s/usage" % done["id"]).json["total_tokens"], 0)

    def test_bad_input_fails_the_async_run_not_the_request(self):
        """send_message_async does not look at the messages; the background step raises."""
        run = self.async_run("")
        done = wait_run(self.c, run["id"])
        self.assertEqual((done["status"], done["stop_reason"], done["metadata"]["error"]),
                         ("failed", "error", "Message content is empty or invalid"))

    def test_sync_run_is_completed_and_the_agent_records_only_the_stop_reason(self):
        """agents.py:send_message updates the run with the result's stop reason;
        run_manager.update_run_by_id_async sets last_stop_reason; settings.track_last_agent_run is
        off, so last_run_completion stays null."""
        run = self.c.get("/v1/runs/" + self.sync_run_id(callback_url="http://127.0.0.1:9/x")).json
        self.assertEqual((run["status"], run["stop_reason"], run["background"], run["metadata"]),
                         ("completed", "end_turn", False, {"run_type": "send_message"}))
        self.assertIsNone(run["callback_url"])          # only LettaAsyncRequest has callback_url
        self.assertEqual(run["request_config"]["include_return_message_types"], None)
        agent = self.c.get("/v1/agents/" + self.agent["id"]).json
        self.assertEqual((agent["last_stop_reason"], agent["last_run_completion"], agent["last_run_duration_ms"]),
                         ("end_turn", None, None))

    # --- cancel --------------------------------------------------------------------------------
    def test_cancel_with_run_ids_answers_a_map_per_id(self):
        """agents.py:cancel_message: "failed" for an id cancel_run cannot read, "cancelled"
        otherwise, also for a run that already stopped (run_manager.cancel_run returns early)."""
        active = self.async_run("x")
        finished = self.sync_run_id()
        r = self.c.post(self.base + "/cancel", {"run_ids": [active["id"], finished, "run-bad", MISSING_RUN]})
        self.assertEqual((r.status, r.json), (200, {active["id"]: "cancelled", finished: "cancelled",
                                                    "run-bad": "failed", MISSING_RUN: "failed"}))
        time.sleep(0.5)                  # past the run delay: it must not complete anyway
        run = self.c.get("/v1/runs/" + active["id"]).json
        self.assertEqual((run["status"], run["stop_reason"]), ("cancelled", "cancelled"))
        self.assertRegex(run["completed_at"], NAIVE_TS)
        self.assertEqual(self.c.get("/v1/runs/" + finished).json["status"], "completed")
        self.assertEqual(self.c.get("/v1/agents/" + self.agent["id"]).json["last_stop_reason"], "cancelled")
        self.assertEqual(len(self.c.get(self.base).json), 4)      # system + the sync turn (3 listed) only

    def test_cancel_without_run_ids_cancels_active_runs_else_409(self):
        """Without Redis the active runs come from list_runs(created, running); none ->
        NoActiveRunsToCancelError (409, "CONFLICT: ..."), also for an unknown agent."""
        run = self.async_run("x")
        r = self.c.post(self.base + "/cancel")
        self.assertEqual(r.json, {run["id"]: "cancelled"})
        r = self.c.post(self.base + "/cancel", {"run_ids": []})
        self.assertEqual((r.status, r.json["detail"]),
                         (409, "CONFLICT: No active runs to cancel for agent %s" % self.agent["id"]))
        missing = "agent-00000000-0000-4000-8000-000000000000"
        self.assertEqual(self.c.post("/v1/agents/%s/messages/cancel" % missing, {}).status, 409)

    # --- list ----------------------------------------------------------------------------------
    def test_list_filters(self):
        """routers/v1/runs.py:list_runs: agent_id replaces agent_ids; active only when statuses is
        not given; an unknown status is a ValueError (400)."""
        self.sync_run_id()
        other = make_agent(self.c)
        self.c.post("/v1/agents/%s/messages" % other["id"], {"input": "x"})
        run = self.async_run("a")
        q = lambda **kw: [r["id"] for r in self.c.get("/v1/runs/", query=kw).json]   # noqa: E731
        self.assertEqual(len(q()), 3)
        self.assertEqual(q()[0], run["id"])
        self.assertEqual(len(q(agent_id=self.agent["id"])), 2)
        self.assertEqual(len(q(agent_id=self.agent["id"], agent_ids=[other["id"]])), 2)
        self.assertEqual(len(q(agent_ids=[other["id"]])), 1)
        self.assertEqual(q(active="true"), [run["id"]])
        self.assertEqual(len(q(active="true", statuses=["completed"])), 2)
        self.assertEqual(q(background="true"), [run["id"]])
        self.assertEqual(len(q(stop_reason="end_turn")), 2)
        r = self.c.get("/v1/runs/", query={"statuses": ["bogus"]})
        self.assertEqual((r.status, r.json["detail"]), (400, "'bogus' is not a valid RunStatus"))
        wait_run(self.c, run["id"])
        self.assertEqual(len(q(statuses=["completed"])), 3)

    def test_list_order_cursors_and_durations(self):
        """run_manager_helper.py:_apply_pagination_async: `after` is newer than the cursor when the
        order is desc and older when asc; an unknown cursor is ignored. ascending=true wins over
        order. list_runs fills total_duration_ns from run_metrics.run_ns."""
        ids = [self.sync_run_id(str(i)) for i in range(3)]         # oldest first
        q = lambda **kw: [r["id"] for r in self.c.get("/v1/runs/", query=kw).json]   # noqa: E731
        self.assertEqual(q(), ids[::-1])
        self.assertEqual(q(order="asc"), ids)
        self.assertEqual(q(ascending="true", order="desc"), ids)
        self.assertEqual(q(after=ids[1]), [ids[2]])
        self.assertEqual(q(after=ids[1], order="asc"), [ids[0]])
        self.assertEqual(q(before=ids[1]), [ids[0]])
        self.assertEqual(q(before=ids[1], order="asc"), [ids[2]])
        self.assertEqual(q(after=MISSING_RUN), ids[::-1])
        self.assertEqual(q(limit=1), [ids[2]])
        self.assertEqual(self.c.get("/v1/runs/", query={"limit": 0}).status, 422)
        listed = self.c.get("/v1/runs/").json[0]
        self.assertIsInstance(listed["total_duration_ns"], int)
        self.assertIsNone(self.c.get("/v1/runs/" + ids[2]).json["total_duration_ns"])

    # --- one run -------------------------------------------------------------------------------
    def test_retrieve_malformed_id_is_400_unknown_is_404(self):
        """run_manager.py:get_run_by_id: @raise_on_invalid_id, then RunModel.read_async."""
        r = self.c.get("/v1/runs/run-nope")
        self.assertEqual((r.status, r.json["detail"]),
                         (400, "INVALID_ARGUMENT: Invalid run ID format: run-nope. Expected format: 'run-<uuid4>'"))
        r = self.c.get("/v1/runs/" + MISSING_RUN)
        self.assertEqual(r.status, 404)
        self.assertTrue(r.json["detail"].startswith("Run not found with id='['%s']'" % MISSING_RUN))
        for sub in ("messages", "usage", "steps"):
            self.assertEqual(self.c.get("/v1/runs/%s/%s" % (MISSING_RUN, sub)).status, 404, sub)

    def test_run_messages_order_cursor_and_the_runs_own_type_filter(self):
        """run_manager.py:get_run_messages: asc by default, desc lists every part newest first (no
        reversal back), filtered by the run's request_config.include_return_message_types."""
        rid = self.sync_run_id("x")
        msgs = self.c.get("/v1/runs/%s/messages" % rid).json
        self.assertEqual([m["message_type"] for m in msgs], ["user_message", "reasoning_message", "assistant_message"])
        desc = self.c.get("/v1/runs/%s/messages" % rid, query={"order": "desc"}).json
        self.assertEqual(desc, msgs[::-1])
        after = self.c.get("/v1/runs/%s/messages" % rid, query={"after": msgs[0]["id"]}).json
        self.assertEqual(after, msgs[1:])
        r = self.c.get("/v1/runs/%s/messages" % rid, query={"after": "message-00000000-0000-4000-8000-000000000000"})
        self.assertEqual((r.status, r.json["detail"]), (404, "No message found with id "
                         "'message-00000000-0000-4000-8000-000000000000' for agent 'None'."))
        filtered = self.sync_run_id("y", include_return_message_types=["assistant_message"])
        got = self.c.get("/v1/runs/%s/messages" % filtered).json
        self.assertEqual([m["message_type"] for m in got], ["assistant_message"])

    def test_usage_and_steps(self):
        """run_manager.py:get_run_usage sums the steps (answered as UsageStatistics);
        get_run_steps lists them newest first; an unknown cursor is 404 (sqlalchemy_base.list_async)."""
        rid = self.sync_run_id("x")
        usage = self.c.get("/v1/runs/%s/usage" % rid).json
        self.assertEqual(set(usage), {"completion_tokens", "prompt_tokens", "total_tokens",
                                      "prompt_tokens_details", "completion_tokens_details"})
        self.assertEqual(usage["total_tokens"], usage["completion_tokens"] + usage["prompt_tokens"])
        steps = self.c.get("/v1/runs/%s/steps" % rid).json
        self.assertEqual(len(steps), 1)
        step = steps[0]
        self.assertEqual((step["run_id"], step["status"], step["stop_reason"], step["total_tokens"]),
                         (rid, "success", "end_turn", usage["total_tokens"]))
        self.assertEqual(step["id"], self.c.get("/v1/runs/%s/messages" % rid).json[0]["step_id"])
        self.assertEqual(self.c.get("/v1/runs/%s/steps" % rid, query={"after": step["id"]}).json, [])
        r = self.c.get("/v1/runs/%s/steps" % rid, query={"after": "step-nope"})
        self.assertEqual((r.status, r.json["detail"]), (404, "No Step found with id step-nope"))

    def test_stream_of_a_run_is_400_for_foreground_and_503_without_redis(self):
        """routers/v1/runs.py:retrieve_stream_for_run: not background -> LettaInvalidArgumentError
        (400), then no Redis -> 503."""
        r = self.c.post("/v1/runs/%s/stream" % self.sync_run_id(), {})
        self.assertEqual((r.status, r.json["detail"]), (400, "INVALID_ARGUMENT: Run was not created in background "
                                                             "mode, so it cannot be retrieved."))
        r = self.c.post("/v1/runs/%s/stream" % self.async_run()["id"], {})
        self.assertEqual(r.status, 503)
        self.assertTrue(r.json["detail"].startswith("Background streaming requires Redis to be running."))

    def test_delete_is_500_and_keeps_the_run(self):
        """routers/v1/runs.py:delete_run calls RunManager.delete_run_by_id, which does not exist."""
        rid = self.sync_run_id()
        r = self.c.delete("/v1/runs/" + rid)
        self.assertEqual((r.status, r.json), (500, {"detail": "An unknown error occurred"}))
        self.assertEqual(self.c.get("/v1/runs/" + rid).status, 200)

    def test_callback_posts_run_id_status_completed_at_and_the_result(self):
        """run_manager.py:update_run_by_id_async -> _dispatch_callback_async: {run_id, status,
        completed_at, metadata} with metadata.result (messages, stop_reason, usage)."""
        got = []

        class Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                got.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        srv = http.server.HTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            url = "http://127.0.0.1:%d/hook" % srv.server_address[1]
            run = self.async_run("call me", callback_url=url)
            self.assertEqual(run["callback_url"], url)
            wait_run(self.c, run["id"])
            deadline = time.time() + 5
            while time.time() < deadline and self.c.get("/v1/runs/" + run["id"]).json["callback_sent_at"] is None:
                time.sleep(0.02)
        finally:
            srv.shutdown()
            srv.server_close()
        self.assertEqual(len(got), 1)
        payload = got[0]
        self.assertEqual(set(payload), {"run_id", "status", "completed_at", "metadata"})
        self.assertEqual((payload["run_id"], payload["status"]), (run["id"], "completed"))
        self.assertTrue(re.match(NAIVE_TS, payload["completed_at"]))
        result = payload["metadata"]["result"]
        self.assertEqual(payload["metadata"]["run_type"], "send_message_async")
        self.assertEqual([m["message_type"] for m in result["messages"]],
                         ["user_message", "reasoning_message", "assistant_message"])
        self.assertEqual(result["stop_reason"], {"message_type": "stop_reason", "stop_reason": "end_turn"})
        self.assertEqual(result["usage"]["message_type"], "usage_statistics")
        done = self.c.get("/v1/runs/" + run["id"]).json
        self.assertEqual((done["callback_status_code"], done["callback_error"]), (204, None))
        self.assertNotIn("result", done["metadata"])


if __name__ == "__main__":
    unittest.main()

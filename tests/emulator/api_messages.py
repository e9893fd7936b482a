"""Messages, streams and runs (ENDPOINTS.md §3, §4)."""

import json
import threading
import time
import urllib.parse
import urllib.request

from emu_core import (ApiError, Stream, TERMINAL_RUN_STATES, _deltas, content_text, is_1x_client,
                       iso, msg_date, new_id, paginate, sse, words)


class MessagesApi:
    # =========================================================================================
    # §3 messages
    # =========================================================================================
    def list_messages(self, req):
        p = req.params
        with self.s.lock:
            a = self._agent(req.path_params["agent_id"])
            msgs = [m for m in self.s.messages.values() if m["_agent_id"] == a["id"]]
            if p.get("include_return_message_types"):
                msgs = [m for m in msgs if m["message_type"] in p["include_return_message_types"]]
            if p.get("group_id"):
                msgs = [m for m in msgs if m.get("_group_id") == p["group_id"]]
            page = paginate(msgs, self._key, **self._list_args(req, "desc"))
            return 200, [self._public(m) for m in page]

    def _turn_input(self, body):
        """The user messages of a request, as (role, content, sender_id, otid, name) tuples."""
        msgs = []
        for m in body.get("messages") or []:
            if m.get("role") in ("user", "system", "assistant") and "content" in m:
                msgs.append((m["role"], m["content"], m.get("sender_id"), m.get("otid"), m.get("name")))
            else:
                # ApprovalCreate / ToolReturnCreate: this agent never asks for tool approval
                raise ApiError(400, "Cannot process approval or tool return: no approval request is "
                                    "pending for this agent")
        if body.get("input") is not None and not msgs:
            msgs.append(("user", body["input"], None, None, None))
        return msgs

    def _check_send_body(self, req, body, streaming_route=False):
        if not body.get("messages") and not body.get("input"):
            raise ApiError(422, repr([{"type": "value_error", "loc": ("body",),
                                       "msg": "Value error, Messages must not be empty",
                                       "input": body}]))
        if streaming_route:
            return
        if not body.get("streaming"):
            for field, bad in (("stream_tokens", True), ("include_pings", False), ("background", True)):
                if body.get(field, not bad) == bad:
                    raise ApiError(422, "%s=%s is only allowed when streaming=true"
                                   % (field, "true" if bad else "false"))
        elif not is_1x_client(req.headers):
            raise ApiError(422, "streaming=true is only supported for SDK v1.0+ clients.")

    def _new_run(self, agent_id, body, background, status):
        rid = new_id("run")
        ts = self.s.stamp(rid)
        run = {
            "id": rid, "status": status, "created_at": iso(ts), "completed_at": None,
            "agent_id": agent_id, "conversation_id": None, "base_template_id": None,
            "background": background, "metadata": {}, "request_config": {
                "use_assistant_message": body.get("use_assistant_message", True),
                "assistant_message_tool_name": body.get("assistant_message_tool_name", "send_message"),
                "assistant_message_tool_kwarg": body.get("assistant_message_tool_kwarg", "message"),
                "include_return_message_types": body.get("include_return_message_types")},
            "stop_reason": None, "callback_url": body.get("callback_url"), "callback_sent_at": None,
            "callback_status_code": None, "callback_error": None, "ttft_ns": None,
            "total_duration_ns": None, "_t0": ts, "_body": body,
            "_usage": {"completion_tokens": 0, "prompt_tokens": 0, "total_tokens": 0},
        }
        self.s.runs[rid] = run
        return run

    def _message(self, agent_id, mtype, run_id, step_id, **fields):
        mid = new_id("message")
        ts = self.s.stamp(mid)
        m = {"id": mid, "date": msg_date(ts), "name": None, "message_type": mtype, "otid": None,
             "sender_id": None, "step_id": step_id, "is_err": None, "seq_id": None, "run_id": run_id}
        m.update(fields)
        m["_agent_id"] = agent_id
        self.s.messages[mid] = m
        a = self.s.agents.get(agent_id)
        if a is not None:
            a["message_ids"].append(mid)
        return m

    def _run_turn(self, agent, run, turn_input, fail=False):
        """Process one request: store the user messages and (unless `fail`) the deterministic
        reply. The reply shows the labels of the blocks attached right now and the sender_id.
        Returns (new agent messages, usage dict). Caller holds the lock."""
        step_id = new_id("step")
        last_text, sender = "", None
        for role, content, sender_id, otid, name in turn_input:
            if role == "user":
                self._message(agent["id"], "user_message", run["id"], step_id, content=content,
                              sender_id=sender_id, otid=otid, name=name)
            else:
                self._message(agent["id"], "%s_message" % role, run["id"], step_id,
                              content=content_text(content), sender_id=sender_id, otid=otid, name=name)
            last_text, sender = content_text(content), sender_id
        labels = [self.s.blocks[b]["label"] or "" for b in agent["block_ids"] if b in self.s.blocks]
        reply = "[blocks: %s] [sender: %s] you said: %s" % (",".join(labels), sender or "none", last_text)
        prompt_tokens = len(words(agent["system"])) + len(words(self._core_memory_text(agent))) + \
            sum(len(words(content_text(c))) for _, c, _, _, _ in turn_input)
        out = []
        if not fail:
            out.append(self._message(agent["id"], "reasoning_message", run["id"], step_id,
                                     source="non_reasoner_model", signature=None,
                                     reasoning="The user wrote %d words; I answer deterministically."
                                     % len(words(last_text))))
            out.append(self._message(agent["id"], "assistant_message", run["id"], step_id, content=reply))
        completion = len(words(reply)) if not fail else 0
        usage = {"completion_tokens": completion, "prompt_tokens": prompt_tokens,
                 "total_tokens": completion + prompt_tokens}
        now = time.time()
        run.update(status="failed" if fail else "completed", completed_at=iso(now),
                   stop_reason="error" if fail else "end_turn",
                   total_duration_ns=int((now - run["_t0"]) * 1e9), ttft_ns=int(1e6), _usage=usage,
                   _step_id=step_id)
        if fail:
            run["metadata"] = dict(run["metadata"] or {}, error={
                "type": "llm_error", "message": "Emulated failure (fault run-fail or stream-error)"})
        agent.update(last_run_completion=iso(now), last_stop_reason=run["stop_reason"],
                     last_run_duration_ms=int((now - run["_t0"]) * 1000), updated_at=iso(now))
        self.s.changed()
        return out, usage

    @staticmethod
    def _usage_stats(usage, run_ids=None):
        return {"message_type": "usage_statistics", "completion_tokens": usage["completion_tokens"],
                "prompt_tokens": usage["prompt_tokens"], "total_tokens": usage["total_tokens"],
                "step_count": 1, "run_ids": run_ids, "cached_input_tokens": None,
                "cache_write_tokens": None, "reasoning_tokens": None, "context_tokens": None}

    @staticmethod
    def _filter_types(msgs, types):
        return [m for m in msgs if not types or m["message_type"] in types]

    def send_message(self, req):
        body = req.json or {}
        self._check_send_body(req, body)
        if body.get("streaming"):
            return self._stream(req, body)
        turn = self._turn_input(body)
        with self.s.lock:
            agent = self._agent(req.path_params["agent_id"])
            run = self._new_run(agent["id"], body, False, "running")
            out, usage = self._run_turn(agent, run, turn)
            msgs = self._filter_types([self._public(m) for m in out], body.get("include_return_message_types"))
            return 200, {"messages": msgs,
                         "stop_reason": {"message_type": "stop_reason", "stop_reason": "end_turn"},
                         "usage": self._usage_stats(usage), "logprobs": None, "turns": None}

    def send_message_stream(self, req):
        body = req.json or {}
        self._check_send_body(req, body, streaming_route=True)
        return self._stream(req, body)

    def _stream(self, req, body):
        """SSE answer (ENDPOINTS.md §3.4). The turn is processed before the first event is sent;
        the events then replay it (as token deltas when stream_tokens is true)."""
        turn = self._turn_input(body)
        with self.s.lock:
            agent = self._agent(req.path_params["agent_id"])
            fault = self.faults.pick(req.method, req.path, kinds={"stream-error"})
            run = self._new_run(agent["id"], body, bool(body.get("background")), "running")
            out, usage = self._run_turn(agent, run, turn, fail=fault is not None)
            if fault is not None:
                # the agent got as far as thinking before the provider failed
                out = [self._message(agent["id"], "reasoning_message", run["id"], run["_step_id"],
                                     source="non_reasoner_model", signature=None,
                                     reasoning="Thinking about the answer...")]
            out = [self._public(m) for m in out]
            run_id = run["id"]
        types = body.get("include_return_message_types")
        tokens = bool(body.get("stream_tokens"))
        pings = body.get("include_pings", True)

        def events():
            seq = 0
            if pings:
                yield sse({"id": new_id("ping"), "date": msg_date(time.time()), "message_type": "ping",
                           "run_id": run_id, "seq_id": seq})
            for m in self._filter_types(out, types):
                for chunk in (_deltas(m) if tokens else [m]):
                    seq += 1
                    yield sse(dict(chunk, seq_id=seq))
            if fault is not None:
                yield sse({"message_type": "stop_reason", "stop_reason": "llm_api_error"})
                yield sse({"message_type": "error_message", "run_id": run_id, "error_type": "llm_error",
                           "message": "An error occurred with the LLM request (emulated stream-error).",
                           "detail": "fault injected by the Letta emulator", "seq_id": seq + 1},
                          event="error")
                yield sse("[DONE]")
                return
            yield sse({"message_type": "stop_reason", "stop_reason": "end_turn"})
            yield sse(self._usage_stats(usage, [run_id]))
            yield sse("[DONE]")

        return Stream(events())

    def send_message_async(self, req):
        body = req.json or {}
        self._check_send_body(req, body, streaming_route=True)
        self._turn_input(body)          # refuse approvals now, not when the run executes
        with self.s.lock:
            agent = self._agent(req.path_params["agent_id"])
            run = self._new_run(agent["id"], body, True, "created")
            run["metadata"] = {"run_type": "send_message_async"}
            run["_fail"] = self.faults.pick(req.method, req.path, kinds={"run-fail"}) is not None
            self.s.changed()
            rid, public = run["id"], self._public(run)
        delay = max(0, self.opt.run_delay_ms) / 1000.0
        self._schedule(rid, delay / 2, self._start_run)
        self._schedule(rid + ":done", delay, self._finish_run)
        return 200, public

    def _schedule(self, key, delay, fn):
        rid = key.split(":")[0]
        t = threading.Timer(delay, self._timer_fired, args=(key, fn, rid))
        t.daemon = True
        with self.s.lock:
            self.s.timers[key] = t
        t.start()

    def _timer_fired(self, key, fn, rid):
        with self.s.lock:
            if self.s.timers.pop(key, None) is None:
                return              # cancelled or reset meanwhile
        fn(rid)

    def _start_run(self, rid):
        with self.s.lock:
            run = self.s.runs.get(rid)
            if run and run["status"] == "created":
                run["status"] = "running"
                self.s.changed()

    def _finish_run(self, rid):
        with self.s.lock:
            run = self.s.runs.get(rid)
            if not run or run["status"] in TERMINAL_RUN_STATES:
                return
            agent = self.s.agents.get(run["agent_id"])
            if agent is None:
                run.update(status="failed", stop_reason="error", completed_at=iso(time.time()))
                self.s.changed()
                return
            self._run_turn(agent, run, self._turn_input(run["_body"]), fail=run.get("_fail", False))
            callback, public = run.get("callback_url"), self._public(run)
        if callback:
            self._callback(rid, callback, public)

    def _callback(self, rid, url, payload):
        """POST the finished run to callback_url; loopback URLs only (the emulator never calls out)."""
        host = urllib.parse.urlsplit(url).hostname or ""
        status, error = None, None
        if host not in ("127.0.0.1", "localhost", "::1"):
            error = "callback not sent: the emulator only calls loopback URLs"
        else:
            try:
                rq = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                            headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(rq, timeout=5) as r:
                    status = r.status
            except Exception as e:           # noqa: BLE001 - any failure is reported on the run
                error = str(e)
        with self.s.lock:
            run = self.s.runs.get(rid)
            if run:
                run.update(callback_sent_at=iso(time.time()), callback_status_code=status,
                           callback_error=error)
                self.s.changed()

    def cancel_runs(self, req):
        body = req.json or {}
        with self.s.lock:
            agent = self._agent(req.path_params["agent_id"])
            active = [r for r in self.s.runs.values() if r["agent_id"] == agent["id"]
                      and r["status"] not in TERMINAL_RUN_STATES]
            if body.get("run_ids"):
                active = [r for r in active if r["id"] in body["run_ids"]]
            if not active:
                raise ApiError(409, "No active runs found for agent %s" % agent["id"])
            result = {}
            for r in active:
                for key in (r["id"], r["id"] + ":done"):
                    t = self.s.timers.pop(key, None)
                    if t:
                        t.cancel()
                r.update(status="cancelled", stop_reason="cancelled", completed_at=iso(time.time()))
                result[r["id"]] = "cancelled"
            self.s.changed()
            return 200, result

    def modify_message(self, req):
        raise ApiError(405, "Message editing is no longer supported. Messages are immutable as they "
                            "may be shared across multiple conversations via forking.")

    # =========================================================================================
    # §4 runs
    # =========================================================================================
    def list_runs(self, req):
        p = req.params
        with self.s.lock:
            runs = list(self.s.runs.values())
            agent_ids = ([p["agent_id"]] if p.get("agent_id") else []) + list(p.get("agent_ids") or [])
            if agent_ids:
                runs = [r for r in runs if r["agent_id"] in agent_ids]
            if p.get("statuses"):
                runs = [r for r in runs if r["status"] in p["statuses"]]
            if p.get("background") is not None:
                runs = [r for r in runs if bool(r["background"]) == p["background"]]
            if p.get("stop_reason"):
                runs = [r for r in runs if r["stop_reason"] == p["stop_reason"]]
            if p.get("conversation_id"):
                runs = [r for r in runs if r["conversation_id"] == p["conversation_id"]]
            if p.get("active"):
                runs = [r for r in runs if r["status"] not in TERMINAL_RUN_STATES]
            page = paginate(runs, self._key, **self._list_args(req, "desc"))
            return 200, [self._public(r) for r in page]

    def get_run(self, req):
        with self.s.lock:
            return 200, self._public(self._run(req.path_params["run_id"]))

    def run_messages(self, req):
        with self.s.lock:
            run = self._run(req.path_params["run_id"])
            msgs = [m for m in self.s.messages.values() if m.get("run_id") == run["id"]]
            page = paginate(msgs, self._key, **self._list_args(req, "asc"))
            return 200, [self._public(m) for m in page]

    def run_usage(self, req):
        with self.s.lock:
            u = self._run(req.path_params["run_id"])["_usage"]
            return 200, dict(u, prompt_tokens_details=None, completion_tokens_details=None)

    def run_steps(self, req):
        with self.s.lock:
            run = self._run(req.path_params["run_id"])
            if not run.get("_step_id"):
                return 200, []
            u, agent = run["_usage"], self.s.agents.get(run["agent_id"]) or {}
            step = {"id": run["_step_id"], "origin": None, "provider_id": None, "run_id": run["id"],
                    "agent_id": run["agent_id"], "provider_name": "letta", "provider_category": "base",
                    "model": (agent.get("model") or "letta/emulator-echo").split("/", 1)[-1],
                    "model_handle": agent.get("model"), "model_endpoint": "http://127.0.0.1/emulator",
                    "context_window_limit": 32000, "completion_tokens": u["completion_tokens"],
                    "prompt_tokens": u["prompt_tokens"], "total_tokens": u["total_tokens"],
                    "cached_input_tokens": None, "cache_write_tokens": None, "reasoning_tokens": None,
                    "completion_tokens_details": None, "prompt_tokens_details": None,
                    "stop_reason": run["stop_reason"], "tags": [], "tid": None, "trace_id": None,
                    "request_id": None, "messages": [], "feedback": None, "project_id": None,
                    "error_type": None, "error_data": None,
                    "status": "failed" if run["status"] == "failed" else "success"}
            return 200, [step]

    def run_stream(self, req):
        """Replays a background run's events (the real server needs Redis for this)."""
        body = req.json or {}
        rid = req.path_params["run_id"]
        with self.s.lock:
            run = self._run(rid)
            if not run["background"]:
                raise ApiError(400, "Run was not created in background mode, so it cannot be retrieved.")
        after = body.get("starting_after", 0) or 0
        pings = body.get("include_pings", True)

        def events():
            deadline = time.time() + 120
            while time.time() < deadline:
                with self.s.lock:
                    status = self.s.runs.get(rid, {}).get("status")
                if status is None or status in TERMINAL_RUN_STATES:
                    break
                if pings:
                    yield sse({"id": new_id("ping"), "date": msg_date(time.time()), "message_type": "ping",
                               "run_id": rid, "seq_id": after})
                time.sleep(0.05)
            with self.s.lock:
                run = self.s.runs.get(rid) or {}
                msgs = sorted((m for m in self.s.messages.values() if m.get("run_id") == rid
                               and m["message_type"] != "user_message"), key=self._key)
                out = [dict(self._public(m), seq_id=i + 1) for i, m in enumerate(msgs)]
                usage, stop = run.get("_usage"), run.get("stop_reason") or "end_turn"
            for m in out:
                if m["seq_id"] > after:
                    yield sse(m)
            yield sse({"message_type": "stop_reason", "stop_reason": stop})
            if usage:
                yield sse(self._usage_stats(usage, [rid]))
            yield sse("[DONE]")

        return Stream(events())

    def delete_run(self, req):
        raise ApiError(501, "not implemented yet")

"""Messages, streams and runs (ENDPOINTS.md §3, §4), as Letta 0.16.8 serves them to a
letta_v1_agent on a server without Redis. /tmp/fidelity/messages.md and runs.md (FIDELITY.md)
cite the server source for each behaviour.

A stored message is one row of the server's `messages` table: a user, system or assistant
message. An assistant row holds the emulated reasoning and the reply, and is listed as a
reasoning_message and an assistant_message that share the row's id (Message.to_letta_messages)."""

import datetime as dt
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from emu_core import (UNKNOWN_ERROR, ApiError, Stream, TERMINAL_RUN_STATES, _deltas, _zone, content_text,
                       is_1_0_sdk_version, iso, msg_date, new_id, sse, words)

# routers/v1/runs.py:retrieve_stream_for_run and services/streaming_service.py:create_agent_stream
# (settings.redis_host is None, redis_port 6379 when no Redis is configured)
NO_REDIS = ("Background streaming requires Redis to be running. Please ensure Redis is properly configured. "
            "LETTA_REDIS_HOST: None, LETTA_REDIS_PORT: 6379")
APPROVAL_NOT_PENDING = ("Cannot process approval response: No tool call is currently awaiting approval. "
                        "Please send a regular message to interact with the agent.")
RUN_ID_RX = re.compile(r"^run-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ACTIVE_RUN_STATES = ("created", "running")
# what the emulated provider failure says (faults stream-error and run-fail)
LLM_FAILURE = "Emulated LLM provider failure (fault %s)"


class TurnError(Exception):
    """A ValueError the agent loop raises before calling the LLM (bad input); the route decides
    how the client sees it (400, an error event, or a failed run)."""


def naive_iso(ts):
    """A run's completed_at / callback_sent_at: stored without a time zone (orm/run.py), so the
    API prints them without an offset."""
    return iso(ts)[:-1]


def otid_from_id(message_id, index):
    """schemas/message.py:Message.generate_otid_from_id: the row's uuid with its last 7 bits
    replaced by the index of the LettaMessage made from it."""
    n = (int(message_id[len("message-"):].replace("-", ""), 16) & ~0x7F) | (index & 0x7F)
    h = "%032x" % n
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def unpack_message(text):
    """system.py:unpack_message: a packed user message shows its inner text."""
    try:
        packed = json.loads(text)
    except (ValueError, TypeError):
        return text
    if not isinstance(packed, dict) or "message" not in packed or packed.get("type") != "user_message":
        return text
    return packed.get("message")


def text_parts(content):
    """MessageCreate content as the server stores it: a list of content parts."""
    if isinstance(content, str):
        return [{"type": "text", "text": content, "signature": None}]
    return [dict({"signature": None}, **p) if p.get("type") == "text" else dict(p) for p in content]


def local_time(ts, tz):
    """helpers/datetime_helpers.py:get_local_time / format_datetime."""
    d = dt.datetime.fromtimestamp(ts, _zone(tz) or _zone("UTC") or dt.timezone.utc)
    return d.strftime("%Y-%m-%d %I:%M:%S %p %Z%z").strip()


class MessagesApi:
    # =========================================================================================
    # lookups with the server's error answers
    # =========================================================================================
    def _agent_exists(self, agent_id):
        """helpers/agent_manager_helper.py:validate_agent_exists_async raises LettaAgentNotFoundError,
        which app.py answers with a fixed 404 detail."""
        a = self.s.agents.get(agent_id)
        if a is None:
            raise ApiError(404, "Agent not found")
        return a

    def _run_by_id(self, run_id):
        """services/run_manager.py:get_run_by_id: @raise_on_invalid_id (400), then
        RunModel.read_async (orm/sqlalchemy_base.py, NoResultFound -> 404)."""
        if not RUN_ID_RX.match(run_id):
            raise ApiError(400, "INVALID_ARGUMENT: Invalid run ID format: %s. Expected format: 'run-<uuid4>'" % run_id)
        run = self.s.runs.get(run_id)
        if run is None:
            raise ApiError(404, self._read_not_found("Run", run_id))
        return run

    # =========================================================================================
    # message rows and how they are listed
    # =========================================================================================
    def _row(self, agent, role, content, run_id=None, step_id=None, **fields):
        """Store one message row; it joins the agent's in-context message_ids."""
        mid = new_id("message")
        ts = self.s.stamp(mid)
        row = {"id": mid, "date": msg_date(ts), "name": None, "message_type": "%s_message" % role,
               "otid": None, "sender_id": None, "step_id": step_id, "is_err": None, "seq_id": None,
               "run_id": run_id, "content": content, "_agent_id": agent["id"], "_group_id": None}
        row.update(fields)
        self.s.messages[mid] = row
        agent["message_ids"].append(mid)
        return row

    def _letta_messages(self, row):
        """schemas/message.py:Message.to_letta_messages for one row (oldest part first)."""
        base = {k: row[k] for k in ("id", "date", "name", "message_type", "otid", "sender_id", "step_id",
                                    "is_err", "seq_id", "run_id")}
        if row["message_type"] == "user_message":
            parts = text_parts(row["content"])
            if len(parts) == 1 and parts[0].get("type") == "text":
                content = unpack_message(parts[0]["text"])
            else:
                content = parts
            return [dict(base, content=content)]
        if row["message_type"] == "system_message":
            return [dict(base, content=row["content"])]
        out = []
        if row.get("_reasoning"):
            # ReasoningContent: "native" reasoning, listed without the sender
            out.append(dict(base, message_type="reasoning_message", otid=otid_from_id(row["id"], 0),
                            sender_id=None, source="reasoner_model", reasoning=row["_reasoning"],
                            signature=None))
        out.append(dict(base, otid=otid_from_id(row["id"], len(out)), content=row["content"]))
        return out

    def _listed(self, rows, reverse, types):
        """Message.to_letta_messages_from_list: each row's parts reversed when `reverse`, then the
        include_return_message_types filter (after the page was fetched)."""
        out = []
        for row in rows:
            msgs = self._letta_messages(row)
            out.extend(msgs[::-1] if reverse else msgs)
        return [m for m in out if types is None or m["message_type"] in types]

    def _message_page(self, rows, p, ascending, agent_id):
        """services/message_manager.py:list_messages: cursors are any stored message (else 404),
        `after` keeps rows newer than it and `before` older ones, whatever the order; the order
        picks which `limit` rows are fetched."""
        for cursor in (p.get("after"), p.get("before")):
            if cursor and cursor not in self.s.messages:
                raise ApiError(404, "No message found with id '%s' for agent '%s'." % (cursor, agent_id))
        rows = sorted(rows, key=self._key)
        if p.get("after"):
            k = self._key(self.s.messages[p["after"]])
            rows = [r for r in rows if self._key(r) > k]
        if p.get("before"):
            k = self._key(self.s.messages[p["before"]])
            rows = [r for r in rows if self._key(r) < k]
        if not ascending:
            rows.reverse()
        limit = p.get("limit")
        if limit is not None:
            if limit < 0:
                # PostgreSQL refuses LIMIT -1; app.py:dbapi_error_handler
                raise ApiError(500, "A database error occurred.")
            rows = rows[:limit]
        return rows

    def _start_history(self, agent, sequence=None):
        """A new agent's history (agent_manager.py:_generate_initial_message_sequence_async,
        helpers/agent_manager_helper.py:initialize_message_sequence_async): the compiled system
        message, then `initial_message_sequence` if the request gave one (user messages are stored
        packed and listed unpacked; an assistant message is listed as its text). A letta_v1_agent
        (and the sleeptime types) get nothing else (create_agent_async sets the sequence to []);
        other agent types get the login event (their boot send_message call and return are not
        emulated). Called by create_agent with the lock held, after the blocks are attached; sets
        message_ids."""
        now = time.time()
        agent["message_ids"] = []
        self._row(agent, "system", self._compile_system(agent, self._memory_text(agent), now, 0, 0))
        tz = agent.get("timezone") or "UTC"
        if sequence is None and agent.get("agent_type") not in ("letta_v1_agent", "sleeptime_agent",
                                                                 "voice_sleeptime_agent"):
            login = {"type": "login", "last_login": "Never (first login)", "time": local_time(now, tz)}
            self._row(agent, "user", json.dumps(login, indent=2, ensure_ascii=False))
        for m in sequence or []:
            role, content = m.get("role"), m.get("content")
            if role == "user":
                packed = {"type": "user_message", "message": content, "time": local_time(now, tz)}
                self._row(agent, "user", json.dumps(packed, indent=2, ensure_ascii=False), name=m.get("name"))
            elif role == "system":
                packed = {"type": "system_alert", "message": content, "time": local_time(now, tz)}
                self._row(agent, "system", json.dumps(packed), name=m.get("name"))
            else:
                self._row(agent, "assistant", content_text(content), name=m.get("name"))

    def _rebuild_system_prompt(self, agent):
        """agent_manager.py:rebuild_system_prompt_async: when the compiled memory is no longer part of
        the system message, the message (same id) is recompiled with the recall and archival
        counts. Caller holds the lock."""
        row = self.s.messages.get(agent["message_ids"][0]) if agent.get("message_ids") else None
        if row is None:
            return
        memory = self._memory_text(agent)
        if memory in row["content"]:
            return
        recall = sum(1 for m in self.s.messages.values() if m["_agent_id"] == agent["id"]) - len(agent["message_ids"])
        archival = sum(1 for p in self.s.passages.values() if p.get("_agent_id") == agent["id"])
        row["content"] = self._compile_system(agent, memory, time.time(), recall, archival)
        self.s.changed()

    def _memory_text(self, agent):
        """schemas/memory.py:Memory.compile -> _render_memory_blocks_standard (no tool rules, no
        sources; the line-numbered form for Anthropic models is not emulated)."""
        blocks = [self.s.blocks[b] for b in agent["block_ids"] if b in self.s.blocks]
        if not blocks:
            return ""
        parts = []
        for b in blocks:
            label, value = b.get("label") or "block", b.get("value") or ""
            meta = ("\n- read_only=true" if b.get("read_only") else "") + \
                "\n- chars_current=%d\n- chars_limit=%d\n" % (len(value), b.get("limit") or 0)
            parts.append("<%s>\n<description>\n%s\n</description>\n<metadata>%s</metadata>\n"
                         "<value>\n%s\n</value>\n</%s>\n" % (label, b.get("description") or "", meta, value, label))
        return ("<memory_blocks>\nThe following memory blocks are currently engaged in your core memory unit:\n\n"
                + "\n".join(parts) + "\n</memory_blocks>")

    @staticmethod
    def _compile_system(agent, memory, now, recall, archival):
        """prompts/prompt_generator.py:get_system_message_from_compiled_memory with
        compile_memory_metadata_block: {CORE_MEMORY} (appended when missing) becomes the memory and
        the metadata block."""
        lines = ["<memory_metadata>", "- AGENT_ID: %s" % agent["id"], "- CONVERSATION_ID: default",
                 "- System prompt last recompiled: %s" % local_time(now, agent.get("timezone") or "UTC"),
                 "- %d previous messages between you and the user are stored in recall memory" % recall]
        if archival > 0:
            lines.append("- %d total memories you created are stored in archival memory (use tools to access them)"
                         % archival)
        lines.append("</memory_metadata>")
        system = agent.get("system") or ""
        if "{CORE_MEMORY}" not in system:
            system += "\n\n{CORE_MEMORY}"
        return system.replace("{CORE_MEMORY}", memory + "\n\n" + "\n".join(lines))

    # =========================================================================================
    # §3 messages
    # =========================================================================================
    def list_messages(self, req):
        """routers/v1/agents.py:list_messages -> server.py:get_agent_recall_async: rows by
        message_manager.list_messages, listed (Message.to_letta_messages_from_list) and, for
        order=desc, reversed back: the page is always oldest-first."""
        p = req.params
        with self.s.lock:
            a = self._agent_exists(req.path_params["agent_id"])
            rows = [m for m in self.s.messages.values() if m["_agent_id"] == a["id"]]
            if p.get("group_id"):
                rows = [m for m in rows if m.get("_group_id") == p["group_id"]]
            if p.get("conversation_id") is not None and p["conversation_id"] != "default":
                rows = []               # no conversations in the emulator: every message is "default"
            desc = (p.get("order") or "desc") == "desc"
            page = self._message_page(rows, p, not desc, a["id"])
            out = self._listed(page, desc, p.get("include_return_message_types"))
            return 200, out[::-1] if desc else out

    def modify_message(self, req):
        """routers/v1/agents.py:modify_message: the body (LettaMessageUpdateUnion, discriminated
        by message_type) is validated, then the route always answers 405."""
        errors = self._update_body_errors(req.body)
        if errors:
            return 422, {"trace_id": uuid.uuid4().hex, "detail": repr(errors)}
        raise ApiError(405, "Message editing is no longer supported. Messages are immutable as they "
                            "may be shared across multiple conversations via forking.")

    @staticmethod
    def _update_body_errors(raw):
        if not raw:
            return [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        try:
            body = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            return [{"type": "json_invalid", "loc": ("body", getattr(e, "pos", 0)), "msg": "JSON decode error",
                     "input": {}, "ctx": {"error": str(e)}}]
        if not isinstance(body, dict):
            return [{"type": "model_attributes_type", "loc": ("body",),
                     "msg": "Input should be a valid dictionary or object to extract fields from", "input": body}]
        required = {"system_message": "content", "user_message": "content",
                    "reasoning_message": "reasoning", "assistant_message": "content"}
        tag = body.get("message_type")
        if tag is None:
            return [{"type": "union_tag_not_found", "loc": ("body",),
                     "msg": "Unable to extract tag using discriminator 'message_type'", "input": body,
                     "ctx": {"discriminator": "'message_type'"}}]
        if tag not in required:
            tags = ", ".join("'%s'" % t for t in required)
            return [{"type": "union_tag_invalid", "loc": ("body",),
                     "msg": "Input tag %r found using 'message_type' does not match any of the expected tags: %s"
                            % (tag, tags), "input": body,
                     "ctx": {"discriminator": "'message_type'", "tag": tag, "expected_tags": tags}}]
        if required[tag] not in body:
            return [{"type": "missing", "loc": ("body", tag, required[tag]), "msg": "Field required", "input": body}]
        return None

    # --- request bodies (schemas/letta_request.py, schemas/message.py) ------------------------
    @staticmethod
    def _request_errors(body):
        """What pydantic says about a LettaRequest body that the emulator's schema check lets
        through: MessageCreate's role literal (each member of the MessageCreateUnion fails), and
        LettaRequest.validate_input_or_messages."""
        if not isinstance(body, dict):
            return None
        errors = []
        for i, item in enumerate(body.get("messages") or []):
            if not isinstance(item, dict):
                continue
            if "type" not in item:   # LettaRequest.add_default_type_to_messages
                item["type"] = "approval" if ("approval_request_id" in item or "approve" in item) else "message"
            if item["type"] not in ("message", None):
                continue
            own = []
            for field in ("role", "content"):
                if field not in item:
                    own.append({"type": "missing", "msg": "Field required", "input": item, "field": field})
            if "role" in item and item["role"] not in ("user", "system", "assistant"):
                expected = ("<MessageRole.user: 'user'>, <MessageRole.system: 'system'> or "
                            "<MessageRole.assistant: 'assistant'>")
                own.insert(0, {"type": "literal_error", "msg": "Input should be " + expected, "input": item["role"],
                               "ctx": {"expected": expected}, "field": "role"})
            if not own:
                continue

            def loc(model, field):
                return ("body", "messages", i, "function-after[generate_otid_if_missing(), %s]" % model, field)
            for e in own:
                field = e.pop("field")
                errors.append(dict({"type": e["type"], "loc": loc("MessageCreate", field)},
                                   **{k: v for k, v in e.items() if k != "type"}))
            for model, tag in (("ApprovalCreate", "approval"), ("ToolReturnCreate", "tool_return")):
                expected = "<MessageCreateType.%s: '%s'>" % (tag, tag)
                errors.append({"type": "literal_error", "loc": loc(model, "type"), "msg": "Input should be " + expected,
                               "input": item["type"], "ctx": {"expected": expected}})
            errors.append({"type": "missing", "loc": loc("ToolReturnCreate", "tool_returns"),
                           "msg": "Field required", "input": item})
        if errors:
            return errors
        for cond, text in ((body.get("input") is not None and body.get("messages") is not None,
                            "Cannot specify both 'input' and 'messages'. Use one or the other."),
                           (body.get("input") is None and body.get("messages") is None,
                            "Must specify either 'input' or 'messages'.")):
            if cond:
                return [{"type": "value_error", "loc": ("body",), "msg": "Value error, " + text, "input": body,
                         "ctx": {"error": ValueError(text)}}]
        return None

    def _request(self, req):
        """(body, input messages) or a 422 answer. `input` becomes one user MessageCreate; every
        MessageCreate gets an otid when it has none (MessageCreateBase.generate_otid_if_missing)."""
        body = req.json if isinstance(req.json, dict) else {}
        errors = self._request_errors(body)
        if errors:
            return None, (422, {"trace_id": uuid.uuid4().hex, "detail": repr(errors)})
        if body.get("input") is not None:
            items = [{"type": "message", "role": "user", "content": body["input"]}]
        else:
            items = body.get("messages") or []
        msgs = []
        for item in items:
            m = dict(item)
            if m.get("type") is None:
                m["type"] = "message"
            if m.get("otid") is None:
                m["otid"] = str(uuid.uuid4())
            msgs.append(m)
        return (body, msgs), None

    def _check_send_options(self, req, body, msgs):
        """routers/v1/agents.py:send_message, before anything is looked up."""
        if not msgs:
            raise ApiError(422, "Messages must not be empty")
        if not body.get("streaming"):
            errors = []
            if body.get("stream_tokens") is True:
                errors.append("stream_tokens can only be true when streaming=true")
            if body.get("include_pings") is False:
                errors.append("include_pings can only be set to false when streaming=true")
            if body.get("background") is True:
                errors.append("background can only be true when streaming=true")
            if errors:
                raise ApiError(422, "Streaming options set without streaming enabled. %s. Either set "
                                    "streaming=true or use default values for streaming options." % "; ".join(errors))
        elif not is_1_0_sdk_version(req.headers):
            raise ApiError(422, "streaming=true is only supported for SDK v1.0+ clients.")

    # --- runs ----------------------------------------------------------------------------------
    def _new_run(self, agent_id, body, background, run_type, extra_metadata=None):
        """services/run_manager.py:create_run (status created)."""
        rid = new_id("run")
        ts = self.s.stamp(rid)
        types = body.get("include_return_message_types")
        run = {
            "id": rid, "status": "created", "created_at": iso(ts), "completed_at": None,
            "agent_id": agent_id, "conversation_id": None, "base_template_id": None,
            "background": background, "metadata": dict({"run_type": run_type}, **(extra_metadata or {})),
            "request_config": {
                "use_assistant_message": body.get("use_assistant_message", True),
                "assistant_message_tool_name": body.get("assistant_message_tool_name", "send_message"),
                "assistant_message_tool_kwarg": body.get("assistant_message_tool_kwarg", "message"),
                "include_return_message_types": list(types) if types is not None else None},
            "stop_reason": None, "callback_url": None, "callback_sent_at": None,
            "callback_status_code": None, "callback_error": None, "ttft_ns": None,
            "total_duration_ns": None, "_t0": ts, "_body": body, "_steps": [], "_run_ns": None,
        }
        self.s.runs[rid] = run
        self.s.changed()
        return run

    def _update_run(self, run, status, stop_reason=None, metadata=None):
        """services/run_manager.py:update_run_by_id_async. A terminal update sets completed_at the
        first time, the run's duration (run_metrics.run_ns) and the agent's last_stop_reason (when a
        stop reason is given); metadata is merged. Returns the callback to send, if any."""
        now = time.time()
        terminal = status in TERMINAL_RUN_STATES
        first = run["completed_at"] is None
        run["status"] = status
        if terminal and first:
            run["completed_at"] = naive_iso(now)
        if stop_reason:
            run["stop_reason"] = stop_reason
        if metadata:
            run["metadata"] = dict(run["metadata"] or {}, **metadata)
        if terminal:
            run["_run_ns"] = int((now - run["_t0"]) * 1e9)
            agent = self.s.agents.get(run["agent_id"])
            if stop_reason and agent is not None:
                agent.update(last_stop_reason=stop_reason, updated_at=iso(now))
        self.s.changed()
        if terminal and first and run["callback_url"]:
            return self._callback_payload(run, status, now)
        return None

    def _callback_payload(self, run, status, now):
        """run_manager.py:update_run_by_id_async + _dispatch_callback_async: the metadata carries the
        run's result (messages as GET /v1/runs/{id}/messages lists them, stop reason, usage)."""
        rows = sorted((m for m in self.s.messages.values() if m.get("run_id") == run["id"]), key=self._key)[:100]
        result = {"messages": self._listed(rows, False, run["request_config"]["include_return_message_types"]),
                  "stop_reason": {"message_type": "stop_reason", "stop_reason": run["stop_reason"]},
                  "usage": self._usage_stats(self._run_usage(run), step_count=len(run.get("_steps") or [])),
                  "logprobs": None, "turns": None}
        return (run["id"], run["callback_url"], {
            "run_id": run["id"], "status": status, "completed_at": naive_iso(now),
            "metadata": dict(run["metadata"] or {}, result=result)})

    def _send_callback(self, job):
        """POST the callback; loopback URLs only (the emulator never calls out)."""
        if job is None:
            return
        rid, url, payload = job
        status, error = None, None
        sent_at = naive_iso(time.time())
        host = urllib.parse.urlsplit(url).hostname or ""
        if host not in ("127.0.0.1", "localhost", "::1"):
            error = ("Failed to dispatch callback for run %s to %s: the Letta emulator only calls loopback URLs"
                     % (rid, url))
        else:
            try:
                data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                rq = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(rq, timeout=5) as r:
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
            except Exception as e:           # noqa: BLE001 - any failure is reported on the run
                error = "Failed to dispatch callback for run %s to %s: %r" % (rid, url, e)
        with self.s.lock:
            run = self.s.runs.get(rid)
            if run:
                run.update(callback_sent_at=sent_at, callback_status_code=status, callback_error=error)
                self.s.changed()

    # --- one turn ------------------------------------------------------------------------------
    def _check_turn_input(self, msgs):
        """agents/helpers.py:_prepare_in_context_messages_no_persist_async and
        helpers/message_helper.py:_convert_message_create_to_message: ValueErrors before the LLM."""
        if not msgs:
            raise TurnError("list index out of range")      # input_messages[0] of an empty list
        if msgs[0]["type"] in ("approval", "tool_return"):
            raise TurnError(APPROVAL_NOT_PENDING)        # the emulated agent never asks for approval
        for m in msgs:
            if m["type"] != "message":
                raise TurnError("Expected MessageCreate, got %s"
                                % ("ApprovalCreate" if m["type"] == "approval" else "ToolReturnCreate"))
            c = m.get("content")
            if not ((isinstance(c, str) and c != "") or (isinstance(c, list) and len(c) > 0)):
                raise TurnError("Message content is empty or invalid")

    def _run_turn(self, agent, run, msgs, fail=None):
        """One agent step (agents/letta_agent_v3.py:_step), deterministic: the reply shows the
        labels of the blocks attached now and the sender_id of the last input message. On success
        the input rows and the assistant row are stored (_checkpoint_messages); on `fail` (a fault
        name) nothing is stored and the step is failed. Returns (letta messages of the reply,
        usage). Raises TurnError for bad input. Caller holds the lock."""
        self._check_turn_input(msgs)
        step_id = new_id("step")
        last_text, sender = content_text(msgs[-1]["content"]), msgs[-1].get("sender_id")
        labels = [self.s.blocks[b]["label"] or "" for b in agent["block_ids"] if b in self.s.blocks]
        reply = "[blocks: %s] [sender: %s] you said: %s" % (",".join(labels), sender or "none", last_text)
        reasoning = "The user wrote %d words; I answer deterministically." % len(words(last_text))
        prompt = len(words(agent.get("system"))) + len(words(self._core_memory_text(agent))) + \
            sum(len(words(content_text(m["content"]))) for m in msgs)
        if fail:
            self._add_step(agent, run, step_id, 0, 0, "failed", "llm_api_error", LLM_FAILURE % fail)
            # what the provider streamed before it failed (only seen with a stream)
            partial = {"id": new_id("message"), "date": msg_date(time.time()), "name": None,
                       "message_type": "reasoning_message", "otid": None, "sender_id": None,
                       "step_id": step_id, "is_err": None, "seq_id": None, "run_id": run["id"],
                       "source": "reasoner_model", "reasoning": "Thinking about the answer...", "signature": None}
            partial["otid"] = otid_from_id(partial["id"], 0)
            return [partial], None
        for m in msgs:
            content = m["content"]
            if m["role"] != "user" and not isinstance(content, str):
                # listed as one string: the text parts of an assistant message are joined
                # (Message._convert_reasoning_messages); a system message keeps its one text part
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            self._row(agent, m["role"], content, run["id"], step_id, name=m.get("name"), otid=m["otid"],
                      sender_id=m.get("sender_id"), _group_id=m.get("group_id"))
        row = self._row(agent, "assistant", reply, run["id"], step_id, _reasoning=reasoning)
        completion = len(words(reply)) + len(words(reasoning))
        self._add_step(agent, run, step_id, prompt, completion, "success", "end_turn")
        usage = {"completion_tokens": completion, "prompt_tokens": prompt, "total_tokens": completion + prompt}
        agent["updated_at"] = iso(time.time())
        return self._letta_messages(row), usage

    def _add_step(self, agent, run, step_id, prompt, completion, status, stop_reason, error=None):
        """services/step_manager.py:log_step_async, then update_step_error_async on a failure."""
        cfg = self._llm_config(agent)
        step = {"id": step_id, "origin": None, "provider_id": None,
                "run_id": run["id"], "agent_id": agent["id"], "provider_name": cfg.get("model_endpoint_type"),
                "provider_category": cfg.get("provider_category") or "base", "model": cfg.get("model"),
                "model_handle": cfg.get("handle"), "model_endpoint": cfg.get("model_endpoint"),
                "context_window_limit": cfg.get("context_window"), "completion_tokens": completion,
                "prompt_tokens": prompt, "total_tokens": prompt + completion, "cached_input_tokens": None,
                "cache_write_tokens": None, "reasoning_tokens": None, "completion_tokens_details": None,
                "prompt_tokens_details": None, "stop_reason": stop_reason, "tags": [], "tid": None,
                "trace_id": None, "request_id": None, "messages": [], "feedback": None,
                "project_id": agent.get("project_id"), "error_type": None, "error_data": None, "status": status}
        if error:
            step.update(error_type="LLMError", error_data={
                "message": error, "traceback": "Traceback (most recent call last):\nletta.errors.LLMError: " + error,
                "details": None})
        self.s.stamp(step_id)
        run.setdefault("_steps", []).append(step)

    @staticmethod
    def _run_usage(run):
        """run_manager.py:get_run_usage: the sum over the run's steps."""
        u = {"completion_tokens": 0, "prompt_tokens": 0, "total_tokens": 0}
        for s in run.get("_steps") or []:
            for k in u:
                u[k] += s[k] or 0
        return u

    @staticmethod
    def _usage_stats(usage, step_count=1, context=None):
        """schemas/usage.py:LettaUsageStatistics (run_ids is never set by the agent loop)."""
        return {"message_type": "usage_statistics", "completion_tokens": usage["completion_tokens"],
                "prompt_tokens": usage["prompt_tokens"], "total_tokens": usage["total_tokens"],
                "step_count": step_count, "run_ids": None, "cached_input_tokens": None,
                "cache_write_tokens": None, "reasoning_tokens": None, "context_tokens": context}

    @staticmethod
    def _filter_types(msgs, types):
        return [m for m in msgs if types is None or m["message_type"] in types]

    # --- POST /v1/agents/{id}/messages ---------------------------------------------------------
    def send_message(self, req):
        """routers/v1/agents.py:send_message."""
        parsed, bad = self._request(req)
        if bad:
            return bad
        body, msgs = parsed
        self._check_send_options(req, body, msgs)
        if body.get("streaming"):
            return self._stream(req, body, msgs, "send_message")
        with self.s.lock:
            agent = self._agent_by_id(req.path_params["agent_id"])
            run = self._new_run(agent["id"], body, False, "send_message")
            try:
                out, usage = self._run_turn(agent, run, msgs)
            except TurnError as e:
                self._update_run(run, "failed", metadata={"error": str(e)})
                raise ApiError(400, str(e))
            self._update_run(run, "completed", "end_turn")
            types = body.get("include_return_message_types")
            return 200, {"messages": self._filter_types(out, types),
                         "stop_reason": {"message_type": "stop_reason", "stop_reason": "end_turn"},
                         "usage": self._usage_stats(usage, context=usage["total_tokens"]),
                         "logprobs": None, "turns": None}

    def send_message_stream(self, req):
        """routers/v1/agents.py:send_message_streaming (no empty-messages or options check)."""
        parsed, bad = self._request(req)
        if bad:
            return bad
        body, msgs = parsed
        return self._stream(req, body, msgs, "send_message_streaming")

    def _stream(self, req, body, msgs, run_type):
        """services/streaming_service.py:create_agent_stream and _create_error_aware_stream, with
        agents/letta_agent_v3.py:stream. Events: a ping carrying the run id (include_pings), the
        reply (token deltas with stream_tokens), stop_reason, usage_statistics, [DONE]. seq_id is
        null throughout (only the Redis background stream numbers chunks)."""
        with self.s.lock:
            agent = self._agent_by_id(req.path_params["agent_id"])
            background = bool(body.get("background"))
            run = self._new_run(agent["id"], body, background, run_type)
            if background:
                err = "INTERNAL_SERVER_ERROR: " + NO_REDIS
                self._update_run(run, "failed", metadata={"error": err})
                raise ApiError(503, err)
            self._update_run(run, "running")
            fault = self.faults.pick(req.method, req.path, kinds={"stream-error"})
            run_id, agent_id = run["id"], agent["id"]
        types = body.get("include_return_message_types")
        tokens = bool(body.get("stream_tokens"))
        pings = body.get("include_pings", True)

        def events():
            if pings:
                # streaming_service.py:prepend_initial_run_ping
                yield sse({"id": "ping-%s" % uuid.uuid4(), "date": msg_date(time.time()), "name": None,
                           "message_type": "ping", "otid": None, "sender_id": None, "step_id": None,
                           "is_err": None, "seq_id": None, "run_id": run_id})
            with self.s.lock:
                texts = self._stream_turn(run_id, agent_id, msgs, fault, types, tokens)
            for text in texts:
                yield text

        return Stream(events())

    def _stream_turn(self, run_id, agent_id, msgs, fault, types, tokens):
        """The SSE events of one streamed turn, after the ping. Caller holds the lock."""
        run, agent = self.s.runs[run_id], self.s.agents.get(agent_id)

        def error_event(error_type, message, detail):
            return sse({"message_type": "error_message", "run_id": run_id, "error_type": error_type,
                        "message": message, "detail": detail, "seq_id": None}, event="error")

        def stopped(reason):
            return sse({"message_type": "stop_reason", "stop_reason": reason})

        try:
            if agent is None:
                raise TurnError("Agent with ID %s not found" % agent_id)
            out, usage = self._run_turn(agent, run, msgs, fail="stream-error" if fault else None)
        except TurnError as e:
            # raised before the first chunk: the generic branch of _create_error_aware_stream
            err = {"message_type": "error_message", "run_id": run_id, "error_type": "internal_error",
                   "message": "An unknown error occurred with the LLM streaming request.", "detail": str(e),
                   "seq_id": None}
            self._update_run(run, "failed", "error", {"error": err})
            return [stopped("error"), sse(err, event="error"), sse("[DONE]")]
        chunks = [sse(c) for m in self._filter_types(out, types) for c in (_deltas(m) if tokens else [m])]
        if fault and chunks:
            # letta_agent_v3.py:stream, an error after the first chunk: stop_reason and the error
            # event, no [DONE]; _create_error_aware_stream takes the error event as the terminal
            # event, so the run ends "completed" with the stop reason llm_api_error.
            self._update_run(run, "completed", "llm_api_error")
            return chunks + [stopped("llm_api_error"), error_event(
                "internal_error", "An error occurred during agent execution.", LLM_FAILURE % "stream-error")]
        if fault:
            # no chunk yet: the loop re-raises the LLMError, _create_error_aware_stream answers it
            err = {"message_type": "error_message", "run_id": run_id, "error_type": "llm_error",
                   "message": "An error occurred with the LLM request.", "detail": LLM_FAILURE % "stream-error",
                   "seq_id": None}
            self._update_run(run, "failed", "llm_api_error", {"error": err})
            return [stopped("llm_api_error"), sse(err, event="error"), sse("[DONE]")]
        self._update_run(run, "completed", "end_turn")
        return chunks + [stopped("end_turn"), sse(self._usage_stats(usage, context=usage["total_tokens"])),
                         sse("[DONE]")]

    # --- POST /v1/agents/{id}/messages/async ---------------------------------------------------
    def send_message_async(self, req):
        """routers/v1/agents.py:send_message_async: the run is created (status created, no agent
        lookup but create_run's) and returned; the turn runs later (after --run-delay-ms) and
        the run goes straight to completed or failed (_process_message_background)."""
        parsed, bad = self._request(req)
        if bad:
            return bad
        body, msgs = parsed
        with self.s.lock:
            agent = self._agent_exists(req.path_params["agent_id"])
            run = self._new_run(agent["id"], body, True, "send_message_async", {"lettuce": None})
            run["callback_url"] = body.get("callback_url")      # only LettaAsyncRequest has it
            run["_msgs"] = msgs
            run["_fail"] = self.faults.pick(req.method, req.path, kinds={"run-fail"}) is not None
            self.s.changed()
            rid, public = run["id"], self._public(run)
        self._schedule(rid, max(0, self.opt.run_delay_ms) / 1000.0, self._finish_run)
        return 200, public

    def _schedule(self, rid, delay, fn):
        t = threading.Timer(delay, self._timer_fired, args=(rid, fn))
        t.daemon = True
        with self.s.lock:
            self.s.timers[rid] = t
        t.start()

    def _timer_fired(self, rid, fn):
        with self.s.lock:
            if self.s.timers.pop(rid, None) is None:
                return              # cancelled or reset meanwhile
        fn(rid)

    def _finish_run(self, rid):
        """The background task of an async run (agents.py:_process_message_background)."""
        with self.s.lock:
            run = self.s.runs.get(rid)
            if not run or run["status"] in TERMINAL_RUN_STATES:
                return
            agent = self.s.agents.get(run["agent_id"])
            msgs = run.get("_msgs")
            if msgs is None:                          # a run stored by an older emulator
                msgs = [{"type": "message", "role": "user", "content": run["_body"].get("input") or "",
                         "otid": str(uuid.uuid4())}]
            try:
                if agent is None:
                    raise TurnError("Agent with ID %s not found" % run["agent_id"])
                self._run_turn(agent, run, msgs, fail="run-fail" if run.get("_fail") else None)
            except TurnError as e:
                job = self._update_run(run, "failed", "error", {"error": str(e)})
            else:
                if run.get("_fail"):
                    job = self._update_run(run, "failed", "error", {"error": LLM_FAILURE % "run-fail"})
                else:
                    job = self._update_run(run, "completed", "end_turn")
        self._send_callback(job)

    # --- POST /v1/agents/{id}/messages/cancel --------------------------------------------------
    def cancel_runs(self, req):
        """routers/v1/agents.py:cancel_message with run_manager.py:cancel_run. Without run_ids the
        agent's created/running runs are cancelled (no Redis: the database fallback); no agent
        check. Each id answers "cancelled" (also for a run that had already stopped: a no-op) or
        "failed" (unknown or malformed id, agent gone)."""
        body = req.json if isinstance(req.json, dict) else {}
        agent_id = req.path_params["agent_id"]
        jobs = []
        with self.s.lock:
            run_ids = body.get("run_ids")
            if not run_ids:
                active = [r for r in self.s.runs.values()
                          if r["agent_id"] == agent_id and r["status"] in ACTIVE_RUN_STATES]
                run_ids = [r["id"] for r in sorted(active, key=self._key, reverse=True)[:100]]
            if not run_ids:
                raise ApiError(409, "CONFLICT: No active runs to cancel for agent %s" % agent_id)
            results = {}
            for rid in run_ids:
                run = self.s.runs.get(rid) if RUN_ID_RX.match(rid) else None
                if run is not None and run["stop_reason"] and run["stop_reason"] != "requires_approval":
                    results[rid] = "cancelled"            # already stopped: cancel_run is a no-op
                elif run is None or run["agent_id"] not in self.s.agents:
                    results[rid] = "failed"
                else:
                    t = self.s.timers.pop(rid, None)
                    if t:
                        t.cancel()
                    jobs.append(self._update_run(run, "cancelled", "cancelled"))
                    results[rid] = "cancelled"
        for job in jobs:
            self._send_callback(job)
        return 200, results

    # =========================================================================================
    # §4 runs
    # =========================================================================================
    def _render_run(self, run, listed=False):
        out = self._public(run)
        if listed and run.get("_run_ns") is not None:
            out["total_duration_ns"] = run["_run_ns"]       # run_manager.py:list_runs (run_metrics.run_ns)
        return out

    def list_runs(self, req):
        """routers/v1/runs.py:list_runs -> run_manager.py:list_runs."""
        p = req.params
        statuses = p.get("statuses")
        if statuses is None and p.get("active"):
            statuses = list(ACTIVE_RUN_STATES)
        for s in statuses or []:
            if s not in ACTIVE_RUN_STATES + TERMINAL_RUN_STATES:
                raise ApiError(400, "%r is not a valid RunStatus" % s)   # convert_statuses_to_enum
        ascending = p.get("ascending") if p.get("ascending") else (p.get("order") or "desc") == "asc"
        agent_ids = [p["agent_id"]] if p.get("agent_id") else p.get("agent_ids")
        with self.s.lock:
            runs = list(self.s.runs.values())
            if agent_ids:
                runs = [r for r in runs if r["agent_id"] in agent_ids]
            if statuses:
                runs = [r for r in runs if r["status"] in statuses]
            if p.get("stop_reason"):
                runs = [r for r in runs if r["stop_reason"] == p["stop_reason"]]
            if p.get("background") is not None:
                runs = [r for r in runs if r["background"] == p["background"]]
            if p.get("conversation_id") is not None:
                runs = [r for r in runs if r["conversation_id"] == p["conversation_id"]]
            page = self._run_page(runs, p.get("after"), p.get("before"), ascending, p.get("limit"))
            return 200, [self._render_run(r, listed=True) for r in page]

    def _run_page(self, runs, after, before, ascending, limit):
        """services/helpers/run_manager_helper.py:_apply_pagination_async: an unknown cursor is
        ignored; `after` keeps runs newer than the cursor when the order is desc and older ones
        when it is asc (before: the other way)."""
        for cursor, newer in ((after, not ascending), (before, ascending)):
            ref = self.s.runs.get(cursor) if cursor else None
            if ref is not None:
                k = self._key(ref)
                runs = [r for r in runs if (self._key(r) > k if newer else self._key(r) < k)]
        runs = sorted(runs, key=self._key, reverse=not ascending)
        return runs[:min(limit if limit is not None else 100, 1000)]

    def get_run(self, req):
        """routers/v1/runs.py:retrieve_run."""
        with self.s.lock:
            return 200, self._render_run(self._run_by_id(req.path_params["run_id"]))

    def list_active_runs(self, req):
        """routers/v1/runs.py:list_active_runs (GET /v1/runs/active, registered before /{run_id}):
        created/running runs, newest first, at most 100."""
        q = req.query
        agent_id = (q.get("agent_id") or [None])[-1]
        background = (q.get("background") or [None])[-1]
        with self.s.lock:
            runs = [r for r in self.s.runs.values() if r["status"] in ACTIVE_RUN_STATES]
            if agent_id:
                runs = [r for r in runs if r["agent_id"] == agent_id]
            if background is not None:
                want = background.lower() in ("true", "1", "yes", "on", "t", "y")
                runs = [r for r in runs if r["background"] == want]
            page = self._run_page(runs, None, None, False, 100)
            return 200, [self._render_run(r, listed=True) for r in page]

    def delete_run(self, req):
        """routers/v1/runs.py:delete_run calls runs_manager.delete_run_by_id, which RunManager does
        not have (it has delete_run): the AttributeError becomes app.py's generic 500 and nothing
        is deleted."""
        raise ApiError(500, UNKNOWN_ERROR)

    def run_messages(self, req):
        """run_manager.py:get_run_messages: the run's rows, listed in the requested order (no
        reversal back, unlike the agent's list), filtered by the run's own
        include_return_message_types."""
        p = req.params
        with self.s.lock:
            run = self._run_by_id(req.path_params["run_id"])
            self._agent_by_id(run["agent_id"])
            rows = [m for m in self.s.messages.values() if m.get("run_id") == run["id"]]
            asc = (p.get("order") or "asc") == "asc"
            page = self._message_page(rows, p, asc, None)
            return 200, self._listed(page, not asc, run["request_config"]["include_return_message_types"])

    def run_usage(self, req):
        """run_manager.py:get_run_usage, answered as UsageStatistics (the route's response_model)."""
        with self.s.lock:
            u = self._run_usage(self._run_by_id(req.path_params["run_id"]))
            return 200, dict(u, prompt_tokens_details=None, completion_tokens_details=None)

    def run_steps(self, req):
        """run_manager.py:get_run_steps -> step_manager.py:list_steps_async (order desc by default;
        an unknown cursor is 404, orm/sqlalchemy_base.py:list_async)."""
        p = req.params
        with self.s.lock:
            run = self._run_by_id(req.path_params["run_id"])
            steps = list(run.get("_steps") or [])
            known = {s["id"] for r in self.s.runs.values() for s in r.get("_steps") or []}
            for cursor in (p.get("before"), p.get("after")):
                if cursor and cursor not in known:
                    raise ApiError(404, "No Step found with id %s" % cursor)
            desc = (p.get("order") or "desc") == "desc"
            for cursor, later in ((p.get("after"), not desc), (p.get("before"), desc)):
                if cursor:
                    k = self.s.keys[cursor]
                    steps = [s for s in steps if (self._key(s) > k if later else self._key(s) < k)]
            steps.sort(key=self._key, reverse=desc)
            limit = p.get("limit")
            return 200, steps[:limit] if limit is not None and limit >= 0 else steps

    def run_stream(self, req):
        """routers/v1/runs.py:retrieve_stream_for_run: without Redis there is nothing to replay."""
        with self.s.lock:
            run = self._run_by_id(req.path_params["run_id"])
            if not run["background"]:
                raise ApiError(400, "INVALID_ARGUMENT: Run was not created in background mode, so it cannot be "
                                    "retrieved.")
            if run["_t0"] < time.time() - 3 * 3600:
                raise ApiError(410, "EXPIRED: Run was created more than 3 hours ago, and is now expired.")
        raise ApiError(503, NO_REDIS)

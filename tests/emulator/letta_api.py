"""The emulated Letta REST API: in-memory state (optionally persisted to a JSON file) and one
handler per operation of shared/letta-api/ENDPOINTS.md §1-§9.

Handlers get a parsed Request (validated params and body) and return (status, json_value) or a
Stream; they raise ApiError for error answers. letta_emulator.py does HTTP, auth, faults and
schema checks around them.
"""

import datetime as dt
import json
import os
import re
import threading
import time
import urllib.parse
import urllib.request
import uuid

try:
    from zoneinfo import ZoneInfo
except ImportError:  # pragma: no cover - 3.8 and older
    ZoneInfo = None

SERVER_VERSION = "0.16.8"
DEFAULT_USER_ID = "user-00000000-0000-4000-8000-000000000000"
DEFAULT_ORG_ID = "org-00000000-0000-4000-8000-000000000000"
ARCHIVAL_TOKEN_LIMIT = 8192
ALL_RELATIONSHIPS = frozenset({"blocks", "tools", "sources", "tags", "identities"})
TERMINAL_RUN_STATES = ("completed", "failed", "cancelled")
UUID4_RX = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
USER_ID_RX = re.compile(r"^user-" + UUID4_RX + r"$")


class ApiError(Exception):
    def __init__(self, status, detail, headers=None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class Stream:
    """An SSE answer: `events` yields already formatted SSE text blocks ("data: ...\\n\\n")."""

    def __init__(self, events):
        self.events = events


def new_id(prefix):
    return "%s-%s" % (prefix, uuid.uuid4())


def iso(ts):
    """pydantic's default serialisation of an aware UTC datetime (microseconds, 'Z')."""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def msg_date(ts):
    """LettaMessage.date: seconds precision with an explicit offset."""
    return dt.datetime.fromtimestamp(int(ts), dt.timezone.utc).isoformat()


def parse_datetime(text, tz=None):
    """ISO 8601 (or date-only) -> epoch seconds. Naive values are read in `tz` (agent timezone)."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    d = dt.datetime.fromisoformat(text)
    if d.tzinfo is None:
        d = d.replace(tzinfo=_zone(tz) or dt.timezone.utc)
    return d.timestamp()


def _zone(name):
    if not name or ZoneInfo is None:
        return None
    try:
        return ZoneInfo(name)
    except Exception:
        return None


def words(text):
    return re.findall(r"[a-z0-9]+", (text or "").lower())


def content_text(content):
    """Text of a message content: a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("text"))
    return ""


def is_1x_client(headers):
    """letta/utils.py::is_1_0_sdk_version (ENDPOINTS.md §2)."""
    if "x-stainless-package-version" in headers:
        return True
    ua = headers.get("user-agent")
    if ua is None:
        return True
    if "/" not in ua:
        return False
    m = re.match(r"^(?:@letta-ai/)?letta-client/(\S+)$", ua.strip())
    return bool(m and m.group(1).startswith("1."))


def sse(obj, event=None):
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return ("event: %s\ndata: %s\n\n" % (event, data)) if event else ("data: %s\n\n" % data)


def paginate(items, key, after=None, before=None, limit=None, descending=False, key_of_cursor=None):
    """Cursor pagination over `items` sorted by `key`. after/before are IDs: `after` keeps the items
    that come after the cursor in the output order, `before` those before it (the nearest ones
    when limited, so paging backwards works). Unknown cursors are ignored."""
    items = sorted(items, key=key, reverse=descending)

    def cursor_key(cid):
        return key_of_cursor(cid) if key_of_cursor else None

    if after:
        k = cursor_key(after)
        if k is not None:
            items = [x for x in items if (key(x) < k if descending else key(x) > k)]
    if before:
        k = cursor_key(before)
        if k is not None:
            items = [x for x in items if (key(x) > k if descending else key(x) < k)]
            if limit is not None and limit >= 0 and not after:
                return items[-limit:] if limit else []
    if limit is not None and limit >= 0:
        items = items[:limit]
    return items


class Store:
    """All emulated server state. One re-entrant lock guards every mutation; it is never held
    while sleeping or writing to a socket."""

    def __init__(self, state_file=None):
        self.lock = threading.RLock()
        self.state_file = state_file
        self._dirty = threading.Event()
        self._flush_lock = threading.Lock()
        self._clock = 0.0
        self.reset()
        if state_file and os.path.exists(state_file):
            self._load()
        if state_file:
            threading.Thread(target=self._writer, name="state-writer", daemon=True).start()

    def reset(self):
        with self.lock:
            self.agents = {}
            self.blocks = {}
            self.identities = {}
            self.passages = {}
            self.messages = {}
            self.runs = {}
            # sort key of every object ever created, kept after deletion so that a deleted
            # object can still serve as a pagination cursor.
            self.keys = {}
            self.seq = 0
            self.timers = getattr(self, "timers", {})
            for t in self.timers.values():
                t.cancel()
            self.timers = {}
            self.changed()

    def stamp(self, obj_id, ts=None):
        """A creation time strictly after the previous one, and the object's sort key."""
        now = time.time()
        self._clock = max(now, self._clock + 1e-6)
        self.seq += 1
        ts = self._clock if ts is None else ts
        self.keys[obj_id] = (ts, self.seq)
        return ts

    # --- persistence -------------------------------------------------------------------------
    _TABLES = ("agents", "blocks", "identities", "passages", "messages", "runs")

    def changed(self):
        if self.state_file:
            self._dirty.set()

    def snapshot(self):
        with self.lock:
            data = {t: list(getattr(self, t).values()) for t in self._TABLES}
            data["keys"] = {k: list(v) for k, v in self.keys.items()}
            data["seq"] = self.seq
            return json.dumps(data, separators=(",", ":"))

    def flush(self):
        """Write the state file atomically (temporary file + rename)."""
        if not self.state_file:
            return
        with self._flush_lock:          # the writer thread and shutdown may both flush
            text = self.snapshot()
            tmp = "%s.tmp.%d" % (self.state_file, os.getpid())
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.state_file)

    def _writer(self):
        # Debounced: bursts of writes end up in one file write.
        while True:
            self._dirty.wait()
            time.sleep(0.05)
            self._dirty.clear()
            try:
                self.flush()
            except OSError as e:
                print("letta-emulator: cannot write state file: %s" % e, flush=True,
                      file=__import__("sys").stderr)

    def _load(self):
        with open(self.state_file, encoding="utf-8") as f:
            data = json.load(f)
        with self.lock:
            for t in self._TABLES:
                setattr(self, t, {o["id"]: o for o in data.get(t, [])})
            self.keys = {k: tuple(v) for k, v in data.get("keys", {}).items()}
            self.seq = data.get("seq", 0)
            self._clock = max([k[0] for k in self.keys.values()] + [0.0])
            # Runs that were in flight when the emulator stopped are finished now.
            for run in self.runs.values():
                if run["status"] not in TERMINAL_RUN_STATES:
                    run["_resume"] = True


class Api:
    """Route handlers. `routes` lists (METHOD, path template, handler) in matching order."""

    def __init__(self, store, rng, options, faults):
        self.s = store
        self.rng = rng
        self.opt = options          # has run_delay_ms, flaky_block_list
        self.faults = faults
        for run in list(self.s.runs.values()):
            if run.pop("_resume", False):
                self._finish_run(run["id"])

    def routes(self):
        return [
            ("GET", "/v1/health/", self.health),
            ("GET", "/v1/ready/", self.health),
            # agents
            ("GET", "/v1/agents/", self.list_agents),
            ("POST", "/v1/agents/", self.create_agent),
            ("GET", "/v1/agents/{agent_id}", self.get_agent),
            ("DELETE", "/v1/agents/{agent_id}", self.delete_agent),
            ("GET", "/v1/agents/{agent_id}/context", self.agent_context),
            # messages
            ("GET", "/v1/agents/{agent_id}/messages", self.list_messages),
            ("POST", "/v1/agents/{agent_id}/messages", self.send_message),
            ("POST", "/v1/agents/{agent_id}/messages/stream", self.send_message_stream),
            ("POST", "/v1/agents/{agent_id}/messages/async", self.send_message_async),
            ("POST", "/v1/agents/{agent_id}/messages/cancel", self.cancel_runs),
            ("PATCH", "/v1/agents/{agent_id}/messages/{message_id}", self.modify_message),
            # runs
            ("GET", "/v1/runs/", self.list_runs),
            ("GET", "/v1/runs/{run_id}", self.get_run),
            ("GET", "/v1/runs/{run_id}/messages", self.run_messages),
            ("POST", "/v1/runs/{run_id}/stream", self.run_stream),
            ("GET", "/v1/runs/{run_id}/usage", self.run_usage),
            ("GET", "/v1/runs/{run_id}/steps", self.run_steps),
            # blocks
            ("GET", "/v1/blocks/", self.list_blocks),
            ("POST", "/v1/blocks/", self.create_block),
            ("GET", "/v1/blocks/count", self.count_blocks),
            ("GET", "/v1/blocks/{block_id}", self.get_block),
            ("PATCH", "/v1/blocks/{block_id}", self.modify_block),
            ("DELETE", "/v1/blocks/{block_id}", self.delete_block),
            ("GET", "/v1/blocks/{block_id}/agents", self.block_agents),
            ("PATCH", "/v1/blocks/{block_id}/identities/attach/{identity_id}", self.block_identity_attach),
            ("PATCH", "/v1/blocks/{block_id}/identities/detach/{identity_id}", self.block_identity_detach),
            # core memory
            ("GET", "/v1/agents/{agent_id}/core-memory", self.core_memory),
            ("GET", "/v1/agents/{agent_id}/core-memory/blocks", self.core_blocks),
            ("PATCH", "/v1/agents/{agent_id}/core-memory/blocks/attach/{block_id}", self.attach_block),
            ("PATCH", "/v1/agents/{agent_id}/core-memory/blocks/detach/{block_id}", self.detach_block),
            ("GET", "/v1/agents/{agent_id}/core-memory/blocks/{block_label}", self.get_core_block),
            ("PATCH", "/v1/agents/{agent_id}/core-memory/blocks/{block_label}", self.modify_core_block),
            # identities
            ("GET", "/v1/identities/", self.list_identities),
            ("POST", "/v1/identities/", self.create_identity),
            ("PUT", "/v1/identities/", self.upsert_identity),
            ("GET", "/v1/identities/count", self.count_identities),
            ("GET", "/v1/identities/{identity_id}", self.get_identity),
            ("PATCH", "/v1/identities/{identity_id}", self.modify_identity),
            ("DELETE", "/v1/identities/{identity_id}", self.delete_identity),
            ("PUT", "/v1/identities/{identity_id}/properties", self.identity_properties),
            ("GET", "/v1/identities/{identity_id}/agents", self.identity_agents),
            ("GET", "/v1/identities/{identity_id}/blocks", self.identity_blocks),
            ("PATCH", "/v1/agents/{agent_id}/identities/attach/{identity_id}", self.agent_identity_attach),
            ("PATCH", "/v1/agents/{agent_id}/identities/detach/{identity_id}", self.agent_identity_detach),
            # archival memory
            ("GET", "/v1/agents/{agent_id}/archival-memory", self.list_passages),
            ("POST", "/v1/agents/{agent_id}/archival-memory", self.create_passage),
            ("GET", "/v1/agents/{agent_id}/archival-memory/search", self.search_passages),
            ("DELETE", "/v1/agents/{agent_id}/archival-memory/{memory_id}", self.delete_passage),
            ("POST", "/v1/passages/search", self.search_all_passages),
            ("POST", "/v1/archives/{archive_id}/passages", self.archive_insert),
            ("POST", "/v1/archives/{archive_id}/passages/batch", self.archive_insert_batch),
        ]

    # =========================================================================================
    # helpers
    # =========================================================================================
    def _agent(self, agent_id):
        a = self.s.agents.get(agent_id)
        if a is None:
            raise ApiError(404, "Agent not found with id=%s" % agent_id)
        return a

    def _block(self, block_id):
        b = self.s.blocks.get(block_id)
        if b is None:
            raise ApiError(404, "Block not found with id=%s" % block_id)
        return b

    def _identity(self, identity_id):
        i = self.s.identities.get(identity_id)
        if i is None:
            raise ApiError(404, "Identity not found")
        return i

    def _run(self, run_id):
        r = self.s.runs.get(run_id)
        if r is None:
            raise ApiError(404, "Run not found with id=%s" % run_id)
        return r

    def _key(self, obj):
        return self.s.keys.get(obj["id"], (0, 0))

    def _cursor(self, cid):
        return self.s.keys.get(cid)

    @staticmethod
    def _public(obj):
        """Drop the emulator's private fields (named with a leading underscore)."""
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def _render_block(self, b):
        out = self._public(b)
        if out.get("tags") is None:
            out["tags"] = []
        return out

    def _relationships(self, req):
        """Which AgentState relationships to load (ENDPOINTS.md §2, legacy/1.x detection)."""
        inc_rel = req.query.get("include_relationships")
        include = req.query.get("include") or []
        if inc_rel is None and not is_1x_client(req.headers):
            return ALL_RELATIONSHIPS
        names = set()
        for item in list(inc_rel or []) + list(include):
            item = item.replace("agent.", "")
            if item in ("memory", "blocks"):
                names.add("blocks")
            elif item in ("identities", "identity_ids"):
                names.add("identities")
            else:
                names.add(item)
        return names

    def _identities_of_agent(self, agent_id):
        return [i for i in self.s.identities.values() if agent_id in i["agent_ids"]]

    def _identities_of_block(self, block_id):
        return [i for i in self.s.identities.values() if block_id in i["block_ids"]]

    def _llm_config(self, a):
        return {"model": a["model"].split("/", 1)[-1], "display_name": None,
                "model_endpoint_type": "openai", "model_endpoint": "http://127.0.0.1/emulator",
                "provider_name": "letta", "provider_category": "base", "model_wrapper": None,
                "context_window": 32000, "put_inner_thoughts_in_kwargs": False, "handle": a["model"],
                "temperature": 0.7, "max_tokens": 4096, "enable_reasoner": False,
                "reasoning_effort": None, "max_reasoning_tokens": 0, "effort": None,
                "frequency_penalty": None, "compatibility_type": None, "verbosity": None,
                "tier": None, "parallel_tool_calls": False, "response_format": None, "strict": False,
                "return_logprobs": False, "top_logprobs": None, "return_token_ids": False,
                "tool_call_parser": None}

    def _embedding_config(self, a=None):
        handle = (a or {}).get("embedding") or "letta/emulator-embedding"
        return {"embedding_endpoint_type": "openai", "embedding_endpoint": "http://127.0.0.1/emulator",
                "embedding_model": handle.split("/", 1)[-1], "embedding_dim": 8,
                "embedding_chunk_size": 300, "handle": handle, "batch_size": 32,
                "azure_endpoint": None, "azure_version": None, "azure_deployment": None}

    def render_agent(self, a, rel):
        blocks = [self._render_block(self.s.blocks[b]) for b in a["block_ids"] if b in self.s.blocks] \
            if "blocks" in rel else []
        idents = self._identities_of_agent(a["id"]) if "identities" in rel else []
        return {
            "created_by_id": a["created_by_id"], "last_updated_by_id": a["created_by_id"],
            "created_at": a["created_at"], "updated_at": a["updated_at"],
            "id": a["id"], "name": a["name"], "tool_rules": [], "message_ids": list(a["message_ids"]),
            "system": a["system"], "agent_type": a["agent_type"], "llm_config": self._llm_config(a),
            "embedding_config": self._embedding_config(a), "model": a["model"],
            "embedding": a["embedding"], "model_settings": None, "compaction_settings": None,
            "response_format": None, "description": a["description"], "metadata": a["metadata"],
            "memory": {"agent_type": a["agent_type"], "git_enabled": False, "blocks": blocks,
                       "file_blocks": [], "prompt_template": ""},
            "blocks": blocks, "tools": [], "sources": [],
            "tags": list(a["tags"]) if "tags" in rel else [],
            "tool_exec_environment_variables": [], "secrets": [],
            "project_id": a["project_id"], "template_id": a["template_id"],
            "base_template_id": a["base_template_id"], "deployment_id": None, "entity_id": None,
            "identity_ids": [i["id"] for i in idents], "identities": [dict(i) for i in idents],
            "pending_approval": None, "message_buffer_autoclear": a["message_buffer_autoclear"],
            "enable_sleeptime": a["enable_sleeptime"], "multi_agent_group": None, "managed_group": None,
            "last_run_completion": a["last_run_completion"],
            "last_run_duration_ms": a["last_run_duration_ms"], "last_stop_reason": a["last_stop_reason"],
            "timezone": a["timezone"], "max_files_open": None, "per_file_view_window_char_limit": None,
            "hidden": a["hidden"],
        }

    def _list_args(self, req, default_order):
        p = req.params
        order = p.get("order") or default_order
        if "ascending" in req.query and p.get("ascending") is not None:  # deprecated flag, when sent
            order = "asc" if p["ascending"] else "desc"
        return dict(after=p.get("after"), before=p.get("before"), limit=p.get("limit"),
                    descending=(order == "desc"), key_of_cursor=self._cursor)

    def _actor(self, req):
        uid = req.headers.get("user_id")
        if uid is None:
            return DEFAULT_USER_ID
        if not USER_ID_RX.match(uid):
            raise ApiError(400, "Invalid user_id header: %r" % uid)
        return uid

    # =========================================================================================
    # §1 health
    # =========================================================================================
    def health(self, req):
        return 200, {"version": SERVER_VERSION, "status": "ok"}

    # =========================================================================================
    # §2 agents
    # =========================================================================================
    def _new_block(self, spec, actor):
        bid = new_id("block")
        self.s.stamp(bid)
        value = (spec.get("value") or "").replace("\x00", "")
        block = {
            "value": value, "limit": spec.get("limit", 100000), "project_id": spec.get("project_id"),
            "template_name": spec.get("template_name"), "is_template": bool(spec.get("is_template", False)),
            "template_id": spec.get("template_id"), "base_template_id": spec.get("base_template_id"),
            "deployment_id": spec.get("deployment_id"), "entity_id": spec.get("entity_id"),
            "preserve_on_migration": spec.get("preserve_on_migration", False),
            "label": spec.get("label"), "read_only": bool(spec.get("read_only", False)),
            "description": spec.get("description"),
            "metadata": spec.get("metadata") if spec.get("metadata") is not None else {},
            "hidden": spec.get("hidden"), "id": bid, "created_by_id": actor,
            "last_updated_by_id": actor, "tags": spec.get("tags"),
        }
        self.s.blocks[bid] = block
        return block

    def _check_label_free(self, agent, block):
        for other in agent["block_ids"]:
            ob = self.s.blocks.get(other)
            if ob and other != block["id"] and ob.get("label") == block.get("label"):
                raise ApiError(409, "A unique constraint was violated: block label '%s' is already "
                                    "attached to agent '%s' (unique_label_per_agent)"
                               % (block.get("label"), agent["id"]))

    def create_agent(self, req):
        body = req.json or {}
        actor = self._actor(req)
        with self.s.lock:
            missing = [b for b in body.get("block_ids") or [] if b not in self.s.blocks]
            if missing:
                raise ApiError(404, "Block not found with id=%s" % missing[0])
            missing = [i for i in body.get("identity_ids") or [] if i not in self.s.identities]
            if missing:
                raise ApiError(404, "Identity not found")
            aid = new_id("agent")
            ts = self.s.stamp(aid)
            agent = {
                "id": aid, "name": body.get("name") or "agent-%s" % aid[6:14],
                "system": body.get("system") or "You are a helpful assistant (Letta emulator).",
                "agent_type": body.get("agent_type") or "letta_v1_agent",
                "description": body.get("description"), "metadata": body.get("metadata"),
                "tags": list(body.get("tags") or []), "block_ids": [], "message_ids": [],
                "model": body.get("model") or "letta/emulator-echo",
                "embedding": body.get("embedding") or "letta/emulator-embedding",
                "project_id": body.get("project_id"), "template_id": body.get("template_id"),
                "base_template_id": body.get("base_template_id"),
                "timezone": body.get("timezone") or "UTC", "hidden": body.get("hidden"),
                "message_buffer_autoclear": bool(body.get("message_buffer_autoclear", False)),
                "enable_sleeptime": body.get("enable_sleeptime"),
                "created_by_id": actor, "created_at": iso(ts), "updated_at": iso(ts),
                "last_run_completion": None, "last_run_duration_ms": None, "last_stop_reason": None,
                "archive_id": new_id("archive"),
            }
            pending = [self._new_block(spec, actor) for spec in body.get("memory_blocks") or []]
            pending += [self.s.blocks[b] for b in body.get("block_ids") or []]
            for block in pending:
                self._check_label_free(agent, block)
                if block["id"] not in agent["block_ids"]:
                    agent["block_ids"].append(block["id"])
            self.s.agents[aid] = agent
            for iid in body.get("identity_ids") or []:
                if aid not in self.s.identities[iid]["agent_ids"]:
                    self.s.identities[iid]["agent_ids"].append(aid)
            self.s.changed()
            # the manager's create returns the fully loaded agent, whatever the client version
            return 200, self.render_agent(agent, ALL_RELATIONSHIPS)

    def list_agents(self, req):
        p = req.params
        with self.s.lock:
            agents = list(self.s.agents.values())
            if p.get("name"):
                agents = [a for a in agents if a["name"] == p["name"]]
            if p.get("query_text"):
                q = p["query_text"].lower()
                agents = [a for a in agents if q in a["name"].lower()]
            if p.get("tags"):
                want = set(p["tags"])
                test = want.issubset if p.get("match_all_tags") else (lambda t: bool(want & t))
                agents = [a for a in agents if test(set(a["tags"]))]
            for field in ("project_id", "template_id", "base_template_id", "last_stop_reason"):
                if p.get(field):
                    agents = [a for a in agents if a.get(field) == p[field]]
            if p.get("identity_id") or p.get("identifier_keys"):
                ids = set()
                for i in self.s.identities.values():
                    if i["id"] == p.get("identity_id") or i["identifier_key"] in (p.get("identifier_keys") or []):
                        ids.update(i["agent_ids"])
                agents = [a for a in agents if a["id"] in ids]
            order_by = p.get("order_by") or "created_at"
            if order_by == "created_at":
                key = self._key
            else:
                key = lambda a: (a.get(order_by) or "", self._key(a))  # noqa: E731
            page = paginate(agents, key, **self._list_args(req, "desc"))
            rel = self._relationships(req)
            return 200, [self.render_agent(a, rel) for a in page]

    def get_agent(self, req):
        with self.s.lock:
            return 200, self.render_agent(self._agent(req.path_params["agent_id"]), self._relationships(req))

    def delete_agent(self, req):
        aid = req.path_params["agent_id"]
        with self.s.lock:
            self._agent(aid)
            del self.s.agents[aid]
            for i in self.s.identities.values():
                if aid in i["agent_ids"]:
                    i["agent_ids"].remove(aid)
            for pid in [p for p, v in self.s.passages.items() if v["_agent_id"] == aid]:
                del self.s.passages[pid]
            for mid in [m for m, v in self.s.messages.items() if v["_agent_id"] == aid]:
                del self.s.messages[mid]
            self.s.changed()
        return 200, {"message": "Agent id=%s successfully deleted" % aid}

    def _core_memory_text(self, a):
        parts = []
        for bid in a["block_ids"]:
            b = self.s.blocks.get(bid)
            if b:
                parts.append("<%s>\n%s\n</%s>" % (b["label"], b["value"], b["label"]))
        return "\n".join(parts)

    def agent_context(self, req):
        with self.s.lock:
            a = self._agent(req.path_params["agent_id"])
            msgs = sorted((m for m in self.s.messages.values() if m["_agent_id"] == a["id"]), key=self._key)
            core = self._core_memory_text(a)
            n_sys, n_core = len(words(a["system"])), len(words(core))
            n_msgs = sum(len(words(content_text(m.get("content") or m.get("reasoning")))) for m in msgs)
            n_arch = sum(1 for p in self.s.passages.values() if p["_agent_id"] == a["id"])
            messages = [self._message_model(m) for m in msgs]
            return 200, {
                "context_window_size_max": 32000,
                "context_window_size_current": n_sys + n_core + n_msgs,
                "num_messages": len(msgs), "num_archival_memory": n_arch, "num_recall_memory": len(msgs),
                "num_tokens_external_memory_summary": 0, "external_memory_summary": "",
                "num_tokens_system": n_sys, "system_prompt": a["system"],
                "num_tokens_core_memory": n_core, "core_memory": core,
                "num_tokens_memory_filesystem": 0, "memory_filesystem": None,
                "num_tokens_tool_usage_rules": 0, "tool_usage_rules": None,
                "num_tokens_directories": 0, "directories": None,
                "num_tokens_summary_memory": 0, "summary_memory": None,
                "num_tokens_functions_definitions": 0, "functions_definitions": None,
                "num_tokens_messages": n_msgs, "messages": messages,
            }

    def _message_model(self, m):
        """The internal `Message` model (used by the context endpoint)."""
        role = {"user_message": "user", "assistant_message": "assistant",
                "reasoning_message": "assistant"}.get(m["message_type"], "system")
        text = content_text(m.get("content")) if "content" in m else m.get("reasoning", "")
        return {"id": m["id"], "role": role, "content": [{"type": "text", "text": text}],
                "agent_id": m["_agent_id"], "created_at": iso(self._key(m)[0]), "name": m.get("name"),
                "run_id": m.get("run_id"), "step_id": m.get("step_id"), "otid": m.get("otid"),
                "sender_id": m.get("sender_id")}

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

    # =========================================================================================
    # §5 blocks
    # =========================================================================================
    def _filter_blocks(self, req, blocks):
        p, q = req.params, req.query
        if p.get("label"):
            blocks = [b for b in blocks if b["label"] == p["label"]]
        # templates_only=false means "is_template == false", not "no filter"
        blocks = [b for b in blocks if bool(b["is_template"]) == bool(p.get("templates_only"))]
        if (q.get("show_hidden_blocks") or ["false"])[-1].lower() not in ("true", "1", "yes"):
            blocks = [b for b in blocks if not b.get("hidden")]
        if p.get("name"):
            blocks = [b for b in blocks if b.get("template_name") == p["name"]]
        if p.get("project_id"):
            blocks = [b for b in blocks if b.get("project_id") == p["project_id"]]
        if p.get("tags"):
            want = set(p["tags"])
            test = want.issubset if p.get("match_all_tags") else (lambda t: bool(want & t))
            blocks = [b for b in blocks if test(set(b.get("tags") or []))]
        if p.get("identity_id") or p.get("identifier_keys"):
            ids = set()
            for i in self.s.identities.values():
                if i["id"] == p.get("identity_id") or i["identifier_key"] in (p.get("identifier_keys") or []):
                    ids.update(i["block_ids"])
            blocks = [b for b in blocks if b["id"] in ids]
        for param, field in (("label_search", "label"), ("description_search", "description"),
                             ("value_search", "value")):
            if p.get(param):
                needle = p[param].lower()
                blocks = [b for b in blocks if needle in (b.get(field) or "").lower()]
        if any(p.get(k) is not None for k in ("connected_to_agents_count_gt", "connected_to_agents_count_lt",
                                              "connected_to_agents_count_eq")):
            counts = {}
            for a in self.s.agents.values():
                for bid in a["block_ids"]:
                    counts[bid] = counts.get(bid, 0) + 1
            n = lambda b: counts.get(b["id"], 0)  # noqa: E731
            if p.get("connected_to_agents_count_gt") is not None:
                blocks = [b for b in blocks if n(b) > p["connected_to_agents_count_gt"]]
            if p.get("connected_to_agents_count_lt") is not None:
                blocks = [b for b in blocks if n(b) < p["connected_to_agents_count_lt"]]
            if p.get("connected_to_agents_count_eq"):
                blocks = [b for b in blocks if n(b) in p["connected_to_agents_count_eq"]]
        return blocks

    def list_blocks(self, req):
        with self.s.lock:
            blocks = self._filter_blocks(req, list(self.s.blocks.values()))
            page = paginate(blocks, self._key, **self._list_args(req, "asc"))
            flaky = self.opt.flaky_block_list
            if flaky > 0:
                # --flaky-block-list P: silently drop a fraction P of the rows, as users saw
                # blocks.list() "miss" blocks (letta-notes.md). Never rely on it for discovery.
                page = [b for b in page if self.rng.random() >= flaky]
            return 200, [self._render_block(b) for b in page]

    def count_blocks(self, req):
        with self.s.lock:
            return 200, len(self._filter_blocks(req, list(self.s.blocks.values())))

    def create_block(self, req):
        with self.s.lock:
            block = self._new_block(req.json, self._actor(req))
            self.s.changed()
            return 200, self._render_block(block)

    def get_block(self, req):
        with self.s.lock:
            return 200, self._render_block(self._block(req.path_params["block_id"]))

    def _update_block(self, block, body, actor):
        # model_dump(exclude_unset=True, exclude_none=True): omitted and null fields are left alone.
        changes = {k: v for k, v in body.items() if v is not None and k in block and k != "id"}
        if "value" in changes:
            changes["value"] = changes["value"].replace("\x00", "")
        if "label" in changes and changes["label"] != block["label"]:
            probe = dict(block, label=changes["label"])
            for a in self.s.agents.values():
                if block["id"] in a["block_ids"]:
                    self._check_label_free(a, probe)
        block.update(changes)
        block["last_updated_by_id"] = actor
        self.s.changed()
        return self._render_block(block)

    def modify_block(self, req):
        with self.s.lock:
            block = self._block(req.path_params["block_id"])
            return 200, self._update_block(block, req.json or {}, self._actor(req))

    def delete_block(self, req):
        bid = req.path_params["block_id"]
        with self.s.lock:
            self._block(bid)
            del self.s.blocks[bid]
            for a in self.s.agents.values():
                if bid in a["block_ids"]:
                    a["block_ids"].remove(bid)
            for i in self.s.identities.values():
                if bid in i["block_ids"]:
                    i["block_ids"].remove(bid)
            self.s.changed()
        return 200, None

    def block_agents(self, req):
        with self.s.lock:
            bid = self._block(req.path_params["block_id"])["id"]
            agents = [a for a in self.s.agents.values() if bid in a["block_ids"]]
            page = paginate(agents, self._key, **self._list_args(req, "desc"))
            rel = self._relationships(req)
            return 200, [self.render_agent(a, rel) for a in page]

    def block_identity_attach(self, req):
        with self.s.lock:
            block = self._block(req.path_params["block_id"])
            ident = self._identity(req.path_params["identity_id"])
            if block["id"] not in ident["block_ids"]:
                ident["block_ids"].append(block["id"])
                self.s.changed()
            return 200, self._render_block(block)

    def block_identity_detach(self, req):
        with self.s.lock:
            block = self._block(req.path_params["block_id"])
            ident = self._identity(req.path_params["identity_id"])
            if block["id"] in ident["block_ids"]:
                ident["block_ids"].remove(block["id"])
                self.s.changed()
            return 200, self._render_block(block)

    # =========================================================================================
    # §6 agent core-memory blocks
    # =========================================================================================
    def _block_by_label(self, agent, label):
        for bid in agent["block_ids"]:
            b = self.s.blocks.get(bid)
            if b and b["label"] == label:
                return b
        raise ApiError(404, "No block with label '%s' found for agent '%s'" % (label, agent["id"]))

    def core_memory(self, req):
        with self.s.lock:
            a = self._agent(req.path_params["agent_id"])
            blocks = [self._render_block(self.s.blocks[b]) for b in a["block_ids"] if b in self.s.blocks]
            return 200, {"agent_type": a["agent_type"], "git_enabled": False, "blocks": blocks,
                         "file_blocks": [], "prompt_template": ""}

    def core_blocks(self, req):
        with self.s.lock:
            a = self._agent(req.path_params["agent_id"])
            blocks = [self.s.blocks[b] for b in a["block_ids"] if b in self.s.blocks]
            args = self._list_args(req, "desc")
            # ordered and paged by block id (string comparison), not created_at
            args["key_of_cursor"] = lambda cid: cid
            page = paginate(blocks, lambda b: b["id"], **args)
            return 200, [self._render_block(b) for b in page]

    def get_core_block(self, req):
        with self.s.lock:
            a = self._agent(req.path_params["agent_id"])
            return 200, self._render_block(self._block_by_label(a, req.path_params["block_label"]))

    def modify_core_block(self, req):
        with self.s.lock:
            a = self._agent(req.path_params["agent_id"])
            block = self._block_by_label(a, req.path_params["block_label"])
            return 200, self._update_block(block, req.json or {}, self._actor(req))

    def attach_block(self, req):
        with self.s.lock:
            a = self._agent(req.path_params["agent_id"])
            block = self._block(req.path_params["block_id"])
            if block["id"] not in a["block_ids"]:        # idempotent
                self._check_label_free(a, block)
                a["block_ids"].append(block["id"])
                a["updated_at"] = iso(time.time())
                self.s.changed()
            return 200, self.render_agent(a, ALL_RELATIONSHIPS)

    def detach_block(self, req):
        with self.s.lock:
            a = self._agent(req.path_params["agent_id"])
            bid = req.path_params["block_id"]
            if bid not in a["block_ids"]:
                raise ApiError(404, "No block with id '%s' found for agent '%s' with actor id: '%s'"
                               % (bid, a["id"], self._actor(req)))
            a["block_ids"].remove(bid)
            a["updated_at"] = iso(time.time())
            self.s.changed()
            return 200, self.render_agent(a, ALL_RELATIONSHIPS)

    # =========================================================================================
    # §7 identities
    # =========================================================================================
    def _check_refs(self, body):
        for field, table in (("agent_ids", self.s.agents), ("block_ids", self.s.blocks)):
            missing = {x for x in body.get(field) or [] if x not in table}
            if missing:
                # sic: the server says "agents" for blocks too
                raise ApiError(404, "Items not found in agents: %r" % (missing,))

    def _find_identity(self, key, project_id):
        for i in self.s.identities.values():
            if i["identifier_key"] == key and i["project_id"] == project_id:
                return i
        return None

    def _new_identity(self, body):
        iid = new_id("identity")
        self.s.stamp(iid)
        ident = {"id": iid, "identifier_key": body["identifier_key"], "name": body["name"],
                 "identity_type": body["identity_type"], "project_id": body.get("project_id"),
                 "agent_ids": _dedup(body.get("agent_ids") or []),
                 "block_ids": _dedup(body.get("block_ids") or []),
                 "properties": list(body.get("properties") or [])}
        self.s.identities[iid] = ident
        self.s.changed()
        return ident

    def list_identities(self, req):
        p = req.params
        with self.s.lock:
            items = list(self.s.identities.values())
            if p.get("name"):
                items = [i for i in items if p["name"].lower() in i["name"].lower()]
            for field in ("project_id", "identifier_key", "identity_type"):
                if p.get(field):
                    items = [i for i in items if i[field] == p[field]]
            page = paginate(items, self._key, **self._list_args(req, "desc"))
            return 200, [dict(i) for i in page]

    def count_identities(self, req):
        with self.s.lock:
            return 200, len(self.s.identities)

    def create_identity(self, req):
        body = req.json
        with self.s.lock:
            if self._find_identity(body["identifier_key"], body.get("project_id")):
                raise ApiError(409, "A unique constraint was violated for Identity. Check your input for "
                                    "duplicates: identifier_key=%s" % body["identifier_key"])
            self._check_refs(body)
            return 200, dict(self._new_identity(body))

    def upsert_identity(self, req):
        body = req.json
        with self.s.lock:
            self._check_refs(body)
            ident = self._find_identity(body["identifier_key"], body.get("project_id"))
            if ident is None:
                return 200, dict(self._new_identity(body))
            # replace=True: name, type, agent_ids and properties are replaced; block_ids are
            # ignored for an existing identity (identity_manager.py).
            ident.update(name=body["name"], identity_type=body["identity_type"],
                         agent_ids=_dedup(body.get("agent_ids") or []),
                         properties=list(body.get("properties") or []))
            self.s.changed()
            return 200, dict(ident)

    def get_identity(self, req):
        with self.s.lock:
            return 200, dict(self._identity(req.path_params["identity_id"]))

    def modify_identity(self, req):
        body = req.json or {}
        with self.s.lock:
            ident = self._identity(req.path_params["identity_id"])
            self._check_refs(body)
            for field in ("identifier_key", "name", "identity_type"):
                if body.get(field) is not None:
                    ident[field] = body[field]
            if body.get("properties") is not None:          # merged by key
                merged = {p["key"]: p for p in ident["properties"]}
                for prop in body["properties"]:
                    merged[prop["key"]] = prop
                ident["properties"] = list(merged.values())
            for field in ("agent_ids", "block_ids"):       # appended, not replaced
                for x in body.get(field) or []:
                    if x not in ident[field]:
                        ident[field].append(x)
            self.s.changed()
            return 200, dict(ident)

    def delete_identity(self, req):
        with self.s.lock:
            ident = self._identity(req.path_params["identity_id"])
            del self.s.identities[ident["id"]]
            self.s.changed()
        return 200, None

    def identity_properties(self, req):
        with self.s.lock:
            ident = self._identity(req.path_params["identity_id"])
            ident["properties"] = list(req.json or [])
            self.s.changed()
            return 200, dict(ident)

    def identity_agents(self, req):
        with self.s.lock:
            ident = self._identity(req.path_params["identity_id"])
            agents = [self.s.agents[a] for a in ident["agent_ids"] if a in self.s.agents]
            page = paginate(agents, self._key, **self._list_args(req, "desc"))
            rel = self._relationships(req)
            return 200, [self.render_agent(a, rel) for a in page]

    def identity_blocks(self, req):
        with self.s.lock:
            ident = self._identity(req.path_params["identity_id"])
            blocks = [self.s.blocks[b] for b in ident["block_ids"] if b in self.s.blocks]
            page = paginate(blocks, self._key, **self._list_args(req, "desc"))
            return 200, [self._render_block(b) for b in page]

    def agent_identity_attach(self, req):
        with self.s.lock:
            a = self._agent(req.path_params["agent_id"])
            ident = self._identity(req.path_params["identity_id"])
            if a["id"] not in ident["agent_ids"]:
                ident["agent_ids"].append(a["id"])
                self.s.changed()
        return 200, None

    def agent_identity_detach(self, req):
        with self.s.lock:
            a = self._agent(req.path_params["agent_id"])
            ident = self._identity(req.path_params["identity_id"])
            if a["id"] in ident["agent_ids"]:
                ident["agent_ids"].remove(a["id"])
                self.s.changed()
        return 200, None

    # =========================================================================================
    # §8 archival memory
    # =========================================================================================
    def _new_passage(self, agent_id, archive_id, text, tags=None, created_at=None, metadata=None,
                     actor=DEFAULT_USER_ID, embedding_config=None):
        approx_tokens = len(text) // 4
        if approx_tokens > ARCHIVAL_TOKEN_LIMIT:
            raise ApiError(400, "Archival memory content exceeds token limit of %d tokens (got about %d)"
                           % (ARCHIVAL_TOKEN_LIMIT, approx_tokens))
        pid = new_id("passage")
        ts = parse_datetime(created_at) if created_at else None
        ts = self.s.stamp(pid, ts)
        p = {"created_by_id": actor, "last_updated_by_id": actor, "created_at": iso(ts),
             "updated_at": iso(ts), "is_deleted": False, "archive_id": archive_id, "source_id": None,
             "file_id": None, "file_name": None, "metadata": metadata or {}, "tags": tags,
             "id": pid, "text": text, "embedding": None, "embedding_config": embedding_config,
             "_agent_id": agent_id, "_ts": ts}
        self.s.passages[pid] = p
        self.s.changed()
        return p

    def _agent_passages(self, agent_id):
        return [p for p in self.s.passages.values() if p["_agent_id"] == agent_id]

    def list_passages(self, req):
        p = req.params
        with self.s.lock:
            a = self._agent(req.path_params["agent_id"])
            items = self._agent_passages(a["id"])
            if p.get("search"):
                needle = p["search"].lower()
                items = [x for x in items if needle in x["text"].lower()]
            asc = p.get("ascending", True)
            page = paginate(items, self._key, after=p.get("after"), before=p.get("before"),
                            limit=p.get("limit"), descending=not asc, key_of_cursor=self._cursor)
            return 200, [self._public(x) for x in page]

    def create_passage(self, req):
        body = req.json
        with self.s.lock:
            a = self._agent(req.path_params["agent_id"])
            try:
                p = self._new_passage(a["id"], a["archive_id"], body["text"], body.get("tags"),
                                      body.get("created_at"), actor=self._actor(req),
                                      embedding_config=self._embedding_config(a))
            except ValueError as e:
                raise ApiError(400, str(e))
            return 200, [self._public(p)]

    @staticmethod
    def _tag_filter(items, tags, mode):
        if not tags:
            return items
        want = set(tags)
        if mode == "all":
            return [x for x in items if want.issubset(x.get("tags") or [])]
        return [x for x in items if want & set(x.get("tags") or [])]

    @staticmethod
    def _rank(items, query):
        """Stand-in for vector search: rank by shared words with the query, newest first on ties.
        Like a vector search it returns the nearest passages even when nothing really matches."""
        q = set(words(query))

        def score(x):
            return len(q & set(words(x["text"])))
        return sorted(((score(x), x) for x in items), key=lambda sx: (-sx[0], -sx[1]["_ts"]))

    def search_passages(self, req):
        p = req.params
        with self.s.lock:
            a = self._agent(req.path_params["agent_id"])
            tz = a.get("timezone")
            items = self._tag_filter(self._agent_passages(a["id"]), p.get("tags"), p.get("tag_match_mode"))
            try:
                if p.get("start_datetime"):
                    start = parse_datetime(p["start_datetime"], tz)
                    items = [x for x in items if x["_ts"] >= start]
                if p.get("end_datetime"):
                    end_text = p["end_datetime"]
                    end = parse_datetime(end_text, tz)
                    if len(end_text.strip()) == 10:        # a date-only end includes that whole day
                        end += 86400 - 1e-6
                    items = [x for x in items if x["_ts"] <= end]
            except ValueError as e:
                raise ApiError(400, "Invalid datetime: %s" % e)
            top_k = p.get("top_k") if p.get("top_k") is not None else 5
            ranked = self._rank(items, p["query"])[:max(0, top_k)]
            zone = _zone(tz)
            results = []
            for _, x in ranked:
                when = dt.datetime.fromtimestamp(x["_ts"], dt.timezone.utc)
                stamp = when.astimezone(zone).isoformat() if zone else str(when)
                results.append({"id": x["id"], "timestamp": stamp, "content": x["text"],
                                "tags": list(x.get("tags") or [])})
            return 200, {"results": results, "count": len(results)}

    def delete_passage(self, req):
        mid = req.path_params["memory_id"]
        with self.s.lock:
            a = self._agent(req.path_params["agent_id"])
            p = self.s.passages.get(mid)
            if p is None or p["_agent_id"] != a["id"]:
                raise ApiError(404, "Passage not found with id=%s" % mid)
            del self.s.passages[mid]
            self.s.changed()
        return 200, {"message": "Memory id=%s successfully deleted" % mid}

    def search_all_passages(self, req):
        body = req.json or {}
        with self.s.lock:
            items = list(self.s.passages.values())
            if body.get("agent_id"):
                items = [x for x in items if x["_agent_id"] == body["agent_id"]]
            if body.get("archive_id"):
                items = [x for x in items if x["archive_id"] == body["archive_id"]]
            items = self._tag_filter(items, body.get("tags"), body.get("tag_match_mode", "any"))
            try:
                if body.get("start_date"):
                    start = parse_datetime(body["start_date"])
                    items = [x for x in items if x["_ts"] >= start]
                if body.get("end_date"):
                    end = parse_datetime(body["end_date"])
                    items = [x for x in items if x["_ts"] <= end]
            except ValueError as e:
                raise ApiError(400, "Invalid datetime: %s" % e)
            q = body.get("query") or ""
            ranked = self._rank(items, q)[:body.get("limit", 50)]
            n = max(1, len(set(words(q))))
            return 200, [{"passage": self._public(x), "score": s / n, "metadata": {}} for s, x in ranked]

    def _archive_agent(self, archive_id):
        for a in self.s.agents.values():
            if a["archive_id"] == archive_id:
                return a
        raise ApiError(404, "Archive not found with id=%s" % archive_id)

    def archive_insert(self, req):
        body = req.json
        with self.s.lock:
            a = self._archive_agent(req.path_params["archive_id"])
            try:
                p = self._new_passage(a["id"], a["archive_id"], body["text"], body.get("tags"),
                                      body.get("created_at"), body.get("metadata"), self._actor(req),
                                      self._embedding_config(a))
            except ValueError as e:
                raise ApiError(400, str(e))
            return 200, self._public(p)

    def archive_insert_batch(self, req):
        body = req.json
        with self.s.lock:
            a = self._archive_agent(req.path_params["archive_id"])
            out = []
            try:
                for item in body["passages"]:
                    out.append(self._public(self._new_passage(
                        a["id"], a["archive_id"], item["text"], item.get("tags"), item.get("created_at"),
                        item.get("metadata"), self._actor(req), self._embedding_config(a))))
            except ValueError as e:
                raise ApiError(400, str(e))
            return 200, out

    # =========================================================================================
    # admin view (GET /_emulator/state)
    # =========================================================================================
    def state_view(self):
        with self.s.lock:
            agents = []
            for a in sorted(self.s.agents.values(), key=self._key):
                agents.append({"id": a["id"], "name": a["name"], "tags": list(a["tags"]),
                               "block_ids": list(a["block_ids"]),
                               "block_labels": [self.s.blocks[b]["label"] for b in a["block_ids"]
                                                if b in self.s.blocks],
                               "identity_ids": [i["id"] for i in self._identities_of_agent(a["id"])],
                               "archive_id": a["archive_id"], "message_count": sum(
                                   1 for m in self.s.messages.values() if m["_agent_id"] == a["id"])})
            passages = {a["id"]: [self._public(p) for p in sorted(self._agent_passages(a["id"]), key=self._key)]
                        for a in self.s.agents.values()}
            messages = {a["id"]: [self._public(m) for m in sorted(
                (m for m in self.s.messages.values() if m["_agent_id"] == a["id"]), key=self._key)]
                for a in self.s.agents.values()}
            return {
                "identities": [dict(i) for i in sorted(self.s.identities.values(), key=self._key)],
                "blocks": [self._render_block(b) for b in sorted(self.s.blocks.values(), key=self._key)],
                "agents": agents, "passages": passages, "messages": messages,
                "runs": [self._public(r) for r in sorted(self.s.runs.values(), key=self._key)],
            }


def _dedup(seq):
    out = []
    for x in seq:
        if x not in out:
            out.append(x)
    return out


def _deltas(m):
    """Split a reasoning/assistant message into token-like chunks sharing the message id."""
    field = "reasoning" if m["message_type"] == "reasoning_message" else "content"
    text = m.get(field)
    if not isinstance(text, str) or not text:
        return [m]
    pieces = re.findall(r"\S+\s*|\s+", text)
    return [dict(m, **{field: piece}) for piece in pieces]

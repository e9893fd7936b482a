"""The emulated Letta REST API: one handler per operation of shared/letta-api/ENDPOINTS.md, grouped
by area in api_*.py and composed here. Handlers get a parsed Request (validated params and body)
and return (status, json_value) or a Stream; they raise ApiError for error answers.
letta_emulator.py does HTTP, auth, faults and schema checks around them. FIDELITY.md cites the
server source for each behaviour."""

from emu_core import (ALL_RELATIONSHIPS, ApiError, DEFAULT_USER_ID, SERVER_VERSION, Store, Stream,
                       USER_ID_RX, is_1x_client)
from api_agents import AgentsApi
from api_archival import ArchivalApi
from api_blocks import BlocksApi
from api_identities import IdentitiesApi
from api_messages import MessagesApi


class Api(AgentsApi, MessagesApi, BlocksApi, IdentitiesApi, ArchivalApi):
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
            # models
            ("GET", "/v1/models/", self.list_models),
            ("GET", "/v1/models/embedding", self.list_embedding_models),
            # agents
            ("GET", "/v1/agents/", self.list_agents),
            ("POST", "/v1/agents/", self.create_agent),
            ("GET", "/v1/agents/count", self.count_agents),
            ("GET", "/v1/agents/{agent_id}", self.get_agent),
            ("PATCH", "/v1/agents/{agent_id}", self.modify_agent),
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
            ("DELETE", "/v1/runs/{run_id}", self.delete_run),
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
            "identity_ids": [i["id"] for i in idents], "identities": [self._render_identity(i) for i in idents],
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

"""The emulated Letta REST API: one handler per operation of shared/letta-api/ENDPOINTS.md, grouped
by area in api_*.py and composed here. Handlers get a parsed Request (validated params and body)
and return (status, json_value) or a Stream; they raise ApiError for error answers.
letta_emulator.py does HTTP, auth, faults and schema checks around them. FIDELITY.md cites the
server source for each behaviour."""

import datetime as dt
import time

from emu_core import (ALL_RELATIONSHIPS, ApiError, DEFAULT_ORG_ID, DEFAULT_USER_ID, SERVER_VERSION, Store,
                      Stream, is_1_0_sdk_version)
from api_agents import AgentsApi
from api_archival import ArchivalApi
from api_blocks import BlocksApi
from api_identities import IdentitiesApi
from api_messages import MessagesApi
from emu_embed import Embedder


# services/helpers/agent_manager_helper.py:get_column_names_from_includes_params (the `include`
# names and the legacy include_relationships names), as AgentState relationship names
INCLUDE_COLUMNS = {
    "agent.blocks": ("blocks", "tags"), "agent.identities": ("identities",), "agent.sources": ("sources",),
    "agent.tags": ("tags",), "agent.tools": ("tools",),
    "memory": ("blocks", "tags"), "identity_ids": ("identities",), "sources": ("sources",), "tags": ("tags",),
    "tools": ("tools",),
}
GIT_MEMORY_TAG = "git-memory-enabled"     # services/block_manager_git.py:GIT_MEMORY_ENABLED_TAG


def _file_defaults(context_window):
    """utils.py:calculate_file_defaults_based_on_context_window."""
    if not context_window:
        return 5, 50000          # constants.py:DEFAULT_MAX_FILES_OPEN, DEFAULT_CORE_MEMORY_SOURCE_CHAR_LIMIT
    for top, pair in ((8000, (3, 5000)), (32000, (5, 15000)), (128000, (10, 25000)), (200000, (10, 40000))):
        if context_window <= top:
            return pair
    return 15, 40000


def _model_settings(llm):
    """schemas/llm_config.py:LLMConfig._to_model_settings for the openai endpoint type; the other
    provider types are not emulated (null)."""
    if llm.get("model_endpoint_type") != "openai":
        return None
    return {"max_output_tokens": llm.get("max_tokens") or 4096, "parallel_tool_calls": True,
            "provider_type": "openai", "temperature": llm.get("temperature", 1.0),
            "reasoning": {"reasoning_effort": llm.get("reasoning_effort") or "minimal"},
            "response_format": None, "strict": bool(llm.get("strict"))}


class Api(AgentsApi, MessagesApi, BlocksApi, IdentitiesApi, ArchivalApi):
    """Route handlers. `routes` lists (METHOD, path template, handler) in matching order."""

    def __init__(self, store, rng, options, faults):
        self.s = store
        self.rng = rng
        self.opt = options          # has run_delay_ms, flaky_block_list
        self.faults = faults
        self.embedder = Embedder(getattr(options, "embed_ms", 0), getattr(options, "embed_concurrency", 0),
                                 getattr(options, "embed_max_tokens", 8192))
        self.started = time.time()       # stands in for the default user's created_at
        for run in list(self.s.runs.values()):
            if run.pop("_resume", False):
                self._finish_run(run["id"])

    def routes(self):
        # Within one path the methods are in the server's declaration order: a 405 names the first
        # route whose path matches (Starlette Router.app), e.g. PATCH for PUT /v1/agents/{id}.
        compat = getattr(getattr(self, "opt", None), "compat", ())
        batch = [] if "no-archive-batch" in compat else [
            ("POST", "/v1/archives/{archive_id}/passages/batch", self.archive_insert_batch)]
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
            ("PATCH", "/v1/agents/{agent_id}", self.modify_agent),
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
            ("GET", "/v1/runs/active", self.list_active_runs),
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
            ("PATCH", "/v1/blocks/{block_id}", self.modify_block),
            ("DELETE", "/v1/blocks/{block_id}", self.delete_block),
            ("GET", "/v1/blocks/{block_id}", self.get_block),
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
            # archives (routers/v1/archives.py, in its order)
            ("GET", "/v1/archives/", self.list_archives),
            ("GET", "/v1/archives/{archive_id}", self.get_archive),
            ("DELETE", "/v1/archives/{archive_id}", self.delete_archive),
            ("POST", "/v1/archives/{archive_id}/passages", self.archive_insert),
        ] + batch + [
            ("DELETE", "/v1/archives/{archive_id}/passages/{passage_id}", self.delete_archive_passage),
        ]

    # =========================================================================================
    # helpers
    # =========================================================================================
    def _agent_by_id(self, agent_id):
        """agent_manager.py:get_agent_by_id_async raises NoResultFound with this text (404)."""
        a = self.s.agents.get(agent_id)
        if a is None:
            raise ApiError(404, "Agent with ID %s not found" % agent_id)
        return a

    def _agent_read(self, agent_id):
        """The agent as AgentModel.read_async finds it (orm/sqlalchemy_base.py:read_async)."""
        a = self.s.agents.get(agent_id)
        if a is None:
            raise ApiError(404, self._read_not_found("Agent", agent_id))
        return a

    def _read_not_found(self, model, ident):
        """read_async's NoResultFound text: the query conditions, with the actor (the default user,
        see _actor) printed as pydantic prints a User. The user's timestamps are the emulator's
        start time (the server prints when its default user was created)."""
        when = repr(dt.datetime.fromtimestamp(self.started, dt.timezone.utc))
        actor = ("id='%s' organization_id='%s' name='default_user' created_at=%s updated_at=%s is_deleted=False"
                 % (DEFAULT_USER_ID, DEFAULT_ORG_ID, when, when))
        return "%s not found with id='%r', access level in ['read'] for actor='%s'" % (model, [ident], actor)

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

    def _state_block(self, b):
        """A block inside an AgentState or Memory: orm/block.py:Block.to_pydantic never loads the
        tags relationship (lazy="raise"), so tags is the schema default []."""
        return dict(self._render_block(b), tags=[])

    def _relationships(self, req):
        """Which AgentState relationships GET/list load. routers/v1/agents.py:retrieve_agent and
        list_agents: no include_relationships from a 1.x SDK client means none;
        orm/agent.py:Agent.to_pydantic_async decides what is loaded, and
        services/helpers/agent_manager_helper.py:_apply_relationship_filters noloads what
        get_column_names_from_includes_params leaves out (from `include` when given, else from
        include_relationships)."""
        inc_rel = req.query.get("include_relationships")
        include = set(req.query.get("include") or [])
        if inc_rel is None and is_1_0_sdk_version(req.headers):
            inc_rel = []
        if inc_rel is None:
            wanted = set(ALL_RELATIONSHIPS)
        else:
            inc = set(inc_rel)
            wanted = set()
            if inc & {"tags", "memory"} or include & {"agent.tags", "agent.blocks"}:
                wanted.add("tags")
            if "memory" in inc or "agent.blocks" in include:
                wanted.add("blocks")
            if "identity_ids" in inc or "agent.identities" in include:
                wanted.add("identities")
            for name in ("tools", "sources"):
                if name in inc or "agent." + name in include:
                    wanted.add(name)
        if inc_rel is None and not include:
            return wanted
        columns = set()
        for item in (include if include else inc_rel):
            columns.update(INCLUDE_COLUMNS.get(item, ()))
        return wanted & columns

    def _identities_of_agent(self, agent_id):
        return [i for i in self.s.identities.values() if agent_id in i["agent_ids"]]

    def _identities_of_block(self, block_id):
        return [i for i in self.s.identities.values() if block_id in i["block_ids"]]

    def _llm_config(self, a):
        return a["llm_config"]

    def _embedding_config(self, a=None):
        """The agent's EmbeddingConfig; None when it was created without an embedding
        (server.py:create_agent_async only resolves one when a handle is given)."""
        return (a or {}).get("embedding_config")

    def render_agent(self, a, rel):
        """AgentState as orm/agent.py:Agent.to_pydantic_async builds it, `rel` naming the loaded
        relationships (see _relationships)."""
        blocks = [self._state_block(self.s.blocks[b]) for b in a["block_ids"] if b in self.s.blocks] \
            if "blocks" in rel else []
        idents = self._identities_of_agent(a["id"]) if "identities" in rel else []
        tags = list(a["tags"]) if "tags" in rel else []
        llm, emb = a["llm_config"], a.get("embedding_config")
        # schemas/agent.py:AgentState.set_file_defaults_based_on_context_window
        files_open, char_limit = _file_defaults(llm.get("context_window"))
        return {
            "created_by_id": a["created_by_id"], "last_updated_by_id": a.get("last_updated_by_id", a["created_by_id"]),
            "created_at": a["created_at"], "updated_at": a["updated_at"],
            "id": a["id"], "name": a["name"], "tool_rules": [], "message_ids": list(a["message_ids"]),
            "system": a["system"], "agent_type": a["agent_type"], "llm_config": dict(llm),
            "embedding_config": dict(emb) if emb else None, "model": llm.get("handle"),
            "embedding": emb.get("handle") if emb else None, "model_settings": _model_settings(llm),
            "compaction_settings": None, "response_format": None, "description": a["description"],
            "metadata": a["metadata"],
            "memory": {"agent_type": a["agent_type"], "git_enabled": GIT_MEMORY_TAG in tags, "blocks": blocks,
                       "file_blocks": [], "prompt_template": ""},
            "blocks": blocks, "tools": [], "sources": [], "tags": tags,
            "tool_exec_environment_variables": [], "secrets": [],
            "project_id": a["project_id"], "template_id": a["template_id"],
            "base_template_id": a["base_template_id"], "deployment_id": None, "entity_id": None,
            "identity_ids": [i["id"] for i in idents], "identities": [self._render_identity(i) for i in idents],
            "pending_approval": None, "message_buffer_autoclear": a["message_buffer_autoclear"],
            "enable_sleeptime": a["enable_sleeptime"], "multi_agent_group": None, "managed_group": None,
            "last_run_completion": a["last_run_completion"],
            "last_run_duration_ms": a["last_run_duration_ms"], "last_stop_reason": a["last_stop_reason"],
            "timezone": a["timezone"],
            "max_files_open": files_open if a.get("max_files_open") is None else a["max_files_open"],
            "per_file_view_window_char_limit": char_limit if a.get("per_file_view_window_char_limit") is None
            else a["per_file_view_window_char_limit"],
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
        """The acting user. The user_id header's format is checked before routing reaches a handler
        (letta_emulator.py, dependencies.py:get_headers); user_manager.py:get_actor_or_default_async
        falls back to the default user for an id it does not know, and the emulator knows no users."""
        return DEFAULT_USER_ID

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
                "archives": [dict(self._public(x), agent_id=self._archive_agent(x["id"]))
                             for x in sorted(self.s.archives.values(), key=self._key)],
            }

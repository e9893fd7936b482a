"""Agents, models and agent core-memory blocks (ENDPOINTS.md §2, §6). The server source that
decides each behaviour is named in the docstrings: routers/v1/agents.py and llms.py,
server/server.py (create/update), services/agent_manager.py, schemas/agent.py."""

import random
import re
import time

from emu_core import (ALL_RELATIONSHIPS, DB_ERROR, UNKNOWN_ERROR, ApiError, content_text, ilike, iso, new_id,
                      parse_datetime, words)

# letta/prompts/system_prompts/letta_v1.py:PROMPT, stripped (prompts/gpt_system.py:get_system_text)
LETTA_V1_SYSTEM = """<base_instructions>
You are a helpful self-improving agent with advanced memory and file system capabilities.
<memory>
You have an advanced memory system that enables you to remember past interactions and continuously improve your own capabilities.
Your memory consists of memory blocks and external memory:
- Memory Blocks: Stored as memory blocks, each containing a label (title), description (explaining how this block should influence your behavior), and value (the actual content). Memory blocks have size limits. Memory blocks are embedded within your system instructions and remain constantly available in-context.
- External memory: Additional memory storage that is accessible and that you can bring into context with tools when needed.
Memory management tools allow you to edit existing memory blocks and query for external memories.
</memory>
<file_system>
You have access to a structured file system that mirrors real-world directory structures. Each directory can contain multiple files.
Files include:
- Metadata: Information such as read-only permissions and character limits
- Content: The main body of the file that you can read and analyze
Available file operations:
- Open and view files
- Search within files and directories
- Your core memory will automatically reflect the contents of any currently open files
You should only keep files open that are directly relevant to the current user interaction to maintain optimal performance.
</file_system>
Continue executing and calling tools until the current task is complete or you need user input. To continue: call another tool. To yield control: end your response without calling a tool.
Base instructions complete.
</base_instructions>"""
# services/helpers/agent_manager_helper.py:derive_system_message uses one prompt file per agent
# type; the emulator carries only the letta_v1 one and a placeholder for the others.
OTHER_SYSTEM = "You are a helpful assistant (Letta emulator: the %s system prompt is not emulated)."
# schemas/agent.py:CreateAgent.validate_name
NAME_RX = re.compile(r"^[\w '\-]+$")
# utils.py:create_random_username draws from ADJECTIVE_BANK and NOUN_BANK; a sample of each
ADJECTIVES = ("beautiful", "gentle", "angry", "vivacious", "grumpy", "luxurious", "fierce", "delicate",
              "fluffy", "radiant", "elated", "magnificent", "sassy", "ecstatic", "lustrous", "gleaming")
NOUNS = ("lizard", "firefighter", "banana", "castle", "dolphin", "elephant", "forest", "giraffe", "harbor",
         "iceberg", "jewelry", "kangaroo", "library", "mountain", "notebook", "orchard")
# schemas/block.py:Human, Persona (DEFAULT_BLOCKS) give these descriptions to memory_blocks
# created without one (agent_manager.py:create_agent_async)
DEFAULT_BLOCK_DESCRIPTIONS = {
    "human": "The human block: Stores key details about the person you are conversing with, allowing for more "
             "personalized and friend-like conversation.",
    "persona": "The persona block: Stores details about your current persona, guiding how you behave and respond. "
               "This helps you to maintain consistency and personality in your interactions.",
}
SUBAGENT_TAG = "role:subagent"              # constants.py:SUBAGENT_ROLE_TAG: the agent is created hidden
GIT_MEMORY_TAG = "git-memory-enabled"       # stripped on create without a git memory repo (server.py)
MAX_FILES_OPEN_LIMIT = 1000                 # constants.py
MAX_INT32 = 2 ** 31 - 1                     # constants.py:MAX_PER_FILE_VIEW_WINDOW_CHAR_LIMIT
CONTEXT_WINDOW_CAP = 128000                 # settings.py:ModelSettings.global_max_context_window_limit
# constants.py:PROVIDER_ORDER (server.py:_get_provider_sort_key)
PROVIDER_ORDER = {"letta": 0, "openai": 1, "anthropic": 2, "ollama": 3, "google_ai": 4, "google_vertex": 5,
                  "azure": 6, "groq": 7, "together": 8, "vllm": 9, "bedrock": 10, "deepseek": 11, "xai": 12,
                  "lmstudio": 13, "zai": 14, "zai_coding": 15, "openrouter": 16}
# schemas/model.py:Model.model_endpoint_type and EmbeddingModel.embedding_endpoint_type (both also
# ProviderType values); a handle's provider outside these is given the openai type.
LLM_TYPES = {"openai", "anthropic", "google_ai", "google_vertex", "azure", "groq", "ollama", "minimax", "mistral",
             "together", "bedrock", "deepseek", "xai", "zai", "zai_coding", "baseten", "openrouter",
             "chatgpt_oauth", "vllm"}
EMBEDDING_TYPES = {"openai", "anthropic", "bedrock", "google_ai", "google_vertex", "azure", "groq", "ollama",
                   "vllm", "mistral", "together"}
BOOL_TRUE = {"1", "on", "t", "true", "y", "yes"}   # pydantic's lax bool parsing of a query string


def _context_window(name):
    """A model's context window. The server reads it from the provider's model list; the emulator
    uses the defaults of schemas/llm_config.py:LLMConfig.set_model_specific_defaults, else the
    16384 of provider_manager.py:get_llm_config_from_handle."""
    if name.startswith("gpt-5"):
        return 272000
    return {"gpt-4.1": 256000, "gpt-4o": 128000, "gpt-4o-mini": 128000, "gpt-4": 8192}.get(name, 16384)


def _is_openai_reasoner(name):
    """llm_api/openai_client.py:is_openai_reasoning_model."""
    return name.startswith(("o1", "o3", "o4", "gpt-5"))


def _stamp(value):
    """An AgentState datetime (ISO text or None) -> epoch seconds, for ordering."""
    return parse_datetime(value) if value else None


def _cursor_ok(v, i, ref, forward, nulls_last):
    """services/helpers/agent_manager_helper.py:_cursor_filter for one row (value v, id i)."""
    rv, rid = ref
    if not nulls_last:
        return (v > rv or (v == rv and i > rid)) if forward else (v < rv or (v == rv and i < rid))
    if rv is None:
        return ((v is None and i > rid) or v is not None) if forward else (v is None and i < rid)
    if forward:
        return v is not None and (v > rv or (v == rv and i > rid))
    return v is None or v < rv or (v == rv and i < rid)


def _identity_fk_error(identity_id):
    """An identities_agents row for an unknown identity breaks the foreign key: the IntegrityError
    reaches app.py's handler (409, str of the error; the [SQL: ...] part it ends with is left out)."""
    return ApiError(409, "(sqlalchemy.dialects.postgresql.asyncpg.IntegrityError) <class "
                         "'asyncpg.exceptions.ForeignKeyViolationError'>: insert or update on table "
                         "\"identities_agents\" violates foreign key constraint "
                         "\"identities_agents_identity_id_fkey\"\nDETAIL:  Key (identity_id)=(%s) is not present in table \"identities\"." % identity_id)


def _tag(text, tag):
    """context_window_calculator.py:_extract_tag_content (tags included, first occurrence)."""
    start = text.find("<%s>" % tag)
    if start == -1:
        return None
    end = text.find("</%s>" % tag, start)
    return None if end == -1 else text[start:end + len(tag) + 3]


def _system_sections(text):
    """context_window_calculator.py:extract_system_components for a standard agent: the base
    instructions (else the text before the first section), <memory_blocks>, <memory_metadata>."""
    prompt = _tag(text, "base_instructions")
    if prompt is None:
        cut = min([text.find(t) for t in ("<memory_blocks>", "<memory_filesystem>", "<tool_usage_rules>",
                                          "<directories>", "<memory_metadata>") if t in text] + [len(text)])
        prompt = text[:cut].strip() or None
    return {"system_prompt": prompt, "core_memory": _tag(text, "memory_blocks"),
            "external_memory_summary": _tag(text, "memory_metadata")}


class AgentsApi:
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

    def _check_label_free(self, agent, block, model="Agent"):
        """blocks_agents has UniqueConstraint(agent_id, block_label) "unique_label_per_agent"
        (orm/blocks_agents.py); the IntegrityError becomes UniqueConstraintViolationError in
        orm/sqlalchemy_base.py:_handle_dbapi_error (409). The SQL statement and parameters that
        sqlalchemy appends to the driver's message are left out."""
        for other in agent["block_ids"]:
            ob = self.s.blocks.get(other)
            if ob and other != block["id"] and ob.get("label") == block.get("label"):
                raise ApiError(409, "A unique constraint was violated for %s. Check your input for duplicates: "
                                    "(sqlalchemy.dialects.postgresql.asyncpg.IntegrityError) <class "
                                    "'asyncpg.exceptions.UniqueViolationError'>: duplicate key value violates "
                                    "unique constraint \"unique_label_per_agent\"\nDETAIL:  Key (agent_id, "
                                    "block_label)=(%s, %s) already exists."
                               % (model, agent["id"], block.get("label")))

    # --- models -------------------------------------------------------------------------------
    def _llm_config_for(self, handle, cap=True):
        """provider_manager.py:get_llm_config_from_handle for a handle of --models. The emulator has
        no providers: the config is made from the handle (provider "openai" gives the endpoint
        https://api.openai.com/v1, as the OpenAI provider's base_url). Unknown handle: 404
        (server.py:get_llm_config_from_handle_async raises HandleNotFoundError)."""
        if handle not in self.opt.models:
            raise ApiError(404, "NOT_FOUND: Handle %s not found, must be one of []" % handle)
        provider, _, name = handle.partition("/")
        etype = provider if provider in LLM_TYPES else "openai"
        window = _context_window(name)
        max_tokens = 4096        # schemas/providers/base.py:get_default_max_output_tokens
        if etype == "openai":    # schemas/providers/openai.py:_openai_default_max_output_tokens
            max_tokens = 128000 if re.match(r"^gpt-5\.[234]", name) and "-chat" not in name else 16384
        return {
            "model": name, "display_name": None, "model_endpoint_type": etype,
            "model_endpoint": "https://api.%s.com/v1" % etype, "provider_name": provider,
            "provider_category": "base", "model_wrapper": None,
            "context_window": min(window, CONTEXT_WINDOW_CAP) if cap else window,
            "put_inner_thoughts_in_kwargs": False, "handle": handle, "temperature": 1.0,
            "max_tokens": max_tokens, "enable_reasoner": True, "reasoning_effort": None, "max_reasoning_tokens": 0,
            "effort": None, "frequency_penalty": None, "compatibility_type": None,
            "verbosity": "medium" if name.startswith("gpt-5") else None, "tier": None,
            "parallel_tool_calls": False, "response_format": None, "strict": False, "return_logprobs": False,
            "top_logprobs": None, "return_token_ids": False, "tool_call_parser": None,
        }

    def _embedding_config_for(self, handle, chunk_size=300):
        """server.py:get_embedding_config_from_handle_async: unknown handle -> 400."""
        if handle not in self.opt.embedding_models:
            raise ApiError(400, "INVALID_ARGUMENT: Embedding model %s not found" % handle)
        provider, _, name = handle.partition("/")
        etype = provider if provider in EMBEDDING_TYPES else "openai"
        return {"embedding_endpoint_type": etype, "embedding_endpoint": "https://api.%s.com/v1" % etype,
                "embedding_model": name, "embedding_dim": 1536, "embedding_chunk_size": chunk_size,
                "handle": handle, "batch_size": 32, "azure_endpoint": None, "azure_version": None,
                "azure_deployment": None}

    def list_models(self, req):
        """routers/v1/llms.py:list_llm_models -> server.py:list_llm_models_async: base providers
        only (the emulator has no BYOK ones), filtered by provider_name / provider_type, sorted by
        (PROVIDER_ORDER, provider name, model name); each as schemas/model.py:Model.from_llm_config."""
        p = req.params
        if p.get("provider_category") and "base" not in p["provider_category"]:
            return 200, []
        out = []
        for handle in self.opt.models:
            c = self._llm_config_for(handle, cap=False)
            ptype = c["provider_name"] if c["provider_name"] in LLM_TYPES else "openai"
            if p.get("provider_name") and c["provider_name"] != p["provider_name"]:
                continue
            if p.get("provider_type") and ptype != p["provider_type"]:
                continue
            out.append(dict(c, handle=handle, name=c["model"], display_name=c["model"],
                            provider_type=c["model_endpoint_type"], model_type="llm",
                            max_context_window=c["context_window"]))
        out.sort(key=lambda m: (PROVIDER_ORDER.get(m["provider_name"], 999), m["provider_name"], m["model"]))
        return 200, out

    def list_embedding_models(self, req):
        """routers/v1/llms.py:list_embedding_models -> server.py:list_embedding_models_async, sorted
        by _get_embedding_provider_sort_key; schemas/model.py:EmbeddingModel.from_embedding_config
        (provider_name is the endpoint type there)."""
        out = []
        for handle in self.opt.embedding_models:
            c = self._embedding_config_for(handle)
            out.append(dict(c, name=c["embedding_model"], display_name=c["embedding_model"],
                            provider_type=c["embedding_endpoint_type"],
                            provider_name=c["embedding_endpoint_type"], model_type="embedding"))
        out.sort(key=lambda m: (PROVIDER_ORDER.get(m["handle"].split("/")[0], 999), m["handle"].split("/")[0],
                                m["embedding_model"]))
        return 200, out

    # --- create -------------------------------------------------------------------------------
    @staticmethod
    def _check_file_limits(body):
        """schemas/agent.py:CreateAgent/UpdateAgent.validate_max_files_open and
        validate_per_file_view_window_char_limit raise LettaInvalidArgumentError (400)."""
        v = body.get("max_files_open")
        if isinstance(v, int) and not isinstance(v, bool) and v > MAX_FILES_OPEN_LIMIT:
            raise ApiError(400, "INVALID_ARGUMENT: max_files_open cannot exceed %d. Got: %d"
                           % (MAX_FILES_OPEN_LIMIT, v))
        v = body.get("per_file_view_window_char_limit")
        if isinstance(v, int) and not isinstance(v, bool) and v > MAX_INT32:
            raise ApiError(400, "INVALID_ARGUMENT: per_file_view_window_char_limit cannot exceed %d. Got: %d"
                           % (MAX_INT32, v))

    def precheck_create_agent(self, body):
        """CreateAgent field validators, run while FastAPI validates the body (letta_emulator.py
        calls this before the schema check). Those that raise something other than ValueError
        abort pydantic, so they answer before any 422: validate_name (AgentExportProcessingError,
        500 by app.py's handler, hence "Export failed: "), validate_model and the file limits
        (LettaInvalidArgumentError, 400), in field order. validate_embedding raises ValueError: a
        422 error among the others, returned here."""
        name = body.get("name")
        if isinstance(name, str) and name and not NAME_RX.match(name):
            raise ApiError(500, "Export failed: Agent name '%s' contains invalid characters. Only letters (any "
                                "language), digits, spaces, hyphens, underscores, and apostrophes are allowed. "
                                "Please avoid filesystem-unsafe characters like: / \\ : * ? \" < > |" % name)
        model = body.get("model")
        if isinstance(model, str) and model:
            provider, _, rest = model.partition("/")
            if not provider or not rest:
                raise ApiError(400, "INVALID_ARGUMENT: The model handle should be in the format provider/model-name")
        self._check_file_limits(body)
        emb = body.get("embedding")
        if isinstance(emb, str) and emb:
            provider, _, rest = emb.partition("/")
            if not provider or not rest:
                msg = "The embedding handle should be in the format provider/model-name"
                return [{"type": "value_error", "loc": ("body", "embedding"), "msg": "Value error, " + msg,
                         "input": emb, "ctx": {"error": ValueError(msg)}}]
        return []

    def _create_llm_config(self, body):
        """server.py:create_agent_async: llm_config as sent, else from the model handle (400 when
        neither: settings.default_llm_handle is unset by default), with context_window_limit,
        max_tokens, max_reasoning_tokens and enable_reasoner applied by
        get_llm_config_from_handle_async. model_settings is not emulated."""
        if body.get("llm_config") is not None:
            return dict(self._llm_defaults(), **body["llm_config"])
        if body.get("model") is None:
            raise ApiError(400, "INVALID_ARGUMENT: Must specify either model or llm_config in request")
        c = self._llm_config_for(body["model"])
        if body.get("context_window_limit") is not None:
            c["context_window"] = body["context_window_limit"]
        if body.get("max_tokens") is not None:
            c["max_tokens"] = body["max_tokens"]
        mrt = body.get("max_reasoning_tokens")
        if mrt is not None:
            if not body.get("max_tokens") or mrt > body["max_tokens"]:
                raise ApiError(400, "INVALID_ARGUMENT: Max reasoning tokens (%s) must be less than max tokens (%s)"
                               % (mrt, body.get("max_tokens")))
            c["max_reasoning_tokens"] = mrt
        if body.get("enable_reasoner", True) is not None:    # CreateAgent.enable_reasoner defaults to True
            c["enable_reasoner"] = body.get("enable_reasoner", True)
        return c

    @staticmethod
    def _llm_defaults():
        """schemas/llm_config.py:LLMConfig field defaults (for an llm_config sent by the client)."""
        return {"display_name": None, "model_endpoint": None, "provider_name": None, "provider_category": None,
                "model_wrapper": None, "put_inner_thoughts_in_kwargs": False, "handle": None, "temperature": 1.0,
                "max_tokens": None, "enable_reasoner": True, "reasoning_effort": None, "max_reasoning_tokens": 0,
                "effort": None, "frequency_penalty": None, "compatibility_type": None, "verbosity": None,
                "tier": None, "parallel_tool_calls": False, "response_format": None, "strict": False,
                "return_logprobs": False, "top_logprobs": None, "return_token_ids": False, "tool_call_parser": None}

    @staticmethod
    def _apply_reasoning(c, reasoning, agent_type):
        """schemas/llm_config.py:LLMConfig.apply_reasoning_setting_to_config for OpenAI reasoning
        models and plain ones (Anthropic, Gemini, ZAI, OpenRouter and Baseten reasoning models
        are treated as plain ones: not emulated)."""
        name = c["model"]
        if _is_openai_reasoner(name):
            c.update(put_inner_thoughts_in_kwargs=False, enable_reasoner=True)
            if c["reasoning_effort"] is None:
                if name.startswith("gpt-5.1"):
                    c["reasoning_effort"] = "none"
                elif name.startswith("gpt-5") and "codex" not in name.lower():
                    c["reasoning_effort"] = "minimal"
                else:
                    c["reasoning_effort"] = "medium"
        elif agent_type == "letta_v1_agent":
            c.update(put_inner_thoughts_in_kwargs=False, enable_reasoner=False, max_reasoning_tokens=0)
        else:
            c.update(put_inner_thoughts_in_kwargs=bool(reasoning), enable_reasoner=bool(reasoning))
        return c

    def create_agent(self, req):
        """routers/v1/agents.py:create_agent -> server.py:create_agent_async ->
        agent_manager.py:create_agent_async. Not emulated: tools (the server attaches base tools),
        tool rules, sources, secrets, compaction settings, model_settings, sleeptime agents
        (enable_sleeptime is only stored)."""
        body = req.json or {}
        actor = self._actor(req)
        with self.s.lock:
            llm = self._create_llm_config(body)
            emb = None
            if body.get("embedding_config") is not None:
                emb = dict(body["embedding_config"])
            elif body.get("embedding") is not None:
                emb = self._embedding_config_for(body["embedding"], body.get("embedding_chunk_size") or 300)
            agent_type = body.get("agent_type") or "letta_v1_agent"
            reasoning = body.get("reasoning")
            if reasoning is None:   # server.py:create_agent_async
                reasoning = bool(llm.get("enable_reasoner") or llm.get("put_inner_thoughts_in_kwargs"))
            if body.get("parallel_tool_calls") is not None:
                llm["parallel_tool_calls"] = body["parallel_tool_calls"]
            self._apply_reasoning(llm, reasoning, agent_type)
            # memory_blocks are created in their own transaction before the agent: they stay
            # when the agent insert fails (block_manager.py:batch_create_blocks_async)
            created = []
            for spec in body.get("memory_blocks") or []:
                if spec.get("description") is None and spec.get("label") in DEFAULT_BLOCK_DESCRIPTIONS:
                    spec = dict(spec, description=DEFAULT_BLOCK_DESCRIPTIONS[spec["label"]])
                created.append(self._new_block(spec, actor))
            if created:
                self.s.changed()
            # blocks_agents rows: only ids that exist (SELECT ... WHERE id IN), inserted with ON
            # CONFLICT DO NOTHING, so a second block of a label is dropped silently. The server
            # inserts in table order, no ORDER BY; the emulator uses creation order.
            wanted = [b for b in body.get("block_ids") or [] if b in self.s.blocks] + [b["id"] for b in created]
            candidates = sorted({b: self.s.blocks[b] for b in wanted}.values(), key=self._key)
            block_ids, labels = [], set()
            for b in candidates:
                if b.get("label") not in labels:
                    labels.add(b.get("label"))
                    block_ids.append(b["id"])
            # identities_agents rows: an unknown identity breaks the foreign key
            identity_ids = list(dict.fromkeys(body.get("identity_ids") or []))
            for iid in identity_ids:
                if iid not in self.s.identities:
                    raise _identity_fk_error(iid)
            tags = list(dict.fromkeys(t for t in body.get("tags") or [] if t != GIT_MEMORY_TAG))
            aid = new_id("agent")
            ts = self.s.stamp(aid)
            if "name" in body:
                name = body["name"]
            else:
                name = random.choice(ADJECTIVES).capitalize() + random.choice(NOUNS).capitalize()
            system = body.get("system")
            if system is None:
                system = LETTA_V1_SYSTEM if agent_type == "letta_v1_agent" else OTHER_SYSTEM % agent_type
            agent = {
                "id": aid, "name": name, "system": system, "agent_type": agent_type,
                "description": body.get("description"), "metadata": body.get("metadata"),
                "tags": tags, "block_ids": block_ids, "message_ids": [],
                "model": llm.get("handle"), "embedding": emb.get("handle") if emb else None,
                "llm_config": llm, "embedding_config": emb,
                "project_id": body.get("project_id"), "template_id": body.get("template_id"),
                "base_template_id": body.get("base_template_id"),
                "timezone": body.get("timezone") or "UTC",
                "hidden": True if SUBAGENT_TAG in tags else body.get("hidden"),
                "message_buffer_autoclear": agent_type == "workflow_agent"
                or bool(body.get("message_buffer_autoclear", False)),
                "enable_sleeptime": body.get("enable_sleeptime"),
                "max_files_open": body.get("max_files_open"),
                "per_file_view_window_char_limit": body.get("per_file_view_window_char_limit"),
                "created_by_id": actor, "last_updated_by_id": actor, "created_at": iso(ts), "updated_at": iso(ts),
                "last_run_completion": None, "last_run_duration_ms": None, "last_stop_reason": None,
                "archive_id": new_id("archive"),
            }
            self.s.agents[aid] = agent
            for iid in identity_ids:
                if aid not in self.s.identities[iid]["agent_ids"]:
                    self.s.identities[iid]["agent_ids"].append(aid)
            # the history starts with the system message (api_messages.py)
            self._start_history(agent, body.get("initial_message_sequence"))
            self.s.changed()
            # the manager's create loads every relationship that has rows
            return 200, self.render_agent(agent, ALL_RELATIONSHIPS)

    # --- list, count, retrieve --------------------------------------------------------------------
    def _filtered_agents(self, req):
        """services/helpers/agent_manager_helper.py:_apply_filters, _apply_identity_filters,
        _apply_tag_filter, then the hidden filter of agent_manager.py:list_agents_async."""
        p = req.params
        agents = list(self.s.agents.values())
        if p.get("name"):
            agents = [a for a in agents if a["name"] == p["name"]]
        if p.get("query_text"):          # ILIKE '%query_text%'
            agents = [a for a in agents if ilike("%" + p["query_text"] + "%", a["name"])]
        for field in ("project_id", "template_id", "base_template_id", "last_stop_reason", "created_by_id"):
            if p.get(field):
                agents = [a for a in agents if a.get(field) == p[field]]
        if p.get("identity_id") and p.get("identifier_keys"):
            # two joins of AgentModel.identities: the database refuses the query (as the
            # emulator reads sqlalchemy's select().join twice on one relationship)
            raise ApiError(500, DB_ERROR)
        if p.get("identity_id"):
            ident = self.s.identities.get(p["identity_id"])
            agents = [a for a in agents if ident and a["id"] in ident["agent_ids"]]
        if p.get("identifier_keys"):
            # a join: an agent linked to two matching identities comes back twice
            keys = set(p["identifier_keys"])
            agents = [a for a in agents for i in self.s.identities.values()
                      if i["identifier_key"] in keys and a["id"] in i["agent_ids"]]
        if p.get("tags"):
            want = set(p["tags"])
            if p.get("match_all_tags"):
                agents = [a for a in agents if want <= set(a["tags"])]
            else:
                agents = [a for a in agents if want & set(a["tags"])]
        if req.query.get("show_hidden_agents", ["false"])[-1].lower() not in BOOL_TRUE:
            agents = [a for a in agents if not a.get("hidden")]
        return agents

    def _sort_value(self, a, sort_by):
        if sort_by == "last_run_completion":
            return _stamp(a.get("last_run_completion"))
        if sort_by == "updated_at":
            return _stamp(a["updated_at"])
        return self._key(a)[0]

    def list_agents(self, req):
        """routers/v1/agents.py:list_agents -> agent_manager.py:list_agents_async. order (default
        desc) and order_by decide; the deprecated ascending and sort_by lose to their defaults.
        Sorted by (order_by column, id), last_run_completion with NULLs last either way
        (_apply_pagination_async). A cursor is looked up among all agents; an unknown one is
        ignored. `limit` (default 50) caps the rows after the cursor filters, so `before` gives
        the first rows of the order, not the ones nearest the cursor; limit=0 means no limit."""
        p = req.params
        asc = (p.get("order") or "desc") == "asc"
        sort_by = p.get("order_by") or "created_at"
        nulls_last = sort_by == "last_run_completion"
        with self.s.lock:
            agents = self._filtered_agents(req)
            for cursor, forward in ((p.get("after"), asc), (p.get("before"), not asc)):
                ref = self.s.agents.get(cursor) if cursor else None
                if ref is not None:
                    rv = (self._sort_value(ref, sort_by), ref["id"])
                    agents = [a for a in agents
                              if _cursor_ok(self._sort_value(a, sort_by), a["id"], rv, forward, nulls_last)]
            known = [a for a in agents if self._sort_value(a, sort_by) is not None]
            nulls = [a for a in agents if self._sort_value(a, sort_by) is None]
            known.sort(key=lambda a: (self._sort_value(a, sort_by), a["id"]), reverse=not asc)
            nulls.sort(key=lambda a: a["id"], reverse=not asc)
            agents = known + nulls
            limit = p.get("limit")
            if limit is not None and limit < 0:
                raise ApiError(500, DB_ERROR)
            if limit:
                agents = agents[:limit]
            rel = self._relationships(req)
            return 200, [self.render_agent(a, rel) for a in agents]

    def count_agents(self, req):
        """routers/v1/agents.py:count_agents -> agent_manager.py:count_agents_async (or size_async
        when no filter and show_hidden_agents): the list filters, no paging."""
        with self.s.lock:
            return 200, len(self._filtered_agents(req))

    def get_agent(self, req):
        """routers/v1/agents.py:retrieve_agent -> agent_manager.py:get_agent_by_id_async."""
        with self.s.lock:
            a = self._agent_by_id(req.path_params["agent_id"])
            return 200, self.render_agent(a, self._relationships(req))

    # --- modify -------------------------------------------------------------------------------
    def precheck_modify_agent(self, body):
        """UpdateAgent's validators that abort body validation (see precheck_create_agent)."""
        self._check_file_limits(body)
        return []

    def modify_agent(self, req):
        """routers/v1/agents.py:modify_agent -> server.py:update_agent_async (model, embedding)
        -> agent_manager.py:update_agent_async: a field given as null or left out keeps its
        value; block_ids, identity_ids and tags replace the links; the agent's updated_at and
        last_updated_by_id change. Not emulated: tools, sources, secrets, compaction settings,
        model_settings, sleeptime agents (enable_sleeptime is only stored)."""
        body = req.json or {}
        aid = req.path_params["agent_id"]
        with self.s.lock:
            llm = None
            if body.get("llm_config") is None and (body.get("model") is not None
                                                   or body.get("context_window_limit") is not None
                                                   or "max_tokens" in body):
                handle = body.get("model")
                if handle is None:
                    handle = self._agent_by_id(aid)["llm_config"].get("handle")
                llm = self._llm_config_for(handle)
                if body.get("context_window_limit") is not None:
                    llm["context_window"] = body["context_window_limit"]
                if "max_tokens" in body:
                    llm["max_tokens"] = body["max_tokens"]
            elif body.get("llm_config") is not None:
                llm = dict(self._llm_defaults(), **body["llm_config"])
            if body.get("parallel_tool_calls") is not None:
                llm = llm or dict(self._agent_by_id(aid)["llm_config"])
                llm["parallel_tool_calls"] = body["parallel_tool_calls"]
            emb = body.get("embedding_config")
            if body.get("embedding") is not None:
                emb = self._embedding_config_for(body["embedding"])
            if body.get("enable_sleeptime"):
                self._agent_by_id(aid)
            a = self._agent_read(aid)
            # the pivot rows are replaced in one transaction: a failure changes nothing
            block_ids = None
            if body.get("block_ids") is not None:
                new = list(dict.fromkeys(body["block_ids"]))
                missing = [b for b in new if b not in self.s.blocks]
                if missing:   # label_map[bid] of an unknown id: KeyError, app.py's generic 500
                    raise ApiError(500, UNKNOWN_ERROR)
                block_ids = self._replace_blocks(a, new)
            if body.get("identity_ids") is not None:
                for iid in body["identity_ids"]:
                    if iid not in self.s.identities:
                        raise _identity_fk_error(iid)
                new_idents = set(body["identity_ids"])
                for i in self.s.identities.values():
                    if i["id"] in new_idents and aid not in i["agent_ids"]:
                        i["agent_ids"].append(aid)
                    elif i["id"] not in new_idents and aid in i["agent_ids"]:
                        i["agent_ids"].remove(aid)
            if block_ids is not None:
                a["block_ids"] = block_ids
            if body.get("tags") is not None:
                a["tags"] = list(dict.fromkeys(body["tags"]))
            for field in ("name", "system", "message_ids", "description", "project_id", "template_id",
                          "base_template_id", "message_buffer_autoclear", "enable_sleeptime",
                          "last_run_duration_ms", "last_stop_reason", "timezone", "max_files_open",
                          "per_file_view_window_char_limit", "metadata"):
                if body.get(field) is not None:
                    a[field] = body[field]
            if body.get("last_run_completion") is not None:
                a["last_run_completion"] = iso(parse_datetime(body["last_run_completion"]))
            if llm is not None:
                a["llm_config"], a["model"] = llm, llm.get("handle")
            if emb is not None:
                a["embedding_config"], a["embedding"] = emb, emb.get("handle")
            a["updated_at"] = iso(time.time())
            a["last_updated_by_id"] = self._actor(req)
            self.s.changed()
            return 200, self.render_agent(a, ALL_RELATIONSHIPS)

    def _replace_blocks(self, agent, new):
        """agent_manager.py:_replace_pivot_rows_async on Postgres: INSERT the new rows ON CONFLICT
        DO NOTHING while the old rows are still there, then DELETE the old rows not in the new set.
        A new block whose label an old attached block holds is therefore dropped, and the old one
        goes too (the server's new_blocks is a set: which of two new blocks of one label stays is
        arbitrary; the emulator keeps the first)."""
        rows = list(agent["block_ids"])
        for bid in new:
            label = self.s.blocks[bid].get("label")
            if bid not in rows and all(self.s.blocks[r].get("label") != label for r in rows if r in self.s.blocks):
                rows.append(bid)
        keep = set(new)
        return [r for r in rows if r in keep]

    # --- delete, context ----------------------------------------------------------------------
    def delete_agent(self, req):
        """routers/v1/agents.py:delete_agent -> agent_manager.py:delete_agent_async (hard delete).
        The database cascades: block, identity and tag links, messages (ON DELETE CASCADE), runs
        (Agent.runs cascade). Blocks and identities stay. The agent's archive stays with its
        passages (only the archives_agents row goes), so they are no longer the agent's."""
        aid = req.path_params["agent_id"]
        with self.s.lock:
            self._agent_read(aid)
            del self.s.agents[aid]
            for i in self.s.identities.values():
                if aid in i["agent_ids"]:
                    i["agent_ids"].remove(aid)
            for p in self.s.passages.values():
                if p["_agent_id"] == aid:
                    p["_agent_id"] = None
            for mid in [m for m, v in self.s.messages.items() if v["_agent_id"] == aid]:
                del self.s.messages[mid]
            for rid in [r for r, v in self.s.runs.items() if v.get("agent_id") == aid]:
                del self.s.runs[rid]
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
        """routers/v1/agents.py:retrieve_agent_context_window -> agent_manager.py:get_context_window
        (404 from get_agent_by_id_async): rebuild_system_prompt_async(force, dry_run) compiles the
        system message afresh; context_window_calculator.py:calculate_context_window takes the
        in-context messages (that system message, then message_ids[1:]), cuts the sections out of
        the system text (extract_system_components) and counts num_messages (in context) and
        num_recall_memory (all the agent's messages). Differs on purpose: token counts are word
        counts (no tokenizer); no tools, so no function definitions."""
        with self.s.lock:
            a = self._agent_by_id(req.path_params["agent_id"])
            n_recall = sum(1 for m in self.s.messages.values() if m["_agent_id"] == a["id"])
            n_arch = sum(1 for p in self.s.passages.values() if p["_agent_id"] == a["id"])
            ids = a["message_ids"]
            msgs = [self._message_model(self.s.messages[m]) for m in ids[1:] if m in self.s.messages]
            system_text = None
            if ids and ids[0] in self.s.messages:
                system_text = self._compile_system(a, self._memory_text(a), time.time(), n_recall - len(ids), n_arch)
                msgs.insert(0, dict(self._message_model(self.s.messages[ids[0]]),
                                    content=[{"type": "text", "text": system_text}]))
            sections = _system_sections(system_text) if system_text else {}
            system_prompt = sections.get("system_prompt") or a["system"] or ""
            core = sections.get("core_memory") or ""
            summary = sections.get("external_memory_summary") or ""
            n_sys, n_core, n_summary = len(words(system_prompt)), len(words(core)), len(words(summary))
            n_msgs = sum(len(words(content_text(m["content"]))) for m in msgs[1:])
            return 200, {
                "context_window_size_max": a["llm_config"].get("context_window"),
                "context_window_size_current": n_sys + n_core + n_summary + n_msgs,
                "num_messages": len(msgs), "num_archival_memory": n_arch, "num_recall_memory": n_recall,
                "num_tokens_external_memory_summary": n_summary, "external_memory_summary": summary,
                "num_tokens_system": n_sys, "system_prompt": system_prompt,
                "num_tokens_core_memory": n_core, "core_memory": core,
                "num_tokens_memory_filesystem": 0, "memory_filesystem": None,
                "num_tokens_tool_usage_rules": 0, "tool_usage_rules": None,
                "num_tokens_directories": 0, "directories": None,
                "num_tokens_summary_memory": 0, "summary_memory": None,
                "num_tokens_functions_definitions": 0, "functions_definitions": [],
                "num_tokens_messages": n_msgs, "messages": msgs,
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
    # §6 agent core-memory blocks
    # =========================================================================================
    def _block_by_label(self, agent, label):
        """agent_manager.py:get_block_with_label_async / modify_block_by_label_async."""
        for bid in agent["block_ids"]:
            b = self.s.blocks.get(bid)
            if b and b["label"] == label:
                return b
        raise ApiError(404, "No block with label '%s' found for agent '%s'" % (label, agent["id"]))

    def core_memory(self, req):
        """routers/v1/agents.py:retrieve_agent_memory -> server.py:get_agent_memory_async: the
        memory of get_agent_by_id_async (all relationships loaded)."""
        with self.s.lock:
            a = self._agent_by_id(req.path_params["agent_id"])
            return 200, self.render_agent(a, ALL_RELATIONSHIPS)["memory"]

    def core_blocks(self, req):
        """agent_manager.py:list_agent_blocks_async: ordered by block id (not created_at), the
        cursors compared with the ids as they are (an unknown cursor still filters), `limit`
        (default 100) taken from the start of the order; limit=0 means no limit."""
        p = req.params
        asc = (p.get("order") or "desc") == "asc"
        with self.s.lock:
            a = self._agent_read(req.path_params["agent_id"])
            blocks = [self.s.blocks[b] for b in a["block_ids"] if b in self.s.blocks]
            if p.get("before"):
                blocks = [b for b in blocks if (b["id"] < p["before"] if asc else b["id"] > p["before"])]
            if p.get("after"):
                blocks = [b for b in blocks if (b["id"] > p["after"] if asc else b["id"] < p["after"])]
            blocks.sort(key=lambda b: b["id"], reverse=not asc)
            limit = p.get("limit")
            if limit is not None and limit < 0:
                raise ApiError(500, DB_ERROR)
            if limit:
                blocks = blocks[:limit]
            return 200, [self._render_block(b) for b in blocks]

    def get_core_block(self, req):
        """routers/v1/agents.py:retrieve_block_for_agent -> get_block_with_label_async (the agent
        read with read_async, so its 404 names the query)."""
        with self.s.lock:
            a = self._agent_read(req.path_params["agent_id"])
            return 200, self._render_block(self._block_by_label(a, req.path_params["block_label"]))

    def modify_core_block(self, req):
        """routers/v1/agents.py:modify_block_for_agent -> modify_block_by_label_async, then
        rebuild_system_prompt_async (api_messages.py)."""
        with self.s.lock:
            a = self._agent_read(req.path_params["agent_id"])
            block = self._block_by_label(a, req.path_params["block_label"])
            out = self._update_block(block, req.json or {}, self._actor(req))
            self._rebuild_system_prompt(a)
            return 200, out

    def attach_block(self, req):
        """agent_manager.py:attach_block_async: agent then block read (404s name the query),
        idempotent, a taken label is a 409, the agent's updated_at moves even when nothing is
        added; returns the agent with every relationship. The sleeptime-group side effect is not
        emulated."""
        with self.s.lock:
            a = self._agent_read(req.path_params["agent_id"])
            bid = req.path_params["block_id"]
            block = self.s.blocks.get(bid)
            if block is None:
                raise ApiError(404, self._read_not_found("Block", bid))
            if bid not in a["block_ids"]:
                self._check_label_free(a, block)
                a["block_ids"].append(bid)
            a["updated_at"] = iso(time.time())
            self.s.changed()
            return 200, self.render_agent(a, ALL_RELATIONSHIPS)

    def detach_block(self, req):
        """agent_manager.py:detach_block_async: 404 when the block is not attached (also when it
        does not exist); the block itself stays."""
        with self.s.lock:
            a = self._agent_read(req.path_params["agent_id"])
            bid = req.path_params["block_id"]
            actor = self._actor(req)
            if bid not in a["block_ids"]:
                raise ApiError(404, "No block with id '%s' found for agent '%s' with actor id: '%s'"
                               % (bid, a["id"], actor))
            a["block_ids"].remove(bid)
            a["updated_at"] = iso(time.time())
            a["last_updated_by_id"] = actor
            self.s.changed()
            return 200, self.render_agent(a, ALL_RELATIONSHIPS)

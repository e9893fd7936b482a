"""Agents, models and agent core-memory blocks (ENDPOINTS.md §2, §6)."""

import time

from emu_core import ALL_RELATIONSHIPS, ApiError, content_text, iso, new_id, paginate, words


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

    def list_models(self, req):
        raise ApiError(501, "not implemented yet")

    def list_embedding_models(self, req):
        raise ApiError(501, "not implemented yet")

    def count_agents(self, req):
        raise ApiError(501, "not implemented yet")

    def modify_agent(self, req):
        raise ApiError(501, "not implemented yet")

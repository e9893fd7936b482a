"""Global blocks (ENDPOINTS.md §5)."""

from emu_core import paginate


class BlocksApi:
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

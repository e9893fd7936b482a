"""Identities and their links (ENDPOINTS.md §7)."""

from emu_core import ApiError, _dedup, new_id, paginate


class IdentitiesApi:
    def _render_identity(self, ident):
        """An Identity as the server returns it (also inside an AgentState)."""
        return dict(ident)

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

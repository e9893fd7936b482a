"""Identities and their links (ENDPOINTS.md §7). The emulator keeps the links (agent_ids, block_ids) in
its state, but like the server never shows them in an Identity: they are read through
/v1/identities/{id}/agents, /v1/identities/{id}/blocks and an agent's identity_ids. FIDELITY.md
(## identities) cites the server source for each behaviour."""

from emu_core import DEFAULT_ORG_ID, UNKNOWN_ERROR, ApiError, _dedup, ilike, new_id
from api_blocks import IDENTITY_ID_RX, include_relationships, invalid_id, unique_violation


class IdentitiesApi:
    def _render_identity(self, ident):
        """An Identity as the server returns it, also inside an AgentState: orm/identity.py:
        Identity.to_pydantic hard-codes agent_ids and block_ids to []."""
        return {"id": ident["id"], "identifier_key": ident["identifier_key"], "name": ident["name"],
                "identity_type": ident["identity_type"], "project_id": ident["project_id"],
                "agent_ids": [], "block_ids": [], "organization_id": DEFAULT_ORG_ID,
                "properties": list(ident["properties"] or [])}

    # =========================================================================================
    # §7 identities
    # =========================================================================================
    def _identity_or_404(self, identity_id):
        """IdentityModel.read_async by id: every identity route 404s with its message (the managers'
        own "Identity not found" HTTPExceptions are unreachable)."""
        ident = self.s.identities.get(identity_id)
        if ident is None:
            raise self._read_404("Identity", identity_id)
        return ident

    def _check_refs(self, body):
        """identity_manager.py:_process_relationship_async: every id must exist, once; otherwise it
        raises sqlalchemy's NoResultFound, which app.py does not map, so the answer is the generic 500."""
        for field, table in (("agent_ids", self.s.agents), ("block_ids", self.s.blocks)):
            ids = body.get(field) or []
            if len({x for x in ids if x in table}) != len(ids):
                raise ApiError(500, UNKNOWN_ERROR)

    def _find_identity(self, key, project_id):
        for i in self.s.identities.values():
            if i["identifier_key"] == key and i["project_id"] == project_id:
                return i
        return None

    def _duplicate(self, key, project_id):
        # unique_identifier_key_project_id_organization_id (postgresql_nulls_not_distinct)
        return unique_violation("Identity", "unique_identifier_key_project_id_organization_id",
                                ("identifier_key", "project_id", "organization_id"), (key, project_id, DEFAULT_ORG_ID))

    def _new_identity(self, body):
        """identity_manager.py:_create_identity_async: links first (500), then the insert (409)."""
        self._check_refs(body)
        if self._find_identity(body["identifier_key"], body.get("project_id")):
            raise self._duplicate(body["identifier_key"], body.get("project_id"))
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
            if p.get("name"):     # query_text: lower(name) LIKE '%' || lower(text) || '%'
                items = [i for i in items if ilike("%" + p["name"] + "%", i["name"])]
            for field in ("project_id", "identifier_key", "identity_type"):
                if p.get(field):
                    items = [i for i in items if i[field] == p[field]]
            # list_identities_async asks for limit+1 rows (None when limit is 0) and keeps `limit`
            limit = p.get("limit")
            page = self._list_async(items, self.s.identities, "Identity", req, limit + 1 if limit else None)
            if limit and len(page) > limit:
                page = page[:limit]
            return 200, [self._render_identity(i) for i in page]

    def count_identities(self, req):
        with self.s.lock:
            return 200, len(self.s.identities)

    def create_identity(self, req):
        with self.s.lock:
            return 200, self._render_identity(self._new_identity(req.json))

    def upsert_identity(self, req):
        body = req.json
        with self.s.lock:
            ident = self._find_identity(body["identifier_key"], body.get("project_id"))
            if ident is None:
                if "upsert-creates" in self.opt.compat:     # servers before 0.16 created it
                    return 200, self._render_identity(self._new_identity(body))
                # upsert_identity_async looks it up with read_async, which raises before the create
                raise self._read_404_where("Identity", "identifier_key='%s', project_id='%s', organization_id='%s'"
                                           % (body["identifier_key"], body.get("project_id"), DEFAULT_ORG_ID))
            # _update_identity_async(replace=True) with an IdentityUpdate that has no block_ids:
            # name and type replaced, agent_ids/properties replaced only when given, block_ids ignored.
            self._check_refs({"agent_ids": body.get("agent_ids")})
            ident.update(name=body["name"], identity_type=body["identity_type"])
            if body.get("agent_ids") is not None:
                ident["agent_ids"] = _dedup(body["agent_ids"])
            if body.get("properties") is not None:
                ident["properties"] = list(body["properties"])
            self.s.changed()
            return 200, self._render_identity(ident)

    def get_identity(self, req):
        with self.s.lock:
            return 200, self._render_identity(self._identity_or_404(req.path_params["identity_id"]))

    def modify_identity(self, req):
        """update_identity_async (replace=False): fields set when not null, properties merged by key,
        agent_ids/block_ids appended; links are checked (500) before the update is flushed (409)."""
        body = req.json or {}
        with self.s.lock:
            ident = self._identity_or_404(req.path_params["identity_id"])
            self._check_refs(body)
            key = body.get("identifier_key")
            if key is not None and key != ident["identifier_key"] and self._find_identity(key, ident["project_id"]):
                raise self._duplicate(key, ident["project_id"])
            for field in ("identifier_key", "name", "identity_type"):
                if body.get(field) is not None:
                    ident[field] = body[field]
            if body.get("properties") is not None:
                merged = {p["key"]: p for p in ident["properties"]}
                for prop in body["properties"]:
                    merged[prop["key"]] = prop
                ident["properties"] = list(merged.values())
            for field in ("agent_ids", "block_ids"):
                for x in body.get(field) or []:
                    if x not in ident[field]:
                        ident[field].append(x)
            self.s.changed()
            return 200, self._render_identity(ident)

    def delete_identity(self, req):
        with self.s.lock:
            ident = self._identity_or_404(req.path_params["identity_id"])
            del self.s.identities[ident["id"]]      # identities_agents/_blocks rows cascade
            self.s.changed()
        return 200, None

    def identity_properties(self, req):
        with self.s.lock:
            ident = self._identity_or_404(req.path_params["identity_id"])
            ident["properties"] = list(req.json or [])
            self.s.changed()
            return 200, self._render_identity(ident)

    def identity_agents(self, req):
        """list_agents_for_identity_async: AgentModel.list_async joined on the identity."""
        with self.s.lock:
            ident = self._identity_or_404(req.path_params["identity_id"])
            agents = [self.s.agents[a] for a in ident["agent_ids"] if a in self.s.agents]
            page = self._list_async(agents, self.s.agents, "Agent", req, req.params.get("limit"))
            rel = include_relationships(req)
            return 200, [self.render_agent(a, rel) for a in page]

    def identity_blocks(self, req):
        """list_blocks_for_identity_async: BlockModel.list_async joined on the identity; hidden and
        template blocks included; the tags are not loaded, so every block shows tags: []."""
        with self.s.lock:
            ident = self._identity_or_404(req.path_params["identity_id"])
            blocks = [self.s.blocks[b] for b in ident["block_ids"] if b in self.s.blocks]
            page = self._list_async(blocks, self.s.blocks, "Block", req, req.params.get("limit"))
            return 200, [dict(self._render_block(b), tags=[]) for b in page]

    def _agent_identity_link(self, req, attach):
        """identity_manager.py:attach_agent_async / detach_agent_async: the identity id is checked
        (400), then read (404), then the agent (404); the route answers null."""
        iid = req.path_params["identity_id"]
        if not IDENTITY_ID_RX.match(iid):
            raise invalid_id("identity", iid)
        with self.s.lock:
            ident = self._identity_or_404(iid)
            aid = req.path_params["agent_id"]
            if aid not in self.s.agents:
                raise self._read_404("Agent", aid)
            if attach and aid not in ident["agent_ids"]:
                ident["agent_ids"].append(aid)
                self.s.changed()
            elif not attach and aid in ident["agent_ids"]:
                ident["agent_ids"].remove(aid)
                self.s.changed()
        return 200, None

    def agent_identity_attach(self, req):
        return self._agent_identity_link(req, True)

    def agent_identity_detach(self, req):
        return self._agent_identity_link(req, False)

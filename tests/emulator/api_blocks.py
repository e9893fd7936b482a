"""Global blocks (ENDPOINTS.md §5), and the server's error texts and paging styles that the blocks and
identities handlers share. FIDELITY.md (## blocks) cites the server source for each behaviour."""

import datetime as dt
import re

from emu_core import DB_ERROR, UNKNOWN_ERROR, ApiError, DEFAULT_ORG_ID, DEFAULT_USER_ID, UUID4_RX, _dedup, ilike

# letta/constants.py; Human/Persona in letta/schemas/block.py default their description to these.
DEFAULT_HUMAN_BLOCK_DESCRIPTION = ("The human block: Stores key details about the person you are conversing with, "
                                   "allowing for more personalized and friend-like conversation.")
DEFAULT_PERSONA_BLOCK_DESCRIPTION = ("The persona block: Stores details about your current persona, guiding how you "
                                     "behave and respond. This helps you to maintain consistency and personality in "
                                     "your interactions.")
# letta/schemas/block.py:BlockUpdate fields; anything else in a body is ignored (extra="ignore").
BLOCK_UPDATE_FIELDS = ("value", "limit", "project_id", "template_name", "is_template", "template_id",
                       "base_template_id", "deployment_id", "entity_id", "preserve_on_migration", "label",
                       "read_only", "description", "metadata", "hidden", "tags")
# letta/validators.py:PRIMITIVE_ID_PATTERNS, used with re.match as the server does
IDENTITY_ID_RX = re.compile("^identity-" + UUID4_RX + "$")
_TRUE = {"true", "1", "yes", "on", "t", "y"}
_FALSE = {"false", "0", "no", "off", "f", "n"}


def unique_violation(model, constraint, columns, values):
    """The 409 of sqlalchemy_base.py:_handle_dbapi_error for a Postgres unique violation (23505). The
    server's text goes on with the SQL statement and its parameters; the emulator stops after DETAIL."""
    return ApiError(409, "A unique constraint was violated for %s. Check your input for duplicates: "
                         "(sqlalchemy.dialects.postgresql.asyncpg.IntegrityError) <class "
                         "'asyncpg.exceptions.UniqueViolationError'>: duplicate key value violates unique "
                         "constraint \"%s\"\nDETAIL:  Key (%s)=(%s) already exists."
                    % (model, constraint, ", ".join(columns), ", ".join("null" if v is None else v for v in values)))


def invalid_id(kind, value):
    """letta/validators.py:raise_on_invalid_id -> LettaInvalidArgumentError -> 400 (str adds the code)."""
    return ApiError(400, "INVALID_ARGUMENT: Invalid %s ID format: %s. Expected format: '%s-<uuid4>'"
                    % (kind, value, kind))


def include_relationships(req):
    """Relations loaded for agents listed under a block or an identity: the managers call
    orm/agent.py:to_pydantic_async(include_relationships=[], include=include), so only `include`
    counts, whatever the client version; agent.blocks also loads the tags."""
    names = set()
    for item in req.params.get("include") or []:
        names.update(("blocks", "tags") if item == "agent.blocks" else (item.replace("agent.", ""),))
    return names


class BlocksApi:
    # =========================================================================================
    # the server's "not found" texts
    # =========================================================================================
    def _read_404(self, model, obj_id):
        """orm/sqlalchemy_base.py:read_async by id: letta's NoResultFound, 404 with str(exc)
        (text from letta_api.py:_read_not_found)."""
        return ApiError(404, self._read_not_found(model, obj_id))

    def _read_404_where(self, model, conditions):
        """read_async by other columns: `conditions` as _read_multiple_preprocess writes them, then
        the actor as in letta_api.py:_read_not_found (default user, the emulator's start time)."""
        when = repr(dt.datetime.fromtimestamp(self.started, dt.timezone.utc))
        return ApiError(404, "%s not found with %s, access level in ['read'] for actor='id='%s' organization_id='%s' "
                             "name='default_user' created_at=%s updated_at=%s is_deleted=False'"
                        % (model, conditions, DEFAULT_USER_ID, DEFAULT_ORG_ID, when, when))

    # =========================================================================================
    # paging styles of the server
    # =========================================================================================
    def _cursor_page(self, items, table, req, ascending, order_key=None):
        """block_manager.py:get_blocks_async / get_agents_for_block_async: a cursor unknown in `table`
        is ignored; after/before compare (created_at, id) in the list's direction; limit 0 = no limit."""
        p, key = req.params, self._key
        for name, forward in (("after", ascending), ("before", not ascending)):
            ref = table.get(p.get(name)) if p.get(name) else None
            if ref is not None:
                k = key(ref)
                items = [x for x in items if (key(x) > k if forward else key(x) < k)]
        items = sorted(items, key=order_key or key, reverse=not ascending)
        limit = p.get("limit")
        if limit:
            if limit < 0:
                raise ApiError(500, DB_ERROR)
            items = items[:limit]
        return items

    def _list_async(self, items, table, model, req, limit):
        """orm/sqlalchemy_base.py:list_async: a cursor that is not a live `model` -> 404; before and
        after together keep the window between them whatever the order (and 400 if reversed), fetch
        2*limit and keep the middle; limit None = no limit, 0 = nothing, negative = database error."""
        p, key = req.params, self._key
        ascending = p.get("order") == "asc"
        refs = {}
        for name in ("before", "after"):
            if p.get(name):
                if p[name] not in table:
                    raise ApiError(404, "No %s found with id %s" % (model, p[name]))
                refs[name] = key(table[p[name]])
        before, after = refs.get("before"), refs.get("after")
        if before is not None and after is not None and before < after:
            raise ApiError(400, "'before' reference must be later than 'after' reference")
        if before is not None and after is not None:
            items = [x for x in items if after < key(x) < before]
        elif before is not None:
            items = [x for x in items if (key(x) < before if ascending else key(x) > before)]
        elif after is not None:
            items = [x for x in items if (key(x) > after if ascending else key(x) < after)]
        items = sorted(items, key=key, reverse=not ascending)
        if limit is None:
            return items
        both = before is not None and after is not None
        if (limit * 2 if both else limit) < 0:
            raise ApiError(500, DB_ERROR)
        if not both:
            return items[:limit]
        items = items[:limit * 2]
        if len(items) > limit:                      # sqlalchemy_base.py:_list_postprocess
            start = max(0, len(items) // 2 - limit // 2)
            items = items[start:start + limit]
        return items

    # =========================================================================================
    # §5 blocks
    # =========================================================================================
    def _block_or_404(self, block_id):
        """BlockModel.read_async (update, delete, identity attach/detach)."""
        b = self.s.blocks.get(block_id)
        if b is None:
            raise self._read_404("Block", block_id)
        return b

    def _agent_counts(self):
        counts = {}
        for a in self.s.agents.values():
            for bid in a["block_ids"]:
                counts[bid] = counts.get(bid, 0) + 1
        return counts

    @staticmethod
    def _tags_match(block, want, match_all):
        have = set(block.get("tags") or [])
        if match_all:       # HAVING count(matching tags) == len(tags): a repeated tag never matches
            return len(have & set(want)) == len(want)
        return bool(have & set(want))

    def _show_hidden(self, req):
        raw = req.query.get("show_hidden_blocks")
        if raw is None:
            return False
        v = raw[-1].lower()
        if v in _TRUE or v in _FALSE:
            return v in _TRUE
        # FastAPI validates the hidden query parameter like any other (bool | None)
        raise ApiError(422, repr([{"type": "bool_parsing", "loc": ("query", "show_hidden_blocks"),
                                   "msg": "Input should be a valid boolean, unable to interpret input",
                                   "input": raw[-1]}]))

    def _filter_blocks(self, req, blocks):
        """block_manager.py:get_blocks_async filters. Returns (blocks, needs_distinct)."""
        p = req.params
        if p.get("label"):
            blocks = [b for b in blocks if b["label"] == p["label"]]
        # templates_only=false means "is_template == false", not "no filter"
        blocks = [b for b in blocks if bool(b["is_template"]) == bool(p.get("templates_only"))]
        if p.get("name"):
            blocks = [b for b in blocks if b.get("template_name") == p["name"]]
        if p.get("project_id"):
            blocks = [b for b in blocks if b.get("project_id") == p["project_id"]]
        if p.get("label_search") and not p.get("label"):
            blocks = [b for b in blocks if ilike("%" + p["label_search"] + "%", b["label"])]
        for param, field in (("description_search", "description"), ("value_search", "value")):
            if p.get(param):
                blocks = [b for b in blocks if ilike("%" + p[param] + "%", b.get(field))]
        if not self._show_hidden(req):
            blocks = [b for b in blocks if not b.get("hidden")]
        gt, lt, eq = (p.get("connected_to_agents_count_" + k) for k in ("gt", "lt", "eq"))
        needs_distinct = False
        if gt is not None or lt is not None or eq is not None:
            counts = self._agent_counts()
            n = lambda b: counts.get(b["id"], 0)  # noqa: E731
            if lt is None and not (eq and 0 in eq):     # inner join: blocks without agents drop out
                blocks = [b for b in blocks if n(b) > 0]
            blocks = [b for b in blocks if (gt is None or n(b) > gt) and (lt is None or n(b) < lt)
                      and (eq is None or n(b) in eq)]
            needs_distinct = True
        if p.get("identifier_keys") and p.get("identity_id"):
            # both join BlockModel.identities: the same tables twice in one statement
            raise ApiError(500, DB_ERROR)
        if p.get("identifier_keys") or p.get("identity_id"):
            linked = set()
            for i in self.s.identities.values():
                if i["id"] == p.get("identity_id") or i["identifier_key"] in (p.get("identifier_keys") or []):
                    linked.update(i["block_ids"])
            blocks = [b for b in blocks if b["id"] in linked]
            needs_distinct = True
        if p.get("tags"):
            blocks = [b for b in blocks if self._tags_match(b, p["tags"], p.get("match_all_tags"))]
        return blocks, needs_distinct

    def list_blocks(self, req):
        with self.s.lock:
            blocks, distinct = self._filter_blocks(req, list(self.s.blocks.values()))
            ascending = req.params.get("order") != "desc"
            # DISTINCT ON (id) needs ORDER BY id first: with those filters the list is in id order
            order_key = (lambda b: (b["id"], self._key(b))) if distinct else None
            page = self._cursor_page(blocks, self.s.blocks, req, ascending, order_key)
            flaky = self.opt.flaky_block_list
            if flaky > 0:
                # --flaky-block-list P: a deliberate test switch, not server behaviour. It silently
                # drops a fraction P of the rows, as users saw blocks.list() "miss" blocks
                # (letta-notes.md). Never rely on the list for discovery.
                page = [b for b in page if self.rng.random() >= flaky]
            return 200, [self._render_block(b) for b in page]

    def count_blocks(self, req):
        """blocks.py:count_blocks: no filter at all -> every block (templates and hidden ones too);
        otherwise block_manager.py:count_blocks_async (is_template == templates_only, hidden counted)."""
        p = req.params
        with self.s.lock:
            blocks = list(self.s.blocks.values())
            if not any(p.get(k) for k in ("label", "templates_only", "name", "tags", "project_id")):
                return 200, len(blocks)
            blocks = [b for b in blocks if bool(b["is_template"]) == bool(p.get("templates_only"))]
            for param, field in (("label", "label"), ("name", "template_name"), ("project_id", "project_id")):
                if p.get(param):
                    blocks = [b for b in blocks if b.get(field) == p[param]]
            if p.get("tags"):
                blocks = [b for b in blocks if self._tags_match(b, p["tags"], p.get("match_all_tags"))]
            return 200, len(blocks)

    def create_block(self, req):
        body = dict(req.json)
        if body.get("value") is None:       # CreateBlock.ensure_value_is_string
            body["value"] = ""
        if body.get("preserve_on_migration") is None:   # null is dropped, the column default is False
            body["preserve_on_migration"] = False
        with self.s.lock:
            block = self._new_block(body, self._actor(req))
            block["tags"] = _dedup(body.get("tags") or [])     # blocks_tags rows: ON CONFLICT DO NOTHING
            self.s.changed()
            out = dict(self._render_block(block), tags=list(body.get("tags") or []))
            # The new row is not refreshed (create_async no_refresh=True), so an unset description is
            # missing from the ORM object and Human/Persona put their default in the answer only.
            if out["description"] is None and out["label"] in ("human", "system/human"):
                out["description"] = DEFAULT_HUMAN_BLOCK_DESCRIPTION
            elif out["description"] is None and out["label"] in ("persona", "system/persona"):
                out["description"] = DEFAULT_PERSONA_BLOCK_DESCRIPTION
            return 200, out

    def get_block(self, req):
        with self.s.lock:
            bid = req.path_params["block_id"]
            block = self.s.blocks.get(bid)
            if block is None:       # blocks.py:retrieve_block raises its own NoResultFound
                raise ApiError(404, "Block with id '%s' not found" % bid)
            return 200, self._render_block(block)

    def _update_block(self, block, body, actor):
        """Apply a BlockUpdate: model_dump(exclude_unset=True, exclude_none=True), so omitted and null
        fields are left alone; unknown fields are ignored. (update_block_async skips the write when
        nothing changes; with one actor and no updated_at in BlockResponse that cannot be seen.)"""
        changes = {k: body[k] for k in BLOCK_UPDATE_FIELDS if body.get(k) is not None}
        new_tags = changes.pop("tags", None)
        if "value" in changes:
            changes["value"] = changes["value"].replace("\x00", "")
        if "label" in changes and changes["label"] != block["label"]:
            # blocks_agents' FK to (block.id, block.label) cascades the new label; a clash with
            # another block of the agent breaks unique_label_per_agent when the update is flushed.
            for a in self.s.agents.values():
                if block["id"] in a["block_ids"] and any(
                        b != block["id"] and self.s.blocks.get(b, {}).get("label") == changes["label"]
                        for b in a["block_ids"]):
                    raise unique_violation("Block", "unique_label_per_agent", ("agent_id", "block_label"),
                                           (a["id"], changes["label"]))
        block.update(changes)
        block["last_updated_by_id"] = actor
        out = self._render_block(block)
        if new_tags is not None:            # tag rows replaced (stored once each), answered as given
            block["tags"] = _dedup(new_tags)
            out["tags"] = list(new_tags)
        self.s.changed()
        return out

    def modify_block(self, req):
        with self.s.lock:
            block = self._block_or_404(req.path_params["block_id"])
            return 200, self._update_block(block, req.json or {}, self._actor(req))

    def delete_block(self, req):
        bid = req.path_params["block_id"]
        with self.s.lock:
            self._block_or_404(bid)
            del self.s.blocks[bid]
            # blocks_agents rows are deleted first; identities_blocks rows go by ON DELETE CASCADE
            for a in self.s.agents.values():
                if bid in a["block_ids"]:
                    a["block_ids"].remove(bid)
            for i in self.s.identities.values():
                if bid in i["block_ids"]:
                    i["block_ids"].remove(bid)
            self.s.changed()
        return 200, None

    def block_agents(self, req):
        """block_manager.py:get_agents_for_block_async: no check that the block exists (an unknown
        block lists no agents)."""
        with self.s.lock:
            bid = req.path_params["block_id"]
            agents = [a for a in self.s.agents.values() if bid in a["block_ids"]]
            page = self._cursor_page(agents, self.s.agents, req, req.params.get("order") == "asc")
            rel = include_relationships(req)
            return 200, [self.render_agent(a, rel) for a in page]

    def _block_identity_link(self, req, attach):
        """identity_manager.py:attach_block_async / detach_block_async, then get_block_by_id_async."""
        iid = req.path_params["identity_id"]
        if not IDENTITY_ID_RX.match(iid):       # the path takes any string; the manager checks it
            raise invalid_id("identity", iid)
        with self.s.lock:
            ident = self._identity_or_404(iid)
            block = self._block_or_404(req.path_params["block_id"])
            if attach and block["id"] not in ident["block_ids"]:
                ident["block_ids"].append(block["id"])
                self.s.changed()
            elif not attach and block["id"] in ident["block_ids"]:
                ident["block_ids"].remove(block["id"])
                self.s.changed()
            return 200, self._render_block(block)

    def block_identity_attach(self, req):
        return self._block_identity_link(req, True)

    def block_identity_detach(self, req):
        return self._block_identity_link(req, False)

"""Archival memory: passages and archives (ENDPOINTS.md §8), as the Postgres (native archive) path
of the server answers them: routers/v1/agents.py, passages.py, archives.py and
agent_manager.query_agent_passages_async. No vectors: a cosine similarity of word counts stands in
for the vector search; each embedding request the server would make goes through self.embedder
(emu_embed.py: its cost and refusals), never under the state lock. FIDELITY.md cites the source
line of each behaviour."""

import collections
import datetime as dt
import math
import re
import time

from emu_core import (ARCHIVAL_TOKEN_LIMIT, DB_ERROR, DEFAULT_ORG_ID, UNKNOWN_ERROR, UUID4_RX, ApiError, _dedup,
                      _zone, ilike, iso, new_archive, new_id, parse_datetime, words)
from emu_embed import tokens

RETRIEVAL_QUERY_DEFAULT_PAGE_SIZE = 5       # letta/constants.py


def _check_id(value, prefix):
    """validators.py:raise_on_invalid_id, on the manager call (a 400, not the router's 422)."""
    if not re.match("^%s-%s$" % (prefix, UUID4_RX), value):
        raise ApiError(400, "INVALID_ARGUMENT: Invalid %s ID format: %s. Expected format: '%s-<uuid4>'"
                       % (prefix, value, prefix))


def _limit(items, limit):
    """`if limit: query.limit(limit)`: 0 means no limit, a negative one is a Postgres error."""
    if not limit:
        return items
    if limit < 0:
        raise ApiError(500, DB_ERROR)
    return items[:limit]


def _text_search(items, query):
    """build_agent_passage_query without an embedding: lower(text) LIKE '%query%', oldest first."""
    return sorted((x for x in items if ilike("%" + query + "%", x["text"])), key=lambda x: (x["_ts"], x["id"]))


def _iso_to_ts(text):
    """datetime.fromisoformat as archive_manager calls it on created_at: its ValueError is a 400
    with the message as detail. A naive value is UTC (the Postgres session time zone)."""
    try:
        d = dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise ApiError(400, str(e))
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return d.timestamp()


def _datetime(values, name, loc, tz=None):
    """A datetime field or query parameter as pydantic parses it: a date alone is that day's 00:00,
    a naive value is read in `tz` (the agent's, for search_agent_archival_memory_async) or UTC (the
    Postgres session time zone). What the schema check let through but is no date is a 422."""
    text = values.get(name)
    if not text:
        return None
    try:
        return parse_datetime(text, tz)
    except ValueError:
        raise ApiError(422, repr([{"type": "datetime_from_date_parsing", "loc": (loc, name),
                                   "msg": "Input should be a valid datetime or date", "input": text}]))


class ArchivalApi:
    # =========================================================================================
    # §8 archival memory
    # =========================================================================================
    # An agent's archive is created with its first passage (archive_manager.
    # get_or_create_default_archive_for_agent_async); until then its archive_id names nothing.
    # The archive keeps the agent's embedding config of that moment.
    def _ensure_archive(self, a, actor):
        aid = a["archive_id"]
        if aid not in self.s.archives:
            self.s.archives[aid] = new_archive(aid, a["name"], self._embedding_config(a), actor, self.s.stamp(aid))
            self.s.changed()
        return self.s.archives[aid]

    def _archive(self, archive_id):
        """archive_manager.get_archive_by_id_async: the row, or ArchiveModel.read_async's
        NoResultFound. An archive outlives its agent (only the archives_agents row goes with it)."""
        arc = self.s.archives.get(archive_id)
        if arc is None:
            raise ApiError(404, self._read_not_found("Archive", archive_id))
        return arc

    def _archive_agent(self, archive_id):
        """The agent attached to the archive (archives_agents), or None once it was deleted."""
        for a in self.s.agents.values():
            if a["archive_id"] == archive_id:
                return a["id"]
        return None

    def _new_passage(self, archive_id, agent_id, text, tags, created_ts, metadata, actor, embedding_config):
        """passage_manager.create_agent_passage_async: tags deduplicated (the server's list(set())
        has no stable order; this keeps the first of each), NUL bytes dropped from the text,
        created_at given or now, updated_at now (the column's server default)."""
        pid = new_id("passage")
        ts = self.s.stamp(pid, created_ts)
        now = ts if created_ts is None else time.time()
        p = {"created_by_id": actor, "last_updated_by_id": actor, "created_at": iso(ts),
             "updated_at": iso(now), "is_deleted": False, "archive_id": archive_id, "source_id": None,
             "file_id": None, "file_name": None, "metadata": metadata or {},
             "tags": _dedup(tags) if tags else tags, "id": pid, "text": text.replace("\x00", ""),
             "embedding": None, "embedding_config": embedding_config, "organization_id": DEFAULT_ORG_ID,
             "_agent_id": agent_id, "_ts": ts}
        self.s.passages[pid] = p
        self.s.changed()
        return p

    def _agent_passages(self, agent_id):
        """The passages of the archive the agent is attached to (build_agent_passage_query joins
        archives_agents); none for an unknown agent."""
        a = self.s.agents.get(agent_id)
        return [p for p in self.s.passages.values() if a and p["archive_id"] == a["archive_id"]]

    def list_passages(self, req):
        """server.get_agent_archival_async -> query_agent_passages_async, SQL path. The agent is not
        looked up: an unknown one has no passages."""
        p = req.params
        with self.s.lock:
            items = self._agent_passages(req.path_params["agent_id"])
            if p.get("search"):
                items = _text_search(items, p["search"])
            # a cursor is any passage of any agent, compared on (created_at, id) whatever the order;
            # an unknown (or deleted) one joins nothing: no rows at all
            for name, keep in (("before", lambda k, c: k < c), ("after", lambda k, c: k > c)):
                if p.get(name):
                    cur = self.s.passages.get(p[name])
                    if cur is None:
                        return 200, []
                    items = [x for x in items if keep((x["_ts"], x["id"]), (cur["_ts"], cur["id"]))]
            if p.get("ascending", True) is False:
                items.sort(key=lambda x: (-x["_ts"], x["id"]))      # created_at DESC, id ASC
            else:
                items.sort(key=lambda x: (x["_ts"], x["id"]))
            return 200, [self._public(x) for x in _limit(items, p.get("limit"))]

    def create_passage(self, req):
        """server.insert_archival_memory_async -> passage_manager.insert_passage: the agent, the
        token limit, the archive (created now if needed, in its own transaction), then the
        embedding request (when the agent has a config) and the passage."""
        body = req.json
        created = _datetime(body, "created_at", "body")
        actor = self._actor(req)
        with self.s.lock:
            a = self._agent_by_id(req.path_params["agent_id"])
            # ApproxTokenCounter (bytes / 4, rounded up); LettaInvalidArgumentError is a 400 whose
            # detail starts with its code
            n = tokens(body["text"])
            if n > ARCHIVAL_TOKEN_LIMIT:
                raise ApiError(400, "INVALID_ARGUMENT: Archival memory content exceeds token limit of %d tokens "
                               "(found %d tokens)" % (ARCHIVAL_TOKEN_LIMIT, n))
            archive_id = self._ensure_archive(a, actor)["id"]
            config = self._embedding_config(a)
        if config:
            self.embedder.embed([body["text"]])      # without the lock: requests overlap
        with self.s.lock:
            p = self._new_passage(archive_id, a["id"], body["text"], body.get("tags"), created, None, actor, config)
            return 200, [self._public(p)]

    @staticmethod
    def _tag_filter(items, tags, mode):
        """query_agent_passages_async filters tags after the query (and its LIMIT): a passage
        without tags never matches."""
        if not tags:
            return items
        want = set(tags)
        if mode == "all":
            return [x for x in items if x.get("tags") and want.issubset(x["tags"])]
        return [x for x in items if want & set(x.get("tags") or [])]

    @staticmethod
    def _rank(items, query):
        """Stand-in for ORDER BY cosine_distance(embedding, query embedding): the cosine of the
        word-count vectors, so a passage's own text ranks it first; newest first on ties. Like a
        vector search it returns the nearest passages even when nothing matches."""
        q = collections.Counter(words(query))
        qn = math.sqrt(sum(n * n for n in q.values()))

        def similarity(x):
            t = collections.Counter(words(x["text"]))
            dot = sum(n * t[w] for w, n in q.items())
            return dot / (qn * math.sqrt(sum(n * n for n in t.values()))) if dot else 0.0
        return [x for _, x in sorted(((similarity(x), x) for x in items),
                                     key=lambda sx: (-sx[0], -sx[1]["_ts"], sx[1]["id"]))]

    def search_passages(self, req):
        """agent_manager.search_agent_archival_memory_async."""
        p = req.params
        for name in ("start_datetime", "end_datetime"):     # FastAPI's 422 comes first
            _datetime(p, name, "query")
        if not p["query"].strip():          # answered before the agent is even looked up
            return 200, {"results": [], "count": 0}
        with self.s.lock:
            a = self._agent_by_id(req.path_params["agent_id"])
        if self._embedding_config(a):       # build_agent_passage_query embeds the query
            self.embedder.embed([p["query"]])
        with self.s.lock:
            tz = a.get("timezone")
            # the router hands the parsed datetimes on: a date-only end_datetime is 00:00 of that
            # day (the manager's end-of-day branch never runs), so that day is left out
            start = _datetime(p, "start_datetime", "query", tz)
            end = _datetime(p, "end_datetime", "query", tz)
            items = [x for x in self._agent_passages(a["id"])
                     if (start is None or x["_ts"] >= start) and (end is None or x["_ts"] <= end)]
            top_k = p["top_k"] if p.get("top_k") is not None else RETRIEVAL_QUERY_DEFAULT_PAGE_SIZE
            # an agent without an embedding config gets the text search of the list instead
            if self._embedding_config(a):
                items = self._rank(items, p["query"])
            else:
                items = _text_search(items, p["query"])
            # the first top_k, then the tag filter over them
            found = self._tag_filter(_limit(items, top_k), p.get("tags"), p.get("tag_match_mode"))
            zone = _zone(tz)
            results = []
            for x in found:
                when = dt.datetime.fromtimestamp(x["_ts"], dt.timezone.utc)
                stamp = when.astimezone(zone).isoformat() if zone else str(when)
                results.append({"id": x["id"], "timestamp": stamp, "content": x["text"],
                                "tags": list(x.get("tags") or [])})
            return 200, {"results": results, "count": len(results)}

    def delete_passage(self, req):
        """server.delete_archival_memory_async: the passage is looked up by id alone, whatever the
        agent in the path (which need not exist), and hard-deleted."""
        mid = req.path_params["memory_id"]
        with self.s.lock:
            if mid not in self.s.passages:
                raise ApiError(404, "Passage with id %s not found in database." % mid)
            del self.s.passages[mid]
            self.s.changed()
        return 200, {"message": "Memory id=%s successfully deleted" % mid}

    def _search_config(self, q, agent_id, archive_id):
        """passages.py:_get_embedding_config_for_search, only with a query."""
        with self.s.lock:
            if q and agent_id:
                _check_id(agent_id, "agent")
                return self._embedding_config(self._agent_by_id(agent_id))
            if q and archive_id:
                _check_id(archive_id, "archive")
                return self._archive(archive_id)["embedding_config"]
            if q:
                # the oldest agent list_agents_async shows (not hidden); with none it reads
                # server.default_embedding_config, which SyncServer does not have
                shown = [a for a in self.s.agents.values() if not a.get("hidden")]
                if not shown:
                    raise ApiError(500, UNKNOWN_ERROR)
                return self._embedding_config(min(shown, key=self._key))
            return None

    def search_all_passages(self, req):
        """routers/v1/passages.py:search_passages. With a query, _get_embedding_config_for_search
        looks up the agent's, else the archive's, else the oldest agent's embedding config, and the
        nearest passages come first (with no config: the text search, in no set order); without a
        query: every passage, oldest first. The score of the SQL path is always 0.0."""
        body = req.json or {}
        q = body.get("query")
        agent_id, archive_id = body.get("agent_id"), body.get("archive_id")
        start, end = _datetime(body, "start_date", "body"), _datetime(body, "end_date", "body")
        config = self._search_config(q, agent_id, archive_id)
        if q and config:                    # build_agent_passage_query embeds the query
            self.embedder.embed([q])
        with self.s.lock:
            if agent_id:                    # agent_id wins over archive_id
                items = self._agent_passages(agent_id)
            elif archive_id:
                items = [x for x in self.s.passages.values() if x["archive_id"] == archive_id]
            else:
                items = list(self.s.passages.values())
            items = [x for x in items
                     if (start is None or x["_ts"] >= start) and (end is None or x["_ts"] <= end)]
            if q and config:
                items = self._rank(items, q)
            elif q:
                items = _text_search(items, q)
            else:
                items.sort(key=lambda x: (x["_ts"], x["id"]))
            items = self._tag_filter(_limit(items, body.get("limit", 50)), body.get("tags"),
                                     body.get("tag_match_mode", "any"))
            return 200, [{"passage": self._public(x), "score": 0.0, "metadata": {}} for x in items]

    def archive_insert(self, req):
        """archive_manager.create_passage_in_archive_async: the archive, one embedding request
        when it has a config, then created_at read by datetime.fromisoformat; no token limit."""
        body = req.json
        actor = self._actor(req)
        with self.s.lock:
            arc = dict(self._archive(req.path_params["archive_id"]))
        if arc["embedding_config"] is not None:
            self.embedder.embed([body["text"]])
        created = _iso_to_ts(body["created_at"]) if body.get("created_at") else None
        with self.s.lock:
            p = self._new_passage(arc["id"], self._archive_agent(arc["id"]), body["text"], body.get("tags"),
                                  created, body.get("metadata"), actor, arc["embedding_config"])
            return 200, self._public(p)

    def archive_insert_batch(self, req):
        """archive_manager.create_passages_in_archive_async: an empty list is [] before the archive
        is looked up; one request_embeddings call for every text (a refused text fails the whole
        call: 500, nothing written); every created_at is read before anything is written; one
        transaction; the answer is read back ORDER BY created_at."""
        items = req.json["passages"]
        if not items:
            return 200, []
        actor = self._actor(req)
        with self.s.lock:
            arc = dict(self._archive(req.path_params["archive_id"]))
        if arc["embedding_config"] is None:      # archive.embedding_config.embedding_endpoint_type
            raise ApiError(500, UNKNOWN_ERROR)
        self.embedder.embed([it["text"] for it in items])
        created = [_iso_to_ts(it["created_at"]) if isinstance(it.get("created_at"), str) and it["created_at"]
                   else None for it in items]
        with self.s.lock:
            agent_id = self._archive_agent(arc["id"])
            out = [self._new_passage(arc["id"], agent_id, it["text"], it.get("tags"), ts, it.get("metadata"), actor,
                                     arc["embedding_config"]) for it, ts in zip(items, created)]
            out.sort(key=lambda x: x["_ts"])
            return 200, [self._public(x) for x in out]

    # =========================================================================================
    # archives (routers/v1/archives.py)
    # =========================================================================================
    def list_archives(self, req):
        """archive_manager.list_archives_async: agent_id's format (400), the agent (404 "Agent not
        found"), then ArchiveModel.list_async: name exact, cursors, order, LIMIT."""
        p = req.params
        agent_id = p.get("agent_id")
        if agent_id is not None:
            _check_id(agent_id, "agent")
        with self.s.lock:
            if agent_id and agent_id not in self.s.agents:      # validate_agent_exists_async
                raise ApiError(404, "Agent not found")
            items = list(self.s.archives.values())
            if p.get("name") is not None:
                items = [x for x in items if x["name"] == p["name"]]
            if agent_id is not None:
                a = self.s.agents.get(agent_id)
                items = [x for x in items if a and x["id"] == a["archive_id"]]
            cursors = {}
            for name in ("before", "after"):
                if p.get(name):             # db_session.get(Archive, id): any archive
                    if p[name] not in self.s.archives:
                        raise ApiError(404, "No Archive found with id %s" % p[name])
                    cursors[name] = self.s.archives[p[name]]
            items = _page_archives(items, cursors.get("before"), cursors.get("after"),
                                   p.get("order", "desc") == "asc", p.get("limit"))
            return 200, [self._public(x) for x in items]

    def get_archive(self, req):
        """archive_manager.get_archive_by_id_async."""
        with self.s.lock:
            return 200, self._public(self._archive(req.path_params["archive_id"]))

    def delete_archive(self, req):
        """archive_manager.delete_archive_async: the archive (404), then a hard delete; 204, no body
        (as for a passage, below). Its passages go with it (archival_passages.archive_id is ON DELETE
        CASCADE, orm/mixins.py:ArchiveMixin) and so does the agent's link (archives_agents,
        orm/archives_agents.py): the agent's next passage makes it a new archive."""
        archive_id = req.path_params["archive_id"]
        with self.s.lock:
            self._archive(archive_id)
            del self.s.archives[archive_id]
            for pid in [pid for pid, p in self.s.passages.items() if p["archive_id"] == archive_id]:
                del self.s.passages[pid]
            for a in self.s.agents.values():
                if a["archive_id"] == archive_id:
                    a["archive_id"] = new_id("archive")
            self.s.changed()
        return 204, None

    def delete_archive_passage(self, req):
        """archive_manager.delete_passage_from_archive_async: the archive (404), the passage (404
        "Agent passage with id … not found in database."), that it is the archive's (ValueError:
        400), then a hard delete. The route's status_code=204 with `return None`: FastAPI drops
        the body (is_body_allowed_for_status_code), Starlette sends no content-length for 204."""
        archive_id, pid = req.path_params["archive_id"], req.path_params["passage_id"]
        with self.s.lock:
            self._archive(archive_id)
            p = self.s.passages.get(pid)
            if p is None:
                raise ApiError(404, "Agent passage with id %s not found in database." % pid)
            if p["archive_id"] != archive_id:
                raise ApiError(400, "Passage %s does not belong to archive %s" % (pid, archive_id))
            del self.s.passages[pid]
            self.s.changed()
        return 204, None


def _page_archives(items, before, after, ascending, limit):
    """sqlalchemy_base.py:list_async/_list_preprocess/_list_postprocess on (created_at, id)."""
    if before and after and before["_ts"] < after["_ts"]:
        raise ApiError(400, "'before' reference must be later than 'after' reference")

    def key(x):
        return (x["_ts"], x["id"])
    if before and after:                # a window, whatever the order
        items = [x for x in items if key(after) < key(x) < key(before)]
    elif before:                        # the tie on id is `<` in both orders
        items = [x for x in items if (x["_ts"] < before["_ts"] if ascending else x["_ts"] > before["_ts"])
                 or (x["_ts"] == before["_ts"] and x["id"] < before["id"])]
    elif after:
        items = [x for x in items if (x["_ts"] > after["_ts"] if ascending else x["_ts"] < after["_ts"])
                 or (x["_ts"] == after["_ts"] and x["id"] > after["id"])]
    items.sort(key=key, reverse=not ascending)
    if limit is None:
        return items
    if limit < 0:
        raise ApiError(500, DB_ERROR)
    items = items[:limit * 2] if before and after else items[:limit]
    if before and after and len(items) > limit:     # the middle of the window
        start = max(0, len(items) // 2 - limit // 2)
        items = items[start:start + limit]
    return items

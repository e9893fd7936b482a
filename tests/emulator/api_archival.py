"""Archival memory: passages and archives (ENDPOINTS.md §8), as the Postgres (native archive) path
of the server answers them: routers/v1/agents.py, passages.py, archives.py and
agent_manager.query_agent_passages_async. No embeddings: a cosine similarity of word counts stands
in for the vector search. FIDELITY.md cites the source line of each behaviour."""

import collections
import datetime as dt
import math
import re
import time

from emu_core import (ARCHIVAL_TOKEN_LIMIT, DB_ERROR, DEFAULT_ORG_ID, UNKNOWN_ERROR, UUID4_RX, ApiError, _dedup,
                      _zone, ilike, iso, new_id, parse_datetime, words)

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
    def _ensure_archive(self, a):
        if "_archive_embedding_config" not in a:
            a["_archive_embedding_config"] = self._embedding_config(a)

    def _archive(self, archive_id):
        """archive_manager.get_archive_by_id_async -> {archive_id, _archive_embedding_config}, or
        ArchiveModel.read_async's NoResultFound. An archive outlives its agent (only the
        archives_agents row is deleted with it); the emulator keeps no archive table, so such an
        archive is known by its passages, the first of which carries the archive's config."""
        for a in self.s.agents.values():
            if a["archive_id"] == archive_id and "_archive_embedding_config" in a:
                return a
        left = [p for p in self.s.passages.values() if p["archive_id"] == archive_id]
        if left:
            first = min(left, key=self._key)
            return {"id": None, "archive_id": archive_id, "_archive_embedding_config": first["embedding_config"]}
        raise ApiError(404, self._read_not_found("Archive", archive_id))

    def _new_passage(self, a, text, tags, created_ts, metadata, actor, embedding_config):
        """passage_manager.create_agent_passage_async: tags deduplicated (the server's list(set())
        has no stable order; this keeps the first of each), NUL bytes dropped from the text,
        created_at given or now, updated_at now (the column's server default)."""
        pid = new_id("passage")
        ts = self.s.stamp(pid, created_ts)
        now = ts if created_ts is None else time.time()
        p = {"created_by_id": actor, "last_updated_by_id": actor, "created_at": iso(ts),
             "updated_at": iso(now), "is_deleted": False, "archive_id": a["archive_id"], "source_id": None,
             "file_id": None, "file_name": None, "metadata": metadata or {},
             "tags": _dedup(tags) if tags else tags, "id": pid, "text": text.replace("\x00", ""),
             "embedding": None, "embedding_config": embedding_config, "organization_id": DEFAULT_ORG_ID,
             "_agent_id": a["id"], "_ts": ts}
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
        """server.insert_archival_memory_async -> passage_manager.insert_passage."""
        body = req.json
        created = _datetime(body, "created_at", "body")
        actor = self._actor(req)
        with self.s.lock:
            a = self._agent_by_id(req.path_params["agent_id"])
            # ApproxTokenCounter (bytes / 4, rounded up); LettaInvalidArgumentError is a 400 whose
            # detail starts with its code
            tokens = (len(body["text"].encode("utf-8")) + 3) // 4
            if tokens > ARCHIVAL_TOKEN_LIMIT:
                raise ApiError(400, "INVALID_ARGUMENT: Archival memory content exceeds token limit of %d tokens "
                               "(found %d tokens)" % (ARCHIVAL_TOKEN_LIMIT, tokens))
            self._ensure_archive(a)
            p = self._new_passage(a, body["text"], body.get("tags"), created, None, actor,
                                  self._embedding_config(a))
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

    def search_all_passages(self, req):
        """routers/v1/passages.py:search_passages. With a query, _get_embedding_config_for_search
        looks up the agent's, else the archive's, else the oldest agent's embedding config, and the
        nearest passages come first (with no config: the text search, in no set order); without a
        query: every passage, oldest first. The score of the SQL path is always 0.0."""
        body = req.json or {}
        q = body.get("query")
        agent_id, archive_id = body.get("agent_id"), body.get("archive_id")
        start, end = _datetime(body, "start_date", "body"), _datetime(body, "end_date", "body")
        with self.s.lock:
            config = None
            if q and agent_id:
                _check_id(agent_id, "agent")
                config = self._embedding_config(self._agent_by_id(agent_id))
            elif q and archive_id:
                _check_id(archive_id, "archive")
                config = self._archive(archive_id)["_archive_embedding_config"]
            elif q:
                # the oldest agent list_agents_async shows (not hidden); with none it reads
                # server.default_embedding_config, which SyncServer does not have
                shown = [a for a in self.s.agents.values() if not a.get("hidden")]
                if not shown:
                    raise ApiError(500, UNKNOWN_ERROR)
                config = self._embedding_config(min(shown, key=self._key))
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
        """archive_manager.create_passage_in_archive_async: no token limit, the archive's embedding
        config, created_at a string read by datetime.fromisoformat."""
        body = req.json
        with self.s.lock:
            actor = self._actor(req)
            a = self._archive(req.path_params["archive_id"])
            created = _iso_to_ts(body["created_at"]) if body.get("created_at") else None
            p = self._new_passage(a, body["text"], body.get("tags"), created, body.get("metadata"), actor,
                                  a["_archive_embedding_config"])
            return 200, self._public(p)

    def archive_insert_batch(self, req):
        """archive_manager.create_passages_in_archive_async: an empty list is [] before the archive
        is looked up; every created_at is read before anything is written; the answer is read back
        ORDER BY created_at."""
        items = req.json["passages"]
        if not items:
            return 200, []
        with self.s.lock:
            actor = self._actor(req)
            a = self._archive(req.path_params["archive_id"])
            if a["_archive_embedding_config"] is None:      # archive.embedding_config.embedding_endpoint_type
                raise ApiError(500, UNKNOWN_ERROR)
            created = [_iso_to_ts(it["created_at"]) if isinstance(it.get("created_at"), str) and it["created_at"]
                       else None for it in items]
            out = [self._new_passage(a, it["text"], it.get("tags"), ts, it.get("metadata"), actor,
                                     a["_archive_embedding_config"]) for it, ts in zip(items, created)]
            out.sort(key=lambda x: x["_ts"])
            return 200, [self._public(x) for x in out]

"""Archival memory: passages and archives (ENDPOINTS.md §8)."""

import datetime as dt

from emu_core import (ARCHIVAL_TOKEN_LIMIT, ApiError, DEFAULT_USER_ID, _zone, iso, new_id, paginate,
                       parse_datetime, words)


class ArchivalApi:
    # =========================================================================================
    # §8 archival memory
    # =========================================================================================
    def _new_passage(self, agent_id, archive_id, text, tags=None, created_at=None, metadata=None,
                     actor=DEFAULT_USER_ID, embedding_config=None):
        approx_tokens = len(text) // 4
        if approx_tokens > ARCHIVAL_TOKEN_LIMIT:
            raise ApiError(400, "Archival memory content exceeds token limit of %d tokens (got about %d)"
                           % (ARCHIVAL_TOKEN_LIMIT, approx_tokens))
        pid = new_id("passage")
        ts = parse_datetime(created_at) if created_at else None
        ts = self.s.stamp(pid, ts)
        p = {"created_by_id": actor, "last_updated_by_id": actor, "created_at": iso(ts),
             "updated_at": iso(ts), "is_deleted": False, "archive_id": archive_id, "source_id": None,
             "file_id": None, "file_name": None, "metadata": metadata or {}, "tags": tags,
             "id": pid, "text": text, "embedding": None, "embedding_config": embedding_config,
             "_agent_id": agent_id, "_ts": ts}
        self.s.passages[pid] = p
        self.s.changed()
        return p

    def _agent_passages(self, agent_id):
        return [p for p in self.s.passages.values() if p["_agent_id"] == agent_id]

    def list_passages(self, req):
        p = req.params
        with self.s.lock:
            a = self._agent(req.path_params["agent_id"])
            items = self._agent_passages(a["id"])
            if p.get("search"):
                needle = p["search"].lower()
                items = [x for x in items if needle in x["text"].lower()]
            asc = p.get("ascending", True)
            page = paginate(items, self._key, after=p.get("after"), before=p.get("before"),
                            limit=p.get("limit"), descending=not asc, key_of_cursor=self._cursor)
            return 200, [self._public(x) for x in page]

    def create_passage(self, req):
        body = req.json
        with self.s.lock:
            a = self._agent(req.path_params["agent_id"])
            try:
                p = self._new_passage(a["id"], a["archive_id"], body["text"], body.get("tags"),
                                      body.get("created_at"), actor=self._actor(req),
                                      embedding_config=self._embedding_config(a))
            except ValueError as e:
                raise ApiError(400, str(e))
            return 200, [self._public(p)]

    @staticmethod
    def _tag_filter(items, tags, mode):
        if not tags:
            return items
        want = set(tags)
        if mode == "all":
            return [x for x in items if want.issubset(x.get("tags") or [])]
        return [x for x in items if want & set(x.get("tags") or [])]

    @staticmethod
    def _rank(items, query):
        """Stand-in for vector search: rank by shared words with the query, newest first on ties.
        Like a vector search it returns the nearest passages even when nothing really matches."""
        q = set(words(query))

        def score(x):
            return len(q & set(words(x["text"])))
        return sorted(((score(x), x) for x in items), key=lambda sx: (-sx[0], -sx[1]["_ts"]))

    def search_passages(self, req):
        p = req.params
        with self.s.lock:
            a = self._agent(req.path_params["agent_id"])
            tz = a.get("timezone")
            items = self._tag_filter(self._agent_passages(a["id"]), p.get("tags"), p.get("tag_match_mode"))
            try:
                if p.get("start_datetime"):
                    start = parse_datetime(p["start_datetime"], tz)
                    items = [x for x in items if x["_ts"] >= start]
                if p.get("end_datetime"):
                    end_text = p["end_datetime"]
                    end = parse_datetime(end_text, tz)
                    if len(end_text.strip()) == 10:        # a date-only end includes that whole day
                        end += 86400 - 1e-6
                    items = [x for x in items if x["_ts"] <= end]
            except ValueError as e:
                raise ApiError(400, "Invalid datetime: %s" % e)
            top_k = p.get("top_k") if p.get("top_k") is not None else 5
            ranked = self._rank(items, p["query"])[:max(0, top_k)]
            zone = _zone(tz)
            results = []
            for _, x in ranked:
                when = dt.datetime.fromtimestamp(x["_ts"], dt.timezone.utc)
                stamp = when.astimezone(zone).isoformat() if zone else str(when)
                results.append({"id": x["id"], "timestamp": stamp, "content": x["text"],
                                "tags": list(x.get("tags") or [])})
            return 200, {"results": results, "count": len(results)}

    def delete_passage(self, req):
        mid = req.path_params["memory_id"]
        with self.s.lock:
            a = self._agent(req.path_params["agent_id"])
            p = self.s.passages.get(mid)
            if p is None or p["_agent_id"] != a["id"]:
                raise ApiError(404, "Passage not found with id=%s" % mid)
            del self.s.passages[mid]
            self.s.changed()
        return 200, {"message": "Memory id=%s successfully deleted" % mid}

    def search_all_passages(self, req):
        body = req.json or {}
        with self.s.lock:
            items = list(self.s.passages.values())
            if body.get("agent_id"):
                items = [x for x in items if x["_agent_id"] == body["agent_id"]]
            if body.get("archive_id"):
                items = [x for x in items if x["archive_id"] == body["archive_id"]]
            items = self._tag_filter(items, body.get("tags"), body.get("tag_match_mode", "any"))
            try:
                if body.get("start_date"):
                    start = parse_datetime(body["start_date"])
                    items = [x for x in items if x["_ts"] >= start]
                if body.get("end_date"):
                    end = parse_datetime(body["end_date"])
                    items = [x for x in items if x["_ts"] <= end]
            except ValueError as e:
                raise ApiError(400, "Invalid datetime: %s" % e)
            q = body.get("query") or ""
            ranked = self._rank(items, q)[:body.get("limit", 50)]
            n = max(1, len(set(words(q))))
            return 200, [{"passage": self._public(x), "score": s / n, "metadata": {}} for s, x in ranked]

    def _archive_agent(self, archive_id):
        for a in self.s.agents.values():
            if a["archive_id"] == archive_id:
                return a
        raise ApiError(404, "Archive not found with id=%s" % archive_id)

    def archive_insert(self, req):
        body = req.json
        with self.s.lock:
            a = self._archive_agent(req.path_params["archive_id"])
            try:
                p = self._new_passage(a["id"], a["archive_id"], body["text"], body.get("tags"),
                                      body.get("created_at"), body.get("metadata"), self._actor(req),
                                      self._embedding_config(a))
            except ValueError as e:
                raise ApiError(400, str(e))
            return 200, self._public(p)

    def archive_insert_batch(self, req):
        body = req.json
        with self.s.lock:
            a = self._archive_agent(req.path_params["archive_id"])
            out = []
            try:
                for item in body["passages"]:
                    out.append(self._public(self._new_passage(
                        a["id"], a["archive_id"], item["text"], item.get("tags"), item.get("created_at"),
                        item.get("metadata"), self._actor(req), self._embedding_config(a))))
            except ValueError as e:
                raise ApiError(400, str(e))
            return 200, out

"""Archival memory (passages) and archive inserts, checked against the server at 56ba9c25 (paths
below are relative to the letta repository): list, create, search, delete, org-wide search, and
POST /v1/archives/{id}/passages[/batch]. ENDPOINTS.md §8."""

import unittest

from emu_helpers import ACTOR, MISSING_AGENT, WHEN_RX, EmulatorTestCase, make_agent

MISSING_ARCHIVE = "archive-00000000-0000-4000-8000-000000000000"


class ArchivalTest(EmulatorTestCase):
    def setUp(self):
        super().setUp()
        self.agent = make_agent(self.c)
        self.base = "/v1/agents/%s/archival-memory" % self.agent["id"]

    def add(self, text, base=None, **extra):
        r = self.c.post(base or self.base, dict(extra, text=text))
        self.assertEqual(r.status, 200, r)
        return r.json[0]

    def ids(self, query=None, base=None):
        r = self.c.get(base or self.base, query=query)
        self.assertEqual(r.status, 200, r)
        return [p["id"] for p in r.json]

    def search(self, **query):
        r = self.c.get(self.base + "/search", query=query)
        self.assertEqual(r.status, 200, r)
        return [x["content"] for x in r.json["results"]]

    # --- create ---------------------------------------------------------------------------
    def test_create_returns_an_array_with_one_passage(self):
        """routers/v1/agents.py:create_passage (response_model=list[Passage]);
        passage_manager.insert_passage: the agent's embedding_config, metadata {}, the actor."""
        r = self.c.post(self.base, {"text": "I like coffee", "tags": ["food"]})
        self.assertEqual(r.status, 200)
        self.assertIsInstance(r.json, list)
        p = r.json[0]
        self.assertRegex(p["id"], r"^passage-[0-9a-f]{8}-")
        self.assertEqual((p["text"], p["tags"], p["is_deleted"], p["metadata"]), ("I like coffee", ["food"], False, {}))
        self.assertIsNone(p["embedding"])
        self.assertIsNone(p["file_id"])
        self.assertEqual(p["embedding_config"], self.agent["embedding_config"])
        self.assertTrue(p["created_by_id"].startswith("user-"))
        self.assertTrue(p["archive_id"].startswith("archive-"))

    def test_create_requires_text(self):
        """CreateArchivalMemory.text is required (schemas/memory.py)."""
        self.assertEqual(self.c.post(self.base, {"tags": []}).status, 422)

    def test_token_limit_counts_utf8_bytes_over_4_rounded_up(self):
        """server.py:insert_archival_memory_async with ApproxTokenCounter._approx_token_count
        (ceil(bytes / 4)) against settings.archival_memory_token_limit = 8192; the error is a
        LettaInvalidArgumentError, a 400 whose detail is 'INVALID_ARGUMENT: ...' (app.py)."""
        self.assertEqual(self.c.post(self.base, {"text": "x" * 32768}).status, 200)
        r = self.c.post(self.base, {"text": "x" * 32769})
        self.assertEqual((r.status, r.json), (400, {"detail": "INVALID_ARGUMENT: Archival memory content exceeds "
                                                    "token limit of 8192 tokens (found 8193 tokens)"}))
        r = self.c.post(self.base, {"text": "\u00e9" * 16385})      # 32770 bytes, 16385 characters
        self.assertEqual(r.status, 400)
        self.assertIn("(found 8193 tokens)", r.json["detail"])

    def test_create_with_created_at_keeps_it_and_updated_at_is_now(self):
        """CreateArchivalMemory.created_at is a datetime, stored in a timestamptz column and read
        back in UTC; updated_at is the column's server default now() (orm/base.py)."""
        p = self.add("old", created_at="2024-01-15T09:30:00+02:00")
        self.assertEqual(p["created_at"], "2024-01-15T07:30:00Z")
        self.assertFalse(p["updated_at"].startswith("2024-"))
        self.assertTrue(self.add("naive", created_at="2024-01-15T09:30:00")["created_at"].startswith("2024-01-15T09:30:00"))
        self.assertEqual(self.c.post(self.base, {"text": "x", "created_at": "2024-02-30T00:00:00"}).status, 422)
        # pydantic 2 reads a number in a string as a Unix time (milliseconds above 2e10)
        self.assertEqual(self.add("unix", created_at="1700000000.5")["created_at"], "2023-11-14T22:13:20.500000Z")
        self.assertEqual(self.add("unix ms", created_at="1700000000000")["created_at"], "2023-11-14T22:13:20Z")
        self.assertEqual(self.add("forms", created_at="2024-01-15t09:30:00,1234567+0530")["created_at"],
                         "2024-01-15T04:00:00.123456Z")
        self.assertEqual(self.add("hour zone", created_at="2024-01-15_09:30-02")["created_at"], "2024-01-15T11:30:00Z")

    def test_tags_are_deduplicated_and_nul_bytes_dropped(self):
        """passage_manager.create_agent_passage_async: tags = list(set(tags)) when non-empty (the
        emulator keeps first-seen order, the server's is arbitrary); '\\x00' removed from text."""
        p = self.add("a\x00b", tags=["x", "y", "x"])
        self.assertEqual((p["text"], sorted(p["tags"])), ("ab", ["x", "y"]))
        self.assertEqual(self.add("none")["tags"], None)
        self.assertEqual(self.add("empty", tags=[])["tags"], [])

    def test_create_for_unknown_agent_is_404(self):
        """server.py:insert_archival_memory_async looks the agent up first
        (agent_manager.get_agent_by_id_async: NoResultFound 'Agent with ID ... not found')."""
        r = self.c.post("/v1/agents/%s/archival-memory" % MISSING_AGENT, {"text": "x" * 40000})
        self.assertEqual((r.status, r.json), (404, {"detail": "Agent with ID %s not found" % MISSING_AGENT}))

    # --- list -----------------------------------------------------------------------------
    def test_list_defaults_limit_100_oldest_first(self):
        """routers/v1/agents.py:list_passages: limit=100, ascending=True; build_agent_passage_query
        orders by created_at ASC, id ASC."""
        ids = [self.add("note %d" % i)["id"] for i in range(101)]
        self.assertEqual(self.ids(), ids[:100])
        self.assertEqual(self.ids({"limit": 0}), ids)            # `if limit:` - 0 is no limit
        self.assertEqual(self.ids({"ascending": "false", "limit": 3}), ids[::-1][:3])

    def test_list_negative_limit_is_a_database_error(self):
        """agent_manager.query_agent_passages_async passes it to LIMIT; Postgres refuses, and
        app.py:dbapi_error_handler answers 500."""
        self.add("x")
        r = self.c.get(self.base, query={"limit": -1})
        self.assertEqual((r.status, r.json), (500, {"detail": "A database error occurred."}))

    def test_list_cursors_ascending(self):
        """helpers/agent_manager_helper.py:build_agent_passage_query: after keeps (created_at, id) >
        cursor, before keeps < cursor, then ORDER BY and LIMIT: `before` with a limit gives the
        oldest items, not the ones next to the cursor."""
        ids = [self.add("note %d" % i)["id"] for i in range(5)]
        self.assertEqual(self.ids({"limit": 2, "after": ids[1]}), ids[2:4])
        self.assertEqual(self.ids({"before": ids[3]}), ids[:3])
        self.assertEqual(self.ids({"before": ids[3], "limit": 2}), ids[:2])
        self.assertEqual(self.ids({"after": ids[0], "before": ids[4]}), ids[1:4])

    def test_list_descending_after_still_means_newer(self):
        """build_agent_passage_query applies created_at > cursor for `after` whatever `ascending`
        is, so with ascending=false the 'next page' repeats the newer items; `before` pages on."""
        ids = [self.add("note %d" % i)["id"] for i in range(5)]
        page1 = self.ids({"ascending": "false", "limit": 2})
        self.assertEqual(page1, [ids[4], ids[3]])
        self.assertEqual(self.ids({"ascending": "false", "limit": 2, "after": page1[-1]}), [ids[4]])
        self.assertEqual(self.ids({"ascending": "false", "limit": 2, "before": page1[-1]}), [ids[2], ids[1]])

    def test_list_ties_on_created_at_order_by_id(self):
        """build_agent_passage_query: created_at then id ASC, in both directions."""
        same = "2025-05-05T05:05:05Z"
        ids = sorted(self.add("t%d" % i, created_at=same)["id"] for i in range(4))
        self.assertEqual(self.ids(), ids)
        self.assertEqual(self.ids({"ascending": "false"}), ids)
        self.assertEqual(self.ids({"after": ids[1]}), ids[2:])

    def test_list_cursor_unknown_deleted_or_of_another_agent(self):
        """The cursor is a subquery on the passage id alone (no agent filter): another agent's
        passage works as a position; an unknown or deleted (hard-deleted) one joins nothing, so
        the answer is empty."""
        ids = [self.add("note %d" % i)["id"] for i in range(3)]
        other = "/v1/agents/%s/archival-memory" % make_agent(self.c)["id"]
        foreign = self.add("elsewhere", base=other)["id"]
        later = self.add("later")["id"]
        self.assertEqual(self.ids({"before": foreign}), ids)
        self.assertEqual(self.ids({"after": foreign}), [later])
        self.assertEqual(self.ids({"after": "passage-00000000-0000-4000-8000-000000000000"}), [])
        self.assertEqual(self.c.delete(self.base + "/" + ids[0]).status, 200)
        self.assertEqual(self.ids({"after": ids[0]}), [])
        self.assertEqual(self.ids({"after": ""}), ids[1:] + [later])

    def test_list_for_unknown_agent_is_empty_not_404(self):
        """server.py:get_agent_archival_async goes straight to query_agent_passages_async, which
        joins archives_agents and never looks the agent up."""
        r = self.c.get("/v1/agents/%s/archival-memory" % MISSING_AGENT)
        self.assertEqual((r.status, r.json), (200, []))
        self.assertEqual(self.c.get("/v1/agents/agent-1/archival-memory").status, 422)   # validators.py:AgentId

    def test_list_search_is_a_case_insensitive_like(self):
        """build_agent_passage_query: lower(text) LIKE '%' || lower(search) || '%' with no
        escaping, so % and _ are wildcards and a backslash escapes (Postgres): a trailing one
        escapes the closing %."""
        self.add("Note 3: 100% sure")
        self.add("note_4")
        self.add("notes")
        self.add("at 100%")
        texts = lambda s: [p["text"] for p in self.c.get(self.base, query={"search": s}).json]  # noqa
        self.assertEqual(texts("NOTE 3"), ["Note 3: 100% sure"])
        self.assertEqual(texts("note_"), ["Note 3: 100% sure", "note_4", "notes"])
        self.assertEqual(texts("note\\_"), ["note_4"])
        self.assertEqual(texts("1%sure"), ["Note 3: 100% sure"])
        self.assertEqual(texts("100\\"), ["at 100%"])
        self.assertEqual(texts(""), ["Note 3: 100% sure", "note_4", "notes", "at 100%"])

    # --- search ---------------------------------------------------------------------------
    def test_search_returns_results_and_count_best_match_first(self):
        """agent_manager.search_agent_archival_memory_async: {id, timestamp, content, tags},
        count = len(results). Ranking stands in for cosine distance (differs on purpose)."""
        self.add("the cat sleeps", tags=["pets"])
        self.add("coffee in the morning", tags=["food", "morning"])
        self.add("tea at night", tags=["food"])
        r = self.c.get(self.base + "/search", query={"query": "morning coffee"})
        self.assertEqual(r.status, 200)
        body = r.json
        self.assertEqual(set(body), {"results", "count"})
        self.assertEqual(body["count"], len(body["results"]))
        top = body["results"][0]
        self.assertEqual((top["content"], top["tags"]), ("coffee in the morning", ["food", "morning"]))
        self.assertEqual(set(top), {"id", "timestamp", "content", "tags"})
        self.assertTrue(top["timestamp"].endswith("+00:00"))

    def test_search_ranks_a_passage_first_for_its_own_text(self):
        """A vector search puts a passage at distance 0 from its own text; the word-count cosine
        does too, even when other passages share every word of the query (lua/letta/import.lua
        finds a passage again by searching for its text)."""
        target = self.add("import passage 17 about topic 17", tags=["m17"])
        for i in range(12):
            self.add("import passage %d about topic 17 and more" % (54 + 37 * i))
        r = self.c.get(self.base + "/search", query={"query": target["text"], "tags": "m17", "top_k": 10}).json
        self.assertEqual([x["id"] for x in r["results"]], [target["id"]])

    def test_search_top_k_defaults_to_5_and_0_means_all(self):
        """top_k None -> RETRIEVAL_QUERY_DEFAULT_PAGE_SIZE (5); query_agent_passages_async applies
        `if limit:`, so 0 is no limit; a negative LIMIT is a Postgres error (500)."""
        for i in range(8):
            self.add("item %d" % i)
        self.assertEqual(len(self.search(query="item")), 5)
        self.assertEqual(len(self.search(query="item", top_k=7)), 7)
        self.assertEqual(len(self.search(query="item", top_k=0)), 8)
        self.assertEqual(self.c.get(self.base + "/search", query={"query": "item", "top_k": -1}).status, 500)

    def test_search_requires_query(self):
        r = self.c.get(self.base + "/search")
        self.assertEqual(r.status, 422)
        self.assertIn("'loc': ('query', 'query')", r.json["detail"])

    def test_search_blank_query_is_empty_even_for_an_unknown_agent(self):
        """search_agent_archival_memory_async returns [] for a blank query before it looks the
        agent up."""
        self.add("something")
        for q in ("", "   "):
            r = self.c.get(self.base + "/search", query={"query": q})
            self.assertEqual((r.status, r.json), (200, {"results": [], "count": 0}))
        r = self.c.get("/v1/agents/%s/archival-memory/search" % MISSING_AGENT, query={"query": " "})
        self.assertEqual((r.status, r.json), (200, {"results": [], "count": 0}))
        r = self.c.get("/v1/agents/%s/archival-memory/search" % MISSING_AGENT, query={"query": "x"})
        self.assertEqual((r.status, r.json), (404, {"detail": "Agent with ID %s not found" % MISSING_AGENT}))

    def test_search_tags_any_and_all(self):
        """query_agent_passages_async tag post-filter: any = intersection, all = subset; a passage
        without tags never matches."""
        self.add("a", tags=["x"])
        self.add("b", tags=["x", "y"])
        self.add("c", tags=["z"])
        self.add("d")
        self.assertEqual(sorted(self.search(query="q", tags=["x", "y"])), ["a", "b"])
        self.assertEqual(self.search(query="q", tags=["x", "y"], tag_match_mode="all"), ["b"])
        self.assertEqual(self.c.get(self.base + "/search", query={"query": "q", "tag_match_mode": "some"}).status, 422)

    def test_search_tags_are_filtered_after_top_k(self):
        """query_agent_passages_async: LIMIT top_k first, then the tag filter in Python, so a tagged
        passage outside the nearest top_k is not returned (fewer than top_k results, often 0)."""
        self.add("apples", tags=["fruit"])
        self.add("pears", tags=["fruit"])
        for i in range(5):
            self.add("quarterly report %d" % i)
        self.assertEqual(self.search(query="quarterly report", tags=["fruit"]), [])
        self.assertEqual(sorted(self.search(query="quarterly report", tags=["fruit"], top_k=7)), ["apples", "pears"])
        self.assertEqual(self.search(query="apples", tags=["fruit"], top_k=1), ["apples"])

    def test_search_date_only_end_excludes_that_day(self):
        """routers/v1/agents.py:search_archival_memory parses end_datetime as a datetime (a date is
        that day's 00:00) and hands on .isoformat(), so the manager's end-of-day branch for a date
        never runs: passages of the end day itself are left out. created_at >= start, <= end."""
        self.add("jan", created_at="2024-01-10T12:00:00Z")
        self.add("feb", created_at="2024-02-10T12:00:00Z")
        self.add("midnight", created_at="2024-02-10T00:00:00Z")
        self.add("mar", created_at="2024-03-10T12:00:00Z")
        q = dict(query="x", top_k=0)
        self.assertEqual(sorted(self.search(start_datetime="2024-02-01", end_datetime="2024-02-10", **q)), ["midnight"])
        self.assertEqual(sorted(self.search(start_datetime="2024-02-01", end_datetime="2024-02-11", **q)),
                         ["feb", "midnight"])
        self.assertEqual(sorted(self.search(start_datetime="2024-02-10T12:00:00+00:00", **q)), ["feb", "mar"])
        self.assertEqual(self.search(end_datetime="2024-01-31T23:59:59Z", **q), ["jan"])
        self.assertEqual(self.c.get(self.base + "/search", query={"query": "x", "start_datetime": "nope"}).status, 422)
        self.assertEqual(self.c.get(self.base + "/search", query={"query": "x", "end_datetime": "2024-02-30"}).status,
                         422)

    def test_search_naive_datetimes_are_read_in_the_agent_timezone(self):
        """search_agent_archival_memory_async: a naive start/end gets ZoneInfo(agent.timezone)."""
        a = make_agent(self.c, timezone="America/Los_Angeles")
        base = "/v1/agents/%s/archival-memory" % a["id"]
        self.add("evening", base=base, created_at="2024-02-11T03:00:00Z")     # Feb 10, 19:00 in LA
        r = self.c.get(base + "/search", query={"query": "x", "start_datetime": "2024-02-10T18:00:00",
                                                "end_datetime": "2024-02-10T20:00:00"}).json
        self.assertEqual([x["content"] for x in r["results"]], ["evening"])
        r = self.c.get(base + "/search", query={"query": "x", "end_datetime": "2024-02-11"}).json
        self.assertEqual([x["content"] for x in r["results"]], ["evening"])

    def test_search_timestamp_uses_agent_timezone(self):
        """search_agent_archival_memory_async: created_at.astimezone(agent tz).isoformat()."""
        a = make_agent(self.c, timezone="America/Los_Angeles")
        base = "/v1/agents/%s/archival-memory" % a["id"]
        self.c.post(base, {"text": "t", "created_at": "2026-01-01T18:00:00Z"})
        ts = self.c.get(base + "/search", query={"query": "t"}).json["results"][0]["timestamp"]
        self.assertEqual(ts, "2026-01-01T10:00:00-08:00")

    def test_search_without_embedding_config_is_a_text_search(self):
        """search_agent_archival_memory_async: use_embedding_search = agent.embedding_config is not
        None. Without one (server.py:create_agent_async resolves none unless an embedding handle or
        settings.default_embedding_handle is given) build_agent_passage_query filters
        lower(text) LIKE '%query%' and orders created_at ASC; top_k then tags as before. The
        passages themselves get embedding_config null (passage_manager.insert_passage)."""
        a = make_agent(self.c, embedding=None)
        self.assertIsNone(a["embedding_config"])
        base = "/v1/agents/%s/archival-memory" % a["id"]
        self.assertIsNone(self.add("Alice likes green tea", base=base, tags=["t"])["embedding_config"])
        self.add("Alice plays chess", base=base)
        self.add("Bob likes ALICE", base=base, tags=["t"])
        texts = lambda **q: [x["content"] for x in self.c.get(base + "/search", query=q).json["results"]]  # noqa
        self.assertEqual(texts(query="alice"), ["Alice likes green tea", "Alice plays chess", "Bob likes ALICE"])
        self.assertEqual(texts(query="alice chess"), [])
        self.assertEqual(texts(query="likes", top_k=1), ["Alice likes green tea"])
        self.assertEqual(texts(query="alice", tags="t", top_k=2), ["Alice likes green tea"])

    # --- delete ---------------------------------------------------------------------------
    def test_delete_returns_message_and_404_after(self):
        """routers/v1/agents.py:delete_passage; server.py:delete_archival_memory_async ->
        passage_manager.get_passage_by_id_async raises 'Passage with id ... not found in database.'"""
        p = self.add("bye")
        r = self.c.delete(self.base + "/" + p["id"])
        self.assertEqual((r.status, r.json), (200, {"message": "Memory id=%s successfully deleted" % p["id"]}))
        r = self.c.delete(self.base + "/" + p["id"])
        self.assertEqual((r.status, r.json), (404, {"detail": "Passage with id %s not found in database." % p["id"]}))
        self.assertEqual(self.c.get(self.base).json, [])
        r = self.c.delete(self.base + "/not-a-passage-id")
        self.assertEqual((r.status, r.json), (404, {"detail": "Passage with id not-a-passage-id not found in database."}))

    def test_delete_does_not_check_the_agent(self):
        """delete_archival_memory_async ignores agent_id: another agent's passage is deleted, and
        an agent that does not exist is no obstacle."""
        other = "/v1/agents/%s/archival-memory" % make_agent(self.c)["id"]
        theirs = self.add("theirs", base=other)
        self.assertEqual(self.c.delete(self.base + "/" + theirs["id"]).status, 200)
        self.assertEqual(self.c.get(other).json, [])
        mine = self.add("mine")
        r = self.c.delete("/v1/agents/%s/archival-memory/%s" % (MISSING_AGENT, mine["id"]))
        self.assertEqual(r.status, 200)
        self.assertEqual(self.c.get(self.base).json, [])

    def test_modify_passage_is_405_as_the_route_was_removed(self):
        p = self.add("x")
        r = self.c.patch(self.base + "/" + p["id"], {"text": "y"})
        self.assertEqual((r.status, r.json), (405, {"detail": "Method Not Allowed"}))
        self.assertEqual(r.headers["allow"], "DELETE")
        self.assertEqual(self.c.get(self.base).json[0]["text"], "x")

    # --- org-wide search ------------------------------------------------------------------
    def test_org_wide_passage_search(self):
        """routers/v1/passages.py:search_passages: [{passage, score, metadata}], nearest first; the
        SQL path returns score 0.0 and metadata {} (query_agent_passages_async)."""
        self.add("blue sky", tags=["t"])
        other = make_agent(self.c)
        self.c.post("/v1/agents/%s/archival-memory" % other["id"], {"text": "blue sea"})
        r = self.c.post("/v1/passages/search", {"query": "blue sky"}).json
        self.assertEqual([x["passage"]["text"] for x in r], ["blue sky", "blue sea"])
        self.assertEqual([(x["score"], x["metadata"]) for x in r], [(0.0, {}), (0.0, {})])
        r = self.c.post("/v1/passages/search", {"query": "blue", "agent_id": other["id"]}).json
        self.assertEqual([x["passage"]["text"] for x in r], ["blue sea"])

    def test_org_wide_search_without_query_is_oldest_first_and_limited(self):
        """No query: embed_query False, build_agent_passage_query orders created_at ASC; limit
        (default 50, 1..100) before the tag filter."""
        texts = ["p%d" % i for i in range(4)]
        for i, t in enumerate(texts):
            self.add(t, tags=["odd"] if i % 2 else ["even"])
        r = self.c.post("/v1/passages/search", {}).json
        self.assertEqual([x["passage"]["text"] for x in r], texts)
        r = self.c.post("/v1/passages/search", {"limit": 2, "tags": ["odd"]}).json
        self.assertEqual([x["passage"]["text"] for x in r], ["p1"])
        self.assertEqual(self.c.post("/v1/passages/search", {"limit": 0}).status, 422)

    def test_org_wide_search_dates_are_inclusive_and_naive_is_utc(self):
        """build_agent_passage_query: created_at >= start_date, <= end_date; the router passes the
        datetimes as parsed (a naive one compares as UTC, the session time zone)."""
        self.add("a", created_at="2024-01-01T10:00:00Z")
        self.add("b", created_at="2024-01-02T10:00:00Z")
        texts = lambda **b: [x["passage"]["text"] for x in self.c.post("/v1/passages/search", b).json]  # noqa
        self.assertEqual(texts(start_date="2024-01-01T10:00:00", end_date="2024-01-02T10:00:00"), ["a", "b"])
        self.assertEqual(texts(start_date="2024-01-01T10:00:01"), ["b"])
        self.assertEqual(texts(end_date="2024-01-02"), ["a"])

    def test_org_wide_search_agent_wins_over_archive_and_lookups_need_a_query(self):
        """build_agent_passage_query: agent_id takes precedence over archive_id. The agent or
        archive is only looked up (raise_on_invalid_id 400, then 404) to find the embedding
        config, i.e. when there is a query."""
        mine = self.add("mine")
        other = make_agent(self.c)
        self.add("theirs", base="/v1/agents/%s/archival-memory" % other["id"])
        body = {"agent_id": other["id"], "archive_id": mine["archive_id"]}
        self.assertEqual([x["passage"]["text"] for x in self.c.post("/v1/passages/search", body).json], ["theirs"])
        r = self.c.post("/v1/passages/search", {"archive_id": mine["archive_id"], "query": "x"}).json
        self.assertEqual([x["passage"]["text"] for x in r], ["mine"])
        self.assertEqual(self.c.post("/v1/passages/search", {"agent_id": MISSING_AGENT}).json, [])
        self.assertEqual(self.c.post("/v1/passages/search", {"agent_id": MISSING_AGENT, "query": "x"}).status, 404)
        r = self.c.post("/v1/passages/search", {"agent_id": "bot", "query": "x"})
        self.assertEqual((r.status, r.json), (400, {"detail": "INVALID_ARGUMENT: Invalid agent ID format: bot. "
                                                    "Expected format: 'agent-<uuid4>'"}))
        self.assertEqual(self.c.post("/v1/passages/search", {"archive_id": "bot"}).json, [])
        self.assertEqual(self.c.post("/v1/passages/search", {"archive_id": MISSING_ARCHIVE, "query": "x"}).status, 404)

    def test_org_wide_search_config_of_the_oldest_agent_and_none_without_agents(self):
        """passages.py:_get_embedding_config_for_search: with a query and neither agent_id nor
        archive_id, the first agent of list_agents_async (oldest first) decides; with no agents it
        reads server.default_embedding_config, which SyncServer does not have: AttributeError, a 500
        (app.py:generic_error_handler). Without an embedding config the query is a LIKE filter."""
        self.assertEqual(self.c.delete("/v1/agents/%s" % self.agent["id"]).status, 200)
        r = self.c.post("/v1/passages/search", {"query": "x"})
        self.assertEqual((r.status, r.json), (500, {"detail": "An unknown error occurred"}))
        self.assertEqual(self.c.post("/v1/passages/search", {}).json, [])
        plain = make_agent(self.c, embedding=None)
        self.add("blue sky", base="/v1/agents/%s/archival-memory" % plain["id"])
        self.add("blue sea", base="/v1/agents/%s/archival-memory" % make_agent(self.c)["id"])
        texts = lambda q: [x["passage"]["text"] for x in self.c.post("/v1/passages/search", {"query": q}).json]  # noqa
        self.assertEqual(texts("BLUE"), ["blue sky", "blue sea"])
        self.assertEqual(texts("sea blue"), [])

    # --- archives ---------------------------------------------------------------------------
    def archive(self):
        """An agent's archive exists from its first passage on (archive_manager.
        get_or_create_default_archive_for_agent_async)."""
        return self.add("first")["archive_id"]

    def test_archive_exists_only_after_the_first_passage(self):
        archive = self.admin_state()["agents"][0]["archive_id"]
        r = self.c.post("/v1/archives/%s/passages" % archive, {"text": "x"})
        self.assertEqual(r.status, 404)
        self.assertEqual(WHEN_RX.sub("<when>", r.json["detail"]),
                         "Archive not found with id='['%s']', %s" % (archive, ACTOR))
        self.assertEqual(self.archive(), archive)
        self.assertEqual(self.c.post("/v1/archives/%s/passages" % archive, {"text": "x"}).status, 200)

    def test_archive_and_passages_outlive_the_agent(self):
        """agent_manager.delete_agent_async deletes the agent; orm/archives_agents.py cascades only the
        link row, so the archive and its passages stay: reachable by archive id, no longer listed
        for the agent."""
        archive = self.archive()
        self.assertEqual(self.c.delete("/v1/agents/%s" % self.agent["id"]).status, 200)
        r = self.c.post("/v1/archives/%s/passages" % archive, {"text": "after"})
        self.assertEqual((r.status, r.json["embedding_config"]), (200, self.agent["embedding_config"]))
        r = self.c.post("/v1/passages/search", {"archive_id": archive}).json
        self.assertEqual([x["passage"]["text"] for x in r], ["first", "after"])
        self.assertEqual(self.c.get(self.base).json, [])

    def test_archive_insert_one(self):
        """archive_manager.create_passage_in_archive_async: metadata, tags, the archive's embedding
        config, no token limit of its own (only the embedding provider's, raised here); returns one
        Passage; listed with the agent's passages."""
        archive = self.archive()
        self.c.post("/_emulator/config", {"embed_max_tokens": 100000})
        try:
            r = self.c.post("/v1/archives/%s/passages" % archive,
                            {"text": "y" * 40000, "metadata": {"k": 1}, "tags": ["a", "a"]})
        finally:
            self.c.post("/_emulator/config", {"embed_max_tokens": 8192})
        self.assertEqual((r.status, r.json["metadata"], r.json["tags"]), (200, {"k": 1}, ["a"]))
        self.assertEqual(r.json["embedding_config"], self.agent["embedding_config"])
        self.assertEqual(len(self.c.get(self.base).json), 2)
        self.assertEqual(self.c.post("/v1/archives/%s/passages" % MISSING_ARCHIVE, {"text": "x"}).status, 404)
        self.assertEqual(self.c.post("/v1/archives/archive-nope/passages", {"text": "x"}).status, 422)

    def test_archive_insert_created_at_is_read_by_fromisoformat(self):
        """created_at is a plain string parsed with datetime.fromisoformat: its ValueError is a 400
        (app.py: ValueError handler) with the message as detail."""
        archive = self.archive()
        r = self.c.post("/v1/archives/%s/passages" % archive, {"text": "x", "created_at": "nope"})
        self.assertEqual((r.status, r.json), (400, {"detail": "Invalid isoformat string: 'nope'"}))
        r = self.c.post("/v1/archives/%s/passages" % archive, {"text": "x", "created_at": "2024-03-01T10:00:00+01:00"})
        self.assertEqual(r.json["created_at"], "2024-03-01T09:00:00Z")

    def test_archive_batch(self):
        """archive_manager.create_passages_in_archive_async: [] for an empty list before the archive
        is looked up; every created_at is parsed before anything is written; the answer is read
        back ORDER BY created_at (sqlalchemy_base.py:batch_create_async)."""
        self.assertEqual(self.c.post("/v1/archives/%s/passages/batch" % MISSING_ARCHIVE, {"passages": []}).json, [])
        self.assertEqual(self.c.post("/v1/archives/%s/passages/batch" % MISSING_ARCHIVE,
                                     {"passages": [{"text": "x"}]}).status, 404)
        archive = self.archive()
        url = "/v1/archives/%s/passages/batch" % archive
        r = self.c.post(url, {"passages": [{"text": "b", "created_at": "2024-02-01T00:00:00Z"},
                                           {"text": "a", "created_at": "2024-01-01T00:00:00Z", "metadata": {"m": 1}},
                                           {"text": "now"}]})
        self.assertEqual(r.status, 200)
        self.assertEqual([p["text"] for p in r.json], ["a", "b", "now"])
        self.assertEqual(r.json[0]["metadata"], {"m": 1})
        r = self.c.post(url, {"passages": [{"text": "ok"}, {"text": "bad", "created_at": "nope"}]})
        self.assertEqual((r.status, r.json), (400, {"detail": "Invalid isoformat string: 'nope'"}))
        self.assertEqual(len(self.c.get(self.base).json), 4)

    def test_archive_without_embedding_config(self):
        """The default archive takes the agent's embedding config (None here): one insert stores no
        embedding (create_passage_in_archive_async checks for None), the batch reads
        archive.embedding_config.embedding_endpoint_type: AttributeError, a 500."""
        a = make_agent(self.c, embedding=None)
        archive = self.add("first", base="/v1/agents/%s/archival-memory" % a["id"])["archive_id"]
        r = self.c.post("/v1/archives/%s/passages" % archive, {"text": "one"})
        self.assertEqual((r.status, r.json["embedding_config"]), (200, None))
        r = self.c.post("/v1/archives/%s/passages/batch" % archive, {"passages": [{"text": "two"}]})
        self.assertEqual((r.status, r.json), (500, {"detail": "An unknown error occurred"}))
        self.assertEqual(self.c.post("/v1/archives/%s/passages/batch" % archive, {"passages": []}).json, [])


if __name__ == "__main__":
    unittest.main()

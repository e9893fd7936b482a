"""What embeddings cost (--embed-ms, --embed-concurrency, --embed-max-tokens, emu_embed.py):
which requests embed and how many provider requests they make, checked against the server at
56ba9c25 (llm_api/openai_client.py:request_embeddings and its callers); the refusal of an input
over the provider's limit; timing (lower bounds, and upper bounds only with a wide margin)."""

import threading
import time
import unittest

from emu_helpers import Emulator, EmulatorTestCase, UNKNOWN, make_agent


def stats(c):
    return c.get("/_emulator/stats").json["embedding"]


def counts(c):
    s = stats(c)
    return {k: s[k] for k in ("calls", "requests", "texts", "refused", "failed_calls")}


def count(calls=0, requests=None, texts=None, refused=0, failed_calls=0):
    return {"calls": calls, "requests": calls if requests is None else requests,
            "texts": calls if texts is None else texts, "refused": refused, "failed_calls": failed_calls}


class EmbeddingCountTest(EmulatorTestCase):
    """One request_embeddings call per agent-route insert, archive insert, batch and embedding
    search; none where the server embeds nothing."""

    def setUp(self):
        super().setUp()
        self.agent = make_agent(self.c)
        self.base = "/v1/agents/%s/archival-memory" % self.agent["id"]

    def archive(self):
        return self.c.post(self.base, {"text": "first"}).json[0]["archive_id"]

    def tearDown(self):
        self.c.post("/_emulator/config", {"embed_max_tokens": 8192, "embed_ms": 0})

    def test_agent_route_embeds_each_insert_when_the_agent_has_a_config(self):
        """passage_manager.insert_passage: request_embeddings([text]) only with an embedding_config."""
        self.c.post(self.base, {"text": "a"})
        self.c.post(self.base, {"text": "b"})
        self.assertEqual(counts(self.c), count(2))
        plain = make_agent(self.c, embedding=None)
        self.assertEqual(self.c.post("/v1/agents/%s/archival-memory" % plain["id"], {"text": "c"}).status, 200)
        self.assertEqual(counts(self.c), count(2))

    def test_one_request_per_batch_of_up_to_2048_texts(self):
        """archive_manager.create_passages_in_archive_async: one request_embeddings call for the
        batch; request_embeddings sends chunks of 2048 texts (initial_batch_size)."""
        url = "/v1/archives/%s/passages/batch" % self.archive()
        self.assertEqual(self.c.post(url, {"passages": [{"text": "t%d" % i} for i in range(50)]}).status, 200)
        self.assertEqual(counts(self.c), count(2, texts=51))
        self.assertEqual(self.c.post(url, {"passages": [{"text": "u%d" % i} for i in range(2049)]}).status, 200)
        self.assertEqual(counts(self.c), count(3, requests=4, texts=2100))
        self.c.post(url, {"passages": []})                       # [] before anything
        self.assertEqual(counts(self.c)["calls"], 3)

    def test_archive_insert_embeds_when_the_archive_has_a_config(self):
        """create_passage_in_archive_async: `if archive.embedding_config is not None`."""
        self.c.post("/v1/archives/%s/passages" % self.archive(), {"text": "x"})
        self.assertEqual(counts(self.c), count(2))
        plain = make_agent(self.c, embedding=None)
        arc = self.c.post("/v1/agents/%s/archival-memory" % plain["id"], {"text": "y"}).json[0]["archive_id"]
        self.c.post("/v1/archives/%s/passages" % arc, {"text": "z"})
        self.assertEqual(counts(self.c), count(2))

    def test_searches_that_embed_the_query(self):
        """build_agent_passage_query embeds the query when it has one and a config: the agent
        search (search_agent_archival_memory_async, not for a blank query) and POST
        /v1/passages/search with a query; the list's `search=` is a LIKE, no embedding."""
        self.archive()
        self.c.get(self.base, query={"search": "fir"})
        self.c.get(self.base + "/search", query={"query": "  "})
        self.c.post("/v1/passages/search", {"agent_id": self.agent["id"]})
        self.assertEqual(counts(self.c), count(1))
        self.c.get(self.base + "/search", query={"query": "first"})
        self.c.post("/v1/passages/search", {"query": "first"})
        self.assertEqual(counts(self.c), count(3))

    def test_stats_are_reset_with_the_state(self):
        self.archive()
        self.c.post("/_emulator/reset", {})
        self.assertEqual(stats(self.c), dict(count(0), in_flight=0))


class RefusalTest(EmulatorTestCase):
    """The provider refuses an input over --embed-max-tokens (ceil(UTF-8 bytes / 4) tokens)."""
    emulator_args = ("--embed-max-tokens", "10", "--embed-ms", "20")

    def setUp(self):
        super().setUp()
        self.agent = make_agent(self.c)
        self.base = "/v1/agents/%s/archival-memory" % self.agent["id"]

    def test_one_refused_text_fails_the_whole_batch_after_the_halving_rounds(self):
        """request_embeddings: a failed chunk is halved (its batch size with it, from 2048) round
        after round; at batch size 1 the provider's error is re-raised: generic_error_handler's
        500, and create_passages_in_archive_async has written nothing. 5 texts, the 3rd refused:
        rounds of 1, 2, 2 then 9 single requests = 14 requests (12 refused) over 12 rounds."""
        archive_id = self.c.post(self.base, {"text": "ok"}).json[0]["archive_id"]
        t0 = time.time()
        r = self.c.post("/v1/archives/%s/passages/batch" % archive_id,
                        {"passages": [{"text": "a"}, {"text": "b"}, {"text": "x" * 41}, {"text": "d"}, {"text": "e"}]})
        elapsed = time.time() - t0
        self.assertEqual((r.status, r.json), (500, UNKNOWN))
        self.assertEqual([p["text"] for p in self.c.get(self.base).json], ["ok"])
        self.assertEqual(counts(self.c), count(2, requests=15, texts=5, refused=12, failed_calls=1))
        self.assertGreaterEqual(elapsed, 12 * 0.020 - 0.005)

    def test_limit_is_utf8_bytes_over_4(self):
        archive_id = self.c.post(self.base, {"text": "ok"}).json[0]["archive_id"]
        url = "/v1/archives/%s/passages" % archive_id
        self.assertEqual(self.c.post(url, {"text": "x" * 40}).status, 200)           # 10 tokens
        self.assertEqual(self.c.post(url, {"text": "\u00e9" * 21}).status, 500)      # 42 bytes: 11

    def test_agent_route_refused_by_the_provider_keeps_the_new_archive(self):
        """insert_passage: the default archive is created (committed) before the embedding request
        fails; the passage is not written. The route's own 8192-token check still comes first."""
        r = self.c.post(self.base, {"text": "y" * 41})
        self.assertEqual((r.status, r.json), (500, UNKNOWN))
        self.assertEqual(self.c.get(self.base).json, [])
        self.assertEqual(len(self.c.get("/v1/archives/", query={"agent_id": self.agent["id"]}).json), 1)
        before = counts(self.c)
        r = self.c.post(self.base, {"text": "y" * 32769})
        self.assertEqual(r.status, 400)
        self.assertEqual(counts(self.c), before)

    def test_a_search_query_over_the_limit_is_refused(self):
        self.c.post(self.base, {"text": "ok"})
        r = self.c.get(self.base + "/search", query={"query": "q" * 41})
        self.assertEqual((r.status, r.json), (500, UNKNOWN))


def timed_inserts(emu, n, path_of):
    """n concurrent POSTs, one connection each; returns (statuses, seconds)."""
    out = []

    def one(i):
        c = emu.client()
        out.append(c.post(path_of(i), {"text": "t%d" % i}).status)
        c.close()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out, time.time() - t0


class CostTest(unittest.TestCase):
    """--embed-ms is spent in the request's thread without the state lock: concurrent requests
    overlap; --embed-concurrency caps the embedding requests in flight server-wide."""

    def run_eight(self, *args):
        emu = Emulator("--embed-ms", "200", *args)
        try:
            c = emu.client()
            a = make_agent(c)
            c.close()
            statuses, elapsed = timed_inserts(emu, 8, lambda i: "/v1/agents/%s/archival-memory" % a["id"])
            self.assertEqual(statuses, [200] * 8)
            return elapsed
        finally:
            self.assertEqual(emu.stop(), 0)

    def test_eight_requests_overlap(self):
        elapsed = self.run_eight("--embed-concurrency", "8")
        self.assertGreaterEqual(elapsed, 0.19)
        self.assertLess(elapsed, 8 * 0.2 * 0.75)          # serialised it would be 1.6 s

    def test_embed_concurrency_1_serialises_them(self):
        self.assertGreaterEqual(self.run_eight("--embed-concurrency", "1"), 8 * 0.2 - 0.02)

    def test_the_state_lock_is_free_while_embedding(self):
        emu = Emulator()
        try:
            c = emu.client()
            a = make_agent(c)
            self.assertEqual(c.post("/_emulator/config", {"embed_ms": 3000}).json["embed_ms"], 3000)
            slow = threading.Thread(target=timed_inserts, args=(emu, 1, lambda i: "/v1/agents/%s/archival-memory"
                                                                 % a["id"]))
            slow.start()
            time.sleep(0.3)
            t0 = time.time()
            self.assertEqual(c.get("/v1/agents/%s/archival-memory" % a["id"]).status, 200)
            self.assertLess(time.time() - t0, 2.0)            # not waiting for the 3 s embedding
            self.assertEqual(c.get("/_emulator/stats").json["embedding"]["in_flight"], 1)
            slow.join()
            self.assertEqual(len(c.get("/v1/agents/%s/archival-memory" % a["id"]).json), 1)
            c.close()
        finally:
            self.assertEqual(emu.stop(), 0)

    def test_config_at_run_time(self):
        """POST /_emulator/config changes embed_ms, embed_concurrency, embed_max_tokens; reset keeps them."""
        emu = Emulator("--embed-concurrency", "4")
        try:
            c = emu.client()
            cfg = c.post("/_emulator/config", {"embed_ms": 150}).json
            self.assertEqual((cfg["embed_ms"], cfg["embed_concurrency"], cfg["embed_max_tokens"]), (150, 4, 8192))
            c.post("/_emulator/reset", {})
            self.assertEqual(c.get("/_emulator/config").json["embed_ms"], 150)
            a = make_agent(c)
            t0 = time.time()
            self.assertEqual(c.post("/v1/agents/%s/archival-memory" % a["id"], {"text": "x"}).status, 200)
            self.assertGreaterEqual(time.time() - t0, 0.14)
            c.close()
        finally:
            self.assertEqual(emu.stop(), 0)


if __name__ == "__main__":
    unittest.main()

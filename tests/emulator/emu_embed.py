"""What embeddings cost: the server's request_embeddings (llm_api/openai_client.py) against a
provider that takes --embed-ms per request, runs at most --embed-concurrency requests at once and
refuses an input over --embed-max-tokens. Callers must not hold the state lock while embedding."""

import threading
import time

from emu_core import UNKNOWN_ERROR, ApiError

INITIAL_BATCH_SIZE = 2048      # request_embeddings: texts per provider request
MIN_CHUNK_SIZE = 128           # request_embeddings: below it a failing single chunk is re-raised


def tokens(text):
    """The emulator's token count everywhere: ceil(UTF-8 bytes / 4) (ApproxTokenCounter)."""
    return (len(text.encode("utf-8")) + 3) // 4


class Embedder:
    """The embedding provider as the server meets it, plus counters for the admin API."""

    def __init__(self, ms=0.0, concurrency=0, max_tokens=8192):
        self.ms, self.concurrency, self.max_tokens = float(ms), int(concurrency), int(max_tokens)
        self.cond = threading.Condition()
        self.busy = 0                 # provider requests in flight
        self.reset_stats()

    def configure(self, ms=None, concurrency=None, max_tokens=None):
        with self.cond:
            if ms is not None:
                self.ms = float(ms)
            if concurrency is not None:
                self.concurrency = int(concurrency)
            if max_tokens is not None:
                self.max_tokens = int(max_tokens)
            self.cond.notify_all()

    def config(self):
        return {"embed_ms": self.ms, "embed_concurrency": self.concurrency, "embed_max_tokens": self.max_tokens}

    def reset_stats(self):
        with self.cond:
            self.stats = {"calls": 0, "requests": 0, "texts": 0, "refused": 0, "failed_calls": 0}

    def snapshot(self):
        with self.cond:
            return dict(self.stats, in_flight=self.busy)

    # --- slots ----------------------------------------------------------------------------------
    def _acquire(self, want):
        """Wait for one slot, then take up to `want` free ones without waiting (never a deadlock:
        only the first slot is waited for). Returns how many were taken."""
        with self.cond:
            while self.concurrency > 0 and self.busy >= self.concurrency:
                self.cond.wait()
            got = want if self.concurrency <= 0 else min(want, self.concurrency - self.busy)
            self.busy += got
            return got

    def _release(self, n):
        with self.cond:
            self.busy -= n
            self.cond.notify_all()

    def _requests(self, chunks):
        """Send one provider request per chunk, all at once as asyncio.gather does (in waves when
        slots are short). Returns a list of booleans: accepted or refused."""
        results, todo = [], list(chunks)
        while todo:
            got = self._acquire(len(todo))
            wave, todo = todo[:got], todo[got:]
            try:
                if self.ms > 0:
                    time.sleep(self.ms / 1000.0)
            finally:
                self._release(got)
            for chunk, _ in wave:
                ok = all(tokens(t) <= self.max_tokens for t in chunk)
                with self.cond:
                    self.stats["requests"] += 1
                    if ok:
                        self.stats["texts"] += len(chunk)
                    else:
                        self.stats["refused"] += 1
                results.append(ok)
        return results

    # --- request_embeddings ---------------------------------------------------------------------
    def embed(self, texts):
        """request_embeddings(texts): chunks of 2048, a refused chunk halved (and its batch size
        with it) round after round; a single input still refused at batch size 1 re-raises the
        provider's error, which app.py answers 500 "An unknown error occurred"."""
        if not texts:
            return
        with self.cond:
            self.stats["calls"] += 1
        # empty or blank inputs are sent as " "
        texts = [t if t and t.strip() else " " for t in texts]
        chunks = [(texts[i:i + INITIAL_BATCH_SIZE], INITIAL_BATCH_SIZE)
                  for i in range(0, len(texts), INITIAL_BATCH_SIZE)]
        while chunks:
            failed = []
            for (chunk, size), ok in zip(chunks, self._requests(chunks)):
                if ok:
                    continue
                if size > 1 or len(chunk) > MIN_CHUNK_SIZE:
                    mid = max(1, len(chunk) // 2)
                    failed += [(part, max(1, size // 2)) for part in (chunk[:mid], chunk[mid:]) if part]
                else:
                    with self.cond:
                        self.stats["failed_calls"] += 1
                    raise ApiError(500, UNKNOWN_ERROR)
            chunks = failed

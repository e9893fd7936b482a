"""Shared pieces of the emulated Letta API: errors, ids, dates, paging, the state store."""

import datetime as dt
import functools
import json
import os
import re
import threading
import time
import urllib.parse
import urllib.request
import uuid

try:
    from zoneinfo import ZoneInfo
except ImportError:  # pragma: no cover - 3.8 and older
    ZoneInfo = None

SERVER_VERSION = "0.16.8"
# --compat switches: behaviours of other server versions the emulator can imitate, so that
# scripts/check-server.lua can be shown to notice them. name -> what it changes.
COMPAT_SWITCHES = {
    "upsert-creates": "PUT /v1/identities/ creates an identity whose identifier_key is new (as before 0.16)",
    "no-archive-batch": "no POST /v1/archives/{id}/passages/batch (as before 0.16.4): 405, allow DELETE",
}
DEFAULT_USER_ID = "user-00000000-0000-4000-8000-000000000000"
DEFAULT_ORG_ID = "org-00000000-0000-4000-8000-000000000000"
ARCHIVAL_TOKEN_LIMIT = 8192
ALL_RELATIONSHIPS = frozenset({"blocks", "tools", "sources", "tags", "identities"})
TERMINAL_RUN_STATES = ("completed", "failed", "cancelled")
UUID4_RX = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
USER_ID_RX = re.compile(r"^user-" + UUID4_RX + r"$")


class ApiError(Exception):
    def __init__(self, status, detail, headers=None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class Stream:
    """An SSE answer: `events` yields already formatted SSE text blocks ("data: ...\\n\\n")."""

    def __init__(self, events):
        self.events = events


DB_ERROR = "A database error occurred."       # app.py:dbapi_error_handler (e.g. a negative LIMIT)
UNKNOWN_ERROR = "An unknown error occurred"   # app.py:generic_error_handler (any unmapped exception)


def ilike(pattern, text):
    """Postgres `text ILIKE pattern`: % matches any run, _ one character, a backslash escapes the
    next one; NULL never matches. (lower(text) LIKE lower(pattern) is the same thing.)"""
    if text is None:
        return False
    return _like_rx(pattern).fullmatch(text) is not None


@functools.lru_cache(maxsize=256)
def _like_rx(pattern):
    rx, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            rx.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        rx.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(rx), re.S | re.I)


def new_id(prefix):
    return "%s-%s" % (prefix, uuid.uuid4())


def iso(ts):
    """pydantic's default serialisation of an aware UTC datetime (microseconds, 'Z')."""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def msg_date(ts):
    """LettaMessage.date: seconds precision with an explicit offset."""
    return dt.datetime.fromtimestamp(int(ts), dt.timezone.utc).isoformat()


def parse_datetime(text, tz=None):
    """ISO 8601 (or date-only) -> epoch seconds. Naive values are read in `tz` (agent timezone).
    A number written as a string is a Unix time, in milliseconds above 2e10 (pydantic 2's lax
    datetime from str, speedate)."""
    text = text.strip()
    if re.match(r"^-?\d+(\.\d+)?$", text):
        t = float(text)
        return t / 1000 if abs(t) > 2e10 else t
    m = re.match(r"^(\d{4}-\d{2}-\d{2})[Tt_ ](\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d+))?([Zz]|[+-]\d{2}(?::?\d{2})?)?$", text)
    if m:   # speedate's forms, in the one fromisoformat reads
        zone = m.group(4) or ""
        if zone in ("Z", "z"):
            zone = "+00:00"
        elif len(zone) == 3:
            zone += ":00"
        text = "%sT%s%s%s" % (m.group(1), m.group(2), "." + m.group(3)[:6].ljust(6, "0") if m.group(3) else "", zone)
    d = dt.datetime.fromisoformat(text)
    if d.tzinfo is None:
        d = d.replace(tzinfo=_zone(tz) or dt.timezone.utc)
    return d.timestamp()


def _zone(name):
    if not name or ZoneInfo is None:
        return None
    try:
        return ZoneInfo(name)
    except Exception:
        return None


def words(text):
    return re.findall(r"[a-z0-9]+", (text or "").lower())


def content_text(content):
    """Text of a message content: a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("text"))
    return ""


def is_1_0_sdk_version(headers):
    """letta/utils.py:is_1_0_sdk_version, line by line: a Stainless SDK header, no User-Agent, or
    `letta-client/1.x` / `@letta-ai/letta-client/1.x` means a 1.x client."""
    if headers.get("x-stainless-package-version"):
        return True
    client = headers.get("user-agent")
    if not client:
        return True
    if "/" not in client:
        return False
    parts = client.split("/")
    if len(parts) == 3:
        if parts[0] != "@letta-ai" or parts[1] != "letta-client":
            return False
    elif len(parts) != 2 or parts[0] != "letta-client":
        return False
    version = parts[-1]
    if "." not in version:
        return False
    base = version.split("-")[0].split("a")[0].split("b")[0]
    if "." not in base:
        return False
    return base.split(".")[0] == "1"


def sse(obj, event=None):
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return ("event: %s\ndata: %s\n\n" % (event, data)) if event else ("data: %s\n\n" % data)


def paginate(items, key, after=None, before=None, limit=None, descending=False, key_of_cursor=None):
    """Cursor pagination over `items` sorted by `key`. after/before are IDs: `after` keeps the items
    that come after the cursor in the output order, `before` those before it (the nearest ones
    when limited, so paging backwards works). Unknown cursors are ignored."""
    items = sorted(items, key=key, reverse=descending)

    def cursor_key(cid):
        return key_of_cursor(cid) if key_of_cursor else None

    if after:
        k = cursor_key(after)
        if k is not None:
            items = [x for x in items if (key(x) < k if descending else key(x) > k)]
    if before:
        k = cursor_key(before)
        if k is not None:
            items = [x for x in items if (key(x) > k if descending else key(x) < k)]
            if limit is not None and limit >= 0 and not after:
                return items[-limit:] if limit else []
    if limit is not None and limit >= 0:
        items = items[:limit]
    return items


class Store:
    """All emulated server state. One re-entrant lock guards every mutation; it is never held
    while sleeping or writing to a socket."""

    def __init__(self, state_file=None):
        self.lock = threading.RLock()
        self.state_file = state_file
        self._dirty = threading.Event()
        self._flush_lock = threading.Lock()
        self._clock = 0.0
        self.reset()
        if state_file and os.path.exists(state_file):
            self._load()
        if state_file:
            threading.Thread(target=self._writer, name="state-writer", daemon=True).start()

    def reset(self):
        with self.lock:
            self.agents = {}
            self.blocks = {}
            self.identities = {}
            self.passages = {}
            self.archives = {}
            self.messages = {}
            self.runs = {}
            # sort key of every object ever created, kept after deletion so that a deleted
            # object can still serve as a pagination cursor.
            self.keys = {}
            self.seq = 0
            self.timers = getattr(self, "timers", {})
            for t in self.timers.values():
                t.cancel()
            self.timers = {}
            self.changed()

    def stamp(self, obj_id, ts=None):
        """A creation time strictly after the previous one, and the object's sort key."""
        now = time.time()
        self._clock = max(now, self._clock + 1e-6)
        self.seq += 1
        ts = self._clock if ts is None else ts
        self.keys[obj_id] = (ts, self.seq)
        return ts

    # --- persistence -------------------------------------------------------------------------
    _TABLES = ("agents", "blocks", "identities", "passages", "archives", "messages", "runs")

    def changed(self):
        if self.state_file:
            self._dirty.set()

    def snapshot(self):
        with self.lock:
            data = {t: list(getattr(self, t).values()) for t in self._TABLES}
            data["keys"] = {k: list(v) for k, v in self.keys.items()}
            data["seq"] = self.seq
            return json.dumps(data, separators=(",", ":"))

    def flush(self):
        """Write the state file atomically (temporary file + rename)."""
        if not self.state_file:
            return
        with self._flush_lock:          # the writer thread and shutdown may both flush
            text = self.snapshot()
            tmp = "%s.tmp.%d" % (self.state_file, os.getpid())
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.state_file)

    def _writer(self):
        # Debounced: bursts of writes end up in one file write.
        while True:
            self._dirty.wait()
            time.sleep(0.05)
            self._dirty.clear()
            try:
                self.flush()
            except OSError as e:
                print("letta-emulator: cannot write state file: %s" % e, flush=True,
                      file=__import__("sys").stderr)

    def _load(self):
        with open(self.state_file, encoding="utf-8") as f:
            data = json.load(f)
        with self.lock:
            for t in self._TABLES:
                setattr(self, t, {o["id"]: o for o in data.get(t, [])})
            self.keys = {k: tuple(v) for k, v in data.get("keys", {}).items()}
            self.seq = data.get("seq", 0)
            self._clock = max([k[0] for k in self.keys.values()] + [0.0])
            if "archives" not in data:
                self._archives_from_passages()
            # Runs that were in flight when the emulator stopped are finished now.
            for run in self.runs.values():
                if run["status"] not in TERMINAL_RUN_STATES:
                    run["_resume"] = True


    def _archives_from_passages(self):
        """A state file written before the archives table: an archive was known by its agent's
        `_archive_embedding_config` and by its passages. Rebuild the rows (created with the
        first passage, named after the agent when it is still there)."""
        names = {a["archive_id"]: a["name"] for a in self.agents.values()}
        for p in sorted(self.passages.values(), key=lambda x: x["_ts"]):
            aid = p["archive_id"]
            if aid not in self.archives:
                self.archives[aid] = new_archive(aid, names.get(aid), p["embedding_config"],
                                                 p["created_by_id"], p["_ts"])
                self.keys.setdefault(aid, (p["_ts"], 0))
        for a in self.agents.values():
            if "_archive_embedding_config" in a and a["archive_id"] not in self.archives:   # emptied
                ts = self.stamp(a["archive_id"])
                self.archives[a["archive_id"]] = new_archive(a["archive_id"], a["name"],
                                                             a["_archive_embedding_config"], a["created_by_id"], ts)
            a.pop("_archive_embedding_config", None)


def new_archive(archive_id, agent_name, embedding_config, actor, ts):
    """The row archive_manager.get_or_create_default_archive_for_agent_async creates, as
    schemas/archive.py:Archive serialises it (metadata_ is a nullable column nothing sets)."""
    return {"created_by_id": actor, "last_updated_by_id": actor, "created_at": iso(ts), "updated_at": iso(ts),
            "name": "%s's Archive" % agent_name, "description": "Default archive created automatically",
            "organization_id": DEFAULT_ORG_ID, "vector_db_provider": "native",
            "embedding_config": embedding_config, "metadata": None, "id": archive_id, "_ts": ts}


def _dedup(seq):
    out = []
    for x in seq:
        if x not in out:
            out.append(x)
    return out


def _deltas(m):
    """Split a reasoning/assistant message into token-like chunks sharing the message id."""
    field = "reasoning" if m["message_type"] == "reasoning_message" else "content"
    text = m.get(field)
    if not isinstance(text, str) or not text:
        return [m]
    pieces = re.findall(r"\S+\s*|\s+", text)
    return [dict(m, **{field: piece}) for piece in pieces]

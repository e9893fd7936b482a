"""Shared helpers for the emulator tests: start/stop an emulator subprocess, make HTTP requests
with http.client over loopback, read SSE streams, and a TestCase base class that checks, when
its emulator stops, that every response it sent matched the route's response schema."""

import http.client
import json
import re
import os
import select
import signal
import subprocess
import sys
import tempfile
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "letta_emulator.py")


class Emulator:
    """An emulator subprocess on a free loopback port."""

    def __init__(self, *args):
        self.extra_output = ["", ""]
        # stderr goes to a file, not a pipe: nobody reads it while the emulator runs, and a full
        # pipe would block the emulator.
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, EMULATOR, "--port", "0"] + list(args),
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        line = _readline(self.proc.stdout, 15)
        if not line.startswith("LETTA_EMULATOR_URL="):
            self.stop()
            raise RuntimeError("emulator did not start: %r %s" % (line, self.extra_output))
        self.url = line.strip().split("=", 1)[1]
        parsed = urllib.parse.urlsplit(self.url)
        self.host, self.port = parsed.hostname, parsed.port

    def client(self, **kw):
        return Client(self.host, self.port, **kw)

    def stop(self, sig=signal.SIGTERM):
        """Stop the process; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.stderr.closed:          # already stopped once
            return self.proc.returncode
        # what the emulator printed besides the URL line: [stdout rest, stderr]
        self.extra_output = [self.proc.stdout.read(), ""]
        self.proc.stdout.close()
        self.stderr.seek(0)
        self.extra_output[1] = self.stderr.read()
        self.stderr.close()
        return self.proc.returncode


def _readline(stream, timeout):
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # lower-case names
        self.body = body

    @property
    def json(self):
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:300])


class Client:
    """A keep-alive HTTP/1.1 client over one connection (reconnects if the server closed it)."""

    def __init__(self, host, port, headers=None, timeout=15):
        self.host, self.port, self.timeout = host, port, timeout
        self.default_headers = headers if headers is not None else {}
        self.conn = None
        self.models = {}            # see model_handle()

    def _conn(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def send(self, method, path, body=None, headers=None, query=None):
        """Send a request; returns the live http.client.HTTPResponse (caller reads it)."""
        if query:
            path += "?" + urllib.parse.urlencode(query, doseq=True)
        hdrs = dict(self.default_headers)
        hdrs.update(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
            hdrs.setdefault("Content-Type", "application/json")
        conn = self._conn()
        try:
            conn.request(method, path, body=data, headers=hdrs)
            return conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # a keep-alive connection the server had closed: one fresh try
            self.close()
            conn = self._conn()
            conn.request(method, path, body=data, headers=hdrs)
            return conn.getresponse()

    def request(self, method, path, body=None, headers=None, query=None):
        r = self.send(method, path, body, headers, query)
        data = r.read()
        out = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        if r.will_close:
            self.close()
        return out

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def stream(self, path, body, headers=None):
        """POST and read an SSE answer. Returns (status, headers, events) where events is a list
        of (event_name or None, data string)."""
        r = self.send("POST", path, body, headers)
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if r.status != 200 or not hdrs.get("content-type", "").startswith("text/event-stream"):
            data = r.read()
            return r.status, hdrs, data
        events = parse_sse(r.read().decode("utf-8"))
        if r.will_close:
            self.close()
        return r.status, hdrs, events


def parse_sse(text):
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        events.append((name, "\n".join(data)))
    return events


# ---- what the server's answers look like ---------------------------------------------------
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
MISSING_AGENT = "agent-00000000-0000-4000-8000-000000000000"
MISSING_BLOCK = "block-00000000-0000-4000-8000-000000000000"
MISSING_IDENTITY = "identity-00000000-0000-4000-8000-000000000000"
ORG = "org-00000000-0000-4000-8000-000000000000"
# read_async's NoResultFound text prints the actor; its created_at/updated_at are the emulator's
# start time (letta_api.py:_read_not_found): masked() replaces them with TS.
WHEN_RX = re.compile(r"datetime\.datetime\([^)]*tzinfo=datetime\.timezone\.utc\)")
TS = "<when>"
ACTOR = ("access level in ['read'] for actor='id='user-00000000-0000-4000-8000-000000000000' "
         "organization_id='%s' name='default_user' created_at=%s updated_at=%s is_deleted=False'" % (ORG, TS, TS))
UNKNOWN = {"detail": "An unknown error occurred"}
DB_ERROR = {"detail": "A database error occurred."}


def masked(r):
    """(status, body) with the actor's timestamps in a 404 text replaced by TS."""
    body = r.json
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        body = dict(body, detail=WHEN_RX.sub(TS, body["detail"]))
    return r.status, body


def read_404(model, obj_id):
    """orm/sqlalchemy_base.py:read_async's NoResultFound text (app.py maps it to 404), masked."""
    return {"detail": "%s not found with id='['%s']', %s" % (model, obj_id, ACTOR)}


# ---- data builders --------------------------------------------------------------------------
def model_handle(c, kind=""):
    """A handle the server offers, as a script would pick one: the first of GET /v1/models/
    (kind "") or GET /v1/models/embedding (kind "embedding"). The server refuses to create an
    agent without a model; without an embedding its archival search is a plain text search.
    Asked once per client."""
    if kind not in c.models:
        r = c.get("/v1/models/" + kind)
        assert r.status == 200 and r.json, r
        c.models[kind] = r.json[0]["handle"]
    return c.models[kind]


def make_agent(c, **body):
    """POST /v1/agents/ with the first model and embedding handles the server lists (pass
    model=... or embedding=None to change that)."""
    body.setdefault("model", model_handle(c))
    body.setdefault("embedding", model_handle(c, "embedding"))
    r = c.post("/v1/agents/", body)
    assert r.status == 200, r
    return r.json


def make_block(c, label, value="v", **extra):
    r = c.post("/v1/blocks/", dict(extra, label=label, value=value))
    assert r.status == 200, r
    return r.json


def make_identity(c, key, name=None, identity_type="user", **extra):
    r = c.post("/v1/identities/", dict(extra, identifier_key=key, name=name or key, identity_type=identity_type))
    assert r.status == 200, r
    return r.json


SDK_HEADERS = {"User-Agent": "Letta/JS 1.12.1", "X-Stainless-Package-Version": "1.12.1"}
LEGACY_HEADERS = {"User-Agent": "letta-client/0.1.324"}


class EmulatorTestCase(unittest.TestCase):
    """One emulator per test class. Each test starts from an empty state (POST /_emulator/reset).
    When the class ends, the emulator must not have sent a response that breaks its schema."""

    emulator_args = ()
    # http.client sends no User-Agent, so by default the emulator sees a 1.x SDK client.
    client_headers = None

    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(*cls.emulator_args)
        cls.c = cls.emu.client(headers=dict(cls.client_headers or {}))

    @classmethod
    def tearDownClass(cls):
        try:
            v = cls.c.get("/_emulator/schema-violations").json
        finally:
            cls.c.close()
            cls.emu.stop()
        if v["violations"]:
            raise AssertionError("responses that broke their schema: %s"
                                 % json.dumps(v["violations"][:5], indent=1))

    def setUp(self):
        r = self.c.post("/_emulator/reset", {})
        self.assertEqual(r.status, 200)

    def admin_state(self):
        return self.c.get("/_emulator/state").json

    def set_faults(self, spec=None, rules=None, clear=True):
        r = self.c.post("/_emulator/faults", {"spec": spec or "", "rules": rules or [], "clear": clear})
        self.assertEqual(r.status, 200, r)
        return r.json["faults"]

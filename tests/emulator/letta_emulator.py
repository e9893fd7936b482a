#!/usr/bin/env python3
"""Letta emulator: a local stand-in for a Letta server (REST API v1, server 0.16.8) for tests,
the demo and offline script development. Python standard library only.

    python3 tests/emulator/letta_emulator.py --port 0 [--password PW] [--latency-ms N]
        [--state-file F] [--faults SPEC] [--run-delay-ms N] [--flaky-block-list P] [--seed N]
        [--embed-ms N] [--embed-concurrency K] [--embed-max-tokens N] [--tls-cert F [--tls-key F]]

Prints `LETTA_EMULATOR_URL=http://127.0.0.1:PORT` once it accepts connections and serves until
SIGTERM/SIGINT. See README.md in this folder for the options, the fault grammar and /_emulator/.
"""

import argparse
import collections
import json
import os
import random
import re
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import traceback
import urllib.parse
from email.utils import formatdate

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import faults as faultlib  # noqa: E402
from letta_api import Api, ApiError, Store, Stream  # noqa: E402
from emu_core import COMPAT_SWITCHES, USER_ID_RX, UUID4_RX  # noqa: E402
from schema_validator import Spec  # noqa: E402

# Paths the password middleware lets through (ENDPOINTS.md §1), spelled exactly as the server does.
AUTH_EXEMPT = {"/v1/health", "/v1/health/", "/latest/health/", "/v1/ready", "/v1/ready/",
               "/latest/ready", "/latest/ready/"}
REDACTED_HEADERS = ("authorization", "x-bare-password")
REASONS = {200: "OK", 204: "No Content", 307: "Temporary Redirect", 400: "Bad Request", 401: "Unauthorized",
           404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large",
           422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
ERROR_BODY_SCHEMA = {"type": "object", "required": ["detail"]}
# letta/schemas/enums.py:PrimitiveType values: the id prefixes app.py's 422 handler knows
PRIMITIVES = {"agent", "message", "run", "job", "group", "block", "file", "source", "tool", "archive", "passage",
              "provider", "model", "sandbox", "step", "identity", "conv", "mcp_server", "mcp-oauth", "file_agent",
              "sandbox-env", "agent-env", "user", "org", "tool_rule"}
REDIRECT_SAFE = ":/%#?=@[]!$&'()*+,;"   # starlette/responses.py:RedirectResponse quotes Location with it
MAX_BODY = 32 * 1024 * 1024


def dumps(value):
    # What FastAPI's JSONResponse sends: compact, UTF-8, no NaN.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


class Request:
    __slots__ = ("method", "target", "path", "raw_query", "query", "headers", "body", "json",
                 "params", "path_params", "route", "local")

    def __init__(self, method, target, headers, body, local=("127.0.0.1", 0)):
        self.method = method
        self.target = target
        path, _, raw_query = target.partition("?")
        self.path = urllib.parse.unquote(path)
        self.raw_query = raw_query
        self.query = urllib.parse.parse_qs(raw_query, keep_blank_values=True) if raw_query else {}
        self.headers = headers
        self.body = body
        self.json = None
        self.params = {}
        self.path_params = {}
        self.route = None
        self.local = local          # (host, port) the request came in on: ASGI scope["server"]


class Reply:
    """A response before it is written: JSON value, raw bytes or an SSE Stream."""

    def __init__(self, status, value=None, headers=None, raw=None, stream=None):
        self.status = status
        self.value = value
        self.headers = headers or {}
        self.raw = raw
        self.stream = stream


def nginx_page(status):
    """The error page nginx sends when it cannot reach (502) or wait for (504) the server behind it
    (ngx_http_special_response.c), with its headers: a proxy's answer, not Letta's."""
    title = "%d %s" % (status, REASONS.get(status, "Error"))
    body = ("<html>\r\n<head><title>%s</title></head>\r\n<body>\r\n<center><h1>%s</h1></center>\r\n"
            "<hr><center>nginx/1.24.0 (Ubuntu)</center>\r\n</body>\r\n</html>\r\n" % (title, title))
    return Reply(status, raw=body.encode("ascii"),
                 headers={"server": "nginx/1.24.0 (Ubuntu)", "content-type": "text/html"})


class Route:
    def __init__(self, method, template, handler):
        self.method = method
        self.template = template
        self.handler = handler
        self.rx = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$")


class Emulator:
    """Everything between the socket loop and the API handlers: routing, auth, validation,
    faults, latency, recording and the admin API."""

    def __init__(self, args):
        self.args = args
        self.password = args.password
        self.latency = args.latency_ms / 1000.0
        self.spec = Spec()
        self.rng = random.Random(args.seed)
        self.faults = faultlib.FaultSet(args.seed)
        if args.faults:
            self.faults.add(faultlib.parse_spec(args.faults))
        self.store = Store(args.state_file)
        self.api = Api(self.store, self.rng, args, self.faults)
        self.routes = [Route(m, t, h) for m, t, h in self.api.routes()]
        self.log = collections.deque(maxlen=args.max_log)
        self.log_lock = threading.Lock()
        self.log_seq = 0
        self.checked = 0
        self.violations = []

    # --- routing --------------------------------------------------------------------------
    def match(self, path):
        found = []
        for r in self.routes:
            m = r.rx.match(path)
            if m:
                found.append((r, m))
        return found

    def route(self, req, path):
        """Returns (Route, match) or a Reply for 307/404/405, as Starlette's Router.app answers: the
        first route matching path and method runs (a HEAD runs a GET route: Route adds HEAD to
        GET's methods); else the first route matching the path alone answers 405 with its methods
        in Allow (a set: the server's order of "GET, HEAD" varies by process); else, when the
        other trailing-slash spelling (all trailing slashes stripped, or one added) matches any
        route, a 307 to it; else 404."""
        method = "GET" if req.method == "HEAD" else req.method
        found = self.match(path)
        for r, m in found:
            if r.method == method:
                return r, m
        if found:
            first = found[0][0].method
            return Reply(405, {"detail": "Method Not Allowed"},
                         headers={"allow": "GET, HEAD" if first == "GET" else first})
        if path != "/":
            alt = path.rstrip("/") if path.endswith("/") else path + "/"
            if self.match(alt):
                return Reply(307, raw=b"", headers={"location": self.redirect_location(req)})
        return Reply(404, {"detail": "Not Found"})

    def redirect_location(self, req):
        """starlette/datastructures.py:URL(scope=...) of the other spelling: the scheme (https under
        --tls-cert, as uvicorn sets it with TLS), the Host header (else the address the request
        came in on), the decoded path and the raw query; quoted by RedirectResponse."""
        scheme = "https" if self.args.tls_cert else "http"
        path = req.path.rstrip("/") if req.path.endswith("/") else req.path + "/"
        host = req.headers.get("host")
        if host is None:
            addr, port = req.local[0], req.local[1]
            host = addr if port == {"http": 80, "https": 443}[scheme] else "%s:%d" % (addr, port)
        url = "%s://%s%s" % (scheme, host, path)
        if req.raw_query:
            url += "?" + req.raw_query
        return urllib.parse.quote(url, safe=REDIRECT_SAFE)

    # --- validation (FastAPI-style 422) ---------------------------------------------------
    def has_body(self, route):
        schema, _ = self.spec.request_schema(route.method, route.template)
        return schema is not None and route.template != "/v1/agents/{agent_id}/messages/{message_id}"

    def parse_body(self, req, route):
        """fastapi/routing.py:get_request_handler reads a JSON body before any dependency or
        parameter is looked at: bad JSON is a 422 with that one error, undecodable bytes a 400."""
        if not self.has_body(route) or not req.body:
            return None
        try:
            req.json = json.loads(req.body.decode("utf-8"))
        except UnicodeDecodeError:
            return Reply(400, {"detail": "There was an error parsing the body"})
        except ValueError as e:
            return self.reply_422([{"type": "json_invalid", "loc": ("body", getattr(e, "pos", 0)),
                                    "msg": "JSON decode error", "input": {},
                                    "ctx": {"error": getattr(e, "msg", str(e))}}])
        return None

    @staticmethod
    def reply_422(errors):
        """app.py:custom_request_validation_handler: detail is repr() of the error list; path ids
        that break their pattern or length read "String should match pattern '<prefix>-{uuid4}'"
        and add an example id. trace_id is the OpenTelemetry trace id, "" on a server without
        tracing (the default: no LETTA_OTEL_EXPORTER_OTLP_ENDPOINT)."""
        examples = set()
        for err in errors:
            loc = err.get("loc", ())
            if len(loc) != 2 or loc[0] != "path" or not str(loc[1]).endswith("_id"):
                continue
            primitive = loc[1][:-3]
            if err["type"] in ("string_pattern_mismatch", "string_too_short", "string_too_long") \
                    and primitive in PRIMITIVES:
                err["msg"] = "String should match pattern '%s-{uuid4}'" % primitive
                err["ctx"] = {"pattern": "^%s-%s$" % (primitive, UUID4_RX)}
                err["type"] = "string_pattern_mismatch"
                examples.add("%s-123e4567-e89b-42d3-8456-426614174000" % primitive)
        body = {"trace_id": "", "detail": repr(errors)}
        if examples:
            body["examples"] = sorted(examples)
        return Reply(422, body)

    def validate_request(self, req, route, match):
        """Path, query and body checks in FastAPI's order (request_params_to_args, then the body);
        a handler's precheck_<name> runs the model's own validators first (they may answer)."""
        errors = []
        params = self.spec.parameters(route.method, route.template)
        for p in params:
            name, where, schema = p["name"], p["in"], p.get("schema", {})
            if where == "path":
                value = match.group(name)
                errors += self.spec.validate(value, schema, ("path", name))
                req.path_params[name] = value
            elif where == "query":
                raw = req.query.get(name)
                if raw is None:
                    if p.get("required"):
                        errors.append({"type": "missing", "loc": ("query", name), "msg": "Field required",
                                       "input": None})
                    req.params[name] = _default(schema)
                    continue
                value, err = _coerce(raw, self.spec._resolve(_non_null(schema, self.spec)), self.spec)
                if err:
                    errors.append({"type": err["type"], "loc": ("query", name), "msg": err["msg"],
                                   "input": raw[-1]})
                    continue
                errors += self.spec.validate(value, schema, ("query", name))
                req.params[name] = value
        schema, required = self.spec.request_schema(route.method, route.template)
        if self.has_body(route):
            if not req.body:
                if required:
                    errors.append({"type": "missing", "loc": ("body",), "msg": "Field required", "input": None})
            else:
                precheck = getattr(self.api, "precheck_" + route.handler.__name__, None)
                extra = precheck(req.json) if precheck is not None and isinstance(req.json, dict) else []
                errors += self.spec.validate(req.json, schema, ("body",)) + extra
        if errors:
            return self.reply_422(errors)
        return None

    # --- one request ----------------------------------------------------------------------
    def handle(self, req):
        """Run a non-admin request. Returns (Reply, fault Rule or None)."""
        path = req.path
        if path.startswith("/latest/"):          # the server serves /latest/... as /v1/...
            path = "/v1/" + path[len("/latest/"):]
        proxy = self.faults.pick(req.method, path, faultlib.PROXY_KINDS)
        if proxy is not None:                 # nginx answers for Letta: no password check, nothing run
            return nginx_page(int(proxy.kind[len("proxy-"):])), proxy
        if self.password and req.path not in AUTH_EXEMPT and not self.authorized(req.headers):
            return Reply(401, {"detail": "Unauthorized"}), None
        fault = self.faults.pick(req.method, path)
        if fault is not None:
            if fault.kind in ("500", "502", "503"):
                return Reply(int(fault.kind), {"detail": {
                    "500": "An unknown error occurred", "502": "Bad Gateway",
                    "503": "Service temporarily unavailable (emulated)"}[fault.kind]}), fault
            if fault.kind == "429":
                return Reply(429, {"detail": "Rate limit exceeded (emulated)"},
                             headers={"retry-after": str(fault.retry_after)}), fault
            if fault.kind == "reset":
                return None, fault
            if fault.kind == "slow":
                time.sleep(fault.ms / 1000.0)
        routed = self.route(req, path)
        if isinstance(routed, Reply):
            return routed, fault
        route, match = routed
        req.route = route
        bad = self.parse_body(req, route)
        if bad is not None:
            return bad, fault
        # dependencies.py:get_headers, a dependency of every route but health and ready, checks
        # the user_id header before the parameters are validated
        uid = req.headers.get("user_id")
        if uid is not None and route.handler != self.api.health and not USER_ID_RX.match(uid):
            return Reply(400, {"detail": "INVALID_ARGUMENT: Invalid user ID format: %s. Expected format: "
                                         "'user-<uuid4>'" % uid}), fault
        try:
            bad = self.validate_request(req, route, match)
        except ApiError as e:
            return Reply(e.status, {"detail": e.detail}, headers=e.headers), fault
        if bad is not None:
            return bad, fault
        try:
            result = route.handler(req)
        except ApiError as e:
            return Reply(e.status, {"detail": e.detail}, headers=e.headers), fault
        except Exception:                          # noqa: BLE001 - the server's generic 500
            traceback.print_exc(file=sys.stderr)
            return Reply(500, {"detail": "An unknown error occurred"}), fault
        if isinstance(result, Stream):
            return Reply(200, stream=result), fault
        status, value = result
        return Reply(status, value), fault

    def authorized(self, headers):
        if headers.get("authorization") == "Bearer " + self.password:
            return True
        return headers.get("x-bare-password") == "password " + self.password

    # --- schema check of what we send -----------------------------------------------------
    def check_response(self, req, reply, value, event=False):
        if req.route is None and reply.status == 200:
            return True
        if reply.status == 200:
            if event:
                schema = {"$ref": "#/components/schemas/LettaStreamingResponse"}
            else:
                schema = self.spec.response_schema(req.route.method, req.route.template)
        elif reply.status in (204, 307):
            return True
        else:
            schema = ERROR_BODY_SCHEMA
        errors = self.spec.validate(value, schema) if schema is not None else []
        with self.log_lock:
            self.checked += 1
            if errors:
                self.violations.append({
                    "method": req.method, "path": req.path, "status": reply.status,
                    "route": req.route.template if req.route else None, "sse_event": event,
                    "errors": [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                               for e in errors[:10]]})
        return not errors

    def record(self, req, status, fault, t0, schema_ok):
        headers = {k: ("***" if k in REDACTED_HEADERS else v) for k, v in req.headers.items()}
        body = None
        if req.body:
            try:
                body = json.loads(req.body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                body = req.body.decode("utf-8", "replace")
        with self.log_lock:
            self.log_seq += 1
            self.log.append({"seq": self.log_seq, "time": t0, "method": req.method, "path": req.path,
                             "query": req.raw_query, "headers": headers, "body": body, "status": status,
                             "fault": fault.kind if fault else None,
                             "duration_ms": round((time.time() - t0) * 1000, 3), "schema_ok": schema_ok})
        if self.args.log_requests:
            print("%s %s -> %s%s" % (req.method, req.target, status, " [fault %s]" % fault.kind if fault else ""),
                  file=sys.stderr, flush=True)

    # --- admin API (/_emulator/...) -------------------------------------------------------
    def admin(self, req):
        p, m = req.path.rstrip("/"), req.method
        body = {}
        if req.body:
            try:
                body = json.loads(req.body.decode("utf-8"))
            except ValueError:
                return Reply(400, {"detail": "admin body must be JSON"})
        if p == "/_emulator/state" and m == "GET":
            return Reply(200, self.api.state_view())
        if p == "/_emulator/requests" and m == "GET":
            since = int((req.query.get("since") or ["0"])[-1])
            with self.log_lock:
                items = [r for r in self.log if r["seq"] > since]
                return Reply(200, {"requests": items, "last_seq": self.log_seq})
        if p == "/_emulator/requests" and m == "DELETE":
            with self.log_lock:
                self.log.clear()
            return Reply(200, {"ok": True})
        if p == "/_emulator/schema-violations" and m == "GET":
            with self.log_lock:
                return Reply(200, {"checked": self.checked, "violations": list(self.violations)})
        if p == "/_emulator/faults":
            try:
                if m == "POST":
                    if not isinstance(body, dict):
                        raise faultlib.FaultError("body must be an object")
                    rules = faultlib.parse_spec(body.get("spec", ""))
                    rules += [faultlib.rule_from_json(r) for r in body.get("rules") or []]
                    if body.get("clear"):
                        self.faults.clear()
                    self.faults.add(rules)
                elif m == "DELETE":
                    self.faults.clear()
                elif m != "GET":
                    return Reply(405, {"detail": "Method Not Allowed"})
            except (faultlib.FaultError, TypeError, ValueError) as e:
                return Reply(400, {"detail": str(e)})
            return Reply(200, {"faults": self.faults.snapshot()})
        if p == "/_emulator/stats" and m == "GET":
            return Reply(200, {"embedding": self.api.embedder.snapshot()})
        if p == "/_emulator/reset" and m == "POST":
            self.store.reset()
            self.api.embedder.reset_stats()
            if not body.get("keep_faults"):
                self.faults.clear()
            with self.log_lock:
                self.log.clear()
            return Reply(200, {"ok": True})
        if p == "/_emulator/config":
            return self.admin_config(m, body)
        return Reply(404, {"detail": "Not Found"})

    def admin_config(self, method, body):
        if method == "POST":
            for key in ("latency_ms", "run_delay_ms", "flaky_block_list", "password"):
                if key in body:
                    setattr(self.args, key, body[key])
            self.latency = self.args.latency_ms / 1000.0
            self.password = self.args.password
            self.api.embedder.configure(body.get("embed_ms"), body.get("embed_concurrency"),
                                        body.get("embed_max_tokens"))
        cfg = {k: getattr(self.args, k) for k in ("latency_ms", "run_delay_ms", "flaky_block_list")}
        cfg.update(self.api.embedder.config())
        cfg["password_set"] = bool(self.password)
        return Reply(200, cfg)


def _non_null(schema, spec):
    schema = spec._resolve(schema)
    if "anyOf" in schema:
        branches = [s for s in schema["anyOf"] if spec._resolve(s).get("type") != "null"]
        if branches:
            return branches[0]
    return schema


def _default(schema):
    return schema.get("default") if isinstance(schema, dict) else None


_TRUE = {"true", "1", "yes", "on", "t", "y"}
_FALSE = {"false", "0", "no", "off", "f", "n"}


def _coerce(raw, schema, spec):
    """Query strings -> typed values as FastAPI does (last value wins for scalars)."""
    t = schema.get("type")
    if t == "array":
        item = spec._resolve(schema.get("items", {}))
        out = []
        for v in raw:
            x, err = _coerce([v], item, spec)
            if err:
                return None, err
            out.append(x)
        return out, None
    v = raw[-1]
    if t == "integer":
        try:
            return int(v), None
        except ValueError:
            return None, {"type": "int_parsing",
                          "msg": "Input should be a valid integer, unable to parse string as an integer"}
    if t == "number":
        try:
            return float(v), None
        except ValueError:
            return None, {"type": "float_parsing", "msg": "Input should be a valid number"}
    if t == "boolean":
        if v.lower() in _TRUE:
            return True, None
        if v.lower() in _FALSE:
            return False, None
        return None, {"type": "bool_parsing", "msg": "Input should be a valid boolean, unable to interpret input"}
    return v, None


# ==============================================================================================
# HTTP/1.1 over sockets. http.server parses headers with the email package, which is too slow
# for the 2000 req/s goal, so this is a lean keep-alive loop; one thread per connection.
# ==============================================================================================
class ConnectionClosed(Exception):
    pass


class Handler(socketserver.BaseRequestHandler):
    def setup(self):
        self.sock = self.request
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tls_failed = False
        if self.server.tls is not None:
            # --tls-cert: the handshake happens here, in the connection's thread, so that a client
            # that refuses the certificate (or stalls) never holds up the accept loop.
            try:
                self.sock.settimeout(10)
                self.sock.do_handshake()
            except (OSError, ValueError):
                self.tls_failed = True
        self.sock.settimeout(self.server.idle_timeout)
        self.rfile = self.sock.makefile("rb", buffering=65536)
        try:
            self.local = self.sock.getsockname()[:2]
        except OSError:
            self.local = ("127.0.0.1", 0)

    def finish(self):
        try:
            self.rfile.close()
        except OSError:
            pass

    def handle(self):
        emu = self.server.emu
        if self.tls_failed:
            return
        try:
            while True:
                req, keep_alive = self.read_request()
                if req is None:
                    return
                if not self.serve(emu, req, keep_alive) or not keep_alive:
                    return
        except (ConnectionClosed, OSError, socket.timeout):
            return
        except Exception:                  # noqa: BLE001 - a bug must not kill the server
            traceback.print_exc(file=sys.stderr)
            return

    def read_request(self):
        line = self.rfile.readline(65537)
        while line in (b"\r\n", b"\n"):
            line = self.rfile.readline(65537)
        if not line:
            return None, False
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self.send_simple(400, {"detail": "Bad request line"}, False)
            return None, False
        method, target, version = parts
        headers = {}
        while True:
            h = self.rfile.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = headers[name] + ", " + value if name in headers else value
        conn = headers.get("connection", "").lower()
        keep_alive = ("close" not in conn) if version == "HTTP/1.1" else ("keep-alive" in conn)
        if headers.get("expect", "").lower() == "100-continue":
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = self.read_chunked()
        elif headers.get("content-length"):
            try:
                n = int(headers["content-length"])
            except ValueError:
                self.send_simple(400, {"detail": "Bad Content-Length"}, False)
                return None, False
            if n > MAX_BODY:
                self.send_simple(413, {"detail": "Request body too large"}, False)
                return None, False
            body = self.rfile.read(n)
            if len(body) < n:
                raise ConnectionClosed()
        return Request(method, target, headers, body, self.local), keep_alive

    def read_chunked(self):
        out = []
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(out)
            out.append(self.rfile.read(size))
            self.rfile.readline(3)

    def head(self, status, headers, keep_alive):
        lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Unknown")),
                 "date: " + formatdate(usegmt=True), "server: " + headers.pop("server", "uvicorn")]
        for k, v in headers.items():
            lines.append("%s: %s" % (k, v))
        if not keep_alive:
            lines.append("connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send_simple(self, status, value, keep_alive):
        body = dumps(value)
        self.sock.sendall(self.head(status, {"content-length": str(len(body)),
                                             "content-type": "application/json"}, keep_alive) + body)

    def reset(self):
        """Abort the connection with a TCP RST (SO_LINGER 0 then close)."""
        try:
            self.rfile.close()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()
        except OSError:
            pass

    def serve(self, emu, req, keep_alive):
        """Answer one request. Returns False when the connection must not be reused."""
        t0 = time.time()
        if req.path.startswith("/_emulator/"):
            return self.serve_admin(emu, req, keep_alive)
        reply, fault = emu.handle(req)
        if emu.latency > 0:
            time.sleep(emu.latency)           # per response, in this connection's thread only
        kind = fault.kind if fault else None
        if reply is None:                     # fault "reset": nothing was run
            emu.record(req, None, fault, t0, None)
            self.reset()
            return False
        if reply.stream is not None:
            return self.serve_stream(emu, req, reply, kind, keep_alive, fault, t0)
        body = reply.raw if reply.raw is not None else dumps(reply.value)
        schema_ok = None
        if kind in (None, "slow"):
            schema_ok = emu.check_response(req, reply, reply.value) if reply.raw is None else True
        headers = dict(reply.headers)
        if reply.status == 204:           # FastAPI empties the body; Starlette sets no content-length
            body = b""
        else:
            headers["content-length"] = str(len(body))
        if reply.raw is None:
            headers["content-type"] = "application/json"
        if kind == "commit-500":
            body = dumps({"detail": "An unknown error occurred"})
            emu.record(req, 500, fault, t0, None)
            self.sock.sendall(self.head(500, {"content-length": str(len(body)),
                                              "content-type": "application/json"}, keep_alive) + body)
            return True
        if kind == "commit-reset":
            emu.record(req, None, fault, t0, None)
            self.reset()
            return False
        if kind == "bad-json":
            body = b"<html><body><h1>200 OK</h1>upstream answered garbage</body></html>"
            headers["content-length"] = str(len(body))
            emu.record(req, reply.status, fault, t0, None)
            self.sock.sendall(self.head(reply.status, headers, keep_alive) + body)
            return True
        if kind in ("truncate", "reset-body"):
            emu.record(req, reply.status, fault, t0, None)
            self.sock.sendall(self.head(reply.status, headers, False) + body[:max(1, len(body) // 2)])
            if kind == "reset-body":
                self.reset()
            else:
                self.sock.shutdown(socket.SHUT_WR)
            return False
        emu.record(req, reply.status, fault, t0, schema_ok)
        if req.method == "HEAD":          # uvicorn sends the headers of the GET answer, no body
            body = b""
        self.sock.sendall(self.head(reply.status, headers, keep_alive) + body)
        return True

    def serve_admin(self, emu, req, keep_alive):
        """Admin: no password, no faults, no latency, not recorded."""
        try:
            reply = emu.admin(req)
        except (TypeError, ValueError, AttributeError) as e:
            reply = Reply(400, {"detail": "bad admin request: %s" % e})
        body = dumps(reply.value)
        self.sock.sendall(self.head(reply.status, dict(reply.headers, **{
            "content-length": str(len(body)), "content-type": "application/json"}), keep_alive) + body)
        return True

    def serve_stream(self, emu, req, reply, kind, keep_alive, fault, t0):
        events = reply.stream.events
        if kind in ("commit-500", "commit-reset"):
            for _ in events:                  # run the whole turn, then fail
                pass
            emu.record(req, 500 if kind == "commit-500" else None, fault, t0, None)
            if kind == "commit-reset":
                self.reset()
                return False
            body = dumps({"detail": "An unknown error occurred"})
            self.sock.sendall(self.head(500, {"content-length": str(len(body)),
                                              "content-type": "application/json"}, keep_alive) + body)
            return True
        self.sock.sendall(self.head(200, {"content-type": "text/event-stream; charset=utf-8",
                                          "transfer-encoding": "chunked", "cache-control": "no-cache",
                                          "x-accel-buffering": "no"}, keep_alive))
        self.stream_logged = False
        try:
            return self.serve_events(emu, req, reply, kind, fault, t0, events)
        except OSError:                       # the client left mid-stream: still log the request
            if not self.stream_logged:
                emu.record(req, 200, fault, t0, None)
            return False

    def serve_events(self, emu, req, reply, kind, fault, t0, events):
        ok = True
        for i, text in enumerate(events):
            if kind == "bad-json" and i == 1:
                text = "data: {\"message_type\": \"assistant_message\", \"content\": \n\n"
            elif text.startswith("data: {") and kind in (None, "slow"):
                try:
                    ok = emu.check_response(req, reply, json.loads(text[6:]), event=True) and ok
                except ValueError:
                    ok = False
            data = text.encode("utf-8")
            self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
            if kind in ("truncate", "reset-body") and i == 1:
                emu.record(req, 200, fault, t0, None)
                self.stream_logged = True
                if kind == "reset-body":
                    self.reset()
                else:
                    self.sock.shutdown(socket.SHUT_WR)
                return False
        self.sock.sendall(b"0\r\n\r\n")
        emu.record(req, 200, fault, t0, ok if fault is None or kind == "slow" else None)
        return True


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    idle_timeout = 600
    tls = None  # an ssl.SSLContext with --tls-cert/--tls-key: HTTPS on the same port

    def get_request(self):
        sock, addr = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Local emulator of the Letta REST API (see README.md).")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; keep it loopback)")
    ap.add_argument("--port", type=int, default=8283, help="port; 0 picks a free one (default 8283)")
    ap.add_argument("--password", default=None,
                    help="secure mode: require 'Authorization: Bearer PW' or 'X-BARE-PASSWORD: password PW'")
    ap.add_argument("--latency-ms", type=float, default=0, help="sleep added before every API response")
    ap.add_argument("--state-file", default=None, help="JSON file the state is loaded from and saved to")
    ap.add_argument("--faults", default=None, help="fault rules, e.g. 'kind=503,times=2,route=GET /v1/agents/*'")
    ap.add_argument("--run-delay-ms", type=float, default=200,
                    help="async runs: the turn runs (and the run ends) after it (default 200)")
    ap.add_argument("--flaky-block-list", type=float, default=0.0,
                    help="GET /v1/blocks/ silently drops this fraction of the rows (0..1)")
    ap.add_argument("--seed", type=int, default=None, help="seed for fault probabilities and flaky lists")
    ap.add_argument("--max-log", type=int, default=10000, help="requests kept for GET /_emulator/requests")
    ap.add_argument("--log-requests", action="store_true", help="print one line per request on stderr")
    ap.add_argument("--tls-cert", default=None, help="PEM certificate (chain): serve HTTPS instead of HTTP")
    ap.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert (default: in the cert file)")
    ap.add_argument("--models", default="openai/gpt-4o-mini,openai/gpt-4o",
                    help="comma-separated LLM handles GET /v1/models/ lists and agent create accepts")
    ap.add_argument("--embedding-models", default="openai/text-embedding-3-small",
                    help="comma-separated embedding handles GET /v1/models/embedding lists")
    ap.add_argument("--embed-ms", type=float, default=0,
                    help="server time each embedding request costs, without the state lock (default 0)")
    ap.add_argument("--embed-concurrency", type=int, default=0,
                    help="embedding requests in flight at most, server-wide (default 0: unlimited)")
    ap.add_argument("--embed-max-tokens", type=int, default=8192,
                    help="the embedding provider refuses an input over N tokens (default 8192)")
    ap.add_argument("--compat", default="",
                    help="comma-separated behaviours of other server versions to imitate (see README.md)")
    args = ap.parse_args(argv)
    if args.tls_key and not args.tls_cert:
        ap.error("--tls-key needs --tls-cert")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.embedding_models = [m.strip() for m in args.embedding_models.split(",") if m.strip()]
    args.compat = set(c.strip() for c in args.compat.split(",") if c.strip())
    unknown = args.compat - set(COMPAT_SWITCHES)
    if unknown:
        ap.error("unknown --compat %s (known: %s)" % (",".join(sorted(unknown)), ",".join(sorted(COMPAT_SWITCHES))))
    if args.embed_ms < 0 or args.embed_concurrency < 0 or args.embed_max_tokens < 1:
        ap.error("--embed-ms and --embed-concurrency must be >= 0, --embed-max-tokens >= 1")
    if not 0.0 <= args.flaky_block_list <= 1.0:
        ap.error("--flaky-block-list must be between 0 and 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        emu = Emulator(args)
    except faultlib.FaultError as e:
        print("letta-emulator: bad --faults: %s" % e, file=sys.stderr)
        return 2
    tls = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            tls.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as e:
            print("letta-emulator: cannot load --tls-cert/--tls-key: %s" % e, file=sys.stderr)
            return 2
    server = Server((args.host, args.port), Handler)
    server.emu = emu
    server.tls = tls
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    print("LETTA_EMULATOR_URL=%s://%s:%d" % ("https" if tls else "http", host, port), flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    emu.store.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

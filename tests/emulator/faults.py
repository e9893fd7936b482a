"""Fault rules for the Letta emulator: parsing the --faults SPEC / admin JSON and picking the rule
that applies to a request. The emulator's HTTP layer carries the faults out (see letta_emulator.py).

SPEC grammar (documented in README.md):
    SPEC  := RULE (';' RULE)*
    RULE  := FIELD (',' FIELD)*
    FIELD := kind=KIND | route=METHOD PATH | p=FLOAT | times=N | ms=N | retry_after=SECONDS
"""

import random
import re
import threading

# kind -> short description (also the list of accepted kinds)
KINDS = {
    "500": "answer 500 {\"detail\": ...} without running the request",
    "502": "answer 502 without running the request",
    "503": "answer 503 without running the request",
    "429": "answer 429 with Retry-After (retry_after seconds, default 1) without running the request",
    "slow": "sleep ms milliseconds (default 2000), then answer normally",
    "reset": "reset the connection (TCP RST) before any response byte; the request is not run",
    "reset-body": "run the request, send the headers and part of the body, then reset the connection",
    "truncate": "run the request, send the headers (full Content-Length) and half the body, then close",
    "bad-json": "run the request, answer 200 with a body that is not JSON",
    "commit-500": "run the request (the write is applied), then answer 500",
    "commit-reset": "run the request (the write is applied), then reset the connection without answering",
    "stream-error": "SSE routes: send the first events, then a stop_reason error and `event: error`",
    "run-fail": "async runs (/messages/async): the run ends 'failed' instead of 'completed'",
    # not Letta's behaviour: what nginx in front of it answers when Letta is down or slow
    "proxy-502": "answer like nginx with Letta down: 502, its HTML page, text/html, before the password check",
    "proxy-503": "answer like nginx (or a load balancer) with no upstream: 503, an HTML page, text/html",
    "proxy-504": "answer like nginx when Letta does not answer in time: 504, its HTML page, text/html",
}

HANDLER_KINDS = {"stream-error", "run-fail"}
PROXY_KINDS = {"proxy-502", "proxy-503", "proxy-504"}  # picked before anything else (see pick)
_FIELDS = {"kind", "route", "p", "times", "ms", "retry_after"}


class FaultError(ValueError):
    pass


class Rule:
    def __init__(self, kind, route=None, p=1.0, times=None, ms=2000, retry_after=1):
        kind = str(kind)
        if kind not in KINDS:
            raise FaultError("unknown fault kind %r (known: %s)" % (kind, ", ".join(KINDS)))
        self.kind = kind
        self.route = route or "* /**"
        self.method, self.rx = _compile_route(self.route)
        self.p = float(p)
        if not 0.0 <= self.p <= 1.0:
            raise FaultError("p must be between 0 and 1")
        self.times = None if times in (None, "") else int(times)
        if self.times is not None and self.times < 1:
            raise FaultError("times must be >= 1")
        self.ms = int(ms)
        self.retry_after = int(retry_after)
        self.hits = 0

    def matches(self, method, path):
        return (self.method == "*" or self.method == method) and self.rx.match(path) is not None

    def to_json(self):
        return {"kind": self.kind, "route": self.route, "p": self.p, "times": self.times,
                "ms": self.ms, "retry_after": self.retry_after, "hits": self.hits}


def _compile_route(route):
    """'METHOD /path/pattern' -> (METHOD, regex). In the pattern, `*` or `{name}` match one path
    segment and a final `**` matches the rest. Trailing slashes are ignored when matching."""
    parts = route.strip().split(None, 1)
    if len(parts) == 1:                      # just a path: any method
        parts = ["*", parts[0]]
    method, pattern = parts[0].upper(), parts[1].strip()
    if not pattern.startswith("/"):
        raise FaultError("route path must start with '/': %r" % route)
    out = []
    for seg in pattern.strip("/").split("/"):
        if seg == "**":
            out.append(r"(?:/.*)?")
            break
        if seg == "*" or (seg.startswith("{") and seg.endswith("}")):
            out.append(r"/[^/]+")
        elif seg:
            out.append("/" + re.escape(seg))
    return method, re.compile("^" + "".join(out) + "/?$")


def parse_spec(spec):
    """Parse the --faults SPEC string into a list of Rule."""
    rules = []
    for chunk in (spec or "").split(";"):
        chunk = chunk.strip()
        if not chunk:
            continue
        fields = {}
        for item in chunk.split(","):
            if "=" not in item:
                raise FaultError("fault field %r is not key=value" % item.strip())
            k, v = item.split("=", 1)
            k = k.strip()
            if k not in _FIELDS:
                raise FaultError("unknown fault field %r (known: %s)" % (k, ", ".join(sorted(_FIELDS))))
            fields[k] = v.strip()
        if "kind" not in fields:
            raise FaultError("fault rule %r has no kind=" % chunk)
        rules.append(Rule(**fields))
    return rules


def rule_from_json(obj):
    if not isinstance(obj, dict):
        raise FaultError("each fault rule must be an object")
    unknown = set(obj) - _FIELDS - {"hits"}
    if unknown:
        raise FaultError("unknown fault field(s): %s" % ", ".join(sorted(unknown)))
    if "kind" not in obj:
        raise FaultError("fault rule has no kind")
    args = {k: v for k, v in obj.items() if k in _FIELDS and v is not None}
    return Rule(**args)


class FaultSet:
    """The active rules. The first matching rule that fires wins; a rule with `times` is removed
    once it has fired that many times."""

    def __init__(self, seed=None):
        self.rules = []
        self.lock = threading.Lock()
        self.rng = random.Random(seed)

    def add(self, rules):
        with self.lock:
            self.rules.extend(rules)

    def clear(self):
        with self.lock:
            self.rules = []

    def snapshot(self):
        with self.lock:
            return [r.to_json() for r in self.rules]

    def pick(self, method, path, kinds=None):
        """Return the Rule that fires for this request, or None. `kinds` restricts the kinds
        considered; by default the transport kinds. stream-error and run-fail are picked by the
        streaming and async handlers themselves, so they are not used up by other requests; the
        proxy kinds are picked first, with kinds=PROXY_KINDS (the proxy answers before Letta)."""
        if not self.rules:                   # fast path: no lock when nothing is configured
            return None
        with self.lock:
            for rule in self.rules:
                if kinds is not None and rule.kind not in kinds:
                    continue
                if kinds is None and (rule.kind in HANDLER_KINDS or rule.kind in PROXY_KINDS):
                    continue
                if not rule.matches(method, path):
                    continue
                if rule.p < 1.0 and self.rng.random() >= rule.p:
                    continue
                rule.hits += 1
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self.rules.remove(rule)
                return rule
        return None

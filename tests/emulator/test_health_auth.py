"""Health/ready, routing as Starlette does it (trailing-slash redirects, 404, 405, HEAD), the
user_id header, body parsing errors, and the password middleware. Each test names the server
source (Letta 0.16.8, letta/...; Starlette 0.47.3, FastAPI 0.116.1) that decides what it checks."""

import os
import socket
import ssl
import subprocess
import tempfile
import unittest

from emu_helpers import Emulator, EmulatorTestCase, make_agent


def read_all(sock):
    """Everything the server sends until it closes the connection."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


class HealthTest(EmulatorTestCase):
    def test_health_returns_version_and_ok(self):
        """routers/v1/health.py:check_health."""
        r = self.c.get("/v1/health/")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json, {"version": "0.16.8", "status": "ok"})
        self.assertEqual(r.headers["content-type"], "application/json")

    def test_ready_has_health_shape(self):
        self.assertEqual(self.c.get("/v1/ready/").json["status"], "ok")

    def test_latest_prefix_serves_the_same_routes(self):
        self.assertEqual(self.c.get("/latest/health/").json["version"], "0.16.8")

    def test_missing_trailing_slash_gets_307_to_the_declared_spelling(self):
        """starlette/routing.py:Router.app (redirect_slashes) and datastructures.py:URL(scope):
        scheme, Host header, path, raw query."""
        r = self.c.get("/v1/health", query={"x": "1"})
        self.assertEqual(r.status, 307)
        self.assertEqual(r.headers["location"], "http://%s:%d/v1/health/?x=1" % (self.emu.host, self.emu.port))
        self.assertEqual(r.body, b"")
        r = self.c.get("/v1/health", headers={"Host": "letta.example:8443"})
        self.assertEqual(r.headers["location"], "http://letta.example:8443/v1/health/")

    def test_redirect_location_is_the_decoded_path_quoted_again(self):
        """Router.app redirects scope["path"] (percent-decoded by uvicorn); RedirectResponse quotes
        it with safe=":/%#?=@[]!$&'()*+,;"."""
        r = self.c.get("/v1/agents/a%20b%3Ac%40/context/")
        self.assertEqual(r.status, 307)
        self.assertTrue(r.headers["location"].endswith("/v1/agents/a%20b:c@/context"), r.headers)

    def test_redirect_strips_every_trailing_slash(self):
        """Router.app tries route_path.rstrip("/"): "//" goes to the spelling without any slash,
        and a collection root ("/v1/blocks//") finds no route: 404."""
        r = self.c.get("/v1/agents/x/context//")
        self.assertEqual(r.status, 307)
        self.assertTrue(r.headers["location"].endswith("/v1/agents/x/context"), r.headers)
        self.assertEqual(self.c.get("/v1/blocks//").status, 404)

    def test_redirect_without_host_header_uses_the_server_address(self):
        """URL(scope): no Host header -> scope["server"] (host:port)."""
        with socket.create_connection((self.emu.host, self.emu.port), timeout=5) as s:
            s.sendall(b"GET /v1/health HTTP/1.0\r\n\r\n")
            data = read_all(s)
        self.assertIn(("location: http://%s:%d/v1/health/" % (self.emu.host, self.emu.port)).encode(), data)

    def test_extra_trailing_slash_gets_307_without_running_the_handler(self):
        a = make_agent(self.c)
        before = self.admin_state()["agents"][0]["message_count"]
        r = self.c.post("/v1/agents/%s/messages/" % a["id"], {"input": "hi"})
        self.assertEqual(r.status, 307)
        self.assertTrue(r.headers["location"].endswith("/v1/agents/%s/messages" % a["id"]))
        self.assertEqual(self.admin_state()["agents"][0]["message_count"], before)

    def test_collection_root_without_slash_redirects_post_too(self):
        r = self.c.post("/v1/blocks", {"label": "x", "value": "y"})
        self.assertEqual(r.status, 307)
        self.assertEqual(self.admin_state()["blocks"], [])

    def test_unknown_path_is_404_not_found(self):
        r = self.c.get("/v1/nothing-here")
        self.assertEqual((r.status, r.json), (404, {"detail": "Not Found"}))

    def test_wrong_method_is_405_with_the_first_matching_routes_methods(self):
        """starlette/routing.py:Router.app hands a path match of another method to the first such
        route; Route.handle answers 405 with its methods (GET routes also take HEAD). The server
        declares PATCH /agents/{agent_id} and PATCH /blocks/{block_id} first."""
        r = self.c.request("PUT", "/v1/health/")
        self.assertEqual((r.status, r.json), (405, {"detail": "Method Not Allowed"}))
        self.assertEqual(r.headers["allow"], "GET, HEAD")
        a = make_agent(self.c)
        self.assertEqual(self.c.request("PUT", "/v1/agents/" + a["id"]).headers["allow"], "PATCH")
        self.assertEqual(self.c.request("PUT", "/v1/blocks/block-x").headers["allow"], "PATCH")
        self.assertEqual(self.c.request("PUT", "/v1/agents/").headers["allow"], "GET, HEAD")
        self.assertEqual(self.c.request("POST", "/v1/runs/run-x").headers["allow"], "GET, HEAD")

    def test_head_runs_the_get_route_without_a_body(self):
        """Route adds HEAD to a GET route's methods; uvicorn sends no body for HEAD."""
        get = self.c.get("/v1/health/")
        r = self.c.request("HEAD", "/v1/health/")
        self.assertEqual((r.status, r.body, r.headers["content-length"]),
                         (200, b"", get.headers["content-length"]))
        self.assertEqual(self.c.request("HEAD", "/v1/agents/agent-1").status, 422)

    def test_malformed_user_id_header_is_400_before_validation(self):
        """dependencies.py:get_headers raises LettaInvalidArgumentError while FastAPI solves the
        dependencies, before the path is validated; health has no such dependency."""
        bad = {"user_id": "bob"}
        want = (400, {"detail": "INVALID_ARGUMENT: Invalid user ID format: bob. Expected format: 'user-<uuid4>'"})
        r = self.c.get("/v1/agents/", headers=bad)
        self.assertEqual((r.status, r.json), want)
        r = self.c.get("/v1/agents/agent-1", headers=bad)
        self.assertEqual((r.status, r.json), want)
        self.assertEqual(self.c.get("/v1/health/", headers=bad).status, 200)

    def test_unknown_user_acts_as_the_default_user(self):
        """user_manager.py:get_actor_or_default_async falls back to the default user."""
        b = self.c.post("/v1/blocks/", {"label": "l", "value": "v"},
                        headers={"user_id": "user-11111111-2222-4333-8444-555555555555"}).json
        self.assertEqual(b["created_by_id"], "user-00000000-0000-4000-8000-000000000000")

    def test_body_that_is_not_json_is_422_before_anything_else(self):
        """fastapi/routing.py:get_request_handler parses the body first: json_invalid with the
        decoder's msg, alone (the bad path id and user_id are not looked at)."""
        r = self.c.post("/v1/agents/agent-1/messages", b"{nope", headers={"Content-Type": "application/json",
                                                                          "user_id": "bob"})
        self.assertEqual(r.status, 422)
        self.assertEqual(r.json["detail"], "[{'type': 'json_invalid', 'loc': ('body', 1), 'msg': 'JSON decode "
                                           "error', 'input': {}, 'ctx': {'error': 'Expecting property name "
                                           "enclosed in double quotes'}}]")
        r = self.c.post("/v1/blocks/", b'{"label": "\xff"}', headers={"Content-Type": "application/json"})
        self.assertEqual((r.status, r.json), (400, {"detail": "There was an error parsing the body"}))

    def test_keep_alive_serves_many_requests_on_one_connection(self):
        for _ in range(50):
            self.assertEqual(self.c.get("/v1/health/").status, 200)
        sock_before = self.c.conn.sock
        self.c.get("/v1/health/")
        self.assertIs(self.c.conn.sock, sock_before)


class PasswordTest(EmulatorTestCase):
    """middleware/check_password.py:CheckPasswordMiddleware."""
    emulator_args = ("--password", "s3cret")

    def test_no_credentials_gives_401_unauthorized(self):
        r = self.c.get("/v1/agents/")
        self.assertEqual((r.status, r.json), (401, {"detail": "Unauthorized"}))

    def test_wrong_password_gives_401(self):
        r = self.c.get("/v1/agents/", headers={"Authorization": "Bearer nope"})
        self.assertEqual(r.status, 401)
        r = self.c.get("/v1/agents/", headers={"X-BARE-PASSWORD": "password nope"})
        self.assertEqual(r.status, 401)

    def test_basic_auth_is_rejected(self):
        r = self.c.get("/v1/agents/", headers={"Authorization": "Basic czNjcmV0"})
        self.assertEqual(r.status, 401)

    def test_bearer_password_is_accepted(self):
        r = self.c.get("/v1/agents/", headers={"Authorization": "Bearer s3cret"})
        self.assertEqual((r.status, r.json), (200, []))

    def test_bare_password_header_is_accepted(self):
        r = self.c.get("/v1/agents/", headers={"X-BARE-PASSWORD": "password s3cret"})
        self.assertEqual(r.status, 200)

    def test_health_and_ready_are_exempt(self):
        for path in ("/v1/health/", "/v1/ready/", "/latest/health/", "/latest/ready/"):
            self.assertEqual(self.c.get(path).status, 200, path)
        # the exempt set has /v1/health and /v1/ready (then the router redirects) but not /latest/health
        self.assertEqual(self.c.get("/v1/health").status, 307)
        self.assertEqual(self.c.get("/latest/health").status, 401)

    def test_auth_is_checked_before_routing(self):
        # the middleware answers before the router: 401 even for unknown paths and redirects
        self.assertEqual(self.c.get("/v1/nothing").status, 401)
        self.assertEqual(self.c.get("/v1/agents").status, 401)

    def test_admin_api_needs_no_password(self):
        self.assertEqual(self.c.get("/_emulator/state").status, 200)

    def test_requests_log_redacts_credentials(self):
        self.c.get("/v1/agents/", headers={"Authorization": "Bearer s3cret"})
        self.c.get("/v1/agents/", headers={"X-BARE-PASSWORD": "password s3cret"})
        log = self.c.get("/_emulator/requests").json["requests"]
        self.assertEqual(log[-2]["headers"]["authorization"], "***")
        self.assertEqual(log[-1]["headers"]["x-bare-password"], "***")
        self.assertNotIn("s3cret", str(log))


class TlsRedirectTest(unittest.TestCase):
    def test_redirect_keeps_https_under_tls_cert(self):
        """uvicorn sets scope["scheme"] to https with TLS; URL(scope) builds the Location from it."""
        with tempfile.TemporaryDirectory() as d:
            cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                            "/CN=127.0.0.1", "-keyout", key, "-out", cert], check=True, capture_output=True)
            emu = Emulator("--tls-cert", cert, "--tls-key", key)
            try:
                self.assertTrue(emu.url.startswith("https://"))
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                with socket.create_connection((emu.host, emu.port), timeout=5) as raw:
                    with ctx.wrap_socket(raw) as s:
                        s.sendall(b"GET /v1/health?x=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
                                  % emu.port)
                        data = read_all(s)
                self.assertIn(b"HTTP/1.1 307", data)
                self.assertIn(b"location: https://127.0.0.1:%d/v1/health/?x=1\r\n" % emu.port, data)
            finally:
                emu.stop()


class ProcessTest(unittest.TestCase):
    def test_prints_url_line_and_exits_0_on_sigterm(self):
        emu = Emulator()
        self.assertRegex(emu.url, r"^http://127\.0\.0\.1:\d+$")
        c = emu.client()
        self.assertEqual(c.get("/v1/health/").status, 200)
        c.close()
        self.assertEqual(emu.stop(), 0)
        self.assertEqual(emu.extra_output[0], "")     # nothing after the URL line on stdout

    def test_exits_0_on_sigint_with_an_open_keep_alive_connection(self):
        import signal
        emu = Emulator()
        c = emu.client()
        c.get("/v1/health/")
        self.assertEqual(emu.stop(signal.SIGINT), 0)
        c.close()

    def test_bad_fault_spec_is_refused_at_start(self):
        import subprocess
        import sys
        from emu_helpers import EMULATOR
        p = subprocess.run([sys.executable, EMULATOR, "--port", "0", "--faults", "kind=teapot"],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown fault kind", p.stderr)


if __name__ == "__main__":
    unittest.main()

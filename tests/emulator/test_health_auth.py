"""Health/ready, trailing-slash redirects, unknown routes, and the password middleware."""

import unittest

from emu_helpers import Emulator, EmulatorTestCase


class HealthTest(EmulatorTestCase):
    def test_health_returns_version_and_ok(self):
        r = self.c.get("/v1/health/")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json, {"version": "0.16.8", "status": "ok"})
        self.assertEqual(r.headers["content-type"], "application/json")

    def test_ready_has_health_shape(self):
        self.assertEqual(self.c.get("/v1/ready/").json["status"], "ok")

    def test_latest_prefix_serves_the_same_routes(self):
        self.assertEqual(self.c.get("/latest/health/").json["version"], "0.16.8")

    def test_missing_trailing_slash_gets_307_to_the_declared_spelling(self):
        r = self.c.get("/v1/health", query={"x": "1"})
        self.assertEqual(r.status, 307)
        self.assertTrue(r.headers["location"].endswith("/v1/health/?x=1"), r.headers)
        self.assertEqual(r.body, b"")

    def test_extra_trailing_slash_gets_307_without_running_the_handler(self):
        a = self.c.post("/v1/agents/", {}).json
        r = self.c.post("/v1/agents/%s/messages/" % a["id"], {"input": "hi"})
        self.assertEqual(r.status, 307)
        self.assertTrue(r.headers["location"].endswith("/v1/agents/%s/messages" % a["id"]))
        self.assertEqual(self.admin_state()["agents"][0]["message_count"], 0)

    def test_collection_root_without_slash_redirects_post_too(self):
        r = self.c.post("/v1/blocks", {"label": "x", "value": "y"})
        self.assertEqual(r.status, 307)
        self.assertEqual(self.admin_state()["blocks"], [])

    def test_unknown_path_is_404_not_found(self):
        r = self.c.get("/v1/nothing-here")
        self.assertEqual((r.status, r.json), (404, {"detail": "Not Found"}))

    def test_wrong_method_is_405_with_allow_header(self):
        r = self.c.request("PUT", "/v1/health/")
        self.assertEqual((r.status, r.json), (405, {"detail": "Method Not Allowed"}))
        self.assertEqual(r.headers["allow"], "GET")

    def test_keep_alive_serves_many_requests_on_one_connection(self):
        for _ in range(50):
            self.assertEqual(self.c.get("/v1/health/").status, 200)
        sock_before = self.c.conn.sock
        self.c.get("/v1/health/")
        self.assertIs(self.c.conn.sock, sock_before)


class PasswordTest(EmulatorTestCase):
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

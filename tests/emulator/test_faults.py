"""Fault injection: every fault kind, per-route patterns, probability and `times`, faults from
--faults at start, and the admin faults API."""

import http.client
import json
import time
import unittest

from emu_helpers import EmulatorTestCase, make_agent

BROKEN = (ConnectionResetError, http.client.RemoteDisconnected, http.client.IncompleteRead,
          BrokenPipeError, ConnectionAbortedError)


class FaultsTest(EmulatorTestCase):
    emulator_args = ("--seed", "42")

    def raw(self, method, path, body=None):
        """One request on a fresh connection, without the helper's retry on a dropped connection.
        Returns (status, headers, body bytes); raises what http.client raises."""
        conn = http.client.HTTPConnection(self.emu.host, self.emu.port, timeout=10)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def blocks(self):
        return [b["label"] for b in self.admin_state()["blocks"]]

    # --- statuses without running the request -------------------------------------------
    def test_status_faults_answer_without_running_the_request(self):
        for kind in ("500", "502", "503"):
            self.set_faults("kind=%s,times=1,route=POST /v1/blocks/" % kind)
            r = self.c.post("/v1/blocks/", {"label": "l" + kind, "value": "v"})
            self.assertEqual(r.status, int(kind))
            self.assertIn("detail", r.json)
        self.assertEqual(self.blocks(), [])
        self.assertEqual(self.c.post("/v1/blocks/", {"label": "ok", "value": "v"}).status, 200)

    def test_proxy_faults_answer_like_nginx_before_the_password_check(self):
        """Not Letta: nginx in front of it, with Letta down (502), unavailable (503) or slow (504)."""
        self.c.post("/_emulator/config", {"password": "pw-proxy"})
        try:
            for status in (502, 503, 504):
                self.set_faults("kind=proxy-%d,times=1,route=POST /v1/blocks/" % status)
                code, headers, body = self.raw("POST", "/v1/blocks/", {"label": "p", "value": "v"})
                self.assertEqual(code, status)
                self.assertEqual(headers["content-type"], "text/html")
                self.assertTrue(headers["server"].startswith("nginx/"))
                self.assertTrue(body.startswith(b"<html>"), body)
                self.assertIn(b"<title>%d " % status, body)
            code, _, _ = self.raw("POST", "/v1/blocks/", {"label": "p", "value": "v"})
            self.assertEqual(code, 401)                      # the rules are used up: Letta again
        finally:
            self.c.post("/_emulator/config", {"password": None})
        self.assertEqual(self.blocks(), [])

    def test_429_has_retry_after(self):
        self.set_faults("kind=429,retry_after=3,times=1")
        r = self.c.get("/v1/agents/")
        self.assertEqual((r.status, r.headers["retry-after"]), (429, "3"))
        self.assertEqual(self.c.get("/v1/agents/").status, 200)

    def test_slow_delays_the_answer(self):
        self.set_faults("kind=slow,ms=400,times=1,route=GET /v1/health/")
        t0 = time.time()
        self.assertEqual(self.c.get("/v1/health/").status, 200)
        self.assertGreaterEqual(time.time() - t0, 0.38)
        t0 = time.time()
        self.c.get("/v1/health/")
        self.assertLess(time.time() - t0, 0.3)

    # --- broken connections --------------------------------------------------------------
    def test_reset_before_body_breaks_the_connection_and_runs_nothing(self):
        self.set_faults("kind=reset,times=1,route=POST /v1/blocks/")
        with self.assertRaises(BROKEN):
            self.raw("POST", "/v1/blocks/", {"label": "x", "value": "v"})
        self.assertEqual(self.blocks(), [])

    def test_reset_during_body_breaks_the_connection_after_the_write(self):
        self.set_faults("kind=reset-body,times=1,route=POST /v1/blocks/")
        with self.assertRaises(BROKEN):
            self.raw("POST", "/v1/blocks/", {"label": "x", "value": "v"})
        self.assertEqual(self.blocks(), ["x"])

    def test_truncated_body_is_an_incomplete_read(self):
        self.set_faults("kind=truncate,times=1,route=GET /v1/health/")
        with self.assertRaises(http.client.IncompleteRead):
            self.raw("GET", "/v1/health/")
        self.assertEqual(self.raw("GET", "/v1/health/")[0], 200)

    def test_bad_json_body(self):
        self.set_faults("kind=bad-json,times=1,route=POST /v1/blocks/")
        status, headers, body = self.raw("POST", "/v1/blocks/", {"label": "x", "value": "v"})
        self.assertEqual((status, headers["content-type"]), (200, "application/json"))
        with self.assertRaises(ValueError):
            json.loads(body)
        self.assertEqual(self.blocks(), ["x"])

    def test_commit_then_500_applies_the_write(self):
        self.set_faults("kind=commit-500,times=1,route=POST /v1/blocks/")
        r = self.c.post("/v1/blocks/", {"label": "Persona_a", "value": "v"})
        self.assertEqual(r.status, 500)
        self.assertEqual(self.blocks(), ["Persona_a"])
        # a naive client retrying now duplicates the block
        self.c.post("/v1/blocks/", {"label": "Persona_a", "value": "v"})
        self.assertEqual(self.blocks(), ["Persona_a", "Persona_a"])

    def test_commit_then_reset_applies_the_write(self):
        a = make_agent(self.c)
        self.set_faults("kind=commit-reset,times=1,route=POST /v1/agents/{agent_id}/archival-memory")
        with self.assertRaises(BROKEN):
            self.raw("POST", "/v1/agents/%s/archival-memory" % a["id"], {"text": "kept"})
        self.assertEqual([p["text"] for p in self.admin_state()["passages"][a["id"]]], ["kept"])

    def test_commit_then_fail_on_a_message_send_stores_the_turn(self):
        a = make_agent(self.c)
        self.set_faults("kind=commit-500,times=1,route=POST /v1/agents/*/messages")
        r = self.c.post("/v1/agents/%s/messages" % a["id"], {"input": "once"})
        self.assertEqual(r.status, 500)
        self.assertEqual(self.admin_state()["agents"][0]["message_count"], 3)

    # --- streams ----------------------------------------------------------------------------
    def test_stream_error_sends_event_error_after_first_events(self):
        a = make_agent(self.c)
        self.set_faults("kind=stream-error,times=1")
        st, _, events = self.c.stream("/v1/agents/%s/messages/stream" % a["id"], {"input": "x"})
        self.assertEqual(st, 200)
        names = [e[0] for e in events]
        self.assertIn("error", names)
        # an error after the first chunk (api_messages.py cites letta_agent_v3.py:stream and
        # streaming_service.py:_create_error_aware_stream): stop_reason, the error event, no [DONE]
        err = json.loads(events[names.index("error")][1])
        self.assertEqual((err["message_type"], err["error_type"]), ("error_message", "internal_error"))
        before = [json.loads(d)["message_type"] for n, d in events[:names.index("error")]]
        self.assertEqual(before[-1], "stop_reason")
        self.assertIn("reasoning_message", before)
        self.assertNotIn("assistant_message", before)
        self.assertEqual(names[-1], "error")
        self.assertNotIn("[DONE]", [d for _, d in events])
        run = self.c.get("/v1/runs/", query={"agent_id": a["id"]}).json[0]
        self.assertEqual((run["status"], run["stop_reason"]), ("completed", "llm_api_error"))

    def test_reset_during_stream(self):
        a = make_agent(self.c)
        self.set_faults("kind=reset-body,times=1,route=POST /v1/agents/*/messages/stream")
        with self.assertRaises(BROKEN):
            self.raw("POST", "/v1/agents/%s/messages/stream" % a["id"], {"input": "x"})

    def test_truncated_stream(self):
        a = make_agent(self.c)
        self.set_faults("kind=truncate,times=1,route=POST /v1/agents/*/messages/stream")
        with self.assertRaises(http.client.IncompleteRead):
            self.raw("POST", "/v1/agents/%s/messages/stream" % a["id"], {"input": "x"})

    # --- matching and counting ---------------------------------------------------------------
    def test_times_n_fires_for_the_next_n_matching_requests_only(self):
        self.set_faults("kind=503,times=2,route=GET /v1/health/")
        self.assertEqual(self.c.get("/v1/agents/").status, 200)        # not matching
        self.assertEqual([self.c.get("/v1/health/").status for _ in range(4)], [503, 503, 200, 200])
        self.assertEqual(self.c.get("/_emulator/faults").json["faults"], [])

    def test_route_patterns(self):
        a = make_agent(self.c)
        self.set_faults("kind=500,route=GET /v1/agents/{agent_id}/core-memory/**")
        self.assertEqual(self.c.get("/v1/agents/%s/core-memory/blocks" % a["id"]).status, 500)
        self.assertEqual(self.c.get("/v1/agents/%s/core-memory" % a["id"]).status, 500)
        self.assertEqual(self.c.get("/v1/agents/%s" % a["id"]).status, 200)
        self.assertEqual(self.c.patch("/v1/agents/%s/core-memory/blocks/human" % a["id"], {}).status, 404)
        self.set_faults("kind=502,route=* /v1/agents/*")
        self.assertEqual(self.c.get("/v1/agents/%s" % a["id"]).status, 502)
        self.assertEqual(self.c.get("/v1/agents/").status, 200)          # '*' needs one segment

    def test_probability_with_seed(self):
        self.set_faults("kind=503,p=0.3,route=GET /v1/health/")
        statuses = [self.c.get("/v1/health/").status for _ in range(300)]
        n = statuses.count(503)
        self.assertGreater(n, 45)
        self.assertLess(n, 135)
        self.set_faults("kind=503,p=0")
        self.assertEqual({self.c.get("/v1/health/").status for _ in range(20)}, {200})

    def test_admin_faults_api_json_rules_hits_and_clear(self):
        r = self.c.post("/_emulator/faults", {"rules": [{"kind": "500", "route": "GET /v1/blocks/", "times": 3}]})
        self.assertEqual(r.json["faults"][0]["times"], 3)
        self.c.get("/v1/blocks/")
        f = self.c.get("/_emulator/faults").json["faults"][0]
        self.assertEqual((f["hits"], f["times"]), (1, 2))
        self.assertEqual(self.c.delete("/_emulator/faults").json, {"faults": []})
        self.assertEqual(self.c.get("/v1/blocks/").status, 200)

    def test_admin_faults_api_rejects_bad_rules(self):
        for body in ({"spec": "kind=418"}, {"spec": "route=GET /x"}, {"rules": [{"kind": "500", "bogus": 1}]},
                     {"spec": "kind=500,p=2"}, {"spec": "kind=500,route=GET nope"}):
            r = self.c.post("/_emulator/faults", body)
            self.assertEqual(r.status, 400, body)
        self.assertEqual(self.c.get("/_emulator/faults").json["faults"], [])

    def test_admin_routes_are_never_faulted(self):
        self.set_faults("kind=500")
        self.assertEqual(self.c.get("/_emulator/state").status, 200)
        self.assertEqual(self.c.get("/v1/health/").status, 500)

    def test_faults_show_in_the_request_log(self):
        self.set_faults("kind=503,times=1")
        self.c.get("/v1/health/")
        last = self.c.get("/_emulator/requests").json["requests"][-1]
        self.assertEqual((last["status"], last["fault"]), (503, "503"))


class StartupFaultsTest(EmulatorTestCase):
    emulator_args = ("--faults", "kind=503,times=1,route=GET /v1/agents/;kind=429,times=1,route=GET /v1/blocks/")

    def setUp(self):
        pass    # no reset: it would clear the start-up faults

    def test_faults_given_at_start_are_active(self):
        self.assertEqual(len(self.c.get("/_emulator/faults").json["faults"]), 2)
        self.assertEqual(self.c.get("/v1/agents/").status, 503)
        self.assertEqual(self.c.get("/v1/blocks/").status, 429)
        self.assertEqual(self.c.get("/v1/agents/").status, 200)


if __name__ == "__main__":
    unittest.main()

"""Admin API (/_emulator/state, requests, reset, config) and the options that shape the whole
server: --latency-ms (per response, concurrent), --state-file (survives restarts), --run-delay-ms."""

import json
import os
import tempfile
import threading
import time
import unittest

from emu_helpers import Emulator, EmulatorTestCase, make_agent, make_block, make_identity


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class AdminTest(EmulatorTestCase):
    def test_state_lists_everything_with_links(self):
        b = make_block(self.c, "human")
        a = make_agent(self.c, name="bot", block_ids=[b["id"]])
        i = make_identity(self.c, "k", agent_ids=[a["id"]])
        self.c.post("/v1/agents/%s/archival-memory" % a["id"], {"text": "p"})
        self.c.post("/v1/agents/%s/messages" % a["id"], {"input": "x"})
        st = self.admin_state()
        self.assertEqual(set(st), {"identities", "blocks", "agents", "passages", "messages", "runs", "archives"})
        agent = st["agents"][0]
        self.assertEqual((agent["id"], agent["block_ids"], agent["identity_ids"]), (a["id"], [b["id"]], [i["id"]]))
        self.assertEqual([p["text"] for p in st["passages"][a["id"]]], ["p"])
        self.assertEqual(len(st["messages"][a["id"]]), 3)
        self.assertEqual(st["runs"][0]["status"], "completed")

    def test_requests_log_records_method_path_query_body_status(self):
        self.c.post("/v1/blocks/", {"label": "l", "value": "v"})
        self.c.get("/v1/blocks/", query={"label": "l"})
        self.c.get("/v1/blocks/", query={"label": "bad label"})
        log = self.c.get("/_emulator/requests").json
        reqs = log["requests"]
        self.assertEqual(len(reqs), 3)                      # admin calls are not recorded
        self.assertEqual((reqs[0]["method"], reqs[0]["path"], reqs[0]["body"], reqs[0]["status"]),
                         ("POST", "/v1/blocks/", {"label": "l", "value": "v"}, 200))
        self.assertEqual((reqs[1]["query"], reqs[1]["status"]), ("label=l", 200))
        self.assertEqual(reqs[2]["status"], 422)
        self.assertTrue(all(r["schema_ok"] for r in reqs))
        newer = self.c.get("/_emulator/requests", query={"since": reqs[1]["seq"]}).json["requests"]
        self.assertEqual([r["seq"] for r in newer], [reqs[2]["seq"]])
        self.assertEqual(log["last_seq"], reqs[2]["seq"])

    def test_requests_log_can_be_cleared(self):
        self.c.get("/v1/health/")
        self.c.delete("/_emulator/requests")
        self.assertEqual(self.c.get("/_emulator/requests").json["requests"], [])

    def test_reset_empties_state_faults_and_log(self):
        make_block(self.c, "x")
        self.set_faults("kind=500,route=GET /v1/agents/")
        self.assertEqual(self.c.post("/_emulator/reset").json, {"ok": True})
        st = self.admin_state()
        self.assertEqual((st["blocks"], st["agents"]), ([], []))
        self.assertEqual(self.c.get("/_emulator/faults").json["faults"], [])
        self.assertEqual(self.c.get("/v1/agents/").status, 200)

    def test_reset_can_keep_faults(self):
        self.set_faults("kind=500,route=GET /v1/agents/")
        self.c.post("/_emulator/reset", {"keep_faults": True})
        self.assertEqual(self.c.get("/v1/agents/").status, 500)

    def test_config_changes_password_at_run_time(self):
        self.c.post("/_emulator/config", {"password": "pw"})
        try:
            self.assertEqual(self.c.get("/v1/agents/").status, 401)
            self.assertEqual(self.c.get("/v1/agents/", headers={"Authorization": "Bearer pw"}).status, 200)
        finally:
            self.c.post("/_emulator/config", {"password": None})
        self.assertEqual(self.c.get("/v1/agents/").status, 200)

    def test_unknown_admin_path_is_404(self):
        self.assertEqual(self.c.get("/_emulator/nothing").status, 404)


class LatencyTest(unittest.TestCase):
    def test_latency_is_per_response_and_concurrent(self):
        emu = Emulator("--latency-ms", "100")
        try:
            c = emu.client()
            t0 = time.time()
            c.get("/v1/health/")
            self.assertGreaterEqual(time.time() - t0, 0.095)
            t0 = time.time()
            c.get("/_emulator/state")                       # admin answers are not delayed
            self.assertLess(time.time() - t0, 0.09)
            c.close()
            counts = []

            def worker():
                cl = emu.client()
                n = 0
                for _ in range(5):
                    n += cl.get("/v1/health/").status == 200
                counts.append(n)
                cl.close()

            threads = [threading.Thread(target=worker) for _ in range(16)]
            t0 = time.time()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.time() - t0
            self.assertEqual(sum(counts), 80)
            # serialised it would take 8 s; concurrent it takes about 0.5 s
            self.assertLess(elapsed, 3.0)
        finally:
            self.assertEqual(emu.stop(), 0)


class StateFileTest(unittest.TestCase):
    def test_state_survives_a_restart(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "state.json")
            emu = Emulator("--state-file", path)
            try:
                c = emu.client()
                b = make_block(c, "Persona_z", "zed")
                a = make_agent(c, block_ids=[b["id"]])
                make_identity(c, "z", block_ids=[b["id"]])
                c.post("/v1/agents/%s/archival-memory" % a["id"], {"text": "remember"})
                c.post("/v1/agents/%s/messages" % a["id"], {"input": "hi"})
                c.close()
            finally:
                self.assertEqual(emu.stop(), 0)
            self.assertEqual(len(read_json(path)["blocks"]), 1)
            self.assertEqual([n for n in os.listdir(d)], ["state.json"])    # no temp files left
            emu = Emulator("--state-file", path)
            try:
                c = emu.client()
                self.assertEqual(c.get("/v1/blocks/" + b["id"]).json["value"], "zed")
                st = c.get("/_emulator/state").json
                self.assertEqual(st["agents"][0]["block_ids"], [b["id"]])
                self.assertEqual(st["identities"][0]["block_ids"], [b["id"]])
                self.assertEqual([p["text"] for p in st["passages"][a["id"]]], ["remember"])
                # pagination cursors still work after a reload
                b2 = make_block(c, "later")
                self.assertEqual([x["id"] for x in c.get("/v1/blocks/", query={"after": b["id"]}).json], [b2["id"]])
                c.close()
            finally:
                self.assertEqual(emu.stop(), 0)

    def test_run_in_flight_at_shutdown_is_completed_at_next_start(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "state.json")
            emu = Emulator("--state-file", path, "--run-delay-ms", "60000")
            try:
                c = emu.client()
                a = make_agent(c)
                run = c.post("/v1/agents/%s/messages/async" % a["id"], {"input": "x"}).json
                c.close()
            finally:
                self.assertEqual(emu.stop(), 0)
            emu = Emulator("--state-file", path)
            try:
                c = emu.client()
                done = c.get("/v1/runs/" + run["id"]).json
                self.assertEqual(done["status"], "completed")
                self.assertEqual(len(c.get("/v1/runs/%s/messages" % run["id"]).json), 3)
                c.close()
            finally:
                emu.stop()

    def test_state_file_is_written_soon_after_a_change(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "s.json")
            emu = Emulator("--state-file", path)
            try:
                c = emu.client()
                make_block(c, "x")
                deadline = time.time() + 5
                while time.time() < deadline:
                    if os.path.exists(path) and read_json(path)["blocks"]:
                        break
                    time.sleep(0.05)
                self.assertEqual(read_json(path)["blocks"][0]["label"], "x")
                c.close()
            finally:
                emu.stop()


class RunDelayTest(unittest.TestCase):
    def test_run_delay_controls_async_completion(self):
        emu = Emulator("--run-delay-ms", "1000")
        try:
            c = emu.client()
            a = make_agent(c)
            t0 = time.time()
            run = c.post("/v1/agents/%s/messages/async" % a["id"], {"input": "x"}).json
            first_seen = {}
            while time.time() - t0 < 10:
                status = c.get("/v1/runs/" + run["id"]).json["status"]
                first_seen.setdefault(status, time.time() - t0)
                if status == "completed":
                    break
                time.sleep(0.02)
            # the background turn takes the run from created to its end (api_messages.py cites
            # routers/v1/agents.py:_process_message_background)
            self.assertEqual(sorted(first_seen, key=first_seen.get), ["created", "completed"])
            # only a lower bound: a busy machine may be late, never early
            self.assertGreaterEqual(first_seen["completed"], 0.95)
            c.close()
        finally:
            emu.stop()


if __name__ == "__main__":
    unittest.main()

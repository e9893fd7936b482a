"""Schema validation both ways: bad request bodies and parameters get FastAPI's 422 with a string
detail, and every response sent during a whole workflow matches its route's response schema."""

import json
import time
import unittest

from emu_helpers import LEGACY_HEADERS, SDK_HEADERS, EmulatorTestCase, make_agent, make_block, make_identity


class RequestValidationTest(EmulatorTestCase):
    def assert422(self, r, *fragments):
        self.assertEqual(r.status, 422, r)
        self.assertIsInstance(r.json["detail"], str)
        self.assertIn("trace_id", r.json)
        for frag in fragments:
            self.assertIn(frag, r.json["detail"])

    def test_missing_required_field(self):
        self.assert422(self.c.post("/v1/identities/", {"name": "n", "identity_type": "user"}),
                       "'type': 'missing'", "'loc': ('body', 'identifier_key')", "Field required")

    def test_wrong_types_and_enums(self):
        self.assert422(self.c.post("/v1/blocks/", {"label": "l", "value": "v", "limit": "many"}),
                       "('body', 'limit')", "valid integer")
        self.assert422(self.c.post("/v1/blocks/", {"label": "l", "value": "v", "tags": "x"}), "('body', 'tags')")
        a = make_agent(self.c)
        self.assert422(self.c.post("/v1/agents/%s/messages" % a["id"], {"messages": "hello"}), "messages")
        self.assert422(self.c.post("/v1/agents/%s/messages" % a["id"],
                                   {"messages": [{"role": "user", "content": "x", "type": "bogus"}]}), "type")

    def test_message_with_an_unknown_role_is_422(self):
        """schemas/letta_request.py:LettaRequest.add_default_type_to_messages gives it type
        "message", so MessageCreate's role literal refuses it (and the other union members their
        type literal)."""
        a = make_agent(self.c)
        r = self.c.post("/v1/agents/%s/messages" % a["id"], {"messages": [{"role": "robot", "content": "x"}]})
        self.assert422(r, "'type': 'literal_error'", "'input': 'robot'")

    def test_body_that_is_not_json_or_missing(self):
        r = self.c.post("/v1/blocks/", b"{not json", headers={"Content-Type": "application/json"})
        self.assert422(r, "json_invalid")
        self.assert422(self.c.request("POST", "/v1/blocks/"), "'loc': ('body',)")

    def test_extra_field_forbidden_where_the_schema_says_so(self):
        i = make_identity(self.c, "k")
        self.assert422(self.c.put("/v1/identities/%s/properties" % i["id"],
                                  [{"key": "a", "value": "1", "type": "string", "extra": 1}]), "extra_forbidden")

    def test_query_parameter_validation(self):
        self.assert422(self.c.get("/v1/agents/", query={"limit": "ten"}), "('query', 'limit')")
        self.assert422(self.c.get("/v1/agents/", query={"order": "sideways"}), "('query', 'order')")
        self.assert422(self.c.get("/v1/blocks/", query={"templates_only": "maybe"}), "templates_only")

    def test_path_id_validation(self):
        self.assert422(self.c.get("/v1/identities/identity-xyz"), "('path', 'identity_id')")
        self.assert422(self.c.patch("/v1/agents/agent-1/core-memory/blocks/attach/block-1"),
                       "('path', 'agent_id')", "('path', 'block_id')")

    def test_valid_body_with_unknown_extra_fields_is_accepted(self):
        r = self.c.post("/v1/blocks/", {"label": "l", "value": "v", "something_new": 1})
        self.assertEqual(r.status, 200)


class WorkflowSchemaTest(EmulatorTestCase):
    emulator_args = ("--run-delay-ms", "50")

    def test_every_response_of_a_workflow_matches_its_schema(self):
        c = self.c
        c.get("/_emulator/requests")
        for headers in ({}, SDK_HEADERS, LEGACY_HEADERS):
            c.get("/v1/health/", headers=headers)
            b = make_block(c, "Persona_wf", "v", tags=["t"], description="d")
            a = make_agent(c, memory_blocks=[{"label": "human", "value": "h"}], tags=["x"])
            i = make_identity(c, "wf-%d" % len(headers), agent_ids=[a["id"]], block_ids=[b["id"]],
                              properties=[{"key": "k", "value": {"a": 1}, "type": "json"}])
            base = "/v1/agents/" + a["id"]
            c.patch(base, {"description": "d", "tags": ["x", "y"], "model": "openai/gpt-4o"}, headers=headers)
            for path in ("/v1/models/", "/v1/models/embedding", "/v1/agents/count",
                         "/v1/agents/", base, base + "/context", base + "/core-memory",
                         base + "/core-memory/blocks", base + "/core-memory/blocks/human",
                         "/v1/blocks/", "/v1/blocks/count", "/v1/blocks/" + b["id"],
                         "/v1/blocks/%s/agents" % b["id"], "/v1/identities/", "/v1/identities/count",
                         "/v1/identities/" + i["id"], "/v1/identities/%s/agents" % i["id"],
                         "/v1/identities/%s/blocks" % i["id"]):
                self.assertEqual(c.get(path, headers=headers, query={"include": ["agent.blocks",
                                 "agent.identities"]} if path.startswith(base) else None).status, 200, path)
            c.patch(base + "/core-memory/blocks/attach/" + b["id"], headers=headers)
            c.patch("/v1/blocks/" + b["id"], {"value": "v2"}, headers=headers)
            c.patch(base + "/core-memory/blocks/human", {"value": "h2"}, headers=headers)
            r = c.post(base + "/messages", {"messages": [{"role": "user", "content": "hi", "sender_id": i["id"]}]},
                       headers=headers)
            self.assertEqual(r.status, 200)
            c.stream(base + "/messages/stream", {"input": "s", "stream_tokens": True}, headers=headers)
            run = c.post(base + "/messages/async", {"input": "a"}, headers=headers).json
            deadline = time.time() + 10
            while c.get("/v1/runs/" + run["id"]).json["status"] != "completed" and time.time() < deadline:
                time.sleep(0.02)
            for path in ("/v1/runs/", "/v1/runs/" + run["id"], "/v1/runs/%s/messages" % run["id"],
                         "/v1/runs/%s/usage" % run["id"], "/v1/runs/%s/steps" % run["id"], base + "/messages"):
                self.assertEqual(c.get(path, headers=headers).status, 200, path)
            c.stream("/v1/runs/%s/stream" % run["id"], {})
            p = c.post(base + "/archival-memory", {"text": "coffee", "tags": ["t"]}, headers=headers).json[0]
            c.get(base + "/archival-memory", headers=headers)
            c.get(base + "/archival-memory/search", headers=headers, query={"query": "coffee", "tags": ["t"]})
            c.post("/v1/passages/search", {"query": "coffee"}, headers=headers)
            c.put("/v1/identities/", {"identifier_key": "wf-0", "name": "n", "identity_type": "org"}, headers=headers)
            c.patch("/v1/identities/" + i["id"], {"name": "nn"}, headers=headers)
            c.put("/v1/identities/%s/properties" % i["id"], [], headers=headers)
            c.patch("/v1/blocks/%s/identities/detach/%s" % (b["id"], i["id"]), headers=headers)
            c.patch("%s/identities/detach/%s" % (base, i["id"]), headers=headers)
            c.patch(base + "/core-memory/blocks/detach/" + b["id"], headers=headers)
            c.delete(base + "/archival-memory/" + p["id"], headers=headers)
            c.get(base + "/core-memory/blocks/missing", headers=headers)            # a 404
            c.delete("/v1/identities/" + i["id"], headers=headers)
            c.delete("/v1/blocks/" + b["id"], headers=headers)
            c.delete(base, headers=headers)
        reqs = c.get("/_emulator/requests").json["requests"]
        self.assertGreater(len(reqs), 100)
        bad = [(r["method"], r["path"], r["status"]) for r in reqs if r["schema_ok"] is not True]
        self.assertEqual(bad, [])
        v = c.get("/_emulator/schema-violations").json
        self.assertGreater(v["checked"], len(reqs))           # SSE events are checked one by one
        self.assertEqual(v["violations"], [], json.dumps(v["violations"][:3], indent=1))


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/env python3
"""custodyd's tool socket: framing, validation and every error code of
DESIGN §5, against the real daemon, vault, audit store and HTTPS IdP."""

import json
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (DEFENDER_SCOPE, GRAPH_SCOPE, Env, as_nobody_request, check,  # noqa: E402
                     expect_error, rfc3339, wait_for)

env = None
T = {}
TOKENS = []


def sha256_file(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


EXE_SHA = sha256_file(os.path.realpath(sys.executable))


SECRETS = []


def setUpModule():
    global env
    env = Env("custody-proto")
    try:
        env.init_vault()
        env.start_idp()
        env.config["principals"] = [
            {"name": "limited", "match": {"uid": 0, "gid": 12345}, "tenants": ["*"]},
            {"name": "root-tool", "match": {"uid": 0}, "tenants": ["contoso", "pending-co",
                                                                  "expired-co", "revoked-co",
                                                                  "other-co", "bad-secret",
                                                                  "down-co", "nobody-co",
                                                                  "fabrikam"],
             "rate": {"per_second": 1000, "burst": 1000}},
            {"name": "hashed", "match": {"uid": 65532, "exe_sha256": EXE_SHA}, "tenants": ["*"]},
            {"name": "wrong-hash", "match": {"uid": 65531, "exe_sha256": "0" * 64}},
            {"name": "users-group", "match": {"group": "users", "uid": 65530}, "tenants": ["*"]},
            {"name": "nobody-tool", "match": {"uid": 65534}, "tenants": ["contoso"],
             "rate": {"per_second": 0.2, "burst": 2}},
        ]
        env.config["tool_socket"]["mode"] = "0666"
        env.config["upstream"]["timeout_ms"] = 1500
        env.config["upstream"]["retries"] = 0
        env.start_broker()
        now = time.time()
        g, T["contoso"] = env.new_tenant("contoso", scopes=[DEFENDER_SCOPE, GRAPH_SCOPE])
        env.import_grant(g)
        env.import_grant(g)   # sealed again: a second grant of the same tenant
        SECRETS.append(g["client_secret"])
        g, T["pending"] = env.new_tenant("pending-co", not_before=rfc3339(now + 86400))
        env.import_grant(g)
        g, T["expired"] = env.new_tenant("expired-co", not_before=rfc3339(now - 86400 * 2),
                                         not_after=rfc3339(now + 2))
        env.import_grant(g)
        g, T["revoked"] = env.new_tenant("revoked-co")
        r = env.import_grant(g)
        T["revoked_grant"] = r["grant"]["id"]
        g, T["other"] = env.new_tenant("other-co", principals=["someone-else"])
        env.import_grant(g)
        g, T["bad"] = env.new_tenant("bad-secret", app_extra={"secret_expired": True})
        env.import_grant(g)
        g, T["down"] = env.new_tenant("down-co")
        env.import_grant(g)
        g, T["fabrikam"] = env.new_tenant("fabrikam")
        env.import_grant(g)
        r = env.admin_request("grant.revoke", grant=T["revoked_grant"], reason="contract ended")
        check(r["ok"], "revoke", r)
    except BaseException:
        print(env.log_text(), file=sys.stderr)
        env.close()
        raise


def tearDownModule():
    try:
        rc, took = env.stop_broker()
        check(rc == 0, "custodyd exit status %r" % rc)
        log = env.log_text()
        for t in TOKENS:
            check(t not in log, "a token leaked into custodyd's log")
        check(not any(s in log for s in SECRETS), "a client secret leaked into custodyd's log")
    finally:
        if os.environ.get("CUSTODY_TEST_VERBOSE"):
            print(env.log_text(), file=sys.stderr)
        env.close()


class Framing(unittest.TestCase):
    def test_ping_and_id_echo(self):
        with env.tool() as c:
            for rid in (1, "abc", 0, -5, "ü"):
                r = c.request({"op": "ping", "id": rid})
                self.assertEqual(r["id"], rid)
                self.assertTrue(r["ok"])
                self.assertTrue(r["pong"])
                self.assertIsInstance(r["audit_seq"], int)

    def test_pipelining_matches_ids(self):
        with env.tool() as c:
            reqs = []
            for i in range(50):
                reqs.append({"v": 1, "id": "p%d" % i, "op": "token", "tenant": "contoso"})
                reqs.append({"v": 1, "id": "q%d" % i, "op": "ping"})
            c.send_raw(b"".join(json.dumps(o).encode() + b"\n" for o in reqs))
            got = {}
            for _ in reqs:
                r = c.recv()
                got[r["id"]] = r
            self.assertEqual(set(got), {o["id"] for o in reqs})
            for i in range(50):
                self.assertTrue(got["p%d" % i]["ok"], got["p%d" % i])
                self.assertTrue(got["q%d" % i]["pong"])
            seqs = [r["audit_seq"] for r in got.values()]
            self.assertEqual(len(set(seqs)), len(seqs), "each request its own audit record")

    def test_http_line_is_refused_and_closed(self):
        with env.tool() as c:
            c.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.recv()
            expect_error(r, "bad_request")
            self.assertIsNone(r["id"])
            self.assertTrue(c.is_closed(), "connection must close after a non-JSON line")

    def test_bad_requests(self):
        cases = [
            (b'{"v":1,"id":1,"op":"ping","op":"token"}', "duplicate"),
            (b'{"v":1,"id":2,"op":"ping","extra":1}', "extra"),
            (b'{"v":1,"id":3,"op":"token","tenant":"contoso","purpose":"' + b"x" * 257 + b'"}',
             "purpose"),
            (b'{"v":1,"id":4,"op":"token","tenant":"contoso","min_ttl":86401}', "min_ttl"),
            (b'{"v":1,"id":5,"op":"token","tenant":"contoso","min_ttl":"300"}', "min_ttl"),
            (b'{"v":1,"id":6,"op":"token"}', "tenant"),
            (b'{"v":1,"id":7}', "op"),
            (b'{"id":8,"op":"ping"}', "v"),
            (b'[1,2]', "object"),
            (b'{"v":1,"id":{"x":1},"op":"ping"}', "id"),
        ]
        with env.tool() as c:
            for line, word in cases:
                c.send_raw(line + b"\n")
                r = c.recv()
                expect_error(r, "bad_request")
                self.assertIn(word, r["message"], r)
            # still usable after all of that
            self.assertTrue(c.request({"op": "ping"})["ok"])

    def test_trailing_garbage_is_not_json(self):
        with env.tool() as c:
            c.send_raw(b'{"v":1,"id":1,"op":"ping"} x\n')
            expect_error(c.recv(), "bad_request")
            self.assertTrue(c.is_closed())

    def test_invalid_utf8(self):
        with env.tool() as c:
            c.send_raw(b'{"v":1,"id":1,"op":"ping","x":"\xff\xfe"}\n')
            r = c.recv()
            expect_error(r, "bad_request")
            self.assertIn("UTF-8", r["message"])
        with env.tool() as c:
            self.assertTrue(c.request({"op": "ping"})["ok"])

    def test_unsupported_version(self):
        with env.tool() as c:
            r = c.request({"v": 2, "op": "ping"})
            expect_error(r, "unsupported_version")
            r = c.request({"v": "1", "op": "ping"})
            expect_error(r, "unsupported_version")

    def test_unknown_op(self):
        with env.tool() as c:
            r = expect_error(c.request({"op": "grant.revoke"}), "unknown_op")
            self.assertIn("grant.revoke", r["message"])
        with env.admin() as a:
            expect_error(a.request({"op": "token", "tenant": "x"}), "unknown_op")

    def test_too_large(self):
        with env.tool() as c:
            c.send_raw(b'{"v":1,"id":1,"op":"ping","x":"' + b"a" * 70000)
            r = c.recv()
            expect_error(r, "too_large")
            self.assertTrue(c.is_closed())
        # exactly at the limit is fine
        with env.tool() as c:
            pad = 65536 - len(b'{"v":1,"id":1,"op":"token","tenant":"contoso","purpose":""}')
            line = b'{"v":1,"id":1,"op":"token","tenant":"contoso","purpose":"' + b" " * pad + b'"}'
            self.assertEqual(len(line), 65536)
            c.send_raw(line + b"\n")
            r = c.recv()
            # the purpose is too long for its own rule, but the line was framed
            expect_error(r, "bad_request")
            self.assertIn("purpose", r["message"])


class Ops(unittest.TestCase):
    def test_whoami(self):
        with env.tool() as c:
            r = c.request({"op": "whoami"})
            self.assertTrue(r["ok"], r)
            self.assertEqual(r["principal"], "root-tool")
            self.assertEqual(r["uid"], 0)
            self.assertEqual(r["pid"], os.getpid())
            self.assertEqual(os.path.realpath(r["exe"]), os.path.realpath(sys.executable))

    def test_tenants(self):
        with env.tool() as c:
            r = c.request({"op": "tenants"})
        self.assertTrue(r["ok"], r)
        self.assertEqual(len(env.admin_request("grant.list", tenant="contoso")["grants"]), 2)
        ids = [t["tenant_id"] for t in r["tenants"]]
        self.assertEqual(len(ids), len(set(ids)), "one entry per tenant")
        by = {t["tenant_name"]: t for t in r["tenants"]}
        self.assertEqual(by["contoso"]["tenant_id"], T["contoso"])
        self.assertEqual(by["contoso"]["scopes"], [DEFENDER_SCOPE, GRAPH_SCOPE])
        self.assertEqual(by["contoso"]["state"], "active")
        self.assertEqual(by["pending-co"]["state"], "pending")
        self.assertNotIn("other-co", by, "a grant that excludes the principal is not listed")

    def test_keys(self):
        with env.tool() as c:
            r = c.request({"op": "keys"})
        self.assertTrue(r["ok"], r)
        self.assertEqual(len(r["seal_key_id"]), 16)
        self.assertTrue(r["audit_verifier_key"].startswith("custody.test/audit+"))

    def test_token_ok(self):
        before = env.admin_request("status")["status"]["requests"].get("ok", 0)
        r = env.token("contoso", purpose="SIEM pull", min_ttl=60)
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["token_type"], "Bearer")
        self.assertEqual(r["tenant"], T["contoso"])
        self.assertEqual(r["scope"], DEFENDER_SCOPE, "default scope: the grant's first")
        self.assertTrue(r["grant"].startswith("g_"))
        self.assertGreater(r["expires_in"], 60)
        self.assertEqual(r["access_token"].count("."), 2)
        TOKENS.append(r["access_token"])
        recs = env.audit_records(tenant=T["contoso"], event="token")
        rec = [x for x in recs if x["seq"] == r["audit_seq"]][0]
        self.assertEqual(rec["outcome"], "ok")
        self.assertEqual(rec["purpose"], "SIEM pull")
        self.assertEqual(rec["principal"], "root-tool")
        self.assertEqual(rec["peer"]["pid"], os.getpid())
        self.assertEqual(len(rec["token_sha256"]), 64)
        self.assertNotIn(r["access_token"], json.dumps(recs), "the token never enters the audit")
        st = env.admin_request("status")["status"]
        self.assertGreaterEqual(st["requests"]["ok"], before + 2, "token and status counted")
        self.assertGreaterEqual(st["cache"]["misses"] + st["cache"]["hits"], 1)
        r2 = env.token(T["contoso"].upper(), scope=GRAPH_SCOPE)
        self.assertTrue(r2["ok"], r2)
        self.assertEqual(r2["scope"], GRAPH_SCOPE)

    def test_unauthenticated(self):
        # uid 65534 maps to nobody-tool; uid 65533 to nothing
        r = as_nobody_request(env.tool_path, {"op": "token", "tenant": "contoso"}, uid=65533)
        expect_error(r, "unauthenticated")
        r = as_nobody_request(env.tool_path, {"op": "whoami"}, uid=65533)
        expect_error(r, "unauthenticated")
        r = as_nobody_request(env.tool_path, {"op": "ping"}, uid=65533)
        self.assertTrue(r["ok"], "ping answers anyone")
        recs = env.audit_records(outcome="unauthenticated")
        self.assertTrue(any(x["peer"]["uid"] == 65533 for x in recs))

    def test_exe_sha256(self):
        r = as_nobody_request(env.tool_path, {"op": "whoami"}, uid=65532)
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["principal"], "hashed")
        r = as_nobody_request(env.tool_path, {"op": "whoami"}, uid=65531)
        expect_error(r, "unauthenticated")

    def test_supplementary_group(self):
        r = as_nobody_request(env.tool_path, {"op": "whoami"}, uid=65530, groups=[100])
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["principal"], "users-group")
        r = as_nobody_request(env.tool_path, {"op": "whoami"}, uid=65530, gid=100)
        self.assertEqual(r.get("principal"), "users-group", "primary group counts too")
        r = as_nobody_request(env.tool_path, {"op": "whoami"}, uid=65530)
        expect_error(r, "unauthenticated")

    def test_denied(self):
        # tenant outside the principal's list (known or not) → denied
        r = as_nobody_request(env.tool_path, {"op": "token", "tenant": "fabrikam"})
        expect_error(r, "denied")
        r = as_nobody_request(env.tool_path, {"op": "token", "tenant": "no-such-tenant"})
        expect_error(r, "denied")
        # the grant names other principals only
        expect_error(env.token("other-co"), "denied")

    def test_unknown_tenant(self):
        expect_error(env.token("nobody-co"), "unknown_tenant")

    def test_scope_not_granted(self):
        expect_error(env.token("contoso", scope="https://example.invalid/.default"),
                     "scope_not_granted")

    def test_grant_states(self):
        expect_error(env.token("pending-co"), "grant_pending")
        r = expect_error(env.token("revoked-co"), "revoked")
        self.assertIn("contract ended", r["message"])
        self.assertIn(T["revoked_grant"], r["message"])
        wait_for(lambda: env.token("expired-co").get("error") == "grant_expired", 15,
                 step=0.5, what="grant to expire")
        wait_for(lambda: any(x["event"] == "grant.expired"
                             for x in env.audit_records(tenant=T["expired"])), 5,
                 what="grant.expired record")

    def test_rate_limited(self):
        seen = []
        for _ in range(4):
            r = as_nobody_request(env.tool_path, {"op": "token", "tenant": "contoso"})
            seen.append(r)
        codes = [r.get("error") for r in seen]
        self.assertEqual(codes[:2], [None, None], seen)
        self.assertIn("rate_limited", codes)
        rl = [r for r in seen if r.get("error") == "rate_limited"][0]
        self.assertIsInstance(rl["retry_after"], int)
        self.assertGreaterEqual(rl["retry_after"], 1)

    def test_upstream_rejected(self):
        r = expect_error(env.token("bad-secret"), "upstream_rejected")
        self.assertEqual(r["upstream_error"], "invalid_client")
        self.assertIn(7000222, r["upstream_codes"])

    def test_upstream_unavailable(self):
        env.idp.set_fault("500", tenant=T["down"])
        try:
            expect_error(env.token("down-co"), "upstream_unavailable")
        finally:
            env.idp.set_fault("ok", tenant=T["down"])

    def test_suspended_and_locked_down(self):
        r = env.admin_request("principal.suspend", principal="root-tool", reason="test")
        self.assertTrue(r["ok"], r)
        try:
            r = expect_error(env.token("contoso"), "suspended")
            self.assertIn("test", r["message"])
        finally:
            self.assertTrue(env.admin_request("principal.resume", principal="root-tool")["ok"])
        self.assertTrue(env.token("contoso")["ok"])
        self.assertTrue(env.admin_request("lockdown", reason="drill")["ok"])
        try:
            r = expect_error(env.token("contoso"), "locked_down")
            self.assertIn("drill", r["message"])
        finally:
            self.assertTrue(env.admin_request("unlock")["ok"])
        self.assertTrue(env.token("contoso")["ok"])


if __name__ == "__main__":
    unittest.main(verbosity=2)

#!/usr/bin/env python3
"""custodyd's admin socket and life cycle: roles, grant ops without
secrets, officer state that survives a restart, reload (SIGHUP and op,
good and bad), sd_notify, stale sockets, and SIGTERM with a final
checkpoint (DESIGN §6, §7, §8, §9)."""

import json
import os
import signal
import socket
import sqlite3
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Env, as_nobody_request, check, expect_error,  # noqa: E402
                     wait_for)


class Admin(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = env = Env("custody-admin")
        try:
            env.init_vault()
            env.start_idp()
            env.config["admin_socket"]["mode"] = "0666"
            env.config["tool_socket"]["mode"] = "0666"
            env.config["principals"].append(
                {"name": "nobody-tool", "match": {"user": "nobody"}, "tenants": ["*"]})
            env.start_broker()
            cls.grant, cls.tid = env.new_tenant("contoso")
            cls.gid = env.import_grant(cls.grant)["grant"]["id"]
        except BaseException:
            print(env.log_text(), file=sys.stderr)
            env.close()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.env.broker is not None:
                rc, took = cls.env.stop_broker()
                check(rc == 0, "custodyd exit status %r" % rc)
        finally:
            if os.environ.get("CUSTODY_TEST_VERBOSE"):
                print(cls.env.log_text(), file=sys.stderr)
            cls.env.close()

    def test_01_roles(self):
        env = self.env
        for op in ({"op": "status"}, {"op": "grant.list"},
                   {"op": "lockdown", "reason": "x"}, {"op": "reload"},
                   {"op": "audit.query"}):
            r = as_nobody_request(env.admin_path, op)
            expect_error(r, "denied")
            self.assertIn("role", r["message"])
        recs = env.audit_records(event="admin.lockdown", outcome="denied")
        self.assertTrue(recs and recs[-1]["actor"] == "nobody", recs)
        self.assertFalse(env.admin_request("status")["status"]["lockdown"])

    def test_02_grant_ops_hold_no_secret(self):
        env = self.env
        secret = self.grant["client_secret"]
        r = env.admin_request("grant.list")
        self.assertTrue(r["ok"], r)
        g = [x for x in r["grants"] if x["id"] == self.gid][0]
        for k in ("id", "tenant_id", "tenant_name", "client_id", "scopes", "state",
                  "not_before", "not_after", "imported_at"):
            self.assertIn(k, g)
        r2 = env.admin_request("grant.show", grant=self.gid)
        self.assertEqual(r2["grant"]["id"], self.gid)
        # import again: idempotent
        r3 = env.admin_request("grant.import", sealed=env.seal(self.grant))
        self.assertTrue(r3["ok"], r3)
        env_sealed = env.seal(self.grant)
        r4 = env.admin_request("grant.import", sealed=env_sealed)
        self.assertFalse(r4["already"] is None)
        everything = json.dumps([r, r2, r3, env.audit_records()])
        self.assertNotIn(secret, everything)
        # tampered envelope
        env_obj = json.loads(env_sealed)
        raw = bytearray(__import__("base64").b64decode(env_obj["sealed"]))
        raw[40] ^= 1
        env_obj["sealed"] = __import__("base64").b64encode(bytes(raw)).decode()
        r5 = env.admin_request("grant.import", sealed=json.dumps(env_obj))
        expect_error(r5, "bad_request")
        expect_error(env.admin_request("grant.show", grant="g_nope"), "bad_request")
        expect_error(env.admin_request("grant.revoke", grant=self.gid), "bad_request")

    def test_02b_shared_tenant_name(self):
        env = self.env
        g1, t1 = env.new_tenant("twin")
        g2, t2 = env.new_tenant("TWIN")
        env.import_grant(g1)
        env.import_grant(g2)
        r = expect_error(env.token("twin"), "unknown_tenant")
        self.assertIn("tenant id", r["message"])
        self.assertTrue(env.token(t1)["ok"])
        r = env.admin_request("grant.revoke", tenant="twin", reason="x")
        expect_error(r, "unknown_tenant")
        self.assertTrue(env.token(t2)["ok"], "nothing was revoked")
        expect_error(env.admin_request("audit.export", tenant="twin"), "bad_request")

    def test_03_audit_ops(self):
        env = self.env
        r = env.admin_request("audit.query", limit=5, order="desc")
        self.assertTrue(r["ok"], r)
        self.assertLessEqual(len(r["records"]), 5)
        seqs = [x["seq"] for x in r["records"]]
        self.assertEqual(seqs, sorted(seqs, reverse=True))
        r = env.admin_request("audit.query", event="admin.grant.import", limit=50000)
        self.assertTrue(all(x["event"] == "admin.grant.import" for x in r["records"]))
        expect_error(env.admin_request("audit.query", since="yesterday"), "bad_request")
        r = env.admin_request("audit.checkpoint")
        self.assertTrue(r["ok"], r)
        self.assertGreater(r["size"], 0)
        self.assertIn("custody.test/audit", r["checkpoint"])
        r = env.admin_request("audit.export", tenant="contoso")
        self.assertTrue(r["ok"], r)
        self.assertIsInstance(r["export"], dict)
        # every one of those reads was itself audited
        evs = {x["event"] for x in env.audit_records()}
        for e in ("admin.audit.query", "admin.audit.checkpoint", "admin.audit.export"):
            self.assertIn(e, evs)

    def test_04_reload_sighup_and_op(self):
        env = self.env
        expect_error(as_nobody_request(env.admin_path, {"op": "status"}), "denied")
        env.config["roles"] = {"auditor": {"uids": [65534]}}
        env.write_config()
        env.signal_broker(signal.SIGHUP)
        wait_for(lambda: as_nobody_request(env.admin_path, {"op": "status"}).get("ok"), 10,
                 what="reloaded role")
        expect_error(as_nobody_request(env.admin_path, {"op": "lockdown", "reason": "x"}),
                     "denied")
        # a bad config keeps the running policy
        bad = dict(env.config)
        bad["limits"] = dict(bad["limits"], foo=1)
        env.write_config(bad)
        env.signal_broker(signal.SIGHUP)
        wait_for(lambda: "reload failed" in env.log_text(), 10, what="failed reload log")
        self.assertTrue(as_nobody_request(env.admin_path, {"op": "status"}).get("ok"))
        r = env.admin_request("reload")
        expect_error(r, "bad_request")
        self.assertIn("limits.foo", r["message"])
        recs = env.audit_records(event="reload")
        self.assertEqual([x["outcome"] for x in recs][-2:], ["ok", "failed"])
        env.write_config()
        self.assertTrue(env.admin_request("reload")["ok"])

    def test_05_officer_state_survives_restart(self):
        env = self.env
        self.assertTrue(env.token("contoso")["ok"])
        r = env.admin_request("principal.suspend", principal="root-tool", reason="audit finding")
        self.assertTrue(r["ok"], r)
        expect_error(env.admin_request("principal.suspend", principal="nope", reason="x"),
                     "bad_request")
        r = env.admin_request("lockdown", reason="incident 7")
        self.assertTrue(r["ok"], r)
        rc, took = env.stop_broker()
        self.assertEqual(rc, 0)
        env.start_broker()
        expect_error(env.token("contoso"), "locked_down")
        st = env.admin_request("status")["status"]
        self.assertTrue(st["lockdown"])
        self.assertEqual(st["lockdown_reason"], "incident 7")
        self.assertEqual(st["suspended"], ["root-tool"])
        self.assertTrue(env.admin_request("unlock")["ok"])
        expect_error(env.token("contoso"), "suspended")
        self.assertTrue(as_nobody_request(env.tool_path, {"op": "token",
                                                          "tenant": "contoso"})["ok"])
        self.assertTrue(env.admin_request("principal.resume", principal="root-tool")["ok"])
        expect_error(env.admin_request("principal.resume", principal="root-tool"), "bad_request")
        self.assertTrue(env.token("contoso")["ok"])

    def test_06_second_broker_and_stale_socket(self):
        env = self.env
        # same config while one runs: refused (socket answers / vault locked)
        e2_log = env.broker_log
        saved = env.broker
        env.broker = None
        rc = env.start_broker(expect_fail=True)
        env.broker = saved
        self.assertNotEqual(rc, 0)
        self.assertTrue("another custodyd" in env.log_text() or "lock" in env.log_text().lower())
        self.assertTrue(env.token("contoso")["ok"], "the running broker is untouched")
        # a broker killed hard leaves its socket file: the next one replaces it
        env.broker.kill()
        env.broker.wait()
        env.broker = None
        self.assertTrue(os.path.exists(env.tool_path))
        env.start_broker()
        self.assertTrue(env.token("contoso")["ok"])
        del e2_log

    def test_07_sd_notify(self):
        env = self.env
        env.stop_broker()
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        name = "\0custody-test-notify-%d" % os.getpid()
        ns.bind(name)
        ns.settimeout(10)
        try:
            env.start_broker(extra_env={"NOTIFY_SOCKET": "@" + name[1:]})
            self.assertEqual(ns.recv(256), b"READY=1")
            env.signal_broker(signal.SIGHUP)
            self.assertEqual(ns.recv(256), b"RELOADING=1")
            self.assertEqual(ns.recv(256), b"READY=1")
            proc = env.broker
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(ns.recv(256), b"STOPPING=1")
            self.assertEqual(proc.wait(10), 0)
            env.broker = None
        finally:
            ns.close()
        env.start_broker()

    def test_08_sigterm_final_checkpoint(self):
        env = self.env
        for _ in range(5):
            self.assertTrue(env.token("contoso")["ok"])
        rc, took = env.stop_broker()
        self.assertEqual(rc, 0)
        self.assertLess(took, 5.0)
        db = sqlite3.connect("file:%s?mode=ro" % env.audit_db, uri=True)
        try:
            n = db.execute("select max(seq) from events").fetchone()[0]
            size = db.execute("select max(size) from checkpoints").fetchone()[0]
            last = db.execute("select event from events order by seq desc limit 1").fetchone()[0]
        finally:
            db.close()
        self.assertEqual(last, "stop")
        self.assertEqual(size, n, "the final checkpoint covers every record")
        env.start_broker()


if __name__ == "__main__":
    unittest.main(verbosity=2)

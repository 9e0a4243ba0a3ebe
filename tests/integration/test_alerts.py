#!/usr/bin/env python3
"""custody-alerts end to end (DESIGN.md §12): the real custodyd, the fake
Entra ID + Defender API (tests/fixtures/idp.py) and the connector. Paging,
the delivered set across runs, updated alerts sent again, per-tenant
errors (403, 429, missing grant) while the others go on, exit statuses,
status --json, config errors naming the key path, and run as a
Type=notify service stopping on SIGTERM."""

import json
import os
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Env, wait_for  # noqa: E402
from alerts_env import Alerts  # noqa: E402

env = None


def setUpModule():
    global env
    env = Env("custody-alerts")
    try:
        env.init_vault()
        env.start_idp()
        env.start_broker()
    except BaseException:
        print(env.log_text(), file=sys.stderr)
        env.close()
        raise


def tearDownModule():
    try:
        env.stop_broker()
    finally:
        env.close()


def tenant(name, count, **kw):
    g, tid = env.new_tenant(name, app_extra=kw.pop("app_extra", None))
    env.import_grant(g)
    if count:
        env.idp.add_alerts(tid, count=count, **kw)
    return tid


class Core(unittest.TestCase):
    def test_pass_paging_dedupe_updates(self):
        a = Alerts(env, "core")
        ta = tenant("core-a", 23)
        tb = tenant("core-b", 7)
        a.config["tenants"] = ["core-a", tb]      # by name and by id
        a.config["page_size"] = 5
        p = a.run()
        self.assertEqual(p.returncode, 0, p.stderr)
        got = a.lines()
        self.assertEqual(len(got), 30, p.stderr)
        want = {x["id"]: x for x in env.idp.get_alerts(ta) + env.idp.get_alerts(tb)}
        self.assertEqual(sorted(x["id"] for x in got), sorted(want))
        seqs = {}
        for x in got:
            tid = ta if x["id"] in {y["id"] for y in env.idp.get_alerts(ta)} else tb
            self.assertEqual(x["custody_tenant_id"], tid)
            self.assertEqual(x["custody_tenant"], "core-a" if tid == ta else "core-b")
            self.assertEqual(x["custody_portal_link"],
                             "https://security.microsoft.com/alerts/%s?tid=%s" % (x["id"], tid))
            self.assertIsInstance(x["custody_audit_seq"], int)
            seqs[tid] = x["custody_audit_seq"]
            # the API's object is there as it was, field for field
            orig = want[x["id"]]
            for k, v in orig.items():
                self.assertEqual(x[k], v, k)
        # each audit_seq is the record of the token that fetched them, with the purpose
        for tid, seq in seqs.items():
            recs = [r for r in env.audit_records(tenant=tid, event="token") if r["seq"] == seq]
            self.assertEqual(len(recs), 1, (tid, seq))
            self.assertEqual(recs[0].get("purpose"), "SIEM alert pull (test)")
        # paging: 23 alerts at 5 a page = 5 pages (the last one short)
        # second run: nothing new
        p = a.run()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(a.lines()), 30)
        # updates: delivered again, once each
        upd = env.idp.update_alerts(ta, count=2)
        p = a.run()
        self.assertEqual(p.returncode, 0, p.stderr)
        got = a.lines()
        self.assertEqual(len(got), 32)
        self.assertEqual(sorted(x["id"] for x in got[30:]), sorted(upd))
        self.assertTrue(all(x["status"] == "InProgress" for x in got[30:]))
        st = a.status()
        sa = [t for t in st["tenants"] if t["tenant_id"] == ta][0]
        self.assertEqual(sa["alerts_delivered"], 25)
        self.assertIsNone(sa["last_error"])
        self.assertTrue(sa["cursor"] and sa["last_success"])
        self.assertEqual(st["outputs"][0]["alerts_waiting"], 0)
        # the human table names each tenant
        p = a.cmd("status")
        self.assertEqual(p.returncode, 0)
        self.assertIn("core-a", p.stdout)
        self.assertIn("core-b", p.stdout)

    def test_every_tenant_by_default_and_403(self):
        a = Alerts(env, "discover")
        before = {t["tenant_id"] for t in env.run_cli("grant", "list", "--json") and []}
        del before
        tg = tenant("disc-good", 4)
        tn = tenant("disc-noperm", 4, app_extra={"roles": []})
        p = a.run()
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertIn("disc-noperm", p.stderr)
        self.assertIn("403", p.stderr)
        self.assertIn("Alert.Read.All", p.stderr)
        ids = {x["id"] for x in a.lines() if x["custody_tenant_id"] == tg}
        self.assertEqual(ids, {x["id"] for x in env.idp.get_alerts(tg)})
        self.assertFalse([x for x in a.lines() if x["custody_tenant_id"] == tn])
        self.assertIn("Alert.Read.All", a.tenant_status(tn)["last_error"])
        self.assertIsNone(a.tenant_status(tg)["last_error"])

    def test_429_waits_retry_after(self):
        a = Alerts(env, "throttle")
        tid = tenant("throttle-co", 3)
        a.config["tenants"] = [tid]
        env.idp.set_fault("429", tenant=tid, target="api", retry_after=2, count=1)
        t0 = time.monotonic()
        p = a.run()
        took = time.monotonic() - t0
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertGreaterEqual(took, 1.9)
        self.assertIn("Retry-After", p.stderr)
        self.assertEqual(len(a.lines()), 3)

    def test_api_budget_kept_across_runs(self):
        """Defender's limits per tenant (100 calls a minute, 1,500 an hour)
        are counted in the state database, so they hold across runs."""
        import sqlite3
        a = Alerts(env, "budget")
        tid = tenant("budget-co", 3)
        a.config["tenants"] = [tid]
        p = a.run()
        self.assertEqual(p.returncode, 0, p.stderr)
        db_path = os.path.join(a.config["state_dir"], "state.db")

        def set_budget(**kw):
            db = sqlite3.connect(db_path)
            db.execute("UPDATE tenants SET %s WHERE tenant_id = ?" % ", ".join(
                "%s = ?" % k for k in kw), list(kw.values()) + [tid])
            db.commit()
            db.close()

        now = int(time.time())
        set_budget(hour_start=now, hour_calls=1500)
        upd = env.idp.update_alerts(tid, count=1)
        calls = env.idp.counters()["api_calls"]
        p = a.run()
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertIn("1500 calls an hour is used up", p.stderr)
        self.assertEqual(env.idp.counters()["api_calls"], calls, "an API call past the budget")
        self.assertEqual(len(a.lines()), 3)
        # the minute's 100 calls are spent and the minute ends in 3 s: it waits
        now = int(time.time())
        set_budget(hour_start=now, hour_calls=0, not_before=0, min_start=now - 57, min_calls=100)
        t0 = time.monotonic()
        p = a.run()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertGreaterEqual(time.monotonic() - t0, 1.5)
        self.assertEqual([x["id"] for x in a.lines()[3:]], upd)

    def test_refused_and_unreachable(self):
        a = Alerts(env, "refused")
        tid = tenant("revoked-co", 2)
        r = env.admin_request("grant.revoke", tenant=tid, reason="test: contract ended")
        self.assertTrue(r.get("ok"), r)
        a.config["tenants"] = ["revoked-co"]
        p = a.run()
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn("revoked", p.stderr)
        a.config["socket"] = os.path.join(env.base, "nobody-listens.sock")
        p = a.run()
        self.assertEqual(p.returncode, 5, p.stderr)
        self.assertIn("cannot be reached", p.stderr)

    def test_config_errors_name_the_key(self):
        a = Alerts(env, "config")
        cases = [
            ({"outputs": [{"type": "syslog", "url": "udp://x:514"}]}, "outputs[0].url"),
            ({"outputs": [{"type": "file"}]}, "outputs[0].path"),
            ({"outputs": [{"type": "file", "path": "x", "format": "cef"}]}, "outputs[0].format"),
            ({"page_size": 0}, "page_size"),
            ({"pagesize": 10}, "unknown key: pagesize"),
            ({"notifications": [{"name": "x", "to": ["a@b.example"],
                                 "min_severity": "Severe"}],
              "smtp": {"url": "smtp://127.0.0.1:1", "from": "a@b.example"}},
             "notifications[0].min_severity"),
            ({"notifications": [{"name": "x", "to": ["a@b.example"]}]}, "smtp"),
            ({"smtp": {"url": "smtp://127.0.0.1:1", "from": "a@b.example", "tls": "maybe"}},
             "smtp.tls"),
        ]
        base = dict(a.config)
        for extra, needle in cases:
            a.config = dict(base)
            a.config.update(extra)
            p = a.run()
            self.assertEqual(p.returncode, 1, (extra, p.stderr))
            self.assertIn(needle, p.stderr, extra)
            self.assertEqual(p.stderr.count("\n"), 1, p.stderr)
        a.config = base
        p = a.cmd("run", "--bogus")
        self.assertEqual(p.returncode, 2)

    def test_service_notify_and_sigterm(self):
        a = Alerts(env, "service")
        tid = tenant("service-co", 5)
        a.config["tenants"] = [tid]
        sock_path = os.path.join(a.dir, "notify.sock")
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(sock_path)
        ns.settimeout(20)
        try:
            a.start(env={"NOTIFY_SOCKET": sock_path})
            msgs = []
            while "READY=1" not in msgs:
                msgs.append(ns.recv(4096).decode())
            wait_for(lambda: len(a.lines()) >= 5, 20, what="the first pass")
            while not any(m.startswith("STATUS=") for m in msgs):
                msgs.append(ns.recv(4096).decode())
            a.proc.send_signal(signal.SIGHUP)       # logrotate's: ignored
            time.sleep(0.3)
            self.assertIsNone(a.proc.poll(), "SIGHUP ended the service")
            t0 = time.monotonic()
            rc = a.stop(signal.SIGTERM)
            self.assertEqual(rc, 0, a.run_log())
            self.assertLess(time.monotonic() - t0, 5)
            msgs.append(ns.recv(4096).decode())
            self.assertIn("STOPPING=1", msgs)
        finally:
            a.close()
            ns.close()

    def test_sigterm_mid_pass(self):
        """SIGTERM while pages are on their way: the service stops at once,
        exits 0, and the tenant keeps its cursor; the next run delivers."""
        a = Alerts(env, "midpass")
        tid = tenant("midpass-co", 30)
        a.config["tenants"] = [tid]
        a.config["page_size"] = 2
        env.idp.set_fault("slow", tenant=tid, target="api", delay_s=0.3)
        try:
            a.start()
            wait_for(lambda: len(a.lines()) >= 2, 20, what="the first pages")
            t0 = time.monotonic()
            rc = a.stop(signal.SIGTERM)
            self.assertEqual(rc, 0, a.run_log())
            self.assertLess(time.monotonic() - t0, 3)
            self.assertIn("stopped in the middle of a pass", a.run_log())
        finally:
            env.idp.set_fault("ok", tenant=tid, target="api")
            a.close()
        got = len(a.lines())
        self.assertLess(got, 30)
        # no cursor moved for the tenant it was in the middle of
        self.assertFalse([t for t in a.status()["tenants"]
                          if t["tenant_id"] == tid and t["last_success"]])
        p = a.run()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual({x["id"] for x in a.lines()}, {x["id"] for x in env.idp.get_alerts(tid)})


if __name__ == "__main__":
    unittest.main(verbosity=2)

#!/usr/bin/env python3
"""custodyd fails closed (DESIGN §7): with the audit store's disk full, a
token request gets audit_unavailable and no token; once the disk has room
again the broker serves tokens without a restart. And a customer's large
export is built off the event loop: token requests are answered while it
runs."""

import os
import select
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Env, check, expect_error, wait_for  # noqa: E402


class DiskFull(unittest.TestCase):
    def setUp(self):
        self.env = Env("custody-auditfull")
        self.mnt = os.path.join(self.env.base, "state")
        os.makedirs(self.mnt)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", self.mnt], check=True)

    def tearDown(self):
        try:
            if self.env.broker is not None:
                rc, _ = self.env.stop_broker()
                check(rc == 0, "custodyd exit status %r" % rc)
        finally:
            if os.environ.get("CUSTODY_TEST_VERBOSE"):
                print(self.env.log_text(), file=sys.stderr)
            if self.env.broker is not None:
                self.env.broker.kill()
                self.env.broker.wait()
                self.env.broker = None
            subprocess.run(["umount", "-l", self.mnt])
            self.env.close()

    def test_fail_closed_and_recover(self):
        env = self.env
        env.init_vault()
        env.start_idp()
        env.start_broker()
        g, tid = env.new_tenant("contoso")
        env.import_grant(g)
        self.assertTrue(env.token("contoso")["ok"])
        filler = os.path.join(self.mnt, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\1" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)

        def refused():
            r = env.token("contoso")
            self.assertNotIn("access_token", r)
            return r.get("error") == "audit_unavailable"
        # the WAL may absorb a few records before the disk really refuses
        for _ in range(200):
            r = env.token("contoso", purpose="x" * 200)
            if r.get("error") == "audit_unavailable":
                break
            self.assertTrue(r["ok"], r)
        r = expect_error(r, "audit_unavailable")
        self.assertNotIn("access_token", r)
        self.assertNotIn("audit_seq", r)
        self.assertTrue(refused())
        os.unlink(filler)
        wait_for(lambda: env.token("contoso").get("ok"), 30, step=0.5,
                 what="custodyd to recover once the disk has room")
        st = env.admin_request("status")["status"]
        self.assertTrue(st["audit"]["writable"])


class ExportOffLoop(unittest.TestCase):
    def setUp(self):
        self.env = Env("custody-exportloop")

    def tearDown(self):
        self.env.close()

    def test_token_answered_while_export_runs(self):
        env = self.env
        env.init_vault()
        env.start_idp()
        env.start_broker()
        g, tid = env.new_tenant("contoso")
        env.import_grant(g)
        # enough records that the export (a proof per record) takes a while
        n = 5000
        with env.tool() as c:
            sent = got = 0
            while got < n:
                while sent < n and sent - got < 64:
                    c.send({"op": "token", "tenant": "contoso"})
                    sent += 1
                self.assertTrue(c.recv().get("ok"))
                got += 1
        with env.admin(timeout=120) as a, env.tool(timeout=60) as t:
            eid = a.send({"op": "audit.export", "tenant": tid})
            time.sleep(0.05)  # custodyd has read the export request
            t0 = time.monotonic()
            tid_req = t.send({"op": "token", "tenant": "contoso"})
            # which answer comes first? With the export on the loop thread
            # the token request would not even be read before it is done.
            first = None
            while first is None:
                ready, _, _ = select.select([a.sock, t.sock], [], [], 60)
                self.assertTrue(ready, "no answer within 60 s")
                first = "token" if t.sock in ready else "export"
            token_wait = time.monotonic() - t0
            r = t.recv_id(tid_req)
            self.assertTrue(r["ok"], r)
            ex = a.recv_id(eid)
            export_wait = time.monotonic() - t0
            self.assertTrue(ex["ok"], ex)
            nrec = len(ex["export"]["records"])
            self.assertGreaterEqual(nrec, n)
            print("token answered in %.3f s while the %d-record export took %.3f s"
                  % (token_wait, nrec, export_wait), file=sys.stderr)
            self.assertEqual(first, "token")


if __name__ == "__main__":
    unittest.main(verbosity=2)

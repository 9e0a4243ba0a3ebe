#!/usr/bin/env python3
"""custodyd against hostile clients (DESIGN §10): whatever one client does,
it gets a clear error or is dropped, and everyone else keeps being served."""

import json
import os
import resource
import select
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Env, check, expect_error, wait_for  # noqa: E402

env = None


def setUpModule():
    global env
    env = Env("custody-hostile")
    try:
        env.init_vault()
        env.config["limits"].update({"idle_timeout_s": 2, "max_connections": 400,
                                     "max_connections_per_uid": 400})
        env.start_broker(nofile=4096)
    except BaseException:
        print(env.log_text(), file=sys.stderr)
        env.close()
        raise


def tearDownModule():
    try:
        rc, took = env.stop_broker()
        check(rc == 0, "custodyd exit status %r" % rc)
    finally:
        if os.environ.get("CUSTODY_TEST_VERBOSE"):
            print(env.log_text(), file=sys.stderr)
        env.close()


def served():
    with env.tool(timeout=5) as c:
        return c.request({"op": "ping"}).get("ok") is True


class Hostile(unittest.TestCase):
    def test_half_line_and_stall(self):
        stallers = [env.tool() for _ in range(5)]
        try:
            for s in stallers:
                s.send_raw(b'{"v":1,"id":1,"op":"pi')
            t0 = time.monotonic()
            # others are served meanwhile
            self.assertTrue(served())
            for s in stallers:
                self.assertTrue(s.is_closed(timeout=6), "staller not dropped")
            took = time.monotonic() - t0
            self.assertGreaterEqual(took, 1.5)
            self.assertLess(took, 6)
        finally:
            for s in stallers:
                s.close()
        self.assertIn("idle", env.log_text())
        self.assertTrue(served())

    def test_one_mib_line(self):
        c = env.tool()
        try:
            def blast():
                try:
                    c.sock.sendall(b"x" * (1 << 20))
                except OSError:
                    pass
            t = threading.Thread(target=blast)
            t.start()
            r = json.loads(c.read_line())
            expect_error(r, "too_large")
            self.assertTrue(c.is_closed())
            t.join(10)
            self.assertFalse(t.is_alive())
        finally:
            c.close()
        self.assertTrue(served())

    def test_invalid_utf8_others_served(self):
        with env.tool() as c:
            c.send_raw(b"\xc3\x28\xa0\xa1\n")
            expect_error(c.recv(), "bad_request")
            self.assertTrue(c.is_closed())
        self.assertTrue(served())

    def test_never_reader(self):
        rss0 = env.rss_kib()
        c = env.tool()
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        line = b'{"v":1,"id":1,"op":"keys"}\n'
        sent = [0]

        def pump():
            try:
                for _ in range(400):
                    c.sock.sendall(line * 100)
                    sent[0] += 100
            except OSError:
                pass
        t = threading.Thread(target=pump)
        t.start()
        try:
            t.join(90)
            self.assertFalse(t.is_alive(), "custodyd neither read nor dropped the client")
            self.assertLess(sent[0], 40000, "a client that never reads must be dropped")
            self.assertTrue(served())
            wait_for(lambda: "does not read" in env.log_text(), 10, what="drop log line")
            rss1 = env.rss_kib()
            self.assertLess(rss1 - rss0, 64 * 1024, "RSS grew by %d KiB" % (rss1 - rss0))
        finally:
            c.close()

    def test_many_connections(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 8192), max(hard, 8192)))
        socks = []
        try:
            for _ in range(2000):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(None)  # blocking: wait for room in the backlog
                try:
                    s.connect(env.tool_path)
                except OSError:
                    s.close()
                    continue
                socks.append(s)
            # every connection is either kept or refused with a line and closed
            # wait until custodyd has answered everything it will answer
            poller = select.poll()
            for s in socks:
                poller.register(s.fileno(), select.POLLIN)
            readable = set()
            quiet_since = time.monotonic()
            deadline = time.monotonic() + 60
            while time.monotonic() - quiet_since < 1.0 and time.monotonic() < deadline:
                new = {fd for fd, ev in poller.poll(200)} - readable
                if new:
                    readable |= new
                    quiet_since = time.monotonic()
                    for fd in new:
                        poller.unregister(fd)
            refused = kept = 0
            for s in socks:
                if s.fileno() not in readable:
                    kept += 1
                    continue
                refused += 1
                s.settimeout(1)
                try:
                    d = s.recv(4096)
                except OSError:
                    d = b""
                if d:
                    self.assertIn(b"too many connections", d)
            self.assertLessEqual(kept, 400)
            self.assertGreaterEqual(kept, 350)
            self.assertEqual(len(socks), 2000, "connect() failed")
            self.assertGreater(refused, 1500)
            st = env.admin_request("status")
        finally:
            for s in socks:
                s.close()
        self.assertTrue(st["ok"], st)
        self.assertLessEqual(st["status"]["connections"]["tool"], 400)
        wait_for(served, 10, what="custodyd to serve again")

    def test_per_uid_limit(self):
        e2 = Env("custody-peruid")
        socks = []
        try:
            e2.init_vault()
            e2.config["limits"]["max_connections_per_uid"] = 3
            e2.start_broker()
            for _ in range(3):
                c = Client(e2.tool_path, 5)
                self.assertTrue(c.request({"op": "ping"})["ok"])
                socks.append(c)
            c = Client(e2.tool_path, 5)
            socks.append(c)
            r = c.recv()
            expect_error(r, "rate_limited")
            self.assertIn("too many connections from this user", r["message"])
            self.assertTrue(c.is_closed())
            # the admin socket has its own allowance
            self.assertTrue(e2.admin_request("status")["ok"])
            socks.pop().close()
            socks.pop().close()
            self.assertTrue(uds_ok(e2.tool_path))
            rc, _ = e2.stop_broker()
            self.assertEqual(rc, 0)
        finally:
            for s in socks:
                s.close()
            e2.close()

    def test_emfile_pauses_accept(self):
        # a second broker with a tiny fd limit: accept must pause, not spin
        e2 = Env("custody-emfile")
        socks = []
        try:
            e2.init_vault()
            e2.config["limits"]["max_connections"] = 5000
            e2.config["limits"]["max_connections_per_uid"] = 5000
            e2.start_broker(nofile=128)
            for _ in range(300):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.setblocking(False)
                try:
                    s.connect(e2.tool_path)
                except OSError:
                    s.close()
                    continue
                socks.append(s)
            time.sleep(0.5)
            cpu0 = e2.cpu_seconds()
            time.sleep(2)
            cpu = e2.cpu_seconds() - cpu0
            self.assertLess(cpu, 0.5, "custodyd spun at EMFILE (%.2f s CPU in 2 s)" % cpu)
            self.assertIn("accept paused", e2.log_text())
            for s in socks:
                s.close()
            socks = []
            wait_for(lambda: uds_ok(e2.tool_path), 10, what="accept to resume")
            rc, _ = e2.stop_broker()
            self.assertEqual(rc, 0)
        finally:
            for s in socks:
                s.close()
            e2.close()


def uds_ok(path):
    try:
        with Client(path, 2) as c:
            return c.request({"op": "ping"}).get("ok")
    except (OSError, ValueError, AssertionError):
        return False


if __name__ == "__main__":
    unittest.main(verbosity=2)

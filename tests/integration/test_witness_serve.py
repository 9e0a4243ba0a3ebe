#!/usr/bin/env python3
"""test_witness_serve.py — `custody witness init|add-log|serve|status`
against an independent client written from the C2SP tlog-witness and
tlog-cosignature texts (tlog.py): every status code the spec names is
provoked (200 with a cosignature the client verifies itself, 400, 403, 404,
409 with text/x.tlog.size, 422), plus 405/404 paths and a 413 body; the
compare-and-swap under two racing requests; the state surviving a restart;
and the same over HTTPS (--tls-cert/--tls-key).
"""

import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time

if sys.executable != "/usr/bin/python3":
    # python3-cryptography (Debian) loads only in Debian's interpreter
    try:
        import cryptography  # noqa: F401
    except ImportError:
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CUSTODY, Env, Fail, check  # noqa: E402
import tlog  # noqa: E402

WNAME = "witness.test/w1"


def run(*args, timeout=30):
    return subprocess.run([CUSTODY] + list(args), capture_output=True, text=True,
                          timeout=timeout)


class Server:
    def __init__(self, state, tls=None):
        args = [CUSTODY, "witness", "serve", "--state", state, "--listen", "127.0.0.1:0"]
        if tls:
            args += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        self.log = open(os.path.join(os.path.dirname(state), "serve.log"), "a+")
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.p.stdout.readline()
        m = re.match(r"listening on 127\.0\.0\.1:(\d+) \((https?)\)", line)
        if not m:
            self.stop()
            raise Fail("serve did not start: %r" % line)
        self.port = int(m.group(1))
        self.tls = tls

    def conn(self, ca=None):
        if self.tls:
            ctx = ssl.create_default_context(cafile=ca)
            return http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=10)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.seek(0)
        return self.log.read()


def post(c, body, path="/add-checkpoint", method="POST"):
    c.request(method, path, body=body)
    r = c.getresponse()
    return r.status, r.getheader("Content-Type"), r.read().decode("utf-8", "replace")


def main():
    env = Env("custody-witness")
    servers = []
    try:
        state = os.path.join(env.base, "witness")
        # ---- init: a type 0x04 vkey whose key id follows the spec
        p = run("witness", "init", "--state", state, "--name", WNAME)
        check(p.returncode == 0, "witness init failed", p.stderr)
        wvkey = p.stdout.strip()
        name, typ, pub = tlog.parse_vkey(wvkey)
        check(name == WNAME and typ == 4 and len(pub) == 32, "witness vkey", wvkey)
        check(os.stat(os.path.join(state, "witness.key")).st_mode & 0o077 == 0,
              "witness.key must be private")
        p = run("witness", "init", "--state", state, "--name", WNAME)
        check(p.returncode == 1 and "already holds a witness" in p.stderr,
              "a second init must refuse", p.stderr)
        p = run("witness", "init", "--state", state + "2", "--name", "bad name")
        check(p.returncode == 1 and "witness name" in p.stderr, "bad name refused", p.stderr)

        log = tlog.Log("custody.test/audit")
        other = tlog.Log("other.test/log")
        p = run("witness", "add-log", "--state", state, "--key", wvkey)
        check(p.returncode == 1 and "expected 0x01" in p.stderr,
              "a witness key is not a log key", p.stderr)
        p = run("witness", "add-log", "--state", state, "--key", log.vkey())
        check(p.returncode == 0, "add-log failed", p.stderr)

        srv = Server(state)
        servers.append(srv)
        c = srv.conn()
        matrix = []

        def expect(status, body, ctype=None, text=None, what=""):
            st, ct, txt = post(c, body)
            check(st == status, "%s: expected %d, got %d" % (what, status, st), txt)
            if ctype:
                check(ct == ctype, "%s: content type" % what, ct)
            if text is not None:
                check(txt == text, "%s: body" % what, txt)
            matrix.append((what, st))
            return txt

        log.append(5)
        # 400: garbage, a missing blank line, old > size
        expect(400, b"hello\n", what="garbage")
        expect(400, b"old 0\n" + log.checkpoint().encode(), what="no blank line")
        expect(400, b"old 01\n\n" + log.checkpoint().encode(), what="leading zero")
        expect(400, tlog.add_checkpoint_body(6, [], log.checkpoint()), what="old > size")
        # 404: a log the witness does not follow
        other.append(3)
        expect(404, tlog.add_checkpoint_body(0, [], other.checkpoint()), what="unknown origin")
        # 403: the right origin signed by another key
        expect(403, tlog.add_checkpoint_body(0, [], log.checkpoint(signer=other.key)),
               what="wrong log key")
        # 200: the first checkpoint, old 0; the client checks the cosignature itself
        t0 = int(time.time())
        txt = expect(200, tlog.add_checkpoint_body(0, [], log.checkpoint()), what="first")
        lines = txt.splitlines()
        check(len(lines) == 1, "one cosignature line", txt)
        ts = tlog.verify_cosignature(lines[0], log.body(), wvkey)
        check(t0 - 5 <= ts <= time.time() + 5, "cosignature timestamp is now", ts)
        # 409: the client thinks the witness knows nothing
        log.append(3)
        expect(409, tlog.add_checkpoint_body(0, [], log.checkpoint()), "text/x.tlog.size",
               "5\n", what="stale old")
        expect(409, tlog.add_checkpoint_body(3, log.proof(3), log.checkpoint()),
               "text/x.tlog.size", "5\n", what="other old")
        # 422: a wrong consistency proof from 5 to 8
        bad = log.proof(5)
        bad[0] = bytes(32)
        expect(422, tlog.add_checkpoint_body(5, bad, log.checkpoint()), what="bad proof")
        # a consistent proof for a forked tree: 422, never cosigned
        fork = tlog.Log("custody.test/audit")
        fork.key = log.key
        fork.append(8)
        fork.leaves[2] = tlog.leaf_hash(b"rewritten")
        expect(422, tlog.add_checkpoint_body(5, fork.proof(5), fork.checkpoint()),
               what="forked tree")
        # 200: the right proof
        txt = expect(200, tlog.add_checkpoint_body(5, log.proof(5), log.checkpoint()),
                     what="consistent")
        tlog.verify_cosignature(txt.strip(), log.body(), wvkey)
        # 409: same size, another root (a fork at the size it cosigned)
        expect(409, tlog.add_checkpoint_body(8, [], log.checkpoint(root=bytes(32))),
               "text/x.tlog.size", "8\n", what="same size other root")
        # 200 again for the same checkpoint (old == size, same root)
        expect(200, tlog.add_checkpoint_body(8, [], log.checkpoint()), what="same again")
        # a rollback to size 5: old 8 > 5
        expect(400, tlog.add_checkpoint_body(8, [], log.checkpoint(size=5)), what="rollback")
        # other methods and paths, and a body too large
        st, _, _ = post(c, None, method="GET")
        check(st == 405, "GET add-checkpoint: 405", st)
        st, _, _ = post(c, b"x", path="/other")
        check(st == 404, "other path: 404", st)
        st, _, _ = post(c, b"old 0\n" + b"A" * (200 * 1024))
        check(st == 413, "a 200 KiB body: 413", st)
        c.close()

        # compare-and-swap: two requests from old 8 race; exactly one wins
        log_a = tlog.Log("custody.test/audit")
        log_a.key, log_a.leaves = log.key, list(log.leaves)
        log_a.append(2)
        log_b = tlog.Log("custody.test/audit")
        log_b.key, log_b.leaves = log.key, list(log.leaves)
        log_b.append(4)
        results = []
        barrier = threading.Barrier(2)

        def race(lg):
            cc = srv.conn()
            body = tlog.add_checkpoint_body(8, lg.proof(8), lg.checkpoint())
            barrier.wait()
            results.append((len(lg.leaves), post(cc, body)))
            cc.close()
        th = [threading.Thread(target=race, args=(lg,)) for lg in (log_a, log_b)]
        [t.start() for t in th]
        [t.join(20) for t in th]
        statuses = sorted(r[1][0] for r in results)
        check(statuses == [200, 409], "racing requests: one 200, one 409", results)
        winner = [r[0] for r in results if r[1][0] == 200][0]
        loser = [r for r in results if r[1][0] == 409][0]
        check(loser[1][2] == "%d\n" % winner, "the 409 names the winner's size", results)
        log.leaves = list((log_a if winner == 10 else log_b).leaves)

        out = srv.stop()
        check("200 custody.test/audit: cosigned size 8" in out, "serve logs each request", out)
        check("409" in out and "422" in out and "403" in out and "404" in out, "log lines", out)

        # status, and the state after a restart
        p = run("witness", "status", "--state", state, "--json")
        check(p.returncode == 0, "status --json", p.stderr)
        s = json.loads(p.stdout)
        check(s["name"] == WNAME and s["vkey"] == wvkey, "status names the witness", s)
        check(s["logs"][0]["origin"] == "custody.test/audit" and
              s["logs"][0]["size"] == winner, "status size", s)
        p = run("witness", "status", "--state", state)
        check("log custody.test/audit: size %d" % winner in p.stdout, "status text", p.stdout)

        # over HTTPS, after a restart: the persisted size answers a 409
        from idp import make_certs
        ca, cert, key = make_certs(os.path.join(env.base, "tls"))
        srv = Server(state, tls=(cert, key))
        servers.append(srv)
        c = srv.conn(ca)
        st, ct, txt = post(c, tlog.add_checkpoint_body(0, [], log.checkpoint()))
        check(st == 409 and txt == "%d\n" % winner and ct == "text/x.tlog.size",
              "persisted size after restart (https)", st, txt)
        matrix.append(("restart, stale old (https)", st))
        log.append(1)
        st, ct, txt = post(c, tlog.add_checkpoint_body(winner, log.proof(winner),
                                                       log.checkpoint()))
        check(st == 200, "https add-checkpoint", st, txt)
        tlog.verify_cosignature(txt.strip(), log.body(), wvkey)
        matrix.append(("consistent (https)", st))
        c.close()
        srv.stop()
        for what, st in matrix:
            print("witness-serve interop: %-28s -> %d" % (what, st))
        print("ok: custody witness serve answers every tlog-witness status (%d requests)"
              % len(matrix))
    finally:
        for s in servers:
            s.stop()
        env.close()


if __name__ == "__main__":
    main()

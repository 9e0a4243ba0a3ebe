#!/usr/bin/env python3
"""test_witness_hostile.py — witnesses that misbehave (DESIGN §10, §11.1):
one answers garbage, one a cosignature by another key under its name and
key id, one a valid cosignature dated an hour ahead, one 409 without a
body, one never answers, one 8 MiB. Each is refused with a clear log line
and a status last_error, nothing is stored as a cosignature, and cached
tokens keep flowing at full speed while they do it.
"""

import http.server
import json
import os
import sqlite3
import sys
import threading
import time

if sys.executable != "/usr/bin/python3":
    try:
        import cryptography  # noqa: F401
    except ImportError:
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Env, check, wait_for  # noqa: E402
import tlog  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

MODES = ["garbage", "otherkey", "future", "nobody409", "hang", "huge"]
KEYS = {m: Ed25519PrivateKey.generate() for m in MODES}
STOP = threading.Event()


def wname(mode):
    return "witness.test/" + mode


class Fake(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, status, body, ctype="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        mode = self.path.strip("/").split("/")[0]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        note = body.split("\n\n", 1)[1]
        cp_body = note.split("\n\n")[0] + "\n"
        now = int(time.time())
        if mode == "garbage":
            self.send(200, b"\x00\xffhello, not a signature line\n")
        elif mode == "otherkey":
            kid = tlog.key_id(wname(mode), 4, tlog.raw_pub(KEYS[mode]))
            line = tlog.cosign(cp_body, wname(mode), Ed25519PrivateKey.generate(), now, kid=kid)
            self.send(200, line.encode())
        elif mode == "future":
            self.send(200, tlog.cosign(cp_body, wname(mode), KEYS[mode], now + 3600).encode())
        elif mode == "nobody409":
            self.send(409, b"")
        elif mode == "hang":
            STOP.wait(30)
        elif mode == "huge":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(8 << 20))
            self.end_headers()
            try:
                for _ in range(8 * 16):
                    self.wfile.write(b"\xe2\x80\x94 x " + b"A" * (64 * 1024 - 7) + b"\n")
            except OSError:
                pass


def main():
    env = Env("custody-whostile")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    httpd.daemon_threads = True
    th = threading.Thread(target=httpd.serve_forever, daemon=True)
    th.start()
    try:
        env.init_vault()
        env.start_idp()
        grant, tid = env.new_tenant("contoso")
        port = httpd.server_address[1]
        env.config["audit"].update({
            "checkpoint_every": 5, "checkpoint_interval_s": 1, "witness_quorum": 1,
            "witnesses": [{"name": m, "url": "http://127.0.0.1:%d/%s/add-checkpoint" % (port, m),
                           "key": tlog.vkey(wname(m), 4, tlog.raw_pub(KEYS[m]))}
                          for m in MODES]})
        env.start_broker()
        env.import_grant(grant)
        check(env.token("contoso").get("ok"), "first token")
        # cached tokens while the witnesses misbehave: none slowed
        worst = 0.0
        n = 0
        t_end = time.monotonic() + 12
        while time.monotonic() < t_end:
            t0 = time.monotonic()
            check(env.token("contoso").get("ok"), "token")
            worst = max(worst, time.monotonic() - t0)
            n += 1
            if n % 50 == 0:
                env.admin_request("audit.checkpoint")
        log = env.log_text()
        want = {
            "garbage": "holds no valid cosignature",
            "otherkey": "does not verify",
            "future": "dated in the future",
            "nobody409": "answer 409 without a text/x.tlog.size body",
            "hang": "Timeout was reached",
            "huge": "answer larger than 64 KiB",
        }
        s = wait_for(lambda: (lambda s: all(w.get("last_error") for w in s["witnesses"]) and s)(
            env.admin_request("status")["status"]), 15, 0.2, "every witness to fail")
        for w in s["witnesses"]:
            check(want[w["name"]] in w["last_error"], "status names the failure", w)
            check(w["cosigned_size"] == 0, "nothing cosigned", w)
            lines = [ln for ln in log.splitlines() if ("witness %s:" % w["name"]) in ln]
            check(lines and want[w["name"]] in lines[0], "a clear log line for %s" % w["name"],
                  lines)
            print("hostile witness %-9s -> %s" % (w["name"], lines[0].split(": ", 1)[1]))
        check(s["witness_conflict"] is None, "garbage is no conflict", s)
        con = sqlite3.connect(env.audit_db)
        try:
            rows = con.execute("SELECT count(*) FROM cosignatures").fetchone()[0]
        except sqlite3.OperationalError:
            rows = 0
        con.close()
        check(rows == 0, "no cosignature stored", rows)
        print("tokens while witnesses misbehaved: %d, slowest %.0f ms" % (n, worst * 1000))
        check(worst < 1.0, "no token waited on a witness", worst)
        print("ok: every hostile witness refused with a log line; tokens unaffected")
    finally:
        STOP.set()
        httpd.shutdown()
        env.close()


if __name__ == "__main__":
    main()

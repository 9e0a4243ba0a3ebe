#!/usr/bin/env python3
"""test_ship.py — the audit trail to a SIEM (DESIGN §11.2) against a real
rsyslog (rsyslog-gnutls, imtcp with StreamDriver.Mode=1 on a loopback
port, a test CA) and a file sink: every record and checkpoint arrives, in
order, bodies byte-identical; rsyslog killed mid-stream and restarted —
the rest arrives (duplicates allowed, no gap); custodyd restarted
mid-backlog resumes from its cursor; status --json per sink. Then the
benchmark row: cached-token rate with a stalled sink (a TLS receiver that
never reads) against none, same run.
"""

import json
import os
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Env, Fail, build_path, check, wait_for  # noqa: E402


class Rsyslog(harness.Rsyslog):
    """"%app-name%|%msgid%|%structured-data%|%msg%" a line; records up to
    256 KiB keep their trailing newline (#012), so bodies compare whole."""

    def __init__(self, base, certs):
        super().__init__(base, "%app-name%|%msgid%|%structured-data%|%msg%", certs=certs,
                         max_size="256k", keep_trailing_lf=True)

    def messages(self):
        """[(msgid, sd, msg)] in arrival order (complete lines only)."""
        try:
            with open(self.out, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return []
        out = []
        for ln in text.split("\n")[:-1]:
            app, mid, rest = ln.split("|", 2)
            sd, msg = rest.split("]|", 1)
            out.append((app, mid, sd + "]", msg.replace("#012", "\n")))
        return out


def store(env, upto):
    """Records and checkpoints through seq upto (what the sinks hold)."""
    con = sqlite3.connect(env.audit_db)
    recs = {s: (b, l.hex()) for s, b, l in
            con.execute("SELECT seq, body, leaf FROM events WHERE seq <= ?", (upto,))}
    cps = {s: n for s, n in
           con.execute("SELECT size, note FROM checkpoints WHERE size > 0 AND size <= ?", (upto,))}
    con.close()
    return recs, cps


def check_syslog(rs, recs, cps, what):
    # "shipped" means the socket took the bytes; rsyslog writes them to its
    # file a moment later, through its queue (under load, hundreds of ms):
    # wait for every one before calling any missing
    def written():
        seen = set()
        for app, mid, sd, msg in rs.messages():
            seen.add((mid == "checkpoint", int(sd.split('seq="')[1].split('"')[0])))
        return (all((False, s) in seen for s in recs) and
                all((True, c) in seen for c in cps))
    try:
        wait_for(written, 15, 0.1, "rsyslog to write every record (%s)" % what)
    except Fail:
        pass  # the checks below say which
    got, gotcp, order = {}, set(), []
    for app, mid, sd, msg in rs.messages():
        check(app == "custody", "APP-NAME custody", app)
        seq = int(sd.split('seq="')[1].split('"')[0])
        if seq > max(recs):
            continue  # shipped after the status that said "caught up"
        if mid == "checkpoint":
            check(cps.get(seq) == msg, "%s: checkpoint %d byte-identical" % (what, seq), msg)
            gotcp.add(seq)
            continue
        body, leaf = recs[seq]
        check(msg == body, "%s: record %d body byte-identical" % (what, seq), msg, body)
        check('leaf="%s"' % leaf in sd and mid == json.loads(body)["event"][:32],
              "%s: SD and MSGID of %d" % (what, seq), mid, sd)
        got[seq] = True
        order.append(seq)
    missing = [s for s in recs if s not in got]
    check(not missing, "%s: no gap (missing %s)" % (what, missing[:10]))
    check(not [c for c in cps if c not in gotcp], "%s: every checkpoint" % what,
          sorted(cps), sorted(gotcp))
    # in order: each new seq is the next one (duplicates only repeat)
    top = 0
    for s in order:
        check(s <= top + 1, "%s: seq %d arrived before %d" % (what, s, top + 1))
        top = max(top, s)
    return len(order) - len(got)


def check_file(path, recs, cps):
    seqs, cpseen = [], set()
    with open(path, encoding="utf-8") as f:
        for ln in f:
            o = json.loads(ln)
            if o.get("seq", 0) > max(recs) or (
                    "checkpoint" in o and int(o["checkpoint"].split("\n")[1]) > max(recs)):
                continue  # shipped after the status that said "caught up"
            if "checkpoint" in o:
                size = int(o["checkpoint"].split("\n")[1])
                check(cps.get(size) == o["checkpoint"], "file: checkpoint %d" % size)
                cpseen.add(size)
            else:
                check(list(o) == ["seq", "leaf", "body"], "file: line keys", o)
                check(recs[o["seq"]] == (o["body"], o["leaf"]), "file: record %d" % o["seq"])
                seqs.append(o["seq"])
    check(sorted(set(seqs)) == sorted(recs), "file: every record")
    check(cpseen == set(cps), "file: every checkpoint")


def shipped(env):
    s = env.admin_request("status")["status"]
    seq = s["audit"]["seq"]
    cp = s["audit"]["checkpoint_size"]
    ok = all(k["shipped_through"] == seq and k["backlog"] == 0 and
             k["shipped_checkpoint"] >= cp for k in s["ship"])
    if ok:
        s["upto"] = seq
    return ok and s


def tokens(env, n):
    for _ in range(n):
        check(env.token("contoso").get("ok"), "token")


class Stalled:
    """A TLS receiver that completes the handshake and never reads."""

    def __init__(self, certs):
        ca, cert, key = certs
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                self.conns.append(self.ctx.wrap_socket(c, server_side=True))
            except OSError:
                return

    def close(self):
        self.stop = True
        self.sock.close()


def rate(env, secs=3):
    """Cached-token requests/s: the benchmark's closed-loop load generator
    (8 connections) when built, else one Python client."""
    lg = build_path("tests", "bench", "loadgen")
    if os.path.exists(lg):
        r = subprocess.run([lg, "--socket", env.tool_path, "--connections", "8",
                            "--warmup", "1", "--duration", str(secs), "--request",
                            '{"v":1,"id":@ID@,"op":"token","tenant":"contoso"}'],
                           capture_output=True, text=True, timeout=60)
        res = json.loads(r.stdout.strip().splitlines()[-1])
        check(r.returncode == 0 and res["failures"] == 0, "loadgen", r.stderr)
        return res["rps"]
    n, t0 = 0, time.monotonic()
    with env.tool() as c:
        while time.monotonic() - t0 < secs:
            r = c.request({"op": "token", "tenant": "contoso"})
            check(r.get("ok"), "token", r)
            n += 1
    return n / (time.monotonic() - t0)


def main():
    env = Env("custody-ship")
    rs = None
    stalled = None
    try:
        from idp import make_certs
        certs = make_certs(os.path.join(env.base, "certs"))
        rs = Rsyslog(env.base, certs).start()
        env.init_vault()
        env.start_idp()
        grant, tid = env.new_tenant("contoso")
        fpath = os.path.join(env.base, "ship", "audit.ndjson")
        os.makedirs(os.path.dirname(fpath))
        env.config["audit"].update({
            "checkpoint_every": 10, "checkpoint_interval_s": 1,
            "ship": [{"type": "syslog", "url": "tls://127.0.0.1:%d" % rs.port,
                      "ca_file": certs[0]},
                     {"type": "file", "path": fpath}]})
        env.start_broker()
        env.import_grant(grant)
        tokens(env, 40)
        env.admin_request("audit.checkpoint")
        s = wait_for(lambda: shipped(env), 20, 0.2, "the sinks to catch up")
        upto = s["upto"]
        for k in s["ship"]:
            check(set(k) >= {"name", "type", "shipped_through", "backlog"} and
                  k.get("last_error") is None, "status per sink", k)
        recs, cps = store(env, upto)
        check_syslog(rs, recs, cps, "first pass")
        check_file(fpath, recs, cps)
        print("ship: %d records and %d checkpoints arrived in rsyslog and the file"
              % (len(recs), len(cps)))

        # rsyslog killed mid-stream: the rest arrives after its restart
        stop_tokens = threading.Event()
        errs = []

        def flow():
            try:
                while not stop_tokens.is_set():
                    check(env.token("contoso").get("ok"), "token")
                    time.sleep(0.005)
            except Exception as e:  # noqa: BLE001
                errs.append(e)
        th = threading.Thread(target=flow)
        th.start()
        time.sleep(0.5)
        rs.kill()
        time.sleep(1.5)
        s = env.admin_request("status")["status"]
        sk = [k for k in s["ship"] if k["type"] == "syslog"][0]
        rs.start()
        time.sleep(0.5)
        stop_tokens.set()
        th.join()
        check(not errs, "tokens flow while rsyslog is down", errs)
        env.admin_request("audit.checkpoint")
        upto = wait_for(lambda: shipped(env), 30, 0.2,
                        "the sinks to catch up after rsyslog restart")["upto"]
        print("ship: while rsyslog was down: backlog %d, last_error %r"
              % (sk["backlog"], sk.get("last_error")))
        recs, cps = store(env, upto)
        dups = check_syslog(rs, recs, cps, "after the kill")
        check_file(fpath, recs, cps)
        log = env.log_text()
        check("ship syslog tls://" in log, "log lines name the sink", log)
        print("ship: rsyslog killed and restarted: no gap, %d duplicates" % dups)

        # custodyd restarted mid-backlog resumes from its cursor
        rs.stop()
        tokens(env, 30)
        env.admin_request("audit.checkpoint")
        check(env.stop_broker()[0] == 0, "stop")
        rs.start()
        env.start_broker()
        env.admin_request("audit.checkpoint")
        upto = wait_for(lambda: shipped(env), 30, 0.2,
                        "the sinks to catch up after a broker restart")["upto"]
        recs, cps = store(env, upto)
        check_syslog(rs, recs, cps, "after the broker restart")
        check_file(fpath, recs, cps)
        print("ship: custodyd restarted mid-backlog: resumed from the cursor, no gap")
        check(env.stop_broker()[0] == 0, "stop")
        rs.stop()

        # the benchmark row: a stalled sink against none, same run,
        # alternating (none, stalled, none, stalled) against drift
        stalled = Stalled(certs)
        base = dict(env.config["audit"])
        runs = {"none": [], "stalled": []}
        backlog = 0
        for kind in ("none", "stalled", "none", "stalled"):
            env.config["audit"] = dict(base)
            env.config["audit"]["ship"] = [] if kind == "none" else [
                {"type": "syslog", "url": "tls://127.0.0.1:%d" % stalled.port,
                 "ca_file": certs[0]}]
            env.start_broker()
            tokens(env, 1)
            if kind == "stalled":
                tokens(env, 500)  # fill the receiver's buffers: the sink stalls
            runs[kind].append(rate(env))
            if kind == "stalled":
                s = env.admin_request("status")["status"]
                backlog = max(backlog, s["ship"][0]["backlog"])
                check(s["ship"][0]["backlog"] > 0, "the stalled sink holds a backlog", s)
            check(env.stop_broker()[0] == 0, "stop (%s sink)" % kind)
        none = sum(runs["none"]) / 2
        st = sum(runs["stalled"]) / 2
        print("bench: cached-token rate, 8 connections: no sink %.0f req/s (%s), "
              "stalled syslog sink %.0f req/s (%s, backlog up to %d): %.1f %%"
              % (none, ", ".join("%.0f" % x for x in runs["none"]), st,
                 ", ".join("%.0f" % x for x in runs["stalled"]), backlog, 100.0 * st / none))
        check(st > 0.5 * none, "a stalled sink does not stall tokens", runs)
        print("ok: shipping to rsyslog and a file, at least once, in order, resumed")
    finally:
        if stalled is not None:
            stalled.close()
        if rs is not None:
            rs.stop()
        env.close()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Caller identity that cannot be borrowed (issue 12): each test performs
an attack of the hostile review against the real custodyd, as another
local uid where the attack needs one, and checks it gets nothing.

    item 1  test_1_mount_namespace_bind_mount      unshare -Urm + mount --bind over the exe path
    item 2  test_2_fork_exec_hash_principal        connect, fork, parent execs the allowed
                                                   binary, child sends (exe_sha256 principal)
            test_2_fork_exec_path_principal_late_accept
                                                   the same with accept landing after the exec
            test_2_exec_after_request              the process execs another program while
                                                   its token is fetched
    item 3  test_3_in_place_rewrite_restored_mtime the exe_sha256 cache and a patched binary
                                                   whose mtime was put back with utime
    item 4  test_4_sparse_3g_exe_refused           truncate -s 3G: refused at once, loop serves
            test_4_large_exe_hashed_off_loop       a large exe under the cap hashes on the
                                                   worker while the admin socket answers
    item 5  test_5_pipelined_flood                 20,000 pipelined refused lines from one
                                                   connection: bounded records, one summary
    item 7  test_7_tenant_name_is_another_tenants_id
                                                   a grant whose tenant_name is contoso's id
                                                   (seal refuses it; a hostile sealer's
                                                   envelope is refused at import)
    item 8  test_8_min_ttl_beyond_token_lifetime   min_ttl 7200 against 3599 s tokens, 20 times:
                                                   one upstream fetch, then clear refusals
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import TESTTOOL, Env, wait_for  # noqa: E402

# Debian's interpreter (sys.executable may be a pyenv shim, a script)
PYTHON = os.path.realpath("/usr/bin/python3")
SLEEP = os.path.realpath(shutil.which("sleep"))

env = None
P = {}   # paths made in setUpModule

# A client: connect, send each request given as JSON on the command line,
# print each reply (or {"closed": true} at EOF) as one JSON line.
CLIENT = r'''
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("rb")
for i, req in enumerate(sys.argv[2:]):
    o = json.loads(req)
    o.setdefault("v", 1)
    o.setdefault("id", i + 1)
    try:
        s.sendall(json.dumps(o).encode() + b"\n")
        line = f.readline()
    except OSError:
        line = b""
    print(line.decode().strip() if line else json.dumps({"closed": True}), flush=True)
'''

# connect, fork; the parent execs the allowed binary (same pid, holding
# the socket), the child sends once the parent runs it, on the inherited
# socket. argv: socket, allowed binary, request JSON, marker file or "-".
FORKER = r'''
import json, os, signal, socket, sys, time
path, allowed, req, marker = sys.argv[1:5]
s = socket.socket(socket.AF_UNIX)
s.connect(path)
os.set_inheritable(s.fileno(), True)
parent = os.getpid()
if os.fork() != 0:
    os.execv(allowed, [allowed, "30"])
try:
    real = os.path.realpath(allowed)
    end = time.monotonic() + 10
    while os.readlink("/proc/%d/exe" % parent) != real:
        if time.monotonic() > end:
            raise SystemExit("parent never ran the allowed binary")
        time.sleep(0.005)
    s.sendall(req.encode() + b"\n")
    if marker != "-":
        open(marker, "w").close()
    s.settimeout(30)
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(65536)
        if not d:
            break
        buf += d
    tail = b""
    try:
        s.settimeout(5)
        tail = s.recv(1)
    except OSError:
        pass
    print(json.dumps({"reply": json.loads(buf) if buf.strip() else None,
                      "closed_after": tail == b"", "child": os.getpid(),
                      "parent": parent}), flush=True)
finally:
    os.kill(parent, signal.SIGKILL)
'''

# run by the allowed binary: connect, ask for a token (the IdP is slow),
# then exec another program that keeps the socket and reads the reply.
# pipeline every line of a file on one connection, read replies until EOF
FLOODER = r'''
import json, socket, sys, threading
path, lines_file = sys.argv[1:3]
data = open(lines_file, "rb").read()
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(path)
def pump():
    try:
        s.sendall(data)
    except OSError:
        pass
t = threading.Thread(target=pump, daemon=True)
t.start()
f = s.makefile("rb")
replies = []
try:
    for line in f:
        replies.append(json.loads(line))
except OSError:
    pass
limited = [r for r in replies if r.get("error") == "rate_limited"]
print(json.dumps({"n": len(replies), "limited": limited,
                  "codes": sorted(set(r.get("error", "ok") for r in replies))}))
'''

EXECER = r'''
import json, os, socket, sys, time
path, other, req = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX)
s.connect(path)
s.sendall(req.encode() + b"\n")
time.sleep(0.5)          # custodyd has read the request and waits upstream
os.set_inheritable(s.fileno(), True)
reader = ("import socket,sys,json\n"
          "s=socket.socket(fileno=int(sys.argv[1]));s.settimeout(30)\n"
          "b=b''\n"
          "while not b.endswith(b'\\n'):\n"
          "  d=s.recv(65536)\n"
          "  if not d: break\n"
          "  b+=d\n"
          "print(json.dumps({'reply': json.loads(b) if b.strip() else None, 'pid': __import__('os').getpid()}))\n")
os.execv(other, [other, "-c", reader, str(s.fileno())])
'''


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def as_uid(uid, argv, timeout=60, **kw):
    return subprocess.run(["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid,
                           "--clear-groups"] + argv, capture_output=True, text=True,
                          timeout=timeout, **kw)


def json_lines(p):
    if p.returncode != 0:
        raise AssertionError("client failed (%s): %s %s" % (p.returncode, p.stdout, p.stderr))
    return [json.loads(x) for x in p.stdout.splitlines() if x.strip()]


def req(op, **kw):
    o = {"v": 1, "id": 1, "op": op}
    o.update(kw)
    return json.dumps(o)


def setUpModule():
    global env
    env = Env("custody-sec-id")
    try:
        opt = os.path.join(env.base, "opt")
        os.makedirs(opt, mode=0o755)
        os.chmod(opt, 0o755)
        P["drop"] = os.path.join(env.base, "drop")          # written by the attackers' uids
        os.makedirs(P["drop"])
        os.chmod(P["drop"], 0o777)
        P["siem"] = os.path.join(opt, "siem-pull")          # the allowed tool: a python
        shutil.copy2(PYTHON, P["siem"])
        P["sleeper"] = os.path.join(opt, "sleeper")         # an allowed binary that holds
        shutil.copy2(SLEEP, P["sleeper"])                   # its inherited socket
        for name, text in (("client", CLIENT), ("forker", FORKER), ("execer", EXECER),
                           ("flooder", FLOODER)):
            P[name] = os.path.join(env.base, name + ".py")
            with open(P[name], "w") as f:
                f.write(text)
            os.chmod(P[name], 0o644)
        # a python with 4 KiB of padding that an in-place patch can change
        P["padded"] = os.path.join(opt, "padded-tool")
        shutil.copy2(PYTHON, P["padded"])
        with open(P["padded"], "ab") as f:
            f.write(b"\0" * 4096)
        # sparse giants: a 3 GiB one over limits.max_exe_bytes, one under it
        P["big"] = os.path.join(opt, "big-tool")
        shutil.copy2(PYTHON, P["big"])
        os.truncate(P["big"], 3 << 30)
        P["mid"] = os.path.join(opt, "mid-tool")
        shutil.copy2(PYTHON, P["mid"])
        os.truncate(P["mid"], 384 << 20)
        for k in ("siem", "sleeper", "padded", "big", "mid"):
            os.chmod(P[k], 0o755)
        env.init_vault()
        env.start_idp()
        P["contoso_id"] = "72f988bf-86f1-41af-91ab-%012x" % (os.getpid() & 0xffffffffffff)
        env.config["principals"] = [
            {"name": "root-tool", "match": {"uid": 0}, "tenants": ["*"]},
            {"name": "siem", "match": {"uid": 65534, "exe": P["siem"]}, "tenants": ["*"]},
            {"name": "hashed-sleeper", "match": {"uid": 65533,
                                                 "exe_sha256": sha256_file(P["sleeper"])},
             "tenants": ["*"]},
            {"name": "path-sleeper", "match": {"uid": 65532, "exe": P["sleeper"]},
             "tenants": ["*"]},
            {"name": "hashed-padded", "match": {"uid": 65531,
                                                "exe_sha256": sha256_file(P["padded"])},
             "tenants": ["*"]},
            {"name": "giant", "match": {"uid": 65530, "exe_sha256": "0" * 64},
             "tenants": ["*"]},
            {"name": "contoso-only", "match": {"uid": 65528}, "tenants": [P["contoso_id"]]},
        ]
        env.config["limits"]["max_exe_bytes"] = 512 << 20
        env.config["limits"]["max_refusals"] = 20
        env.config["limits"]["refusal_window_s"] = 6
        env.config["tool_socket"]["mode"] = "0666"
        env.start_broker()
        g, P["contoso"] = env.new_tenant("contoso")
        env.import_grant(g)
        g, P["contoso2"] = env.new_tenant("contoso2")   # contoso_id's own tenant
        g["tenant_id"] = P["contoso2"] = P["contoso_id"]
        g["token_endpoint"] = env.token_endpoint(P["contoso_id"])
        env.idp.add_app(tenant_id=P["contoso_id"], tenant_name="contoso2",
                        client_id=g["client_id"], secret=g["client_secret"])
        env.import_grant(g)
        g, P["slow"] = env.new_tenant("slow-co")
        env.import_grant(g)
    except Exception:
        env.close()
        raise


def tearDownModule():
    if env is None:
        return
    try:
        # a clean stop (under ASan: no leak, no error) after every attack
        rc, _ = env.stop_broker()
        if rc != 0:
            raise AssertionError("custodyd stopped with %r:\n%s" % (rc, env.log_text()[-3000:]))
    finally:
        env.close()


def token_records(**filt):
    return [r for r in env.audit_records(**filt) if r["event"] == "token"]


class Identity(unittest.TestCase):
    def assert_refused(self, r, code="unauthenticated"):
        shown = {k: v for k, v in r.items() if k != "access_token"}   # never in test output
        self.assertNotIn("access_token", r, shown)
        self.assertIs(r.get("ok"), False, shown)
        self.assertEqual(r.get("error"), code, shown)

    def test_0_allowed_binary_is_recognised(self):
        # the control: the real tool, run as its uid, is the principal
        p = as_uid(65534, [P["siem"], P["client"], env.tool_path, req("whoami"),
                           req("token", tenant="contoso")])
        who, tok = json_lines(p)
        self.assertEqual(who.get("principal"), "siem", who)
        self.assertEqual(who.get("exe"), P["siem"])
        self.assertTrue(tok.get("ok"), tok)

    def test_1_mount_namespace_bind_mount(self):
        # As the allowed uid, in a private mount namespace, python is bind
        # mounted over the allowed path and run from there: the path text
        # custodyd reads names the allowed tool, the file is python.
        before = len(token_records(tenant=P["contoso"]))
        script = 'mount --bind "$1" "$2" && exec "$2" "$3" "$4" "$5" "$6"'
        p = as_uid(65534, ["unshare", "-Urm", "sh", "-c", script, "sh", PYTHON, P["siem"],
                           P["client"], env.tool_path, req("whoami"),
                           req("token", tenant="contoso")])
        lines = json_lines(p)
        self.assertEqual(len(lines), 2, lines)
        for r in lines:
            self.assert_refused(r)
        self.assertEqual(len(token_records(tenant=P["contoso"])), before)
        # the audit shows what happened: the path text lied, nothing was issued
        rec = [r for r in env.audit_records(event="token")
               if r.get("requested_tenant") == "contoso" and r["peer"]["uid"] == 65534][-1]
        self.assertEqual(rec["outcome"], "unauthenticated")
        self.assertEqual(rec["peer"]["exe"], P["siem"])
        self.assertNotIn("principal", rec)

    def forker(self, uid, marker="-", before_run=None, after_start=None):
        cmd = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups", PYTHON,
               P["forker"], env.tool_path, P["sleeper"], req("token", tenant="contoso"),
               marker]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            if after_start is not None:
                after_start(proc)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # the parent (the process started) ends killed by its child, which
        # printed the result on the stdout they share
        self.assertTrue(out.strip(), "attacker printed nothing: %s" % err)
        return json.loads(out)

    def check_foreign_refused(self, res):
        self.assert_refused(res["reply"])
        self.assertIn("another process", res["reply"]["message"])
        self.assertTrue(res["closed_after"], "connection not closed after the refusal")
        rec = [r for r in env.audit_records(event="request")
               if r.get("sender", {}) and r["sender"].get("pid") == res["child"]]
        self.assertEqual(len(rec), 1, rec)
        self.assertEqual(rec[0]["outcome"], "unauthenticated")
        self.assertEqual(rec[0]["peer"]["pid"], res["parent"])

    def test_2_fork_exec_hash_principal(self):
        # The hash principal: custodyd used to hash lazily at the first
        # request, by which time the connecting pid runs the allowed binary.
        before = len(token_records(tenant=P["contoso"]))
        res = self.forker(65533)
        self.check_foreign_refused(res)
        self.assertEqual(len(token_records(tenant=P["contoso"])), before)

    def test_2_fork_exec_path_principal_late_accept(self):
        # The exe path principal, with custodyd's accept landing after the
        # exec (the review got there with 55 queued connections; here the
        # broker is stopped while the attacker connects, forks and execs).
        before = len(token_records(tenant=P["contoso"]))
        marker = os.path.join(P["drop"], "sent-%d" % time.monotonic_ns())

        def stopped_while_attacking(proc):
            env.broker.send_signal(signal.SIGSTOP)
            try:
                wait_for(lambda: os.path.exists(marker) or proc.poll() is not None, 20,
                         what="the attacker to send")
            finally:
                env.broker.send_signal(signal.SIGCONT)
        res = self.forker(65532, marker=marker, after_start=stopped_while_attacking)
        self.check_foreign_refused(res)
        self.assertEqual(len(token_records(tenant=P["contoso"])), before)

    def test_2_exec_after_request(self):
        # The allowed tool asks, then execs another program (same pid, same
        # pidfd) that holds the socket when the token is due: withheld.
        env.idp.set_fault("slow", tenant=P["slow"], delay_s=1.5)
        try:
            p = as_uid(65534, [P["siem"], P["execer"], env.tool_path, PYTHON,
                               req("token", tenant="slow-co")])
        finally:
            env.idp.set_fault("ok", tenant=P["slow"])
        self.assertEqual(p.returncode, 0, p.stderr)
        res = json.loads(p.stdout)
        self.assert_refused(res["reply"])
        self.assertIn("another executable", res["reply"]["message"])
        recs = wait_for(lambda: [r for r in env.audit_records(tenant=P["slow"])
                                 if r["event"] == "token.withheld"], 10,
                        what="token.withheld record")
        self.assertEqual(recs[-1]["outcome"], "unauthenticated")
        self.assertEqual(recs[-1]["principal"], "siem")

    def test_3_in_place_rewrite_restored_mtime(self):
        who = json_lines(as_uid(65531, [P["padded"], P["client"], env.tool_path,
                                        req("whoami")]))[0]
        self.assertEqual(who.get("principal"), "hashed-padded", who)   # hashed and cached
        # the file's owner patches it in place and puts mtime back
        st = os.stat(P["padded"])
        with open(P["padded"], "r+b") as f:
            f.seek(st.st_size - 100)
            f.write(b"\x01")
        os.utime(P["padded"], ns=(st.st_atime_ns, st.st_mtime_ns))
        st2 = os.stat(P["padded"])
        self.assertEqual((st2.st_ino, st2.st_size, st2.st_mtime_ns),
                         (st.st_ino, st.st_size, st.st_mtime_ns))
        self.assertNotEqual(st2.st_ctime_ns, st.st_ctime_ns)
        r = json_lines(as_uid(65531, [P["padded"], P["client"], env.tool_path,
                                      req("whoami")]))[0]
        self.assert_refused(r)

    def ping_while(self, proc):
        """Ask the admin socket for status until proc ends: the worst
        latency, and how many answers came."""
        worst, n = 0.0, 0
        end = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < end:
            t0 = time.monotonic()
            with env.admin(timeout=30) as a:
                r = a.request({"op": "status"})
            worst = max(worst, time.monotonic() - t0)
            n += 1
            self.assertTrue(r.get("ok"), r)
            time.sleep(0.1)
        return worst, n

    def giant_client(self, exe):
        return subprocess.Popen(["setpriv", "--reuid=65530", "--regid=65530", "--clear-groups",
                                 exe, P["client"], env.tool_path, req("whoami")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def test_4_sparse_3g_exe_refused(self):
        t0 = time.monotonic()
        proc = self.giant_client(P["big"])
        try:
            worst, _ = self.ping_while(proc)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        r = json.loads(out.splitlines()[0])
        self.assert_refused(r)
        self.assertIn("max_exe_bytes", r["message"])
        self.assertLess(worst, 2.0)
        self.assertLess(time.monotonic() - t0, 30)

    def test_4_large_exe_hashed_off_loop(self):
        # 384 MiB under the 512 MiB cap: hashed (seconds), on the worker;
        # the admin socket answers all along
        t0 = time.monotonic()
        proc = self.giant_client(P["mid"])
        try:
            worst, n = self.ping_while(proc)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        r = json.loads(out.splitlines()[0])
        self.assert_refused(r)                        # hashed, and the hash is not the pinned one
        self.assertIn("maps to no principal", r["message"])
        # hashed in the loop, the whole hash was one stall of the admin
        # socket: the worst answer must be far shorter than the hash took
        took = time.monotonic() - t0
        print("hash of a 384 MiB exe: %.2f s, %d status answers, worst %.3f s"
              % (took, n, worst), file=sys.stderr)
        self.assertLess(worst, max(0.5, took / 2),
                        "the admin socket stalled while the exe was hashed")
        self.assertGreater(n, 1)

    def test_5_pipelined_flood(self):
        uid = 65529                     # maps to no principal
        lines = os.path.join(P["drop"], "flood.ndjson")
        with open(lines, "wb") as f:
            for i in range(20000):
                f.write(json.dumps({"v": 1, "id": i, "op": "whoami"}).encode() + b"\n")
        os.chmod(lines, 0o644)
        t0 = time.monotonic()
        res = json.loads(as_uid(uid, [PYTHON, P["flooder"], env.tool_path, lines]).stdout)
        # the first 20 refusals are answered (and audited), the next gets
        # one unaudited rate_limited line (it may overtake the others: a
        # client matches replies by id), and the connection is closed
        self.assertEqual(res["n"], 21, res)
        self.assertEqual(len(res["limited"]), 1, res)
        self.assertEqual(res["limited"][0]["id"], 20, res)
        self.assertIn("too many refused requests", res["limited"][0]["message"])
        self.assertEqual(res["codes"], ["rate_limited", "unauthenticated"])
        # another connection of that uid in the window: closed at its first refusal
        again = json_lines(as_uid(uid, [PYTHON, P["client"], env.tool_path, req("whoami"),
                                        req("whoami")]))
        self.assertEqual(again[0].get("error"), "rate_limited", again)
        self.assertEqual(again[1], {"closed": True})
        # the guard shows in status while the window lasts
        st = env.admin_request("status")["status"]["refusal_guard"]
        limited = [u for u in st["limited_uids"] if u["uid"] == uid]
        self.assertEqual(len(limited), 1, st)
        self.assertGreaterEqual(st["not_recorded_total"], 2)
        cli = env.run_cli("status")
        self.assertIn("refusal guard:", cli.stdout)
        self.assertIn("uid %d" % uid, cli.stdout)
        self.assertLess(time.monotonic() - t0, 6, "the test needs the window still open")
        # when the window ends: one summary record with the count
        summ = wait_for(lambda: [r for r in env.audit_records(event="refusals.limited")
                                 if r["peer"]["uid"] == uid], 15, step=0.5,
                        what="the summary record")
        self.assertEqual(len(summ), 1, summ)
        self.assertGreaterEqual(summ[0]["not_recorded"], 2)
        self.assertEqual(summ[0]["refused"], 20 + summ[0]["not_recorded"])
        mine = [r for r in env.audit_records(event="whoami") if r["peer"]["uid"] == uid]
        self.assertEqual(len(mine), 20)
        # a flood of 20,000 lines cost 21 records in all
        allmine = [r for r in env.audit_records() if r.get("peer", {}).get("uid") == uid]
        self.assertEqual(len(allmine), 21, [r["event"] for r in allmine])

    def test_7_tenant_name_is_another_tenants_id(self):
        # another customer (evil-co) names its tenant with contoso's id
        g, evil = env.new_tenant("evil-co")
        g["tenant_name"] = P["contoso_id"]
        # the customer-side tool refuses to seal it
        keys = json.loads(env.run_cli("keys", "--json").stdout)
        with open(os.path.join(env.base, "pub"), "w") as f:
            f.write(keys["seal_public_key"])
        secret = os.path.join(env.base, "evil.secret")
        with open(secret, "w") as f:
            f.write(g["client_secret"])
        for name in (P["contoso_id"], "contoso.onmicrosoft.com"):
            p = env.run_cli("grant", "seal", "--broker-key", os.path.join(env.base, "pub"),
                            "--tenant-id", evil, "--tenant-name", name, "--client-id",
                            g["client_id"], "--client-secret-file", secret, "--output", "-")
            self.assertNotEqual(p.returncode, 0, p.stdout)
            self.assertIn("form of a tenant id", p.stderr)
        # a hostile customer seals it with its own tool: the import refuses it
        path = os.path.join(env.base, "evil.json")
        with open(path, "w") as f:
            json.dump(g, f)
        sealed = subprocess.run([TESTTOOL, "seal-raw", env.vault_dir, path], check=True,
                                capture_output=True, text=True).stdout
        os.unlink(path)
        r = env.admin_request("grant.import", sealed=sealed)
        self.assertIs(r.get("ok"), False, r)
        self.assertIn("form of a tenant id", r["message"])
        # the principal limited to contoso's id gets nothing of evil-co
        tok, ten = json_lines(as_uid(65528, [PYTHON, P["client"], env.tool_path,
                                             req("token", tenant=evil), req("tenants")]))
        self.assertIn(tok.get("error"), ("unknown_tenant", "denied"),
                      {k: v for k, v in tok.items() if k != "access_token"})
        self.assertEqual([t["tenant_id"] for t in ten["tenants"]], [P["contoso_id"]], ten)

    def test_8_min_ttl_beyond_token_lifetime(self):
        # a principal without `rate` asks for more than the provider's
        # tokens ever last: that must not become a fetch per request
        g, tid = env.new_tenant("ttl-co")
        env.import_grant(g)
        calls = lambda: env.idp.counters()["token_calls"].get(tid, 0)   # noqa: E731
        replies = []
        with env.tool() as c:
            for _ in range(20):
                replies.append(c.request({"op": "token", "tenant": "ttl-co", "min_ttl": 7200}))
        self.assertLessEqual(calls(), 1)
        refused = [r for r in replies if not r.get("ok")]
        self.assertGreaterEqual(len(refused), 19)
        for r in refused:
            self.assertEqual(r["error"], "bad_request", r)
            self.assertIn("ask for at most", r["message"])
            self.assertGreater(r["max_min_ttl"], 3000)
            self.assertLess(r["max_min_ttl"], 3599)
        # what it says is served, from the cache
        r = env.token("ttl-co", min_ttl=refused[-1]["max_min_ttl"])
        self.assertTrue(r.get("ok"), {k: v for k, v in r.items() if k != "access_token"})
        self.assertEqual(r["cache"], "hit")
        self.assertLessEqual(calls(), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)

#!/usr/bin/env python3
"""test_witness_verify.py — `custody audit verify --witness WKEY [--quorum N]`
on a real broker's audit database and on a tenant export: no cosignature
(exit 6 naming the witness), a cosignature by another key, a future
timestamp, the quorum met (exit 0, naming who cosigned); usage errors
(a log key as --witness, --quorum above the keys). The cosignature comes
from `custody witness serve`, asked by the test's own client (tlog.py)
the way custodyd asks it; a second witness is played by the test itself.
"""

import os
import sqlite3
import subprocess
import sys
import time

if sys.executable != "/usr/bin/python3":
    try:
        import cryptography  # noqa: F401
    except ImportError:
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CUSTODY, Env, check  # noqa: E402
import tlog  # noqa: E402
from test_witness_serve import Server, post  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

SCHEMA = ("CREATE TABLE IF NOT EXISTS cosignatures(size INTEGER NOT NULL, witness TEXT NOT NULL,"
          " key_id TEXT NOT NULL, time INTEGER NOT NULL, line TEXT NOT NULL,"
          " received TEXT NOT NULL, PRIMARY KEY (size, witness, key_id))")


def store(db, size, name, kid, t, line):
    c = sqlite3.connect(db)
    c.execute(SCHEMA)
    c.execute("INSERT OR REPLACE INTO cosignatures VALUES (?,?,?,?,?,?)",
              (size, name, kid, t, line.rstrip("\n"), "2026-01-01T00:00:00Z"))
    c.commit()
    c.close()


def main():
    env = Env("custody-wverify")
    srv = None
    try:
        env.init_vault()
        env.start_idp()
        grant, tid = env.new_tenant("contoso")
        env.start_broker()
        env.import_grant(grant)
        for _ in range(3):
            check(env.token("contoso").get("ok"), "token")
        r = env.admin_request("audit.checkpoint")
        check(r.get("ok"), "checkpoint", r)
        check(env.stop_broker()[0] == 0, "broker stop")
        p = env.run_cli("keys", "--json")
        check(p.returncode == 0, "keys", p.stderr)
        import json
        logkey = json.loads(p.stdout)["audit_verifier_key"]

        con = sqlite3.connect(env.audit_db)
        size, note = con.execute(
            "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        con.close()
        body = note.split("\n\n")[0] + "\n"

        state = os.path.join(env.base, "witness")
        p = subprocess.run([CUSTODY, "witness", "init", "--state", state, "--name",
                            "witness.test/w1"], capture_output=True, text=True)
        wkey = p.stdout.strip()
        subprocess.run([CUSTODY, "witness", "add-log", "--state", state, "--key", logkey],
                       check=True, capture_output=True)
        w2 = Ed25519PrivateKey.generate()
        w2key = tlog.vkey("witness.test/w2", 4, tlog.raw_pub(w2))

        def verify(*extra):
            return env.run_cli("audit", "verify", "--db", env.audit_db, "--key", logkey, *extra)

        # usage: a log key is no witness key; a quorum above the keys
        p = verify("--witness", logkey)
        check(p.returncode == 2 and "0x04" in p.stderr, "log key as --witness: exit 2", p.stderr)
        p = verify("--witness", wkey, "--quorum", "2")
        check(p.returncode == 2, "--quorum above the keys: exit 2", p.stderr)
        # nothing cosigned yet: exit 6 naming the witness
        p = verify("--witness", wkey)
        check(p.returncode == 6 and "witness.test/w1: no cosignature" in p.stderr,
              "no cosignature: exit 6 naming the witness", p.stderr)

        # the witness cosigns the broker's checkpoint
        srv = Server(state)
        c = srv.conn()
        st, _, line = post(c, tlog.add_checkpoint_body(0, [], note))
        check(st == 200, "witness cosigns the broker's checkpoint", st, line)
        tlog.verify_cosignature(line.strip(), body, wkey)
        srv.stop()
        srv = None
        kid = tlog.parse_vkey(wkey)
        store(env.audit_db, size, "witness.test/w1",
              tlog.key_id("witness.test/w1", 4, kid[2]).hex(), 0, line)
        p = verify("--witness", wkey)
        check(p.returncode == 0 and "witnessed: the checkpoint at size %d carries 1 of 1" % size
              in p.stdout and "witness.test/w1" in p.stdout, "quorum 1 of 1", p.stdout, p.stderr)
        # two witnesses, quorum 2: w2 missing; quorum 1: fine
        p = verify("--witness", wkey, "--witness", w2key)
        check(p.returncode == 6 and "witness.test/w2: no cosignature" in p.stderr,
              "w2 missing: exit 6", p.stderr)
        p = verify("--witness", wkey, "--witness", w2key, "--quorum", "1")
        check(p.returncode == 0, "quorum 1 of 2", p.stderr)
        # w2's line signed with a timestamp an hour ahead: refused as future
        future = int(time.time()) + 3600
        w2id = tlog.key_id("witness.test/w2", 4, tlog.raw_pub(w2)).hex()
        store(env.audit_db, size, "witness.test/w2", w2id, future,
              tlog.cosign(body, "witness.test/w2", w2, future))
        p = verify("--witness", wkey, "--witness", w2key)
        check(p.returncode == 6 and "witness.test/w2: cosignature timestamp is in the future"
              in p.stderr, "future timestamp: exit 6", p.stderr)
        # a w2-named line signed by another key: does not verify
        w3 = Ed25519PrivateKey.generate()
        store(env.audit_db, size, "witness.test/w2", w2id, int(time.time()),
              tlog.cosign(body, "witness.test/w2", w3, int(time.time()),
                          kid=bytes.fromhex(w2id)))
        p = verify("--witness", wkey, "--witness", w2key)
        check(p.returncode == 6 and "witness.test/w2: cosignature does not verify" in p.stderr,
              "other key's signature: exit 6", p.stderr)
        # a proper w2 cosignature: 2 of 2
        now = int(time.time())
        store(env.audit_db, size, "witness.test/w2", w2id, now,
              tlog.cosign(body, "witness.test/w2", w2, now))
        p = verify("--witness", wkey, "--witness", w2key)
        check(p.returncode == 0 and "carries 2 of 2" in p.stdout, "2 of 2", p.stdout, p.stderr)

        # an export (broker not running: read from the file) carries the lines
        out = os.path.join(env.base, "export.json")
        p = env.run_cli("audit", "export", "--tenant", tid, "--output", out)
        check(p.returncode == 0, "export", p.stderr)
        p = env.run_cli("audit", "verify", "--export", out, "--key", logkey,
                        "--witness", wkey, "--witness", w2key)
        check(p.returncode == 0 and "carries 2 of 2" in p.stdout, "export verifies with witnesses",
              p.stdout, p.stderr)
        print("ok: audit verify --witness demands the quorum on database and export")
    finally:
        if srv is not None:
            srv.stop()
        env.close()


if __name__ == "__main__":
    main()

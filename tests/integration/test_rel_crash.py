#!/usr/bin/env python3
"""Crash safety of the audit store (DESIGN §7 "fail closed"): a token leaves
custodyd only after its audit record is durable, so a kill -9 at any moment
must never lose a record a client was told about.

Each round: 16 client threads ask for (cached) tokens as fast as they can,
custodyd is killed with SIGKILL at a random moment, then
  - every audit_seq a client received exists in audit.db (read with the
    sqlite3 module, read-only) and its body names the tenant and grant the
    client was given;
  - the store has no gap (seq 1..max, dense);
  - `custody audit verify` passes on the crashed file, offline;
  - after the restart the tree goes on: new records continue seq without a
    gap and verify again.
At least 5 kills per run. Prints the kills survived and the records checked.
"""

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CUSTODY, Client, Env, Fail, check, wait_for  # noqa: E402

THREADS = 16
KILLS = 6
TENANTS = 4


def db_rows(path):
    """{seq: body} of the whole store, opened read-only."""
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=30)
    try:
        return {seq: body for seq, body in con.execute("SELECT seq, body FROM events")}
    finally:
        con.close()


def verify(env, vkey, what):
    p = subprocess.run([CUSTODY, "--config", env.config_path, "audit", "verify",
                        "--db", env.audit_db, "--key", vkey],
                       capture_output=True, text=True, timeout=120)
    # Killed before its first checkpoint, the store has no signature over
    # any record: verify checks every hash and chain, then says INCOMPLETE
    # (exit 6) rather than "ok". Anything else is a failure.
    incomplete = (p.returncode == 6 and "INCOMPLETE" in p.stderr and
                  "is covered by a signed checkpoint" in p.stderr)
    check(p.returncode == 0 or incomplete,
          "custody audit verify failed %s (exit %d)" % (what, p.returncode),
          p.stdout[-2000:], p.stderr[-2000:])


def load(env, tenants, given, errors, stop):
    """One client: token requests until its connection dies or stop is set.
    given: list of (audit_seq, tenant_id, grant) the broker answered."""
    try:
        c = Client(env.tool_path, timeout=10)
    except OSError:
        return
    try:
        i = 0
        while not stop.is_set():
            tid, name = tenants[i % len(tenants)]
            i += 1
            r = c.request({"op": "token", "tenant": name, "purpose": "crash test"})
            if r.get("ok"):
                if not isinstance(r.get("audit_seq"), int) or not r.get("access_token"):
                    errors.append("ok reply without audit_seq or token: %r" %
                                  {k: v for k, v in r.items() if k != "access_token"})
                    return
                given.append((r["audit_seq"], tid, r["grant"]))
            elif r.get("error") not in ("internal",):
                errors.append("unexpected refusal: %r" % r)
                return
    except (OSError, Fail, ValueError):
        pass  # the broker was killed under us
    finally:
        c.close()


def main():
    env = Env("custody-rel-crash")
    checked = 0
    kills = 0
    try:
        env.init_vault()
        env.start_idp()
        env.config["audit"]["checkpoint_every"] = 500
        env.config["audit"]["checkpoint_interval_s"] = 1
        env.start_broker()
        with env.tool() as c:
            r = c.request({"op": "keys"})
        check(r.get("ok") is True, "keys failed", r)
        vkey = r["audit_verifier_key"]
        tenants = []
        for k in range(TENANTS):
            g, tid = env.new_tenant(name="crash%d" % k)
            env.import_grant(g)
            tenants.append((tid, "crash%d" % k))
        # warm the cache: the load below is cached tokens
        for tid, name in tenants:
            r = env.token(name)
            check(r.get("ok") is True, "first token failed", r)

        rng = random.Random(int(os.environ.get("CUSTODY_TEST_SEED", "0")) or None)
        last_max = 0
        for rnd in range(KILLS):
            given, errors = [], []
            stop = threading.Event()
            threads = [threading.Thread(target=load, args=(env, tenants, given, errors, stop))
                       for _ in range(THREADS)]
            for t in threads:
                t.start()
            # the kill lands at a random moment once the load is flowing
            # (on a loaded CI machine the threads may take a while to start)
            wait_for(lambda: len(given) >= THREADS or errors, 30, what="tokens flowing")
            time.sleep(rng.uniform(0.05, 1.2))
            pid = env.pid()
            env.broker.kill()           # SIGKILL: no chance to flush anything
            env.broker.wait(10)
            env.broker = None
            kills += 1
            stop.set()
            for t in threads:
                t.join(30)
                check(not t.is_alive(), "a client thread hung after the kill")
            check(not errors, "client errors in round %d" % rnd, errors[:5])
            check(len(given) > 0, "no token was issued in round %d before the kill" % rnd)

            rows = db_rows(env.audit_db)
            seqs = sorted(rows)
            check(seqs == list(range(1, len(seqs) + 1)),
                  "audit seq not dense after kill %d (pid %d)" % (rnd, pid),
                  seqs[:3], seqs[-3:], len(seqs))
            check(seqs[-1] >= last_max, "the store went backwards: %d < %d" % (seqs[-1], last_max))
            for seq, tid, grant in given:
                body = rows.get(seq)
                check(body is not None,
                      "audit_seq %d was given to a client but is not in the store after kill -9"
                      % seq)
                rec = json.loads(body)
                check(rec.get("seq") == seq and rec.get("tenant") == tid and
                      rec.get("grant") == grant,
                      "record %d does not match the token the client got" % seq,
                      (tid, grant), body[:400])
                checked += 1
            verify(env, vkey, "after kill %d" % (rnd + 1))

            # restart: the tree must go on from where it was
            before = seqs[-1]
            env.start_broker()
            r = env.token(tenants[0][1])
            check(r.get("ok") is True, "token after restart failed", r)
            rows = db_rows(env.audit_db)
            seqs = sorted(rows)
            check(seqs == list(range(1, len(seqs) + 1)), "gap after restart %d" % (rnd + 1))
            check(r["audit_seq"] > before, "seq did not continue after restart",
                  r["audit_seq"], before)
            last_max = seqs[-1]
            print("round %d: killed pid %d after %d tokens, store %d records, restart ok (seq %d)"
                  % (rnd + 1, pid, len(given), before, r["audit_seq"]), flush=True)

        rc, _ = env.stop_broker()
        check(rc == 0, "custodyd exit status %r at the end" % rc)
        verify(env, vkey, "after the final clean stop")
        rows = db_rows(env.audit_db)
        check(sorted(rows) == list(range(1, len(rows) + 1)), "gap at the end")
        print("crash: %d kills survived, %d client-given records checked, store %d records"
              % (kills, checked, len(rows)))
    except BaseException:
        sys.stderr.write(env.log_text()[-6000:])
        raise
    finally:
        env.close()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""test_witness_client.py — custodyd against `custody witness serve` over
HTTPS (DESIGN §11.1): every signed checkpoint reaches the witness with its
consistency proof and comes back cosigned, stored and shown; exports and
the database verify with --witness; and the rollback test: copy the state
dir, issue tokens, checkpoint, cosign, stop, restore the old copy, start —
the conflict is reported (log line), recorded (witness.conflict), shown in
`custody status` across a restart until an officer acknowledges it, and
tokens keep flowing the whole time.
"""

import json
import os
import shutil
import subprocess
import sys
import time

if sys.executable != "/usr/bin/python3":
    try:
        import cryptography  # noqa: F401
    except ImportError:
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CUSTODY, Env, check, wait_for  # noqa: E402
from test_witness_serve import Server  # noqa: E402


def status(env):
    r = env.admin_request("status")
    check(r.get("ok"), "status", r)
    return r["status"]


def main():
    env = Env("custody-wclient")
    srv = None
    try:
        env.init_vault()
        env.start_idp()
        grant, tid = env.new_tenant("contoso")
        env.write_config()
        p = env.run_cli("keys", "--json")
        check(p.returncode == 0, "keys", p.stderr)
        logkey = json.loads(p.stdout)["audit_verifier_key"]

        wstate = os.path.join(env.base, "witness")
        p = subprocess.run([CUSTODY, "witness", "init", "--state", wstate, "--name",
                            "witness.test/w1"], capture_output=True, text=True, check=True)
        wkey = p.stdout.strip()
        subprocess.run([CUSTODY, "witness", "add-log", "--state", wstate, "--key", logkey],
                       check=True, capture_output=True)
        # over HTTPS, the witness's certificate checked against ca_file
        from idp import make_certs
        ca, cert, key = make_certs(os.path.join(env.base, "wtls"))
        srv = Server(wstate, tls=(cert, key))
        env.config["audit"].update({
            "checkpoint_every": 5, "checkpoint_interval_s": 1,
            "witnesses": [{"name": "w1", "key": wkey, "ca_file": ca,
                           "url": "https://127.0.0.1:%d/add-checkpoint" % srv.port}]})
        # a config error names the key's path, and custodyd does not start
        good = json.loads(json.dumps(env.config))
        env.config["audit"]["witnesses"][0]["key"] = logkey
        check(env.start_broker(expect_fail=True) != 0, "bad witness key: no start")
        check("audit.witnesses[0].key" in env.log_text(since_start=True),
              "the error names audit.witnesses[0].key", env.log_text(since_start=True))
        env.config = json.loads(json.dumps(good))
        env.config["audit"]["witness_quorum"] = 2
        check(env.start_broker(expect_fail=True) != 0, "quorum above the witnesses: no start")
        check("audit.witness_quorum" in env.log_text(since_start=True), "names the quorum",
              env.log_text(since_start=True))
        env.config = good
        env.start_broker()
        env.import_grant(grant)
        for _ in range(12):
            check(env.token("contoso").get("ok"), "token")

        def cosigned():
            s = status(env)
            w = s["witnesses"][0]
            cp = s["audit"]["checkpoint_size"]
            return cp > 0 and w["cosigned_size"] == cp and w.get("last_error") is None and s
        s = wait_for(cosigned, 20, 0.2, "the witness to cosign the newest checkpoint")
        first = s["witnesses"][0]["cosigned_size"]
        check(s["witness_conflict"] is None, "no conflict", s)
        # more records: the next checkpoint goes with a consistency proof
        for _ in range(8):
            check(env.token("contoso").get("ok"), "token")
        s = wait_for(lambda: (lambda s: s["witnesses"][0]["cosigned_size"] > first and s)(
            status(env)) and cosigned(), 20, 0.2, "a consistent later checkpoint cosigned")
        cosigned_size = s["witnesses"][0]["cosigned_size"]
        p = subprocess.run([CUSTODY, "witness", "status", "--state", wstate, "--json"],
                           capture_output=True, text=True)
        ws = json.loads(p.stdout)
        check(ws["logs"][0]["size"] >= cosigned_size, "the witness holds our size", ws)
        log = env.log_text()
        check("witness w1 cosigned the checkpoint at size" in log, "log line per cosignature",
              log)

        # export (through the broker) ends at a witnessed checkpoint and
        # verifies with --witness; so does the database
        out = os.path.join(env.base, "export.json")
        p = env.run_cli("audit", "export", "--tenant", tid, "--output", out)
        check(p.returncode == 0, "export", p.stderr)
        p = env.run_cli("audit", "verify", "--export", out, "--key", logkey, "--witness", wkey)
        check(p.returncode == 0 and "carries 1 of 1" in p.stdout, "export verifies --witness",
              p.stdout, p.stderr)
        p = env.run_cli("audit", "verify", "--key", logkey, "--witness", wkey)
        check(p.returncode == 0, "database verifies --witness", p.stdout, p.stderr)

        # ---- the rollback test
        check(env.stop_broker()[0] == 0, "stop")
        old = os.path.join(env.base, "state-old")
        shutil.copytree(env.state_dir, old)
        env.start_broker()
        for _ in range(30):
            check(env.token("contoso").get("ok"), "token")
        r = env.admin_request("audit.checkpoint")
        check(r.get("ok"), "checkpoint", r)
        wait_for(cosigned, 20, 0.2, "the witness to cosign the grown log")
        high = status(env)["witnesses"][0]["cosigned_size"]
        check(env.stop_broker()[0] == 0, "stop")
        shutil.rmtree(env.state_dir)
        shutil.copytree(old, env.state_dir)
        env.start_broker()
        t0 = time.monotonic()
        s = wait_for(lambda: (lambda s: s["witness_conflict"] and s)(status(env)), 20, 0.2,
                     "the conflict to show")
        conflict = s["witness_conflict"]
        check(conflict["witness"] == "w1" and conflict["witness_size"] == high,
              "the conflict names the witness and its size", conflict)
        print("rollback: conflict shown %.1f s after the restart: %s"
              % (time.monotonic() - t0, json.dumps(conflict, sort_keys=True)))
        log = env.log_text(since_start=True)
        check("WITNESS CONFLICT" in log, "a log line", log)
        print("rollback: log: " + [ln for ln in log.splitlines() if "WITNESS CONFLICT" in ln][0])
        recs = wait_for(lambda: env.audit_records(event="witness.conflict"), 10, 0.2,
                        "the witness.conflict record")
        check(recs[0]["outcome"] == "alarm" and recs[0]["witness"] == "w1", "record", recs)
        print("rollback: audit record: " + json.dumps(recs[0], sort_keys=True))
        p = env.run_cli("status")
        check("WITNESS CONFLICT" in p.stdout, "custody status shows it", p.stdout)
        print("rollback: custody status: " + [ln for ln in p.stdout.splitlines()
                                              if "WITNESS CONFLICT" in ln][0])
        # tokens are unaffected
        for _ in range(10):
            check(env.token("contoso").get("ok"), "token during the conflict")
        # it stays across a restart, and nothing re-sends from 0
        check(env.stop_broker()[0] == 0, "stop")
        env.start_broker()
        check(status(env)["witness_conflict"] is not None, "the alarm survives a restart")
        time.sleep(2.5)
        check(len(env.audit_records(event="witness.conflict")) == 1,
              "one record, not one per tick")
        # an officer acknowledges: audited; asked again, the witness still
        # refuses, so the alarm comes back (nothing is "fixed" quietly)
        p = env.run_cli("audit", "ack-conflict")
        check(p.returncode == 2, "ack-conflict without --reason: usage", p.stderr)
        p = env.run_cli("audit", "ack-conflict", "--reason", "restored from backup, see INC-7")
        check(p.returncode == 0 and "acknowledged the witness conflict of w1" in p.stdout,
              "ack", p.stdout, p.stderr)
        acks = env.audit_records(event="admin.audit.ack_conflict")
        check(acks and acks[-1]["reason"] == "restored from backup, see INC-7", "ack record",
              acks)
        wait_for(lambda: status(env)["witness_conflict"] is not None, 20, 0.2,
                 "the conflict to come back after the ack")
        p = env.run_cli("audit", "ack-conflict", "--reason", "x")
        check(p.returncode == 0, "second ack", p.stderr)
        p = env.run_cli("audit", "ack-conflict", "--reason", "again")
        check(p.returncode in (0, 1), "ack with nothing shown", p.stderr)
        print("ok: custodyd and custody witness serve: cosigned, exported, verified; "
              "rollback detected, recorded, shown until acknowledged")
    finally:
        if srv is not None:
            srv.stop()
        env.close()


if __name__ == "__main__":
    main()

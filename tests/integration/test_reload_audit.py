#!/usr/bin/env python3
"""test_reload_audit.py — the audit settings (witnesses, shipping sinks,
checkpoints) apply at custodyd's start only, and `custody reload` says so:
a reload that adds a sink and changes the witnesses names each change as
not applied (its reply, the log, the reload's audit record), and names it
again at the next reload while it still waits; the running broker keeps
shipping to the old sinks only; a restart applies them — the new sink gets
every record from the first, the old one resumes from its cursor in
audit.db; a sink removed from the file keeps getting records until the
next restart, then stops.
"""

import json
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CUSTODY, Env, check, free_port, wait_for  # noqa: E402


def witness_key(env, name):
    p = subprocess.run([CUSTODY, "witness", "init", "--state", os.path.join(env.base, name),
                        "--name", "witness.test/" + name],
                       capture_output=True, text=True, check=True)
    return p.stdout.strip()


def seqs(path):
    """The record seqs in a file sink, in order (checkpoints left out)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(ln)["seq"] for ln in f if '"seq"' in ln]
    except FileNotFoundError:
        return []


def caught_up(env):
    s = env.admin_request("status")["status"]
    seq = s["audit"]["seq"]
    return all(k["shipped_through"] == seq for k in s["ship"]) and s


def reload(env):
    p = env.run_cli("reload")
    check(p.returncode == 0 and p.stdout.startswith("custodyd reloaded its config\n"),
          "custody reload", p.stdout, p.stderr)
    return [ln[len("not applied until custodyd restarts: "):] for ln in p.stdout.splitlines()
            if ln.startswith("not applied until custodyd restarts: ")]


def main():
    env = Env("custody-reload-audit")
    try:
        env.init_vault()
        env.start_idp()
        grant, tid = env.new_tenant("contoso")
        sink_a = os.path.join(env.base, "a.ndjson")
        sink_b = os.path.join(env.base, "b.ndjson")
        k1, k2 = witness_key(env, "w1"), witness_key(env, "w2")
        dead = "http://127.0.0.1:%d/add-checkpoint" % free_port()   # nobody answers
        env.config["audit"].update({
            "witnesses": [{"name": "w1", "key": k1, "url": dead}],
            "ship": [{"type": "file", "path": sink_a}]})
        env.start_broker()
        env.import_grant(grant)
        check(env.token("contoso").get("ok"), "token")

        # a reload with no change names nothing
        check(reload(env) == [], "an unchanged config: nothing waits for a restart")

        # add sink b and witness w2 (the quorum, all by default, becomes 2), move
        # w1, another checkpoint_every
        moved = "http://127.0.0.1:%d/w1/add-checkpoint" % free_port()
        env.config["audit"].update({
            "checkpoint_every": 7,
            "witnesses": [{"name": "w1", "key": k1, "url": moved},
                          {"name": "w2", "key": k2, "url": dead}],
            "ship": [{"type": "file", "path": sink_a}, {"type": "file", "path": sink_b}]})
        env.write_config()
        want = ["audit.checkpoint_every (1000 -> 7)",
                "audit.witnesses (w1 -> w1, w2)",
                "audit.witnesses[w1].url (%s -> %s)" % (dead, moved),
                "audit.witness_quorum (1 -> 2)",
                "audit.ship (file %s -> file %s, file %s)" % (sink_a, sink_a, sink_b)]
        got = reload(env)
        check(got == want, "reload names every audit change as not applied", got, want)
        log = env.log_text(since_start=True)
        check("reload: audit.ship changed (file %s -> " % sink_a in log and
              "takes effect only at the next start" in log, "and logs it", log)
        recs = [r for r in env.audit_records(event="admin.reload") if r.get("not_applied")]
        check(recs and recs[-1]["not_applied"] == want, "and records it in the audit",
              recs[-1:] if recs else None)
        # still waiting: the next reload names it again
        check(reload(env) == want, "the next reload names what still waits")

        # the running broker ships as it started: sink a only, witness w1 at its old URL
        for _ in range(5):
            check(env.token("contoso").get("ok"), "token")
        s = wait_for(lambda: caught_up(env), 20, 0.1, "sink a to catch up")
        check([k["name"] for k in s["ship"]] == ["file " + sink_a], "one sink runs", s["ship"])
        check([(w["name"], w["url"]) for w in s["witnesses"]] == [("w1", dead)],
              "the witnesses that run", s["witnesses"])
        upto = s["audit"]["seq"]
        check(seqs(sink_a) == list(range(1, upto + 1)), "sink a has every record",
              seqs(sink_a), upto)
        check(not os.path.exists(sink_b), "sink b gets nothing before a restart")

        # a restart applies them: b from the first record, a from its cursor
        check(env.stop_broker()[0] == 0, "stop")
        env.start_broker()
        check(reload(env) == [], "after the restart nothing waits")
        check(env.token("contoso").get("ok"), "token")
        s = wait_for(lambda: caught_up(env), 20, 0.1, "both sinks to catch up")
        upto = s["audit"]["seq"]
        check(sorted(k["name"] for k in s["ship"]) == sorted(["file " + sink_a, "file " + sink_b]),
              "two sinks run", s["ship"])
        check(sorted(w["name"] for w in s["witnesses"]) == ["w1", "w2"] and
              [w["url"] for w in s["witnesses"] if w["name"] == "w1"] == [moved],
              "the new witnesses run", s["witnesses"])
        check(seqs(sink_b) == list(range(1, upto + 1)), "sink b gets every record from seq 1",
              seqs(sink_b), upto)
        check(seqs(sink_a) == list(range(1, upto + 1)),
              "sink a resumed from its cursor (no record twice, none missing)", seqs(sink_a), upto)

        # remove sink b: it keeps getting records until the next restart
        env.config["audit"]["ship"] = [{"type": "file", "path": sink_a}]
        env.write_config()
        env.signal_broker(signal.SIGHUP)
        wait_for(lambda: "reload: audit.ship changed (file %s, file %s -> file %s)"
                 % (sink_a, sink_b, sink_a) in env.log_text(since_start=True), 10, 0.1,
                 "the SIGHUP's log line naming the sink that waits for a restart")
        check(env.token("contoso").get("ok"), "token")
        s = wait_for(lambda: caught_up(env), 20, 0.1, "both sinks to catch up")
        upto = s["audit"]["seq"]
        check(seqs(sink_b)[-1] == upto, "the removed sink still ships until a restart",
              seqs(sink_b)[-3:], upto)
        check(env.stop_broker()[0] == 0, "stop")
        before = len(seqs(sink_b))
        env.start_broker()
        check(env.token("contoso").get("ok"), "token")
        s = wait_for(lambda: caught_up(env), 20, 0.1, "sink a to catch up")
        check([k["name"] for k in s["ship"]] == ["file " + sink_a], "one sink again", s["ship"])
        check(seqs(sink_a)[-1] == s["audit"]["seq"], "sink a ships", seqs(sink_a)[-3:])
        check(len(seqs(sink_b)) == before, "after the restart the removed sink gets nothing")
        check(env.stop_broker()[0] == 0, "stop")
        print("ok: test_reload_audit")
    finally:
        env.close()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""test_audit_honest.py — the audit trail tells the truth about itself
(issue 12 items 6 and 9, issue 13 items 1-5), against a real custodyd, the
real CLI and a real store:

- a store rewritten as an attacker did (triggers dropped, 18 records
  deleted, the rest renumbered and re-chained, the checkpoints >= size 6
  deleted) does not verify; a checkpoint the user kept (--checkpoint)
  shows the rewrite even after the broker signed the rewritten log;
- verify and status say how many records the newest checkpoint leaves
  uncovered;
- exports state their window and first tenant_seq; one missing the
  tenant's oldest records fails; `audit export` never writes through a
  symlink;
- a key that is not the log's is its own error, not "tampering";
- the broker refuses to start when audit.origin changed;
- --from-checkpoint takes the previous export; --save-checkpoint writes
  the verified note.
"""

import base64
import hashlib
import json
import os
import re
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Env, check, wait_for  # noqa: E402

ORIGIN = "custody.test/audit"


def cli(env, *args, want=0):
    p = env.run_cli(*args, timeout=120)
    check(p.returncode == want, "custody %s: exit %s, expected %s" % (" ".join(args),
          p.returncode, want), p.stdout[-2000:], p.stderr[-2000:])
    if want != 0:
        lines = p.stderr.strip().splitlines()
        check(len(lines) == 1 and lines[0].startswith("custody: "),
              "a failure is one 'custody: ...' line", p.stderr)
    return p


def stop(env):
    rc, _ = env.stop_broker()
    check(rc == 0, "custodyd exit status %r" % rc, env.log_text()[-1500:])


def vkey_of(name, pk):
    kid = hashlib.sha256(name.encode() + b"\n\x01" + pk).digest()[:4]
    return "%s+%s+%s" % (name, kid.hex(), base64.b64encode(b"\x01" + pk).decode())


def canon(o):
    return json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def rewrite_store(path, drop_from, drop_count, cut_checkpoints_at):
    """What the attacker did: drop the triggers, delete records, renumber
    and re-chain the rest (bodies, leaves, tenant chains), rewind the
    stored tree row, delete the checkpoints >= cut_checkpoints_at."""
    con = sqlite3.connect(path)
    try:
        con.executescript("DROP TRIGGER IF EXISTS events_no_update;"
                          "DROP TRIGGER IF EXISTS events_no_delete;"
                          "DROP TRIGGER IF EXISTS checkpoints_no_update;"
                          "DROP TRIGGER IF EXISTS checkpoints_no_delete;")
        rows = con.execute("SELECT seq, time, event, outcome, tenant, principal, body "
                           "FROM events ORDER BY seq").fetchall()
        keep = [r for r in rows if not drop_from <= r[0] < drop_from + drop_count]
        con.execute("DELETE FROM events")
        heads = {}
        for n, (seq, t, ev, out, tenant, principal, body) in enumerate(keep, 1):
            b = json.loads(body)
            b["seq"] = n
            if tenant is not None:
                ts, prev = heads.get(tenant, (0, None))
                b["tenant_seq"] = ts + 1
                b["tenant_prev"] = prev
            nb = canon(b)
            leaf = hashlib.sha256(b"\x00" + nb.encode()).digest()
            if tenant is not None:
                heads[tenant] = (ts + 1, leaf.hex())
            con.execute("INSERT INTO events (seq, time, event, outcome, tenant, principal, body,"
                        " leaf) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (n, t, ev, out, tenant, principal, nb, leaf))
        con.execute("DELETE FROM checkpoints WHERE size >= ?", (cut_checkpoints_at,))
        con.execute("DELETE FROM tenants")
        con.execute("UPDATE tree SET size = 0, nodes = x''")
        con.commit()
        return len(rows), len(keep)
    finally:
        con.close()


def fill(env, tenants, n, what="job"):
    for i in range(n):
        r = env.token(tenants[i % len(tenants)], purpose="%s %d" % (what, i))
        check(r.get("ok") is True, "token failed", r)


def test_rewritten_store(env, vkey):
    """Issue 12 item 6, exactly as reported."""
    kept = os.path.join(env.base, "kept.note")
    p = cli(env, "audit", "verify", "--db", env.audit_db, "--key", vkey,
            "--save-checkpoint", kept)
    check(p.stdout.startswith("ok: ") and "leaves 0 records uncovered" in p.stdout,
          "the intact stopped store verifies, fully covered", p.stdout)
    with open(kept) as f:
        note = f.read()
    check(note.startswith(ORIGIN + "\n") and "\n\n\u2014 " + ORIGIN + " " in note,
          "--save-checkpoint writes the signed note", note)
    total, left = rewrite_store(env.audit_db, 40, 18, 6)
    check(total - left == 18, "18 records deleted", total, left)
    p = cli(env, "audit", "verify", "--db", env.audit_db, "--key", vkey, want=6)
    check("INCOMPLETE" in p.stderr and
          "none of its %d records is covered by a signed checkpoint" % left in p.stderr,
          "a store no signed checkpoint covers is not verified", p.stderr)
    check("ok" not in p.stdout, "nothing on stdout reads as verified", p.stdout)
    p = cli(env, "audit", "verify", "--db", env.audit_db, "--key", vkey,
            "--checkpoint", kept, want=6)
    check("FAILED" in p.stderr and "the store ends at record %d, before the checkpoint you "
          "trust (size %d)" % (left, total) in p.stderr, "the kept checkpoint shows it", p.stderr)
    # The broker, started on the rewritten store, signs it: the log's own
    # checkpoints now cover the rewrite, the one the user kept does not.
    env.start_broker()
    fill(env, ["contoso"], 3 * 18)
    stop(env)
    p = cli(env, "audit", "verify", "--db", env.audit_db, "--key", vkey)
    check(p.stdout.startswith("ok: "), "the re-signed log verifies on its own", p.stdout)
    p = cli(env, "audit", "verify", "--db", env.audit_db, "--key", vkey,
            "--checkpoint", kept, want=6)
    check("the checkpoint you trust (size %d) does not match this log" % total in p.stderr,
          "the kept checkpoint shows the rewrite", p.stderr)
    check("keep the file as evidence" in p.stderr, "that is tampering", p.stderr)


def test_uncovered_tail(env, vkey):
    """verify and status say how many records are not under a signature."""
    env.config["audit"]["checkpoint_every"] = 100000
    env.config["audit"]["checkpoint_interval_s"] = 3600
    env.start_broker()
    st = json.loads(cli(env, "status", "--json").stdout)
    fill(env, ["contoso"], 5)
    st = json.loads(cli(env, "status", "--json").stdout)["audit"]
    check(st["uncovered"] >= 5 and st["checkpoint_size"] + st["uncovered"] == st["seq"],
          "status: uncovered records and the checkpoint size", st)
    p = cli(env, "status")
    m = re.search(r"audit: (\d+) records, writable; newest signed checkpoint at size (\d+) "
                  r"leaves (\d+) records uncovered", p.stdout)
    check(m and int(m.group(2)) == st["checkpoint_size"] and
          int(m.group(2)) + int(m.group(3)) == int(m.group(1)), "status says it", p.stdout)
    p = cli(env, "audit", "verify", "--key", vkey)
    check(p.stdout.startswith("partly verified: ") and
          "records 1..%d of " % st["checkpoint_size"] in p.stdout and
          "NOT covered by any signed checkpoint" in p.stdout,
          "verify of the live store names the uncovered tail", p.stdout)
    m = p.stdout.split("records from seq ")[1].split()[0]
    check(int(m) == st["checkpoint_size"] + 1, "the tail starts after the checkpoint", p.stdout)
    stop(env)
    env.config["audit"]["checkpoint_every"] = 1000
    env.config["audit"]["checkpoint_interval_s"] = 60


def test_wrong_key(env, vkey):
    """Issue 13 item 3."""
    pk = os.urandom(32)
    for other in (vkey_of(ORIGIN, pk), vkey_of("other.example/audit", pk)):
        kid = other.split("+")[1]
        for what in (["--db", env.audit_db], ["--export", env.export_path]):
            p = cli(env, "audit", "verify", "--key", other, *what, want=6)
            check("this key is not the key of this log: key id %s" % kid in p.stderr and
                  "log signed by %s (%s)" % (vkey.split("+")[1], ORIGIN) in p.stderr,
                  "a wrong key is named as such", p.stderr)
            check("evidence" not in p.stderr and "FAILED" not in p.stderr,
                  "a wrong key is not tampering", p.stderr)


def test_exports(env, vkey):
    """Issue 12 item 9 and issue 13 item 5."""
    exp = env.export_path
    with open(exp) as f:
        doc = json.load(f)
    check(doc["since"] is None and doc["until"] is None and doc["first_tenant_seq"] == 1,
          "the export states its window and first tenant_seq", {k: doc.get(k) for k in
                                                               ("since", "until",
                                                                "first_tenant_seq")})
    # the tenant's two oldest records cut out, the claim adjusted to fit
    cut = dict(doc)
    cut["records"] = doc["records"][2:]
    cut["first_tenant_seq"] = 3
    bad = os.path.join(env.base, "cut.json")
    with open(bad, "w") as f:
        json.dump(cut, f)
    p = cli(env, "audit", "verify", "--export", bad, "--key", vkey, want=6)
    check("its oldest records are missing" in p.stderr, "an export missing the oldest records "
          "fails", p.stderr)
    # a window: the record before it anchors the start
    since = json.loads(doc["records"][3]["body"])["time"]
    win = os.path.join(env.base, "window.json")
    cli(env, "audit", "export", "--tenant", "contoso", "--since", since, "--output", win)
    p = cli(env, "audit", "verify", "--export", win, "--key", vkey)
    check("tenant_seq 4.." in p.stdout and "from %s" % since[:19] in p.stdout,
          "verify prints the window", p.stdout)
    with open(win) as f:
        wdoc = json.load(f)
    check(wdoc["previous"] is not None and wdoc["first_tenant_seq"] == 4, "window anchored",
          wdoc["previous"], wdoc["first_tenant_seq"])
    # ... and with --until, the record after it anchors the end
    until = json.loads(doc["records"][5]["body"])["time"]
    end = os.path.join(env.base, "window-end.json")
    cli(env, "audit", "export", "--tenant", "contoso", "--until", until, "--output", end)
    with open(end) as f:
        edoc = json.load(f)
    check(edoc["next"] is not None and edoc["last_tenant_seq"] == 6 and
          json.loads(edoc["next"]["body"])["tenant_seq"] == 7, "window end anchored",
          edoc["last_tenant_seq"], edoc["next"])
    cli(env, "audit", "verify", "--export", end, "--key", vkey)
    edoc["records"] = edoc["records"][:-1]
    edoc["last_tenant_seq"] = 5
    with open(end, "w") as f:
        json.dump(edoc, f)
    p = cli(env, "audit", "verify", "--export", end, "--key", vkey, want=6)
    check("has tenant_seq 7, expected 6" in p.stderr, "records cut at the end show", p.stderr)
    wdoc["records"] = wdoc["records"][1:]
    wdoc["previous"] = None
    wdoc["first_tenant_seq"] = 5
    with open(bad, "w") as f:
        json.dump(wdoc, f)
    p = cli(env, "audit", "verify", "--export", bad, "--key", vkey, want=6)
    check("without the record before its window" in p.stderr, "a cut window fails", p.stderr)

    # --save-checkpoint, then --from-checkpoint with the note or the export itself
    note = os.path.join(env.base, "export.note")
    p = cli(env, "audit", "verify", "--export", exp, "--key", vkey, "--save-checkpoint", note)
    check("saved the checkpoint at size %d" % doc["tree_size"] in p.stdout, "note saved",
          p.stdout)
    with open(note) as f:
        check(f.read() == doc["checkpoint"], "the saved note is the export's checkpoint")
    fill(env, ["contoso", "fabrikam"], 4)
    for prev in (exp, note):
        nxt = os.path.join(env.base, "next.json")
        cli(env, "audit", "export", "--tenant", "contoso", "--from-checkpoint", prev,
            "--output", nxt)
        with open(nxt) as f:
            ndoc = json.load(f)
        check(ndoc["consistency"]["from_size"] == doc["tree_size"] and
              ndoc["tree_size"] > doc["tree_size"], "a consistency proof from the previous",
              ndoc["consistency"]["from_size"], ndoc["tree_size"])
        p = cli(env, "audit", "verify", "--export", nxt, "--key", vkey, "--checkpoint", prev)
        check("matches the checkpoint you trust (size %d)" % doc["tree_size"] in p.stdout,
              "the next export is checked against the kept one", p.stdout)
        os.unlink(nxt)

    # never through a symlink, with the broker running and not
    victim = os.path.join(env.base, "victim")
    with open(victim, "w") as f:
        f.write("untouched\n")
    link = os.path.join(env.base, "link.json")
    for running in (True, False):
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(victim, link)
        if not running:
            stop(env)
        cli(env, "audit", "export", "--tenant", "contoso", "--output", link)
        with open(victim) as f:
            check(f.read() == "untouched\n", "export wrote through a symlink")
        check(not os.path.islink(link) and json.load(open(link))["tenant"],
              "the export replaced the link with a file")
        left = [n for n in os.listdir(env.base) if ".tmp." in n]
        check(not left, "no temp file left", left)


def test_origin_fixed(env):
    """Issue 13 item 2."""
    env.config["audit"]["origin"] = "renamed.test/audit"
    rc = env.start_broker(expect_fail=True)
    check(rc != 0, "custodyd must refuse a changed audit.origin", rc)
    log = env.log_text(since_start=True)
    check(ORIGIN in log and "renamed.test/audit" in log and "fixed at init" in log,
          "the refusal names both origins", log[-2000:])
    env.config["audit"]["origin"] = ORIGIN
    env.start_broker()
    stop(env)


def listing(env, *args, want=0):
    p = cli(env, "audit", "list", "--format", "json", *args, want=want)
    return [json.loads(x) for x in p.stdout.splitlines()], p


def test_names(env, tids, online):
    """Issue 13 item 1: a tenant by name lists the same records as by id,
    with the broker running or not; unknown tenants, events and outcomes
    are errors naming what is accepted."""
    by_id, _ = listing(env, "--tenant", tids["contoso"])
    check(len(by_id) > 20, "contoso has records", len(by_id))
    for name in ("contoso", "CONTOSO"):
        by_name, _ = listing(env, "--tenant", name)
        check([r["seq"] for r in by_name] == [r["seq"] for r in by_id],
              "--tenant %s lists contoso's records (broker %s)" %
              (name, "running" if online else "stopped"), len(by_name), len(by_id))
    _, p = listing(env, "--tenant", "nosuch", want=3)
    check("unknown tenant 'nosuch'" in p.stderr and "contoso (%s)" % tids["contoso"] in p.stderr,
          "an unknown tenant names the known ones", p.stderr)
    check(p.stdout == "", "no header for an error", p.stdout)
    _, p = listing(env, "--event", "tokens", want=1)
    check("unknown event 'tokens'" in p.stderr and "token" in p.stderr and
          "admin.grant.import" in p.stderr, "an unknown event names the events", p.stderr)
    _, p = listing(env, "--outcome", "refused", want=1)
    check("unknown outcome 'refused'" in p.stderr and "denied" in p.stderr,
          "an unknown outcome names the outcomes", p.stderr)
    ok, _ = listing(env, "--event", "token", "--outcome", "ok", "--tenant", "fabrikam")
    check(ok and all(r["tenant"] == tids["fabrikam"] and r["event"] == "token" for r in ok),
          "known values filter", len(ok))
    out = os.path.join(env.base, "byname.json")
    cli(env, "audit", "export", "--tenant", "contoso", "--output", out)
    with open(out) as f:
        doc = json.load(f)
    check(doc["tenant"] == tids["contoso"] and len(doc["records"]) == len(by_id),
          "export by name exports the tenant's records", doc["tenant"], len(doc["records"]))
    cli(env, "audit", "export", "--tenant", "nosuch", "--output", out, want=3)


def test_follow(env):
    """Issue 13 item 4: tail --follow polls by sequence with one record when
    following starts and one when it stops, none per poll; it survives a
    broker restart by reconnecting."""
    import subprocess
    import threading
    import time
    from harness import CUSTODY
    env.start_broker()
    lines = []
    f = subprocess.Popen([CUSTODY, "--config", env.config_path, "audit", "tail", "--follow",
                          "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)

    def reader():
        for line in f.stdout:
            lines.append(line)
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        wait_for(lambda: len(lines) >= 10, 10, what="the last ten records")
        fill(env, ["contoso"], 2)
        time.sleep(2.0)       # eight polls
        fill(env, ["contoso"], 1)
        wait_for(lambda: sum('"event":"token"' in x for x in lines[10:]) >= 3, 10,
                 what="the follower to print the new tokens")
        queries = [r for r in env.audit_records(event="admin.audit.query")
                   if r.get("follow")]
        check([r["follow"] for r in queries] == ["start"],
              "one record when following starts, none per poll", queries)
        log = env.log_text(since_start=True)
        check(log.count("admin.audit.query") <= 3, "no log line per poll", log[-1500:])
        # a restart: the follower reconnects and goes on by sequence
        stop(env)
        env.start_broker()
        fill(env, ["fabrikam"], 2, "after restart")
        wait_for(lambda: sum("after restart 1" in x for x in lines) >= 1, 15,
                 what="the follower to print records after the restart")
        seqs = [json.loads(x)["seq"] for x in lines]
        check(seqs == sorted(set(seqs)), "no record twice, none out of order", seqs[-20:])
        check(any('"event":"start"' in x for x in lines), "the broker's start record is seen")
    finally:
        f.terminate()
        f.wait(10)
    time.sleep(0.5)
    recs = [r for r in env.audit_records(event="admin.audit.query") if r.get("follow")]
    follows = [r["follow"] for r in recs]
    check(follows.count("start") == 2 and follows.count("stop") == 2,
          "a start and a stop per connection that followed", recs)
    err = f.stderr.read()
    check("reconnected" in err, "the follower says it reconnected", err)
    stop(env)


def main():
    with Env("custody-honest") as env:
        env.init_vault()
        env.start_idp()
        env.config["audit"]["checkpoint_every"] = 50
        env.config["audit"]["checkpoint_interval_s"] = 3600
        env.start_broker()
        tids = {}
        for name in ("contoso", "fabrikam"):
            g, tids[name] = env.new_tenant(name)
            env.import_grant(g)
        vkey = json.loads(cli(env, "keys", "--json").stdout)["audit_verifier_key"]
        fill(env, ["contoso", "fabrikam"], 160)
        env.export_path = os.path.join(env.base, "contoso.json")
        cli(env, "audit", "export", "--tenant", "contoso", "--output", env.export_path)
        test_names(env, tids, True)
        test_exports(env, vkey)
        test_names(env, tids, False)
        if env.broker is not None:
            stop(env)
        test_wrong_key(env, vkey)
        test_origin_fixed(env)
        test_uncovered_tail(env, vkey)
        test_follow(env)
        test_rewritten_store(env, vkey)
        # a store from before import records carried the name: offline, the
        # vault (its master key is readable here) resolves it
        con = sqlite3.connect(env.audit_db)
        con.execute("DROP TRIGGER IF EXISTS events_no_update")
        con.execute("UPDATE events SET body = json_remove(body, '$.tenant_name')"
                    " WHERE event = 'admin.grant.import'")
        con.commit()
        con.close()
        by_name, _ = listing(env, "--tenant", "contoso")
        check(by_name and all(r["tenant"] == tids["contoso"] for r in by_name),
              "offline, the vault resolves a name the store does not hold", len(by_name))
    print("ok: test_audit_honest")


if __name__ == "__main__":
    main()

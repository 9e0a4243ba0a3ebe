#!/usr/bin/env python3
"""bench-smoke: run tests/bench/run.py --quick and check what it produced.

Asserts the driver ran end to end: the markdown table was written with every
metric row, every load point that ran had replies and no failed reply (the
load generator checks each reply line is JSON with "ok":true), and every
process the driver started is gone. Figures are not checked: a smoke run's
numbers mean nothing on a shared machine; but the durable echo floor
(echo_server --store) must have committed a row for every reply it sent,
in at least one commit and no more commits than rows.
"""
import json
import os
import subprocess
import sys
import tempfile

BUILD = os.environ.get("CUSTODY_BUILD_DIR")
SOURCE = os.environ.get("CUSTODY_SOURCE_DIR") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))


def processes_mentioning(text):
    """(pid, cmdline) of every process whose command line holds text."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in cmd:
            found.append((int(d), cmd))
    return found


def main():
    assert BUILD, "CUSTODY_BUILD_DIR is not set (run through meson test)"
    with tempfile.TemporaryDirectory(prefix="bench-smoke-") as d:
        out, js = os.path.join(d, "RESULTS.md"), os.path.join(d, "results.json")
        r = subprocess.run([sys.executable, os.path.join(SOURCE, "tests", "bench", "run.py"),
                            "--build", BUILD, "--quick", "--out", out, "--json", js],
                           capture_output=True, text=True, timeout=600)
        sys.stderr.write(r.stderr)
        assert r.returncode == 0, "run.py --quick failed (exit %d)" % r.returncode
        with open(out) as f:
            table = f.read()
        with open(js) as f:
            raw = json.load(f)
    assert table.startswith("# custody benchmark"), table[:200]
    assert "| metric | custody | reference | ratio | target | met |" in table
    for metric in ("cached token, 1 conn", "cached token, 64 conns", "cached token p99, 64 conns",
                   "cold path", "start-up", "peak RSS", "audit verify", "tenant query",
                   "SQLite floor: 1 row per commit", "`custody audit report`",
                   "`custody audit verify --export`",
                   "durable echo floor: one thread, one SQLite commit per loop iteration, 1 conn",
                   "durable echo floor: one thread, one SQLite commit per loop iteration, 64 conns"):
        assert metric in table, "row missing: " + metric
    assert "CPUs" in table and "kernel" in table, "machine line missing"
    assert raw["failed"] == [], raw["failed"]
    runs = raw["loadgen"]
    labels = {x["label"] for x in runs}
    assert "echo floor" in labels and "ssh-agent identities" in labels, labels
    if os.access(os.path.join(BUILD, "broker", "custodyd"), os.X_OK):
        assert "custody cached token" in labels and "custody cold path" in labels, labels
        assert {"cached token, none sink", "cached token, stalled sink"} <= labels, labels
        assert "stalled syslog-TLS sink" in table and "custodyd CPU per cached token" in table
    for x in runs:
        assert x["failures"] == 0 and x["requests"] > 0, x
    # The durable echo floor ran at every load point and really committed:
    # its exit line counts the rows in the store after the last commit
    # (uncommitted ones rolled back), so a mode that answers without
    # committing reads 0 rows here.
    assert "durable echo floor" in labels, labels
    res = raw["results"]
    for c in (1, 8, 64):
        d = res.get("durable_%d" % c)
        assert d and d["rps"] > 0 and d["requests"] > 0, (c, d)
        assert "| durable echo floor (one SQLite commit per loop iteration) | %d | " % c in table
    st = res["durable_store"]
    replies = sum(res["durable_%d" % c]["requests"] for c in (1, 8, 64))
    assert st["rows"] >= replies > 0 and 0 < st["commits"] <= st["rows"], (st, replies)
    if "custody_1" in res:
        assert "cached token, 1 conn (ref: durable echo floor)" in table
    # Secrets never reach the report.
    assert "access_token" not in table and "client_secret" not in table
    # Nothing the driver started is still running: each of them named the
    # driver's temporary directory on its command line.
    assert raw["tmp"].startswith("/") and not os.path.exists(raw["tmp"]), raw["tmp"]
    left = processes_mentioning(raw["tmp"])
    assert not left, "processes left running: %r" % left
    print("bench-smoke: ok, %d load points, table of %d lines" % (len(runs), table.count("\n")))


if __name__ == "__main__":
    main()

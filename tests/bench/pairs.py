#!/usr/bin/env python3
"""pairs.py — two custody trees benchmarked in alternating runs, medians.

One machine's figures drift by 2x within minutes (other work, the disk's
sync latency), so a before/after comparison is only fair when the two
trees take turns: before, after, after, before, ... Each run is the tree's
own tests/bench/run.py (--only cached,redis --profile), so Redis is
measured in the same minute as the custody figures it is set beside; and
the durable echo floor too (--only ...,durable) in the runs of each tree whose
echo_server has --store.

    python3 tests/bench/pairs.py --pairs 5 \\
        before=/path/to/old/checkout:/path/to/old/build \\
        after=.:build

Prints a markdown table: per tree the median of each figure over its runs,
and per figure the median of the per-pair ratios after/before. Python 3
standard library only.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CONNS = (1, 8, 64)


def has_store_mode(build):
    """Whether build's echo_server has --store (its usage line says so):
    trees from before it cannot measure the durable echo floor."""
    exe = os.path.join(build, "tests", "bench", "echo_server")
    try:
        r = subprocess.run([exe], capture_output=True, text=True, timeout=10)
    except OSError:
        return False
    return "--store" in r.stderr


def one_run(src, build, out_json, runner=None, durable=False):
    # runner: one tree's run.py for both, so both are measured the same way
    argv = [sys.executable, os.path.join(runner or src, "tests", "bench", "run.py"), "--build", build,
            "--only", "cached,redis,durable" if durable else "cached,redis", "--profile",
            "--json", out_json]
    r = subprocess.run(argv, capture_output=True, text=True, cwd=runner or src, timeout=1800)
    if r.returncode != 0:
        raise SystemExit("run.py in %s failed (exit %d): %s" % (src, r.returncode, r.stderr[-2000:]))
    with open(out_json) as f:
        res = json.load(f)["results"]
    fig = {}
    for c in CONNS:
        cu, rd = res.get("custody_%d" % c), res.get("redis_%d" % c)
        if cu:
            fig["rps_%d" % c] = cu["rps"]
            fig["p99_ms_%d" % c] = cu["p99_us"] / 1000
        if cu and rd:
            fig["x_redis_%d" % c] = cu["rps"] / rd["rps"]
        if rd:
            fig["redis_rps_%d" % c] = rd["rps"]
        du = res.get("durable_%d" % c)
        if du:
            fig["durable_rps_%d" % c] = du["rps"]
        if cu and du:
            fig["x_durable_%d" % c] = cu["rps"] / du["rps"]
    prof = res.get("profile") or {}
    if "task-clock" in prof and prof.get("requests"):
        fig["cpu_us"] = prof["task-clock"] * 1000 / prof["requests"]
        if "raw_syscalls:sys_enter" in prof:
            fig["syscalls"] = prof["raw_syscalls:sys_enter"] / prof["requests"]
        if prof.get("syscalls:sys_enter_fdatasync"):
            fig["blk_per_commit"] = prof.get("block:block_rq_issue", 0) / prof["syscalls:sys_enter_fdatasync"]
            fig["req_per_commit"] = prof["requests"] / prof["syscalls:sys_enter_fdatasync"]
    return fig


ROWS = [
    ("cpu_us", "custodyd CPU per cached token, 64 conns (µs)", "%.1f"),
    ("syscalls", "custodyd syscalls per cached token, 64 conns", "%.2f"),
    ("blk_per_commit", "block requests custodyd issues per commit, 64 conns", "%.2f"),
    ("req_per_commit", "requests per commit, 64 conns", "%.1f"),
    ("rps_1", "cached tokens, 1 conn (req/s)", "%.0f"),
    ("rps_8", "cached tokens, 8 conns (req/s)", "%.0f"),
    ("rps_64", "cached tokens, 64 conns (req/s)", "%.0f"),
    ("p99_ms_64", "p99 at 64 conns (ms)", "%.2f"),
    ("x_redis_1", "× Redis appendfsync always, 1 conn (same run)", "%.2f"),
    ("x_redis_8", "× Redis appendfsync always, 8 conns (same run)", "%.2f"),
    ("x_redis_64", "× Redis appendfsync always, 64 conns (same run)", "%.2f"),
    ("redis_rps_1", "Redis SET, 1 conn (req/s)", "%.0f"),
    ("redis_rps_8", "Redis SET, 8 conns (req/s)", "%.0f"),
    ("redis_rps_64", "Redis SET, 64 conns (req/s)", "%.0f"),
    ("x_durable_1", "× durable echo floor, 1 conn (same run)", "%.2f"),
    ("x_durable_8", "× durable echo floor, 8 conns (same run)", "%.2f"),
    ("x_durable_64", "× durable echo floor, 64 conns (same run)", "%.2f"),
    ("durable_rps_1", "durable echo floor, 1 conn (req/s)", "%.0f"),
    ("durable_rps_8", "durable echo floor, 8 conns (req/s)", "%.0f"),
    ("durable_rps_64", "durable echo floor, 64 conns (req/s)", "%.0f"),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--out", help="write the markdown there too")
    ap.add_argument("--runner", help="run every tree with this checkout's run.py (default: "
                    "each tree's own), so a change in how run.py measures does not "
                    "read as a change in custody")
    ap.add_argument("trees", nargs=2, metavar="LABEL=SRC:BUILD")
    a = ap.parse_args()
    trees = []
    for t in a.trees:
        label, rest = t.split("=", 1)
        src, build = rest.split(":", 1)
        trees.append((label, os.path.abspath(src), os.path.abspath(os.path.join(src, build))
                      if not os.path.isabs(build) else build))
    runs = {t[0]: [] for t in trees}
    # The durable echo floor runs with every tree whose echo_server has
    # --store (a tree from before it is measured without the floor).
    durable = {build: has_store_mode(build) for _, _, build in trees}
    for label, _, build in trees:
        if not durable[build]:
            print("pairs: %s's echo_server has no --store: no durable echo floor in its runs"
                  % label, file=sys.stderr)
    tmp = tempfile.mkdtemp(prefix="cpairs-")
    for i in range(a.pairs):
        order = trees if i % 2 == 0 else list(reversed(trees))
        for label, src, build in order:
            fig = one_run(src, build, os.path.join(tmp, "%s-%d.json" % (label, i)),
                          os.path.abspath(a.runner) if a.runner else None, durable[build])
            runs[label].append(fig)
            print("pairs: run %d %-8s %s" % (i + 1, label, " ".join(
                "%s=%.3g" % kv for kv in sorted(fig.items()))), file=sys.stderr, flush=True)
    (lb, _, _), (la, _, _) = trees
    lines = ["| figure | %s (median of %d) | %s (median of %d) | median of per-pair %s/%s |"
             % (lb, a.pairs, la, a.pairs, la, lb), "|---|---|---|---|"]
    for key, name, fmt in ROWS:
        xb = [r[key] for r in runs[lb] if key in r]
        xa = [r[key] for r in runs[la] if key in r]
        if not xb and not xa:
            continue
        ratios = [ra[key] / rb[key] for rb, ra in zip(runs[lb], runs[la])
                  if key in rb and key in ra and rb[key]]
        lines.append("| %s | %s | %s | %s |" % (
            name, fmt % statistics.median(xb) if xb else "—", fmt % statistics.median(xa) if xa else "—",
            "%.2f×" % statistics.median(ratios) if ratios else "—"))
    lines.append("")
    lines.append("Every run (in order): " + "; ".join(
        "%s %s" % (label, ", ".join("%s %s" % (k, f % r[k]) for k, _, f in ROWS[:8] if k in r))
        for i in range(a.pairs) for label in ([lb, la] if i % 2 == 0 else [la, lb])
        for r in [runs[label][i]]))
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()

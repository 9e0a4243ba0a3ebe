#!/usr/bin/env python3
"""run_fuzz.py — run one libFuzzer target for a bounded time from a copy of
its seed corpus, so the repo's corpus directory never gets new files.

    run_fuzz.py EXE SEED_DIR [extra libFuzzer args...]

Time: $CUSTODY_FUZZ_SECONDS (default 30). Crash inputs are kept in
$CUSTODY_BUILD_DIR/fuzz-artifacts/ so a CI failure can be reproduced with
`EXE ARTIFACT`. Prints the target's executed units (the figure CI reports)
and fails when the target crashed or ran no input at all.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile


def main():
    exe, seeds = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    extra = sys.argv[3:]
    secs = int(os.environ.get("CUSTODY_FUZZ_SECONDS", "30") or "30")
    name = os.path.basename(exe)
    build = os.environ.get("CUSTODY_BUILD_DIR", os.path.dirname(os.path.dirname(exe)))
    artifacts = os.path.join(build, "fuzz-artifacts", name)
    os.makedirs(artifacts, exist_ok=True)
    work = tempfile.mkdtemp(prefix="custody-fuzz-")
    try:
        corpus = os.path.join(work, "corpus")
        shutil.copytree(seeds, corpus,
                        ignore=shutil.ignore_patterns("README*", "*.vkey"))
        nseeds = len(os.listdir(corpus))
        cmd = [exe, "-max_total_time=%d" % secs, "-print_final_stats=1",
               "-timeout=10", "-rss_limit_mb=2048", "-max_len=65536",
               "-artifact_prefix=" + artifacts + "/"] + extra + [corpus]
        print("run_fuzz: %s (%d seeds, %d s)" % (" ".join(cmd), nseeds, secs), flush=True)
        # hard bound: libFuzzer's own time limit plus room for start and stop
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=secs + 120, cwd=work)
        except subprocess.TimeoutExpired:
            print("run_fuzz: %s did not stop within %d s" % (name, secs + 120))
            return 1
        out = p.stdout.decode("utf-8", "replace")
        # keep the log readable: the tail holds the crash or the stats
        lines = out.splitlines()
        if p.returncode != 0:
            sys.stdout.write("\n".join(lines[-120:]) + "\n")
        for line in lines:
            if line.startswith(name + ":"):
                print("run_fuzz: " + line)  # the target's own figures
        m = re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
        execs = int(m.group(1)) if m else 0
        m2 = re.search(r"stat::peak_rss_mb:\s*(\d+)", out)
        rss = m2.group(1) if m2 else "?"
        final = len(os.listdir(corpus))
        print("run_fuzz: %s: exit %d, %d executions in %d s, corpus %d -> %d, peak rss %s MB"
              % (name, p.returncode, execs, secs, nseeds, final, rss))
        if p.returncode != 0:
            print("run_fuzz: %s FAILED; crash inputs (if any) in %s" % (name, artifacts))
            return 1
        if execs == 0:
            print("run_fuzz: %s ran no input" % name)
            return 1
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

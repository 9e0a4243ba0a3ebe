#!/usr/bin/env python3
"""test_demo.py — `custody demo` runs the whole story and exits 0, narrates
each step with its command, stops everything it started, removes its
directory (or keeps it with --keep), and never prints the client secret or
a token (it keeps the secret in a file we read afterwards to check).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CUSTODY, CUSTODYD, Fail, check  # noqa: E402


def main():
    tmp = tempfile.mkdtemp(prefix="custody-demo-test-")
    try:
        env = dict(os.environ)
        env["TMPDIR"] = tmp
        env["CUSTODYD"] = CUSTODYD
        env.pop("CUSTODY_CONFIG", None)
        env.pop("CUSTODY_SOCKET", None)
        p = subprocess.run([CUSTODY, "demo", "--keep"], capture_output=True, text=True,
                           timeout=300, env=env)
        out = p.stdout + p.stderr
        check(p.returncode == 0, "custody demo exits 0", p.returncode, out[-4000:])
        check("demo ok" in p.stdout, "the demo says it succeeded", p.stdout[-500:])
        steps = [l for l in p.stdout.splitlines() if l.startswith("==> ")]
        check(len(steps) >= 15, "one narrated line per step", len(steps))
        for must in ("custody init", "custody keys --json", "custody grant seal",
                     "custody grant import contoso.grant --probe", "custody grant revoke",
                     "custody audit verify", "custody audit report"):
            check(any(must in l for l in steps), "narration shows %r" % must, steps)
        check(re.search(r"stays? valid at the provider until", p.stdout), "the exposure window is shown")
        check("(revoked)" in p.stdout or "revoked" in p.stdout, "the refusal is shown")
        check("audit verification FAILED" in p.stdout, "the tampered copy is caught")
        check(re.search(r"HTTP 200: \d+ alerts", p.stdout), "the tool read alerts")
        check(any("custody-alerts run --once" in l for l in steps), "the connector's pass is shown")
        check(re.search(r"siem/alerts\.ndjson: [1-9]\d* alerts", p.stdout),
              "custody-alerts pulled the customer's alerts into a file")
        check(re.search(r"Subject: \[High\] .* \u2014 contoso", p.stdout),
              "the notification e-mail arrived, with the organization's name", p.stdout[-2000:])

        # --keep: the directory is there; nothing secret reached the output.
        dirs = [d for d in os.listdir(tmp) if d.startswith("custody-demo.")]
        check(len(dirs) == 1, "one demo directory kept", dirs)
        demo = os.path.join(tmp, dirs[0])
        with open(os.path.join(demo, "siem", "alerts.ndjson")) as f:
            pulled = [__import__("json").loads(x) for x in f]
        check(all("tid=" + x["custody_tenant_id"] in x["custody_portal_link"] for x in pulled),
              "every pulled alert carries its tenant-specific portal link")
        check(os.path.exists(os.path.join(demo, "mail", "0001.eml")), "the e-mail is in the mailbox")
        with open(os.path.join(demo, "customer", "client-secret")) as f:
            secret = f.read().strip()
        check(len(secret) >= 20, "the demo made a secret")
        check(secret not in out, "the client secret appears in the demo output")
        check(not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.", out), "a JWT appears in the output")
        # nothing it started is left: no custodyd or idp.py with the demo dir
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            check(demo.encode() not in cmd, "a process of the demo is still running", cmd)
        shutil.rmtree(demo)

        # without --keep the directory is removed. (MALLOC_PERTURB_, which meson
        # sets, makes util_read_file's up-front buffer cost seconds per export
        # verify; the first run keeps it, this one does not need it.)
        env.pop("MALLOC_PERTURB_", None)
        p = subprocess.run([CUSTODY, "demo"], capture_output=True, text=True, timeout=300,
                           env=env)
        check(p.returncode == 0, "second demo run exits 0", p.stdout[-2000:], p.stderr[-2000:])
        # ... all but the customer's report, whose path it prints last
        m = re.search(r"the customer's report: (\S+) \(open it in a browser\)", p.stdout)
        check(m and os.path.isfile(m.group(1)), "the demo prints its report's path", p.stdout[-500:])
        with open(m.group(1)) as f:
            page = f.read()
        check("<h1>Verified</h1>" in page and "Content-Security-Policy" in page,
              "the demo's report is a verified page", page[:500])
        check(os.listdir(tmp) == [os.path.basename(m.group(1))],
              "demo without --keep removes its directory", os.listdir(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("ok: test_demo")


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        print("FAIL:", e, file=sys.stderr)
        sys.exit(1)

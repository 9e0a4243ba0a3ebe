#!/usr/bin/env python3
"""check_version.py — `custody --version`, `custodyd --version` (and `custody-alerts --version`) print the
version meson holds (DESIGN §13), and no source file spells that version
out itself: the one copy is project() in meson.build (and debian/changelog,
which Debian needs, must say the same).

    check_version.py VERSION CUSTODY CUSTODYD SOURCE_DIR [CUSTODY_ALERTS]
"""
import os
import re
import subprocess
import sys


def main():
    version, custody, custodyd, src = sys.argv[1:5]
    programs = [(custody, "custody"), (custodyd, "custodyd")]
    programs += [(exe, "custody-alerts") for exe in sys.argv[5:6]]
    bad = []
    for exe, name in programs:
        p = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
        if p.returncode != 0 or p.stdout != "%s %s\n" % (name, version) or p.stderr:
            bad.append("%s --version: exit %d, stdout %r, stderr %r (expected %r)"
                       % (name, p.returncode, p.stdout, p.stderr, "%s %s\n" % (name, version)))
    # Every other copy of the version string in code or build files.
    lit = re.compile(r"""["']%s["']""" % re.escape(version))
    for root, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if not d.startswith(".") and not d.startswith("build")
                   and d not in ("debian", "obj-x86_64-linux-gnu")]
        for f in files:
            if not f.endswith((".c", ".h", ".build", ".py")):
                continue
            path = os.path.join(root, f)
            with open(path, errors="replace") as fh:
                for n, line in enumerate(fh, 1):
                    if lit.search(line) and not (path == os.path.join(src, "meson.build")
                                                 and line.strip().startswith("version")):
                        bad.append("%s:%d hard-codes the version: %s"
                                   % (os.path.relpath(path, src), n, line.strip()))
    # The one copy Debian needs: debian/changelog must name the same
    # upstream version, or the package would say another.
    with open(os.path.join(src, "debian", "changelog")) as f:
        m = re.match(r"custody \(([^)]+)\)", f.readline())
    if m is None or m.group(1).split("-")[0] != version:
        bad.append("debian/changelog's first entry is %s, meson says %s: add a changelog "
                   "entry (dch -v %s)" % (m.group(1) if m else "unreadable", version, version))
    for b in bad:
        print("FAIL:", b, file=sys.stderr)
    if bad:
        return 1
    print("ok: %s print %s; no other copy of it in the sources"
          % (", ".join(n for _, n in programs), version))
    return 0


if __name__ == "__main__":
    sys.exit(main())

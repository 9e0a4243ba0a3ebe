#!/usr/bin/env python3
"""check_man_commands.py — custody(1) describes every command custody has:
each name in `custody --help` and each sub-command in `custody GROUP --help`
appears in man/custody.1.scd as *name* or *group sub*. A command added to
cli/ without a line in the man page fails here.

    check_man_commands.py CUSTODY MAN_SCD
"""
import re
import subprocess
import sys


def commands(custody, *words):
    out = subprocess.run([custody, *words, "--help"], capture_output=True, text=True,
                         timeout=10).stdout
    if "<command>" not in out.splitlines()[0]:
        return None
    body = out.split("Commands:", 1)[1]
    return re.findall(r"^  ([a-z][a-z-]*) ", body, re.M)


def main():
    custody, scd = sys.argv[1:3]
    with open(scd) as f:
        doc = f.read()
    missing = []
    top = commands(custody)
    for cmd in top:
        subs = commands(custody, cmd)
        if subs is None:
            if "*%s*" % cmd not in doc and "*%s " % cmd not in doc:
                missing.append(cmd)
            continue
        for sub in subs:
            if "*%s %s*" % (cmd, sub) not in doc:
                missing.append("%s %s" % (cmd, sub))
    if missing:
        print("FAIL: custody(1) does not describe: %s; add each to man/custody.1.scd"
              % ", ".join(missing), file=sys.stderr)
        return 1
    print("ok: custody(1) describes all %d commands" % len(top))
    return 0


if __name__ == "__main__":
    sys.exit(main())

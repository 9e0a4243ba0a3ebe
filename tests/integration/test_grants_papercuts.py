#!/usr/bin/env python3
"""test_grants_papercuts.py — what a new operator hits first (issue 13,
items 7-10): grants that could never be used are refused early, `init`
never writes a key for an existing vault, and the small answers that
misled (permission denied, a tenant revoked twice, an unauthenticated
whoami, a reload that cannot move the socket, config check, reload) say
what is true in one line.

Each part is a function named after its item; all run in order.
"""

import copy
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Env, check, rfc3339  # noqa: E402


def write(env, name, text):
    p = os.path.join(env.base, name)
    with open(p, "w") as f:
        f.write(text)
    return p


def one_line_error(p, what):
    lines = p.stderr.strip().splitlines()
    check(len(lines) == 1 and lines[0].startswith("custody: "),
          "%s: the error is one 'custody: ...' line" % what, p.stderr)
    return lines[0]


# ---- item 7: grants that could never be used -------------------------------

def item7_seal_and_import():
    with Env("custody-pc7") as env:
        env.start_idp()
        env.init_vault()
        env.start_broker()
        p = env.run_cli("keys", "--json")
        check(p.returncode == 0, "keys", p.stderr)
        pub = write(env, "broker.pub", json.loads(p.stdout)["seal_public_key"])
        sec = write(env, "s.secret", "a-secret\n")
        base = ["grant", "seal", "--broker-key", pub, "--tenant-id",
                "72f988bf-86f1-41af-91ab-2d7cd011db47", "--client-id", "c1",
                "--client-secret-file", sec]
        out = os.path.join(env.base, "x.grant")

        p = env.run_cli(*base, "--not-after", "2020-01-01T00:00:00Z", "--output", out)
        check(p.returncode == 2 and "in the past" in p.stderr,
              "seal refuses a --not-after in the past", p.returncode, p.stderr)
        check(not os.path.exists(out), "nothing written for a refused seal")
        p = env.run_cli(*base, "--not-before", "2031-01-01T00:00:00Z",
                        "--not-after", "2030-01-01T00:00:00Z", "--output", out)
        check(p.returncode == 2 and "--not-before" in p.stderr and "--not-after" in p.stderr,
              "seal refuses not_before >= not_after, naming both", p.returncode, p.stderr)
        p = env.run_cli(*base, "--not-before", "2030-01-01T00:00:00Z",
                        "--not-after", "2030-01-01T00:00:00Z", "--output", out)
        check(p.returncode == 2, "seal refuses not_before == not_after", p.stderr)
        check(not os.path.exists(out), "nothing written for a refused seal")

        # an expired grant (sealed by a tool that does not check) is refused at import
        g, tid = env.new_tenant("fabrikam", not_before="2019-01-01T00:00:00Z",
                                not_after="2020-01-01T00:00:00Z")
        path = write(env, "expired.grant", env.seal(g))
        p = env.run_cli("grant", "import", path)
        check(p.returncode == 3, "importing an expired grant exits 3 (refused)",
              p.returncode, p.stdout, p.stderr)
        line = one_line_error(p, "expired import")
        check("expired" in line and "2020-01-01T00:00:00Z" in line,
              "the error says it expired and when", line)
        p = env.run_cli("grant", "list", "--json")
        check(json.loads(p.stdout) == [], "the expired grant is not stored", p.stdout)

        # a grant that expires after it was stored: importing it again says so
        g, tid = env.new_tenant("northwind", not_after=rfc3339(time.time() + 3))
        path = write(env, "short.grant", env.seal(g))
        p = env.run_cli("grant", "import", path)
        check(p.returncode == 0, "a grant valid for 3 s imports", p.stderr)
        time.sleep(4)
        p = env.run_cli("grant", "import", path)
        check(p.returncode == 3 and "expired" in p.stderr,
              "re-importing a grant that has expired since exits 3", p.returncode, p.stderr)

        # principals the MSSP's config does not know draw a warning
        g, tid = env.new_tenant("contoso", principals=["root-tool", "siem-conector"])
        path = write(env, "typo.grant", env.seal(g))
        p = env.run_cli("grant", "import", path)
        check(p.returncode == 0 and p.stdout.strip().startswith("g_"),
              "a grant naming an unknown principal is still imported", p.stderr)
        check("warning" in p.stderr and "siem-conector" in p.stderr and
              "root-tool" not in p.stderr,
              "the unknown principal (only it) is warned about", p.stderr)
        g, tid = env.new_tenant("adatum", principals=["root-tool"])
        p = env.run_cli("grant", "import", write(env, "ok.grant", env.seal(g)))
        check(p.returncode == 0 and p.stderr == "", "no warning for known principals",
              p.stderr)
        env.stop_broker()


# ---- item 8: init never writes a key for an existing vault ---------------------

def item8_init_keeps_key():
    with Env("custody-pc8") as env:
        env.write_config()
        p = env.run_cli("init")
        check(p.returncode == 0, "init", p.stdout, p.stderr)
        key = env.config["key_file"]
        check(os.path.exists(key), "init wrote the key file")
        with open(key, "rb") as f:
            original = f.read()
        os.rename(key, key + ".offline")
        p = env.run_cli("init")
        check(p.returncode == 1, "init with the vault present and the key missing fails",
              p.returncode, p.stdout, p.stderr)
        line = one_line_error(p, "init without its key")
        check("missing" in line and "restore" in line, "it says to restore the key", line)
        check(not os.path.exists(key), "no new key was written for the existing vault")
        os.rename(key + ".offline", key)
        p = env.run_cli("init")
        check(p.returncode == 1 and "already exists" in p.stderr,
              "init with both present refuses", p.stderr)
        with open(key, "rb") as f:
            check(f.read() == original, "the key file is untouched")
        env.start_broker()   # the restored key still opens the vault
        env.stop_broker()


def main():
    which = sys.argv[1:]
    for name, fn in [("7", item7_seal_and_import), ("8", item8_init_keeps_key)]:
        if not which or name in which:
            fn()
            print("ok: item %s" % name)
    print("ok: test_grants_papercuts")


if __name__ == "__main__":
    main()

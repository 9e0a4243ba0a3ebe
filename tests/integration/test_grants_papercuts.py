#!/usr/bin/env python3
"""test_grants_papercuts.py — what a new operator hits first (issue 13,
items 7-10): grants that could never be used are refused early, `init`
never writes a key for an existing vault, and the small answers that
misled (permission denied, a tenant revoked twice, an unauthenticated
whoami, a reload that cannot move the socket, config check, reload) say
what is true in one line.

Each part is a function named after its item; all run in order.
"""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Env, as_nobody_request, check, rfc3339, wait_for  # noqa: E402

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


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


# ---- item 9: papercuts ----------------------------------------------------------

def item9_papercuts():
    with Env("custody-pc9") as env:
        env.start_idp()
        env.init_vault()
        env.start_broker()
        os.chmod(env.config["runtime_dir"], 0o755)
        g, tid = env.new_tenant("contoso")
        env.import_grant(g)

        # a user outside the socket's group: permission denied, not "start custodyd"
        from harness import CUSTODY
        p = subprocess.run(NOBODY + [CUSTODY, "--config", env.config_path, "--socket",
                                     env.tool_path, "token", "--tenant", "contoso"],
                           capture_output=True, text=True, timeout=30)
        check(p.returncode == 5, "a user the socket refuses: exit 5", p.returncode, p.stderr)
        line = one_line_error(p, "permission denied")
        check("permission denied" in line and "ask to be added to group root" in line and
              "start custodyd" not in line, "it names the group to join", line)

        # revoking a tenant twice says the second time changed nothing
        p = env.run_cli("grant", "revoke", "--tenant", "contoso", "--reason", "first")
        check(p.returncode == 0 and "Revoked" in p.stdout, "first revocation", p.stdout, p.stderr)
        p = env.run_cli("grant", "revoke", "--tenant", "contoso", "--reason", "second")
        check(p.returncode == 0 and "already revoked by root" in p.stdout and
              "first" in p.stdout and "Revoked" not in p.stdout,
              "a second revocation says the grant was already revoked, by whom and why",
              p.stdout, p.stderr)
        p = env.run_cli("grant", "revoke", "--tenant", "contoso", "--reason", "third", "--json")
        o = json.loads(p.stdout.splitlines()[0])
        check(o.get("already") is True and o.get("state") == "revoked", "--json says so too", o)
        env.stop_broker()

        # whoami from a process no principal matches: what the broker saw
        env.config["tool_socket"]["mode"] = "0666"
        env.start_broker()
        r = as_nobody_request(env.tool_path, {"op": "whoami"})
        check(r.get("ok") is False and r.get("error") == "unauthenticated", "unauthenticated", r)
        check("uid 65534" in r["message"] and "gid 65534" in r["message"] and
              "exe /" in r["message"], "the refusal says what the broker saw", r)
        check(r.get("peer", {}).get("uid") == 65534 and r["peer"].get("exe", "").startswith("/"),
              "and carries it as fields", r)

        # a reload that cannot move or re-mode a socket says so
        env.config["tool_socket"]["mode"] = "0600"
        env.write_config()
        p = env.run_cli("reload")
        check(p.returncode == 0 and "custodyd reloaded" in p.stdout and
              "tool_socket.mode (0666 -> 0600)" in p.stdout,
              "custody reload names the change that waits for a restart", p.stdout, p.stderr)
        env.config["admin_socket"]["path"] = "admin2.sock"
        env.write_config()
        env.signal_broker(signal.SIGHUP)
        wait_for(lambda: "admin_socket.path changed" in env.log_text(since_start=True),
                 what="the SIGHUP's log line about the socket path")
        # the mode still waits for a restart: the second reload names it again
        n = env.log_text(since_start=True).count("reload: tool_socket.mode changed (0666 -> 0600)")
        check(n == 2, "each reload names the socket mode that waits, not just the first", n)
        env.config["admin_socket"]["path"] = "admin.sock"   # where it still listens
        def reload_recorded():
            return [r for r in env.audit_records(event="reload")
                    if "admin_socket.path" in json.dumps(r.get("not_applied"))]
        wait_for(reload_recorded, what="the reload's audit record naming what was not applied")

        # config check: every error, each with its key path
        bad = dict(env.config)
        bad["bogus"] = 1
        bad["principals"] = [{"name": "a", "match": {"uid": "x"}},
                             {"name": "b", "match": {"gid": "y"}}]
        bad["limits"] = {"foo": 1}
        path = os.path.join(env.base, "bad.json")
        env.write_config(bad, path)
        p = env.run_cli("config", "check", path)
        lines = p.stderr.strip().splitlines()
        check(p.returncode == 1, "config check of a bad file exits 1", p.returncode, p.stderr)
        for want in ("unknown key: bogus", "principals[0].match.uid", "principals[1].match.gid",
                     "unknown key: limits.foo"):
            check(any(want in ln for ln in lines), "config check reports %s" % want, p.stderr)
        check(len(lines) == 4 and all(ln.startswith("custody: " + path + ": ") for ln in lines),
              "one line per error, each naming the file once", p.stderr)
        env.write_config()
        p = env.run_cli("config", "check", env.config_path)
        check(p.returncode == 0 and p.stdout.startswith("ok: "), "a good config checks ok",
              p.stdout, p.stderr)
        p = env.run_cli("config", "check")
        check(p.returncode == 0, "config check defaults to --config", p.stderr)

        # reload of a bad config: refused in one line, the running policy stays
        env.write_config(bad)
        p = env.run_cli("reload")
        check(p.returncode == 1, "reload of a bad config exits 1", p.returncode, p.stderr)
        line = one_line_error(p, "bad reload")
        check("running policy stays" in line and "unknown key: bogus" in line,
              "it says why and that nothing changed", line)
        p = env.run_cli("--admin-socket", env.admin_path, "reload")   # the broker's refusal
        check(p.returncode == 1, "the broker refuses a bad config", p.returncode, p.stderr)
        line = one_line_error(p, "bad reload at the broker")
        check("running policy stays" in line and "unknown key: bogus" in line,
              "the broker says why and that nothing changed", line)
        env.write_config()
        env.stop_broker()


# ---- item 10: errors are one line ---------------------------------------------------

def item10_one_line():
    with Env("custody-pc10") as env:
        for args in (["audit", "list", "--tenant"], ["grant", "list", "-x"]):
            p = env.run_cli(*args)
            check(p.returncode == 2, "%s: a usage error" % args, p.returncode, p.stderr)
            line = one_line_error(p, " ".join(args))
            check("custody %s --help" % " ".join(args[:2]) in line, "it points at --help", line)
        missing = os.path.join(env.base, "nowhere.json")
        p = env.run_cli("--config", missing, "audit", "verify")
        check(p.returncode != 0, "audit verify without a config fails", p.stderr)
        line = one_line_error(p, "audit verify without a config")
        check("--key" in line, "it says to pass --key", line)

        bad = dict(env.config)
        bad["principals"] = [{"name": "a", "match": {"uid": "x"}}]
        env.write_config(bad)
        p = env.run_cli("status")
        line = one_line_error(p, "a bad config")
        check(line.count(env.config_path) == 1 or
              line.count(os.path.realpath(env.config_path)) == 1,
              "the config error names the file once", line)
        check("principals[0].match.uid" in line, "with the key path", line)

        env.write_config()
        env.start_idp()
        env.init_vault()
        env.start_broker()
        p = env.run_cli("token", "--tenant", "nope")
        check(p.returncode == 3, "unknown tenant: exit 3", p.returncode, p.stderr)
        line = one_line_error(p, "unknown tenant")
        check(line.count("grant list") == 1, "the hint is given once", line)
        env.stop_broker()


def main():
    which = sys.argv[1:]
    for name, fn in [("7", item7_seal_and_import), ("8", item8_init_keeps_key),
                     ("9", item9_papercuts), ("10", item10_one_line)]:
        if not which or name in which:
            fn()
            print("ok: item %s" % name)
    print("ok: test_grants_papercuts")


if __name__ == "__main__":
    main()

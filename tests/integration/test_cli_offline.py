#!/usr/bin/env python3
"""test_cli_offline.py — the custody commands that need no running broker:
init (modes, default config, never overwriting a vault), keys from the
vault's public part (exact --json form), grant seal (what it writes, what it
refuses, that the secret never goes through argv or into output), --help on
every command, usage errors (exit 2) and "broker not reachable" (exit 5).
"""

import base64
import json
import os
import re
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CUSTODY, Env, Fail, check  # noqa: E402

TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "00000000-0000-0000-0000-000000000001"
SECRET = "Xy8~not-a-real-secret.but-unique-4711"


def run(*args, input=None, env=None, cwd=None):
    e = dict(os.environ)
    e.pop("CUSTODY_CONFIG", None)
    e.pop("CUSTODY_SOCKET", None)
    e.update(env or {})
    return subprocess.run([CUSTODY] + list(args), input=input, capture_output=True, text=True,
                          timeout=60, env=e, cwd=cwd)


def one_error_line(p, *words):
    lines = p.stderr.strip().splitlines()
    check(len(lines) == 1, "expected one error line on stderr", p.stderr)
    check(lines[0].startswith("custody: "), "error line must start with 'custody: '", p.stderr)
    for w in words:
        check(w in lines[0], "error line should mention %r" % w, p.stderr)


def test_init(env):
    cfg = os.path.join(env.base, "fresh", "custody.json")
    p = run("init", "--config", cfg)
    check(p.returncode == 0, "init with no config must succeed", p.stdout, p.stderr)
    check("wrote the default config to" in p.stdout, "init must say it wrote a config", p.stdout)
    with open(cfg) as f:
        written = json.load(f)
    check(written["state_dir"] == "state" and written["key_file"] == "master.key",
          "a config outside /etc keeps its state beside it", written)
    base = os.path.dirname(cfg)
    st = os.stat(os.path.join(base, "state"))
    check(stat.S_IMODE(st.st_mode) == 0o700, "state dir must be 0700", oct(st.st_mode))
    st = os.stat(os.path.join(base, "master.key"))
    check(stat.S_IMODE(st.st_mode) == 0o600, "key file must be 0600", oct(st.st_mode))
    check(os.path.isdir(os.path.join(base, "state", "vault")), "vault dir missing")
    with open(os.path.join(base, "master.key"), "rb") as f:
        key = f.read()
    # The second init refuses and leaves key and vault alone.
    p = run("--config", cfg, "init")
    check(p.returncode == 1, "second init must fail with 1", p.returncode, p.stderr)
    one_error_line(p, "already exists", "never overwritten")
    with open(os.path.join(base, "master.key"), "rb") as f:
        check(f.read() == key, "second init must not touch the key file")


def test_keys(env):
    p = run("keys", "--json", "--config", env.config_path)
    check(p.returncode == 0, "keys --json offline", p.stderr)
    line = p.stdout
    check(line.count("\n") == 1, "keys --json is one line", line)
    k = json.loads(line)
    check(list(k) == ["seal_public_key", "seal_key_id", "audit_verifier_key"],
          "keys --json: exactly these keys in this order", k)
    check(len(base64.b64decode(k["seal_public_key"], validate=True)) == 32,
          "seal_public_key: standard base64 of 32 bytes", k)
    check(re.fullmatch(r"[0-9a-f]{16}", k["seal_key_id"]), "seal_key_id: hex", k)
    m = re.fullmatch(r"custody\.test/audit\+([0-9a-f]{8})\+(.+)", k["audit_verifier_key"])
    check(m is not None, "audit_verifier_key: <origin>+<8 hex>+<base64>", k)
    raw = base64.b64decode(m.group(2), validate=True)
    check(len(raw) == 33 and raw[0] == 1, "verifier key is 0x01 || Ed25519 pk", k)
    check(line.startswith('{"seal_public_key": "'), "DESIGN §9 spacing", line)
    p = run("keys", "--config", env.config_path)
    check(p.returncode == 0, "keys offline", p.stderr)
    check(p.stdout.splitlines() == ["%s: %s" % (n, k[n]) for n in k],
          "keys without --json: name: value lines", p.stdout)
    return k


def test_seal(env, keys):
    secret_file = os.path.join(env.base, "secret")
    with open(secret_file, "w") as f:
        f.write(SECRET + "\n")
    os.chmod(secret_file, 0o600)
    key_file = os.path.join(env.base, "broker.pub")
    with open(key_file, "w") as f:
        f.write("\n  " + keys["seal_public_key"] + "  \n")
    out = os.path.join(env.base, "contoso.grant")
    base = ["grant", "seal", "--tenant-id", TENANT_ID, "--tenant-name", "contoso",
            "--client-id", CLIENT_ID, "--client-secret-file", secret_file,
            "--scope", "https://api.securitycenter.microsoft.com/.default",
            "--principal", "siem-connector"]
    p = run(*base, "--broker-key", key_file, "--output", out)
    check(p.returncode == 0, "grant seal", p.stderr)
    gid = p.stdout.strip()
    check(re.fullmatch(r"g_[0-9a-f]{32}", gid), "grant seal prints the grant id", p.stdout)
    with open(out) as f:
        text = f.read()
    check(text.endswith("\n") and text.count("\n") == 1, "envelope is one line", text[:80])
    env_obj = json.loads(text)
    check(env_obj["format"] == "custody-sealed-grant/1", "envelope format", env_obj)
    check(env_obj["recipient"] == keys["seal_key_id"], "envelope names the broker key", env_obj)
    check(SECRET not in text and SECRET not in p.stdout + p.stderr, "secret leaked")
    # The key itself instead of a file, the secret from stdin, output to stdout.
    p = run(*base[:8], "--client-secret-file", "-", "--broker-key", keys["seal_public_key"],
            "--output", "-", input=SECRET + "\n")
    check(p.returncode == 0, "grant seal with key literal and stdin", p.stderr)
    check(json.loads(p.stdout)["recipient"] == keys["seal_key_id"], "stdout envelope", p.stdout)
    check(re.fullmatch(r"g_[0-9a-f]{32}\n", p.stderr), "id on stderr with --output -", p.stderr)
    check(SECRET not in p.stdout + p.stderr, "secret leaked (stdin)")

    # Refusals: usage (2) for a bad command line, never the secret in argv.
    cases = [
        (["--client-secret", SECRET], "the secret must not be accepted in argv"),
        (["--not-after", "next year"], "bad time"),
        (["--broker-key", "AAAA"], "short key"),
        ([], "missing --output"),
    ]
    for extra, why in cases:
        args = base + ["--broker-key", key_file] + extra
        if extra:
            args += ["--output", os.path.join(env.base, "x.grant")]
        p = run(*args)
        check(p.returncode == 2, "grant seal: %s must exit 2" % why, p.returncode, p.stderr)
        one_error_line(p)
        check(SECRET not in p.stdout + p.stderr, "secret echoed in an error", p.stderr)
    check(not os.path.exists(os.path.join(env.base, "x.grant")), "refused seal wrote a file")
    p = run(*base, "--broker-key", key_file, "--output", os.path.join(env.base, "y.grant"),
            "--token-endpoint", "http://login.example/token")
    check(p.returncode == 2, "http token endpoint must be refused", p.returncode, p.stderr)
    p = run(*(base[:8]), "--client-secret-file", os.path.join(env.base, "missing"),
            "--broker-key", key_file, "--output", os.path.join(env.base, "z.grant"))
    check(p.returncode == 1, "missing secret file: exit 1", p.returncode, p.stderr)
    one_error_line(p, "missing")


def test_help_and_usage(env):
    commands = [["init"], ["keys"], ["grant", "seal"], ["grant", "import"], ["grant", "list"],
                ["grant", "show"], ["grant", "revoke"], ["principal", "suspend"],
                ["principal", "resume"], ["lockdown"], ["unlock"], ["token"], ["status"],
                ["audit", "list"], ["audit", "export"], ["audit", "verify"], ["audit", "tail"],
                ["vault", "rekey"], ["demo"]]
    for c in commands:
        p = run(*c, "--help")
        check(p.returncode == 0, "%s --help exits 0" % " ".join(c), p.returncode, p.stderr)
        check(p.stdout.startswith("Usage: custody " + " ".join(c)), "usage text", c, p.stdout)
        check("--config FILE" in p.stdout, "every command documents --config", c)
    p = run("--help")
    check(p.returncode == 0 and "demo" in p.stdout, "custody --help", p.stdout)
    usage_errors = [
        ["frobnicate"], [], ["grant"], ["grant", "bogus"], ["keys", "extra"],
        ["token"], ["token", "--tenant", "x", "--format", "xml"],
        ["token", "--tenant", "x", "--min-ttl", "soon"],
        ["grant", "revoke", "g_1"], ["grant", "revoke", "--reason", "r"],
        ["grant", "revoke", "g_1", "--tenant", "t", "--reason", "r"],
        ["principal", "suspend", "p"], ["lockdown"], ["grant", "import"],
        ["audit", "list", "--since", "yesterday"], ["audit", "list", "--format", "xml"],
        ["audit", "export", "--tenant", "t"], ["audit", "verify", "--db", "a", "--export", "b"],
        ["status", "--bogus"],
    ]
    for c in usage_errors:
        p = run(*c, "--config", env.config_path) if c else run()
        check(p.returncode == 2, "%r must be a usage error (2)" % c, p.returncode, p.stderr)


def test_unreachable(env):
    # The broker is not running: every command that needs it says so, exit 5.
    for c in (["status"], ["grant", "list"], ["grant", "show", "g_x"], ["unlock"],
              ["lockdown", "--reason", "r"], ["principal", "resume", "p"],
              ["token", "--tenant", "contoso"],
              ["grant", "revoke", "g_x", "--reason", "r"]):
        p = run(*c, "--config", env.config_path)
        check(p.returncode == 5, "%r without a broker must exit 5" % c, p.returncode, p.stderr)
        one_error_line(p, "not reachable", "custodyd")
    p = run("token", "--tenant", "contoso", env={"CUSTODY_SOCKET": "/nonexistent/x.sock"})
    check(p.returncode == 5 and "/nonexistent/x.sock" in p.stderr, "$CUSTODY_SOCKET is used",
          p.returncode, p.stderr)
    # A config that does not parse: exit 1 naming the key path.
    bad = os.path.join(env.base, "bad.json")
    with open(bad, "w") as f:
        json.dump({"state_dir": "/tmp/x", "limits": {"frobs": 1}}, f)
    p = run("status", "--config", bad)
    check(p.returncode == 1, "bad config: exit 1", p.returncode, p.stderr)
    one_error_line(p, "frobs")
    # verify with nothing to read: 1, not 6.
    p = run("audit", "verify", "--config", env.config_path, "--db",
            os.path.join(env.base, "nope.db"))
    check(p.returncode == 1, "verify of a missing file exits 1", p.returncode, p.stderr)


def main():
    with Env("cli-offline") as env:
        env.write_config()
        p = env.run_cli("init")
        check(p.returncode == 0, "custody init", p.stdout, p.stderr)
        test_init(env)
        keys = test_keys(env)
        test_seal(env, keys)
        test_help_and_usage(env)
        test_unreachable(env)
    print("ok: test_cli_offline")


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        print("FAIL:", e, file=sys.stderr)
        sys.exit(1)

#!/usr/bin/env python3
"""test_cli_broker.py — the custody CLI (and through `custody token`, the
libcustody client) against a real custodyd and the fake HTTPS identity
provider: keys from the broker, seal -> import --probe -> list/show, token
in every --format, the exit statuses 3 (refused), 4 (upstream failure) and
5 (not reachable), revoke with its exposure window, suspend/resume,
lockdown/unlock, status, audit list/tail/export/verify (and 6 for a
tampered copy), vault rekey refused while the broker runs and done after.
No secret and no token may appear anywhere but where asked (token stdout).
"""

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CUSTODY, DEFENDER_SCOPE, Env, Fail, check  # noqa: E402

SECRETS = []    # every client secret made here: none may show up in CLI output
TOKENS = []     # every token printed by `custody token`


def cli(env, *args, want=0, input=None, extra_env=None, allow_token=False):
    p = env.run_cli(*args, input=input, env=extra_env, timeout=120)
    check(p.returncode == want, "custody %s: exit %s, expected %s" % (" ".join(args),
          p.returncode, want), p.stdout[-2000:], p.stderr[-2000:])
    for s in SECRETS:
        check(s not in p.stdout + p.stderr, "a client secret leaked in custody %s" % args[0])
    if not allow_token:
        for t in TOKENS:
            check(t not in p.stdout + p.stderr, "a token leaked in custody %s" % " ".join(args))
    if want != 0:
        lines = p.stderr.strip().splitlines()
        check(len(lines) >= 1 and lines[-1].startswith("custody: "),
              "failure must end with one 'custody: ...' line", p.stderr)
    return p


def seal_with_cli(env, grant, name):
    """Seal a harness grant dict with `custody grant seal`; returns (path, id)."""
    SECRETS.append(grant["client_secret"])
    sec = os.path.join(env.base, name + ".secret")
    with open(sec, "w") as f:
        f.write(grant["client_secret"] + "\n")
    os.chmod(sec, 0o600)
    out = os.path.join(env.base, name + ".grant")
    args = ["grant", "seal", "--broker-key", os.path.join(env.base, "broker.pub"),
            "--tenant-id", grant["tenant_id"], "--tenant-name", grant["tenant_name"],
            "--client-id", grant["client_id"], "--client-secret-file", sec,
            "--token-endpoint", grant["token_endpoint"], "--output", out]
    for s in grant["scopes"]:
        args += ["--scope", s]
    p = cli(env, *args)
    gid = p.stdout.strip()
    check(re.fullmatch(r"g_[0-9a-f]{32}", gid), "seal prints the id", p.stdout)
    return out, gid


def token(env, tenant, fmt="raw", want=0, **kw):
    args = ["token", "--tenant", tenant, "--format", fmt]
    for k, v in kw.items():
        args += ["--" + k.replace("_", "-"), str(v)]
    return cli(env, *args, want=want, allow_token=True)


def main():
    with Env("cli-broker") as env:
        env.start_idp()
        env.config["upstream"]["probe_wait_s"] = 5
        env.config["principals"] = [
            {"name": "root-tool", "match": {"uid": 0}, "tenants": ["*"]},
        ]
        # anyone may connect; only uid 0 maps to a principal
        env.config["tool_socket"]["mode"] = "0666"
        env.config["admin_socket"]["mode"] = "0666"
        env.write_config()
        cli(env, "init")
        offline = json.loads(cli(env, "keys", "--json").stdout)
        env.start_broker()

        # keys: the broker says what the vault says
        online = json.loads(cli(env, "keys", "--json").stdout)
        check(online == offline, "keys from the broker == keys from the vault", online, offline)
        with open(os.path.join(env.base, "broker.pub"), "w") as f:
            f.write(online["seal_public_key"] + "\n")

        # seal -> import --probe (idempotent) -> list/show
        g1, tid1 = env.new_tenant("contoso")
        path1, gid1 = seal_with_cli(env, g1, "contoso")
        p = cli(env, "grant", "import", path1, "--probe")
        check(p.stdout.splitlines()[0] == gid1, "import prints the grant id", p.stdout)
        check("probe: ok" in p.stdout, "probe result shown", p.stdout)
        p = cli(env, "grant", "import", path1)
        check(p.stdout.splitlines()[0] == gid1, "import is idempotent", p.stdout)

        # a tampered file and a grant sealed to another broker: exit 1, said plainly
        with open(path1) as fh:
            envelope = json.loads(fh.read())
        sealed = envelope["sealed"]
        envelope["sealed"] = sealed[:40] + ("A" if sealed[40] != "A" else "B") + sealed[41:]
        bad = os.path.join(env.base, "tampered.grant")
        with open(bad, "w") as fh:
            fh.write(json.dumps(envelope) + "\n")
        p = cli(env, "grant", "import", bad, want=1)
        other = os.path.join(env.base, "other.pub")
        with open(other, "w") as fh:
            fh.write(base64.b64encode(os.urandom(32)).decode() + "\n")
        with open(os.path.join(env.base, "contoso.secret")) as fh:
            p = cli(env, "grant", "seal", "--broker-key", other, "--tenant-id", tid1,
                    "--client-id", g1["client_id"], "--client-secret-file", "-",
                    "--output", os.path.join(env.base, "other.grant"), input=fh.read())
        p = cli(env, "grant", "import", os.path.join(env.base, "other.grant"), want=1)
        check("different broker" in p.stderr, "sealed for another broker: said so", p.stderr)

        grants = json.loads(cli(env, "grant", "list", "--json").stdout)
        check(isinstance(grants, list) and len(grants) == 1, "one grant listed", grants)
        g = grants[0]
        for k in ("id", "tenant_id", "tenant_name", "client_id", "scopes", "state",
                  "not_before", "not_after", "imported_at"):
            check(k in g, "grant list --json has %s" % k, g)
        check(g["id"] == gid1 and g["state"] == "active" and g["tenant_id"] == tid1,
              "listed grant", g)
        check("client_secret" not in g, "never a secret in grant list", g)
        p = cli(env, "grant", "list")
        check(gid1 in p.stdout and "contoso" in p.stdout and "active" in p.stdout,
              "grant list table", p.stdout)
        shown = json.loads(cli(env, "grant", "show", gid1, "--json").stdout)
        check(shown["id"] == gid1, "grant show --json", shown)
        p = cli(env, "grant", "show", gid1)
        check("client_id: " + g1["client_id"] in p.stdout, "grant show lines", p.stdout)
        p = env.run_cli("grant", "show", "g_" + "0" * 32)
        check(p.returncode in (1, 3) and p.stderr.startswith("custody: "),
              "grant show of an unknown id fails", p.returncode, p.stderr)

        # token in every format (the second call is a cache hit: same token)
        raw = token(env, "contoso", purpose="ticket 42").stdout
        check(raw.endswith("\n") and raw.count("\n") == 1, "raw: one line", len(raw))
        tok = raw.strip()
        check(len(tok) > 20 and tok.count(".") == 2, "raw is the JWT")
        TOKENS.append(tok)
        hdr = token(env, "contoso", "header").stdout
        check(hdr == "Authorization: Bearer %s\n" % tok, "header format")
        js = json.loads(token(env, "contoso", "json", min_ttl=60).stdout)
        check(js["ok"] is True and js["access_token"] == tok and js["token_type"] == "Bearer",
              "json format is the success object")
        for k in ("expires_at", "expires_in", "tenant", "scope", "grant", "audit_seq"):
            check(k in js, "json format has %s" % k, sorted(js))
        check(js["grant"] == gid1 and js["tenant"] == tid1 and js["scope"] == DEFENDER_SCOPE,
              "json format values", {k: js[k] for k in ("grant", "tenant", "scope")})
        sh = subprocess.run(["sh", "-c", 'eval "$(%s --config %s token --tenant contoso '
                             '--format env)" && printf "%%s\\n%%s\\n" "$CUSTODY_TOKEN" '
                             '"$CUSTODY_TOKEN_EXPIRES_AT"' % (shlex.quote(CUSTODY),
                                                              shlex.quote(env.config_path))],
                            capture_output=True, text=True, timeout=60)
        check(sh.returncode == 0, "env format evals", sh.stderr)
        t_env, exp_env = sh.stdout.splitlines()
        check(t_env == tok and exp_env == js["expires_at"], "env format values")

        # the documented libcustody example, built against the shared library
        example = os.path.join(env.base, "example")
        libdir = os.path.join(os.path.dirname(CUSTODY))
        src = os.path.join(os.environ.get("CUSTODY_SOURCE_DIR") or
                           os.path.dirname(os.path.dirname(os.path.dirname(
                               os.path.abspath(__file__)))), "cli")
        # a sanitizer build's libcustody.so needs the example built the same way
        ldd = subprocess.run(["ldd", os.path.join(libdir, "libcustody.so")],
                             capture_output=True, text=True).stdout
        san = ["-fsanitize=address,undefined"] if "libasan" in ldd else []
        cc = subprocess.run(["cc"] + san + ["-std=gnu11", "-Wall", "-Werror", "-I" + src,
                             os.path.join(src, "example.c"), "-L" + libdir, "-lcustody",
                             "-ljansson", "-o", example], capture_output=True, text=True)
        check(cc.returncode == 0, "the libcustody example builds", cc.stderr)
        ex_env = dict(os.environ, CUSTODY_SOCKET=env.tool_path, LD_LIBRARY_PATH=libdir)
        ex = subprocess.run([example, "contoso"], capture_output=True, text=True, timeout=60,
                            env=ex_env)
        check(ex.returncode == 0 and ex.stdout.startswith("token for %s, grant %s" %
                                                           (tid1, gid1)),
              "the example gets a token through libcustody.so", ex.stdout, ex.stderr)
        check(tok not in ex.stdout + ex.stderr, "the example never prints the token")
        ex = subprocess.run([example, "nosuchtenant"], capture_output=True, text=True,
                            timeout=60, env=ex_env)
        check(ex.returncode == 3 and "unknown_tenant" in ex.stderr, "example refusal",
              ex.returncode, ex.stderr)

        # refusals: 3; usage: 2
        p = token(env, "nosuchtenant", want=3)
        check("unknown_tenant" in p.stderr, "unknown tenant named", p.stderr)
        p = token(env, "contoso", want=3, scope="https://graph.microsoft.com/.default")
        check("scope_not_granted" in p.stderr, "scope refusal named", p.stderr)

        # upstream failure: 4 (probe keeps the grant; token gets upstream_rejected)
        g2, tid2 = env.new_tenant("fabrikam", app_extra={"secret_expired": True})
        path2, gid2 = seal_with_cli(env, g2, "fabrikam")
        p = cli(env, "grant", "import", path2, "--probe", want=4)
        check(p.stdout.splitlines()[0] == gid2, "a failed probe still prints the id", p.stdout)
        check("probe failed" in p.stderr, "probe failure explained", p.stderr)
        ids = [x["id"] for x in json.loads(cli(env, "grant", "list", "--json").stdout)]
        check(gid2 in ids, "a failed probe leaves the grant stored", ids)
        p = token(env, "fabrikam", want=4)
        check("upstream_rejected" in p.stderr and "7000222" in p.stderr,
              "upstream rejection with AADSTS code", p.stderr)

        # a local user the config does not know: refused (3), not "unreachable"
        nob = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              CUSTODY, "token", "--tenant", "contoso", "--socket",
                              env.tool_path], capture_output=True, text=True, timeout=60)
        check(nob.returncode == 3 and "unauthenticated" in nob.stderr and nob.stdout == "",
              "an unmapped uid is refused with exit 3", nob.returncode, nob.stderr)

        nob = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              CUSTODY, "lockdown", "--reason", "prank", "--admin-socket",
                              env.admin_path], capture_output=True, text=True, timeout=60)
        check(nob.returncode == 3 and "denied" in nob.stderr, "an admin op without the role "
              "is denied with exit 3", nob.returncode, nob.stderr)

        # not reachable: 5
        p = cli(env, "token", "--tenant", "contoso", "--socket", "/nonexistent/c.sock", want=5)
        p = cli(env, "status", "--admin-socket", "/nonexistent/a.sock", want=5)

        # suspend / resume
        cli(env, "principal", "suspend", "root-tool", "--reason", "test: laptop lost")
        p = token(env, "contoso", want=3)
        check("suspended" in p.stderr, "suspended named", p.stderr)
        st = json.loads(cli(env, "status", "--json").stdout)
        check("root-tool" in st.get("suspended", []), "status lists the suspension", st)
        cli(env, "principal", "resume", "root-tool")
        token(env, "contoso")

        # lockdown / unlock
        cli(env, "lockdown", "--reason", "test: incident 7")
        p = token(env, "contoso", want=3)
        check("locked_down" in p.stderr, "lockdown named", p.stderr)
        p = cli(env, "status")
        check("lockdown: YES" in p.stdout and "incident 7" in p.stdout, "status text", p.stdout)
        cli(env, "unlock")
        check("lockdown: no" in cli(env, "status").stdout, "unlocked")
        token(env, "contoso")

        # revoke: exposure window (json) and sentence
        p = cli(env, "grant", "revoke", "--tenant", "contoso", "--reason", "test: contract ended",
                "--json")
        lines = p.stdout.strip().splitlines()
        check(len(lines) == 1, "one JSON object per revoked grant", p.stdout)
        r = json.loads(lines[0])
        check(list(r) == ["grant", "state", "outstanding_tokens", "valid_until"],
              "revoke --json keys", r)
        check(r["grant"] == gid1 and r["state"] == "revoked", "revoke --json values", r)
        # RFC 3339 UTC strings of one form compare in time order
        check(r["outstanding_tokens"] >= 1 and r["valid_until"] >= js["expires_at"],
              "exposure window: the issued tokens stay valid until the last expires", r,
              js["expires_at"])
        p = token(env, "contoso", want=3)
        check("revoked" in p.stderr, "revoked named", p.stderr)
        p = cli(env, "grant", "revoke", gid2, "--reason", "test: bad secret")
        check(p.stdout.startswith("Revoked %s." % gid2) and "nothing stays exposed" in p.stdout,
              "revoke sentence without outstanding tokens", p.stdout)
        p = env.run_cli("grant", "revoke", gid2, "--reason", "again")
        # idempotent, and says it changed nothing (issue 13 #9)
        check(p.returncode == 0 and p.stdout.startswith(gid2 + " was already revoked by root") and
              "test: bad secret" in p.stdout, "second revoke of the same grant",
              p.returncode, p.stdout, p.stderr)
        shown = json.loads(cli(env, "grant", "show", gid1, "--json").stdout)
        check(shown["state"] == "revoked" and shown.get("reason") == "test: contract ended",
              "grant show after revoke", shown)

        # audit list in three formats, filters, limit
        recs = [json.loads(x) for x in cli(env, "audit", "list", "--format", "json")
                .stdout.splitlines()]
        seqs = [x["seq"] for x in recs]
        check(len(recs) > 10 and seqs == list(range(seqs[0], seqs[0] + len(seqs))),
              "audit list --format json: every record, in order", seqs)
        check(any(x.get("purpose") == "ticket 42" for x in recs), "purpose audited")
        p = cli(env, "audit", "list", "--format", "csv")
        rows = p.stdout.splitlines()
        check(rows[0].startswith("seq,time,event,outcome,tenant,principal"), "csv header", rows[0])
        # reading the audit is audited too: the csv run sees at least the json run's records
        check(len(rows) >= len(recs) + 1 and
              [int(r.split(",")[0]) for r in rows[1:len(recs) + 1]] == seqs,
              "csv: one row per record", len(rows), len(recs))
        p = cli(env, "audit", "list", "--limit", "3", "--format", "json")
        last3 = [json.loads(x)["seq"] for x in p.stdout.splitlines()]
        check(len(last3) == 3 and last3 == sorted(last3) and last3[-1] >= seqs[-1],
              "--limit 3: the newest three, oldest first", last3, seqs[-1])
        p = cli(env, "audit", "list", "--outcome", "denied", "--format", "json")
        check(all(json.loads(x)["outcome"] == "denied" for x in p.stdout.splitlines()),
              "--outcome filter", p.stdout[:500])
        p = cli(env, "audit", "list")
        check(p.stdout.startswith("SEQ ") and "revoke" in p.stdout, "table", p.stdout[:300])

        # audit tail --follow sees a new record within a second or two
        f = subprocess.Popen([CUSTODY, "--config", env.config_path, "audit", "tail", "--follow",
                              "--format", "json"], stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.5)
            token(env, "nosuchtenant-follow", want=3)
            deadline = time.monotonic() + 10
            seen = False
            while time.monotonic() < deadline and not seen:
                line = f.stdout.readline()
                if not line:
                    break
                seen = "nosuchtenant-follow" in line
            check(seen, "audit tail --follow shows the new record")
        finally:
            f.terminate()
            f.wait(10)

        # export + verify (the export with only the verifier key)
        exp = os.path.join(env.base, "contoso-export.json")
        cli(env, "audit", "export", "--tenant", "contoso", "--output", exp)
        vkey = online["audit_verifier_key"]
        p = cli(env, "audit", "verify", "--export", exp, "--key", vkey)
        check(p.stdout.startswith("ok"), "export verifies", p.stdout)
        with open(exp) as fh:
            text = fh.read()
        check(g2["client_id"] not in text, "an export reveals nothing of other tenants")

        # rekey refused while the broker runs
        p = cli(env, "vault", "rekey", want=1)
        check("stop custodyd" in p.stderr, "rekey explains it needs the broker stopped", p.stderr)

        cli(env, "audit", "verify")          # live db, default key from the config
        rc, _ = env.stop_broker()
        check(rc == 0, "custodyd stops cleanly", rc)

        # offline: list reads the file, verify db, tamper -> 6
        offl = cli(env, "audit", "list", "--format", "json").stdout.splitlines()
        check(len(offl) >= len(recs), "audit list works with the broker stopped")
        p = cli(env, "audit", "verify", "--db", env.audit_db, "--key", vkey)
        check(p.stdout.startswith("ok"), "db verifies", p.stdout)
        exp2 = os.path.join(env.base, "contoso-export-offline.json")
        cli(env, "audit", "export", "--tenant", "contoso", "--output", exp2)
        p = cli(env, "audit", "verify", "--export", exp2, "--key", vkey)
        check(p.stdout.startswith("ok"), "an export made offline verifies", p.stdout)
        p = cli(env, "audit", "tail", "--format", "json")
        check(len(p.stdout.splitlines()) == 10, "audit tail: the last ten records", p.stdout)
        bad = os.path.join(env.base, "tampered.db")
        shutil.copy(env.audit_db, bad)
        with open(bad, "r+b") as fh:
            data = fh.read()
            i = data.find(b"ticket 42")
            check(i > 0, "record body found in the db file")
            fh.seek(i)
            fh.write(b"ticket 43")
        p = cli(env, "audit", "verify", "--db", bad, "--key", vkey, want=6)
        check("FAILED" in p.stderr, "verify names the failure", p.stderr)

        # rekey offline; the broker starts with the new key and keeps the grants
        with open(env.config["key_file"], "rb") as fh:
            old_key = fh.read()
        cli(env, "vault", "rekey")
        with open(env.config["key_file"], "rb") as fh:
            check(fh.read() != old_key, "rekey replaced the key file")
        env.start_broker()
        ids = [x["id"] for x in json.loads(cli(env, "grant", "list", "--json").stdout)]
        check(set(ids) == {gid1, gid2}, "grants survive the rekey", ids)
        env.stop_broker()
    print("ok: test_cli_broker")


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        print("FAIL:", e, file=sys.stderr)
        sys.exit(1)

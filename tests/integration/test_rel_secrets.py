#!/usr/bin/env python3
"""Secret hygiene (DESIGN §3, §5, §7): client secrets and access tokens
never reach a file outside the vault (and in the vault only encrypted), a
log, the audit store, or the CLI's output; custodyd cannot dump core.

A full run: several grants with distinct known secrets (each with the
characters base64 and URL encoding change: ~ + / =) are imported through
the CLI, many tokens are issued through the socket and `custody token`
(every token value a client receives is kept), a grant is revoked, the
audit is listed, exported and verified. Then every file under the state
dir — the LMDB vault included (it holds the secrets encrypted, so the
plaintext must not be there), the audit db and its WAL — the runtime dir,
custodyd's log, the IdP's log and everything the CLI printed (except the
token the `custody token` command is asked to print) are searched, as raw
bytes, for every secret (raw, standard and URL-safe base64, URL-encoded)
and every token: none may be found.

Core dumps: custodyd sets RLIMIT_CORE 0 and PR_SET_DUMPABLE 0. The first is
read from /proc/<pid>/limits. The second has no /proc field; what it
changes, observably, is the owner of /proc/<pid>/*: the kernel makes the
files of a non-dumpable process owned by root (task_dump_owner), which is
also what stops another process of the same user from reading its memory
through /proc/<pid>/mem or attaching with ptrace. Seen from root that is
invisible for a daemon that runs as root, so a second custodyd is started
as uid 65534 (setpriv) on its own state dir, and /proc/<pid>/mem and
/proc/<pid>/environ must be owned by uid 0 while its Uid is 65534.
"""

import base64
import json
import os
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (CUSTODYD, GRAPH_SCOPE, DEFENDER_SCOPE, Env, check,  # noqa: E402
                     uds_request, wait_for)

GRANTS = 3
SOCKET_TOKENS = 200


class Tee:
    """Keeps a copy of everything the in-process IdP writes to stderr."""

    def __init__(self, inner, path):
        self.inner = inner
        self.f = open(path, "a")

    def write(self, s):
        self.f.write(s)
        self.f.flush()
        return self.inner.write(s)

    def flush(self):
        self.inner.flush()

    def close(self):
        self.f.close()


def forms(secret):
    b = secret.encode()
    out = {b}
    for enc in (base64.b64encode, base64.urlsafe_b64encode):
        e = enc(b)
        out.add(e)
        out.add(e.rstrip(b"="))
    out.add(urllib.parse.quote(secret, safe="").encode())
    out.add(urllib.parse.quote_plus(secret).encode())
    return out


def files_under(*roots):
    for root in roots:
        if os.path.isfile(root):
            yield root
            continue
        for d, _, names in os.walk(root):
            for n in names:
                p = os.path.join(d, n)
                if os.path.isfile(p) and not os.path.islink(p):
                    yield p


def core_checks():
    """A second custodyd as uid 65534: RLIMIT_CORE 0 and non-dumpable."""
    env = Env("custody-rel-dump")
    proc = None
    try:
        env.init_vault()
        env.write_config()
        subprocess.run(["chown", "-R", "65534:65534", env.base], check=True)
        log = open(env.broker_log, "ab")
        proc = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                 CUSTODYD, "--config", env.config_path, "--foreground"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()

        def up():
            check(proc.poll() is None, "custodyd as uid 65534 exited %r: %s"
                  % (proc.returncode, env.log_text()[-2000:]))
            try:
                return uds_request(env.tool_path, {"op": "ping"}, timeout=2).get("ok")
            except (OSError, ValueError, AssertionError):
                return False
        wait_for(up, 15, what="custodyd as uid 65534")
        pid = proc.pid
        with open("/proc/%d/status" % pid) as f:
            uid = [ln.split()[1] for ln in f if ln.startswith("Uid:")][0]
        check(uid == "65534", "custodyd runs as uid %s, not 65534" % uid)
        with open("/proc/%d/limits" % pid) as f:
            core = [ln for ln in f if ln.startswith("Max core file size")][0]
        check(core.split()[4] == "0", "core dumps are not off: %r" % core)
        for name in ("mem", "environ"):
            st = os.stat("/proc/%d/%s" % (pid, name))
            check(st.st_uid == 0, "/proc/%d/%s owned by uid %d: custodyd is still dumpable "
                  "(PR_SET_DUMPABLE 0 missing)" % (pid, name, st.st_uid))
        print("core: custodyd (uid 65534) has %s and /proc/<pid>/mem owned by root "
              "(not dumpable)" % " ".join(core.split()[:5] + core.split()[5:6]))
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        env.close()


def main():
    env = Env("custody-rel-secrets")
    tee = None
    cli_out = []          # (argv, stdout+stderr) of every CLI run
    tokens = set()
    secrets = []
    token_outputs = []    # what `custody token` printed: holds tokens by design
    try:
        env.init_vault()
        tee = Tee(sys.stderr, os.path.join(env.base, "idp.log"))
        sys.stderr = tee
        idp = env.start_idp()
        env.start_broker()

        def cli(*args, expect=0, is_token=False):
            p = env.run_cli(*args)
            check(p.returncode == expect, "custody %s: exit %d" % (" ".join(args), p.returncode),
                  p.stderr[-1000:])
            if is_token:
                return p
            cli_out.append((args, p.stdout + p.stderr))
            return p

        grants = []
        for k in range(GRANTS):
            g, tid = env.new_tenant(name="hyg%d" % k, scopes=(DEFENDER_SCOPE, GRAPH_SCOPE))
            secrets.append(g["client_secret"])
            path = os.path.join(env.base, "sealed-%d.json" % k)
            with open(path, "w") as f:
                f.write(env.seal(g))
            cli("grant", "import", path)
            os.unlink(path)
            grants.append((g, tid))
        check(len(set(secrets)) == GRANTS, "secrets are not distinct")

        # tokens through the socket, many of them, over all (tenant, scope)
        with env.tool() as c:
            for i in range(SOCKET_TOKENS):
                g, tid = grants[i % GRANTS]
                scope = (DEFENDER_SCOPE, GRAPH_SCOPE)[(i // GRANTS) % 2]
                r = c.request({"op": "token", "tenant": "hyg%d" % (i % GRANTS), "scope": scope,
                               "purpose": "hygiene %d" % i})
                check(r.get("ok") is True, "token failed", r)
                tokens.add(r["access_token"])
        # and through the CLI in every format (their stdout holds the token
        # by design; it is checked for secrets, and for other tokens)
        for fmt in ("raw", "json", "header", "env"):
            p = cli("token", "--tenant", "hyg0", "--format", fmt, is_token=True)
            out = p.stdout
            token_outputs.append(out.encode())
            if fmt == "json":
                tokens.add(json.loads(out)["access_token"])
            elif fmt == "raw":
                tokens.add(out.strip())
            for s in secrets:
                for f in forms(s):
                    check(f.decode() not in out + p.stderr, "a secret in `custody token` output")
            cli_out.append((("token", fmt), p.stderr))
        check(len(tokens) >= GRANTS * 2, "expected distinct tokens per (tenant, scope)", len(tokens))

        # revoke, list, export, verify, status
        cli("grant", "revoke", "--tenant", "hyg1", "--reason", "hygiene test", "--json")
        cli("grant", "list", "--json")
        cli("status", "--json")
        cli("audit", "list", "--limit", "1000", "--format", "json")
        cli("audit", "list", "--tenant", "hyg0", "--format", "csv")
        export = os.path.join(env.base, "export-hyg0.json")
        cli("audit", "export", "--tenant", "hyg0", "--output", export)
        vkey = json.loads(cli("keys", "--json").stdout)["audit_verifier_key"]
        cli("audit", "verify", "--export", export, "--key", vkey)
        rc, _ = env.stop_broker()
        check(rc == 0, "custodyd exit status %r" % rc)
        cli("audit", "verify", "--db", env.audit_db, "--key", vkey)
        idp.stop()
        env.idp = None
        sys.stderr = tee.inner
        tee.close()
        cli_file = os.path.join(env.base, "cli-output.txt")
        with open(cli_file, "w") as f:
            for args, text in cli_out:
                f.write("$ custody %s\n%s\n" % (" ".join(args), text))

        needles = []
        for s in secrets:
            needles += [("client secret (%s...)" % s[:9], f) for f in forms(s)]
        needles += [("access token (%s...)" % t[:12], t.encode()) for t in tokens]
        scanned = 0
        scanned_bytes = 0
        where = [env.state_dir, env.config["runtime_dir"], env.broker_log,
                 os.path.join(env.base, "idp.log"), cli_file, export]
        found = []
        for path in files_under(*where):
            with open(path, "rb") as f:
                data = f.read()
            scanned += 1
            scanned_bytes += len(data)
            for what, n in needles:
                if n in data:
                    found.append("%s in %s" % (what, path))
        check(not found, "secrets or tokens found on disk", found[:10])
        # the search itself works: it finds the tokens where they belong
        # (`custody token` output) and a secret in each encoding it checks
        control = b"\n".join(token_outputs)
        check(any(t.encode() in control for t in tokens), "token search finds nothing")
        for f in forms(secrets[0]):
            check(any(n in b"x" + f + b"x" for _, n in needles), "secret form not searched", f)
        check(os.path.exists(os.path.join(env.vault_dir, "data.mdb")), "no vault data scanned?")
        print("secrets: %d secrets (x%d encodings) and %d distinct tokens searched in %d files "
              "(%d KiB: vault, audit db + WAL, runtime dir, custodyd log, IdP log, CLI output, "
              "export): none found" % (len(secrets), len(forms(secrets[0])), len(tokens),
                                       scanned, scanned_bytes // 1024))
        core_checks()
    except BaseException:
        if tee is not None:
            sys.stderr = tee.inner
        sys.stderr.write(env.log_text()[-4000:])
        raise
    finally:
        if tee is not None:
            sys.stderr = tee.inner
        env.close()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""test_grants_probe.py — a grant whose credential fails never displaces a
grant that works (issue 13, item 6).

A tenant holds a working grant (probed ok). A newer grant with a wrong
secret is imported with --probe: the CLI prints progress while the probe
waits, exits 4, keeps the grant, and token requests go on using the
working grant; `grant list` says which grant serves and why. The verdict
survives a restart. A grant imported without --probe whose secret is wrong
is marked by its first refused fetch and the next request goes back to the
working grant. Re-importing with --probe once the secret works makes the
newer grant serve.
"""

import copy
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Env, check  # noqa: E402


def write(env, name, text):
    p = os.path.join(env.base, name)
    with open(p, "w") as f:
        f.write(text)
    return p


def summary(env):
    """Every grant of the tenant with what the choice looks at, and the
    broker's log: what a failure message needs to say why."""
    p = env.run_cli("grant", "list", "--json")
    rows = []
    for g in (json.loads(p.stdout) if p.returncode == 0 else []):
        rows.append("%s imported_at=%s not_before=%s credential=%s checked_at=%s serving=%s (%s)" % (
            g["id"], g.get("imported_at"), g.get("not_before"), g.get("credential"),
            g.get("credential_checked_at"), g.get("serving"), g.get("serving_why")))
    return "\n".join(rows) + "\n--- custodyd log:\n" + env.log_text()


def listed(env):
    p = env.run_cli("grant", "list", "--json")
    check(p.returncode == 0, "grant list --json", p.stderr)
    return {g["id"]: g for g in json.loads(p.stdout)}


def main():
    with Env("custody-probe") as env:
        idp = env.start_idp()
        env.config["upstream"]["probe_wait_s"] = 7
        env.init_vault()
        env.start_broker()
        good, tid = env.new_tenant("contoso")
        # No pause between the two imports: grants imported within one
        # second must still be told apart by import order, before and
        # after a restart (imported_at has whole seconds, and the grant
        # table's order differs after a restart). Start early in a second
        # so both imports land in it most times and the tie is exercised.
        while time.time() % 1.0 > 0.2:
            time.sleep(0.02)
        r = env.import_grant(good, probe=True)
        check(r["probe"]["ok"] is True, "the working grant probes ok", r)
        gid_good = r["grant"]["id"]
        check(r["grant"]["credential"] == "works" and r["grant"]["serving"] is True,
              "a probed grant says its credential works and it serves", r["grant"])

        # a newer grant for the same tenant with a wrong secret, through the CLI
        bad = copy.deepcopy(good)
        bad["client_secret"] = "wrong-" + good["client_secret"]
        path = write(env, "bad.grant", env.seal(bad))
        p = env.run_cli("grant", "import", path, "--probe", timeout=60)
        check(p.returncode == 4, "a failed probe exits 4", p.returncode, p.stdout, p.stderr)
        gid_bad = p.stdout.strip().splitlines()[0]
        check(gid_bad.startswith("g_") and gid_bad != gid_good, "the bad grant's id", p.stdout)
        check("probe: asking the provider" in p.stderr, "the probe says it starts", p.stderr)
        check("probe: still waiting" in p.stderr,
              "progress is printed while the probe waits", p.stderr)
        check("not preferred" in p.stderr.strip().splitlines()[-1],
              "the failure says the grant is kept but not preferred", p.stderr)

        t = env.token("contoso")
        check(t.get("ok") is True and t["grant"] == gid_good,
              "the working grant still serves after a failed probe", t)
        gl = listed(env)
        check(gl[gid_bad]["credential"] == "failed" and gl[gid_bad]["serving"] is False,
              "the failed grant is listed as not serving", gl[gid_bad])
        check("credential failed" in gl[gid_bad]["serving_why"] and
              gid_good in gl[gid_bad]["serving_why"],
              "grant list says why the failed grant does not serve", gl[gid_bad])
        check("AADSTS" in gl[gid_bad]["credential_error"] or
              "invalid_client" in gl[gid_bad]["credential_error"],
              "the provider's reason is kept", gl[gid_bad])
        check(gl[gid_good]["serving"] is True and "works" in gl[gid_good]["serving_why"],
              "the working grant is listed as serving", gl[gid_good])
        p = env.run_cli("grant", "list")
        rows = {ln.split()[0]: ln for ln in p.stdout.splitlines()[1:] if ln.strip()}
        check("SERVES" in p.stdout.splitlines()[0] and "WHY" in p.stdout.splitlines()[0],
              "the table has SERVES and WHY", p.stdout)
        check(" yes " in rows[gid_good] and " no " in rows[gid_bad] and
              "failed" in rows[gid_bad], "the table marks who serves", p.stdout)
        p = env.run_cli("grant", "show", gid_bad)
        check("serving: no" in p.stdout and "credential: failed" in p.stdout,
              "grant show says it too", p.stdout)

        # the verdict is kept in the vault: it survives a restart
        env.stop_broker()
        env.start_broker()
        t = env.token("contoso", min_ttl=3000)
        check(t.get("ok") is True and t["grant"] == gid_good,
              "after a restart the working grant still serves", t)
        check(listed(env)[gid_bad]["credential"] == "failed", "the failure survives a restart")

        # a newer grant imported WITHOUT --probe, wrong secret: its first
        # fetch is refused and marks it; the next request uses the good one
        worse = copy.deepcopy(good)
        worse["client_secret"] = "also-wrong-" + good["client_secret"]
        gid_worse = env.import_grant(worse)["grant"]["id"]
        check(listed(env)[gid_worse]["serving"] is True, "an untried newer grant serves")
        t = env.token("contoso", min_ttl=3500)
        check(t.get("ok") is False and t.get("error") == "upstream_rejected",
              "the untried bad grant is refused upstream", t)
        t = env.token("contoso", min_ttl=3500)
        check(t.get("ok") is True and t["grant"] == gid_good,
              "after one refusal the working grant serves again", t)
        check(listed(env)[gid_worse]["credential"] == "failed",
              "the refused grant is marked failed")

        # the customer fixes the app (the bad grant's secret is now the one
        # Entra knows): probing again makes the newer grant serve
        idp.add_app(tenant_id=tid, tenant_name="contoso", client_id=good["client_id"],
                    secret=bad["client_secret"])
        p = env.run_cli("grant", "import", path, "--probe", timeout=60)
        check(p.returncode == 0 and "probe: ok" in p.stdout, "a second probe works",
              p.stdout, p.stderr)
        gl = listed(env)
        if not (gl[gid_bad]["credential"] == "works" and gl[gid_bad]["serving"] is True):
            check(False, "the re-probed grant serves (good %s, bad %s, worse %s)\n%s" % (
                gid_good, gid_bad, gid_worse, summary(env)), gl[gid_bad])
        t = env.token("contoso", min_ttl=3599)
        check(t.get("ok") is True and t["grant"] == gid_bad, "tokens come from it", t)
        env.stop_broker()
    print("ok: test_grants_probe")


if __name__ == "__main__":
    main()

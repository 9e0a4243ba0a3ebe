#!/usr/bin/env python3
"""A hostile or broken identity provider (DESIGN §10): whatever the token
endpoint does — garbage, a cut-off JSON object, an 8 MiB body, a trickle, no
answer at all, a connection reset, 429 + Retry-After, a certificate for
another name, a certificate from an unknown CA — the tool gets a clear error
code (upstream_unavailable / upstream_rejected / rate_limited) within the
call's budget — upstream.timeout_ms per attempt, retries + 1 attempts, the
backoff between them — plus a small slack, and custodyd keeps running (it
still answers ping, and stops cleanly at the end).

Three fake IdPs: the normal one (its CA trusted), one whose certificate names
wrong.example.invalid (its CA trusted too, so only the name is wrong) and one
whose CA custodyd was never given. Prints the time each case took.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DEFENDER_SCOPE, Env, check, expect_error  # noqa: E402

# upstream.timeout_ms bounds one HTTP attempt; a call makes at most
# retries + 1 attempts with 200 ms << i backoff between them (broker/tokens.c
# fetch budget), so that sum is the bound a tool may wait.
TIMEOUT_MS = 2000
RETRIES = 1
SLACK_S = 3.0
BOUND_S = (TIMEOUT_MS * (RETRIES + 1) + sum(200 << i for i in range(RETRIES))) / 1000.0 + SLACK_S


def main():
    env = Env("custody-rel-upstream")
    others = []
    results = []
    try:
        from idp import FakeIdP
        env.init_vault()
        idp = env.start_idp()
        wrong = FakeIdP(os.path.join(env.base, "idp-wrong-name"), wrong_name_cert=True)
        wrong.start()
        others.append(wrong)
        unknown = FakeIdP(os.path.join(env.base, "idp-unknown-ca"))
        unknown.start()
        others.append(unknown)
        # trust the normal IdP's CA and the wrong-name IdP's CA, not the third
        bundle = os.path.join(env.base, "ca-bundle.pem")
        with open(bundle, "w") as out:
            for ca in (idp.ca_file, wrong.ca_file):
                with open(ca) as f:
                    out.write(f.read())
        env.config["upstream"].update({"ca_file": bundle, "timeout_ms": TIMEOUT_MS,
                                       "retries": RETRIES})
        env.start_broker()
        pid = env.pid()

        def alive():
            check(env.broker.poll() is None, "custodyd died (status %r)" % env.broker.returncode)
            with env.tool(timeout=5) as c:
                check(c.request({"op": "ping"}).get("ok") is True, "custodyd stopped answering")

        def case(name, tenant, code, bound_s=BOUND_S):
            t0 = time.monotonic()
            r = env.token(tenant)
            took = time.monotonic() - t0
            results.append((name, took, r.get("error")))
            expect_error(r, code)
            check("access_token" not in r, "%s: a token came with an error" % name, r)
            check(took < bound_s, "%s: answered after %.2f s (bound %.1f s)" % (name, took, bound_s))
            alive()
            return r

        faults = [("garbage", "upstream_unavailable"), ("truncated", "upstream_unavailable"),
                  ("huge", "upstream_unavailable"), ("slow", "upstream_unavailable"),
                  ("hang", "upstream_unavailable"), ("reset", "upstream_unavailable"),
                  ("500", "upstream_unavailable")]
        for i, (mode, code) in enumerate(faults):
            g, tid = env.new_tenant(name="fault%d" % i)
            env.import_grant(g)
            idp.set_fault(mode, tenant=tid)   # slow without delay_s: a byte per 100 ms
            case(mode, "fault%d" % i, code)

        # 429 + Retry-After: rate_limited with retry_after, and the hold keeps
        # further callers off the provider until then
        g, tid = env.new_tenant(name="throttled")
        env.import_grant(g)
        idp.set_fault("429", tenant=tid, retry_after=7)
        r = case("429", "throttled", "rate_limited")
        check(isinstance(r.get("retry_after"), int) and 1 <= r["retry_after"] <= 7,
              "rate_limited without a sensible retry_after", r)
        calls = idp.counters()["token_calls"].get(tid, 0)
        r = case("429 again", "throttled", "rate_limited")
        check(idp.counters()["token_calls"].get(tid, 0) == calls,
              "a second caller reached the provider during its Retry-After hold")

        # the provider refuses the credential: upstream_rejected with its codes
        g, tid = env.new_tenant(name="expired", app_extra={"secret_expired": True})
        env.import_grant(g)
        r = case("secret expired", "expired", "upstream_rejected")
        check(7000222 in (r.get("upstream_codes") or []), "AADSTS code not passed on", r)

        # TLS: a certificate for another name, a CA nobody trusts
        for name, srv in (("tls wrong name", wrong), ("tls unknown CA", unknown)):
            tid = "ffffffff-0000-4000-8000-%012d" % len(results)
            cid = "11111111-0000-4000-8000-%012d" % len(results)
            srv.add_app(tenant_id=tid, tenant_name=name.replace(" ", "-"), client_id=cid,
                        secret="tls-secret-" + tid)
            g = {"custody_grant": 1, "tenant_id": tid, "tenant_name": name.replace(" ", "-"),
                 "token_endpoint": "https://127.0.0.1:%d/%s/oauth2/v2.0/token" % (srv.port, tid),
                 "client_id": cid, "client_secret": "tls-secret-" + tid,
                 "scopes": [DEFENDER_SCOPE]}
            env.import_grant(g)
            case(name, name.replace(" ", "-"), "upstream_unavailable")
            check(srv.counters()["token_calls_total"] == 0,
                  "%s: a token request reached a server custodyd must not trust" % name)

        # and a healthy tenant still works after all that
        g, tid = env.new_tenant(name="healthy")
        env.import_grant(g)
        r = env.token("healthy")
        check(r.get("ok") is True, "a healthy tenant failed after the faults", r)
        check(env.pid() == pid, "custodyd was restarted?")
        rc, _ = env.stop_broker()
        check(rc == 0, "custodyd exit status %r" % rc)
        for name, took, err in results:
            print("upstream %-16s -> %-22s in %.2f s" % (name, err, took))
        print("upstream: %d fault cases, all within %.1f s (timeout_ms %d x %d attempts + "
              "backoff + %.1f s slack), custodyd never died"
              % (len(results), BOUND_S, TIMEOUT_MS, RETRIES + 1, SLACK_S))
    except BaseException:
        sys.stderr.write(env.log_text()[-6000:])
        raise
    finally:
        for s in others:
            try:
                s.stop()
            except Exception:
                pass
        env.close()


if __name__ == "__main__":
    main()

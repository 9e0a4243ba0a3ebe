#!/usr/bin/env python3
"""make_audit_seeds.py — (re)make the seed corpus of fuzz-audit_export:
a real custodyd issues a few tokens for two tenants (and forty for a third,
so one export spans several of the verifier's batches), `custody audit export`
writes tenant exports, and this script stores them with a few broken
variants (a changed record, a cut-off document, a dropped proof, a forged
signature line) plus the verifier key they verify with (export.vkey, passed
to the target through $CUSTODY_FUZZ_VKEY_FILE).

    CUSTODY_BUILD_DIR=build python3 tests/fuzz/make_audit_seeds.py

Run by hand when the export format changes; the output is committed.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from harness import Env, check  # noqa: E402

OUT = os.path.join(HERE, "corpus", "audit_export")


def main():
    os.makedirs(OUT, exist_ok=True)
    env = Env("custody-fuzz-seeds")
    try:
        env.init_vault()
        env.start_idp()
        env.config["audit"]["origin"] = "custody.fuzz/audit"
        env.start_broker()
        for name in ("alpha", "beta"):
            g, _ = env.new_tenant(name=name)
            env.import_grant(g)
            for _ in range(3):
                check(env.token(name).get("ok") is True, "token failed")
        # more records than a batch of the record-at-a-time reader (16,
        # audit/verify.c), so the fuzzer starts from exports that span
        # several, read by both threads (refusals are records too)
        g, _ = env.new_tenant(name="gamma")
        env.import_grant(g)
        for i in range(40):
            env.token("gamma", purpose="batch %d" % i)
        env.admin_request("audit.checkpoint")
        env.token("alpha", purpose="after the checkpoint")
        vkey = env.run_cli("keys", "--json")
        vkey = json.loads(vkey.stdout)["audit_verifier_key"]
        docs = {}
        for name in ("alpha", "beta", "gamma"):
            path = os.path.join(env.base, name + ".json")
            p = env.run_cli("audit", "export", "--tenant", name, "--output", path)
            check(p.returncode == 0, "export failed", p.stderr)
            with open(path, "rb") as f:
                docs[name] = f.read()
            p = env.run_cli("audit", "verify", "--export", path, "--key", vkey)
            check(p.returncode == 0, "fresh export does not verify", p.stdout, p.stderr)
        env.stop_broker()
    finally:
        env.close()

    with open(os.path.join(OUT, "export.vkey"), "w") as f:
        f.write(vkey + "\n")
    for name, data in docs.items():
        with open(os.path.join(OUT, "valid_%s.json" % name), "wb") as f:
            f.write(data)
    data = docs["alpha"]
    doc = json.loads(data)
    variants = {
        "cut_half.json": data[:len(data) // 2],
        "empty.json": b"",
        "not_object.json": b"[]",
    }
    # structural edits when the shape allows them
    recs = doc.get("records") if isinstance(doc, dict) else None
    if isinstance(recs, list) and recs:
        d = json.loads(data)
        del d["records"][len(d["records"]) // 2]   # a gap in the tenant chain
        variants["dropped_record.json"] = json.dumps(d).encode()
        d = json.loads(data)
        d["records"][-1]["body"] = d["records"][-1]["body"].replace('"ok"', '"ko"', 1)
        variants["changed_body.json"] = json.dumps(d).encode()
        d = json.loads(data)
        r0 = d["records"][0]
        for k in ("inclusion", "proof", "inclusion_proof", "audit_path"):
            if isinstance(r0, dict) and k in r0:
                r0[k] = r0[k][:-1] if isinstance(r0[k], list) else None
        variants["short_proof.json"] = json.dumps(d).encode()
    for n, v in variants.items():
        with open(os.path.join(OUT, n), "wb") as f:
            f.write(v)
    print("wrote %d seeds and export.vkey to %s" % (len(docs) + len(variants), OUT))


if __name__ == "__main__":
    main()

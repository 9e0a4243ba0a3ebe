#!/usr/bin/python3
"""Write the seed corpora of fuzz-cosig_note and fuzz-witness_request:
checkpoints signed by the test log key (seed bytes 3, "custody.test/audit")
carrying cosignatures by the test witness key (seed bytes 7,
"witness.test/w1"), and add-checkpoint request bodies. Run from anywhere
with Debian's python3 (python3-cryptography); the outputs are committed."""
import base64, hashlib, os, struct, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

here = os.path.dirname(os.path.abspath(__file__))
log = Ed25519PrivateKey.from_private_bytes(bytes([3]) * 32)
wit = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
ORIGIN, WNAME = "custody.test/audit", "witness.test/w1"

def pub(k):
    from cryptography.hazmat.primitives import serialization as s
    return k.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)

def kid(name, typ, k):
    return hashlib.sha256(name.encode() + b"\n" + bytes([typ]) + pub(k)).digest()[:4]

def leaf(b):
    return hashlib.sha256(b"\x00" + b).digest()

def node(l, r):
    return hashlib.sha256(b"\x01" + l + r).digest()

def mth(leaves):
    if len(leaves) == 0:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))

def checkpoint(size, leaves):
    body = "%s\n%d\n%s\n" % (ORIGIN, size, base64.b64encode(mth(leaves[:size])).decode())
    sig = kid(ORIGIN, 1, log) + log.sign(body.encode())
    return body, body + "\n\u2014 %s %s\n" % (ORIGIN, base64.b64encode(sig).decode())

def cosig(body, t):
    msg = ("cosignature/v1\ntime %d\n" % t).encode() + body.encode()
    raw = kid(WNAME, 4, wit) + struct.pack(">Q", t) + wit.sign(msg)
    return "\u2014 %s %s\n" % (WNAME, base64.b64encode(raw).decode())

leaves = [leaf(b"record %d" % i) for i in range(8)]
out = os.path.join(here, "corpus", "cosig_note")
os.makedirs(out, exist_ok=True)
b5, n5 = checkpoint(5, leaves)
b8, n8 = checkpoint(8, leaves)
seeds = {
    "checkpoint.note": n5,
    "cosigned.note": n5 + cosig(b5, 1690000000),
    "future.note": n8 + cosig(b8, 1800000000),
    "extension.note": n8.replace("\n\n", "\nextension line\n\n", 1),
}
for name, text in seeds.items():
    with open(os.path.join(out, name), "w", encoding="utf-8") as f:
        f.write(text)
req = os.path.join(here, "corpus", "witness_request")
os.makedirs(req, exist_ok=True)
with open(os.path.join(req, "first.req"), "w", encoding="utf-8") as f:
    f.write("old 0\n\n" + n5)
# consistency proof 5 -> 8 (RFC 9162 2.1.4.1)
def subproof(m, ls, b):
    n = len(ls)
    if m == n:
        return [] if b else [mth(ls)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return subproof(m, ls[:k], b) + [mth(ls[k:])]
    return subproof(m - k, ls[k:], False) + [mth(ls[:k])]
proof = subproof(5, leaves, True)
with open(os.path.join(req, "update.req"), "w", encoding="utf-8") as f:
    f.write("old 5\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof) + "\n" + n8)
print("seeds written", file=sys.stderr)

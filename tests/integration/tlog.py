"""tlog.py — an independent implementation, from the C2SP spec texts
(signed-note, tlog-checkpoint, tlog-cosignature, tlog-witness) and RFC
6962/9162, of what a log and a witness client do: Merkle hashing and
consistency proofs, signed checkpoints, verifier keys, and cosignature/v1
verification. The tests use it to check custody's C code against a second
implementation. Needs Debian's python3-cryptography (/usr/bin/python3).
"""

import base64
import hashlib
import struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)

DASH = "\u2014"


def leaf_hash(b):
    return hashlib.sha256(b"\x00" + b).digest()


def node_hash(l, r):
    return hashlib.sha256(b"\x01" + l + r).digest()


def _split(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves):
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def consistency_proof(m, leaves):
    """RFC 9162 2.1.4.1 PROOF(m, D[n])."""
    def sub(m, ls, b):
        n = len(ls)
        if m == n:
            return [] if b else [mth(ls)]
        k = _split(n)
        if m <= k:
            return sub(m, ls[:k], b) + [mth(ls[k:])]
        return sub(m - k, ls[k:], False) + [mth(ls[:k])]
    return sub(m, leaves, True)


def raw_pub(priv):
    return priv.public_key().public_bytes(serialization.Encoding.Raw,
                                          serialization.PublicFormat.Raw)


def key_id(name, typ, pub):
    return hashlib.sha256(name.encode() + b"\n" + bytes([typ]) + pub).digest()[:4]


def vkey(name, typ, pub):
    return "%s+%s+%s" % (name, key_id(name, typ, pub).hex(),
                         base64.b64encode(bytes([typ]) + pub).decode())


def parse_vkey(s):
    name, hexid, b64 = s.split("+", 2)
    raw = base64.b64decode(b64, validate=True)
    assert len(raw) == 33, "vkey: %d bytes" % len(raw)
    assert key_id(name, raw[0], raw[1:]).hex() == hexid, "vkey: key id does not match"
    return name, raw[0], raw[1:]


class Log:
    """A log with an Ed25519 key signing C2SP checkpoints."""

    def __init__(self, origin, seed=None):
        self.origin = origin
        self.key = (Ed25519PrivateKey.from_private_bytes(seed) if seed
                    else Ed25519PrivateKey.generate())
        self.pub = raw_pub(self.key)
        self.leaves = []

    def vkey(self):
        return vkey(self.origin, 1, self.pub)

    def append(self, n):
        for _ in range(n):
            self.leaves.append(leaf_hash(b"entry %d" % len(self.leaves)))

    def body(self, size=None, root=None):
        size = len(self.leaves) if size is None else size
        root = mth(self.leaves[:size]) if root is None else root
        return "%s\n%d\n%s\n" % (self.origin, size, base64.b64encode(root).decode())

    def checkpoint(self, size=None, root=None, signer=None, name=None):
        body = self.body(size, root)
        key = signer or self.key
        name = name or self.origin
        sig = key_id(name, 1, raw_pub(key)) + key.sign(body.encode())
        return body + "\n%s %s %s\n" % (DASH, name, base64.b64encode(sig).decode())

    def proof(self, m, n=None):
        n = len(self.leaves) if n is None else n
        return consistency_proof(m, self.leaves[:n]) if 0 < m < n else []


def add_checkpoint_body(old, proof, checkpoint):
    return ("old %d\n" % old + "".join(base64.b64encode(h).decode() + "\n" for h in proof)
            + "\n" + checkpoint).encode()


def verify_cosignature(line, body, wvkey):
    """Check one note signature line against a witness vkey (type 0x04).
    Returns the timestamp; raises AssertionError otherwise."""
    name, typ, pub = parse_vkey(wvkey)
    assert typ == 4, "witness key type %d" % typ
    assert line.startswith(DASH + " "), "not a signature line: %r" % line
    lname, b64 = line[2:].split(" ", 1)
    assert lname == name, "cosignature by %r, expected %r" % (lname, name)
    raw = base64.b64decode(b64.strip(), validate=True)
    assert len(raw) == 4 + 8 + 64, "cosignature length %d" % len(raw)
    assert raw[:4] == key_id(name, 4, pub), "cosignature key id"
    (t,) = struct.unpack(">Q", raw[4:12])
    msg = ("cosignature/v1\ntime %d\n" % t).encode() + body.encode()
    Ed25519PublicKey.from_public_bytes(pub).verify(raw[12:], msg)
    return t


def cosign(body, name, priv, t, kid=None):
    """A cosignature/v1 line by priv (a test witness in Python); kid
    overrides the key id (a forgery under another witness's id)."""
    msg = ("cosignature/v1\ntime %d\n" % t).encode() + body.encode()
    raw = (kid or key_id(name, 4, raw_pub(priv))) + struct.pack(">Q", t) + priv.sign(msg)
    return "%s %s %s\n" % (DASH, name, base64.b64encode(raw).decode())

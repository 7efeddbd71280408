"""RFC 9162 section 2.1.1 Merkle tree hashing with SHA-256.

leaf hash = SHA-256(0x00 || entry)
node hash = SHA-256(0x01 || left || right)
empty tree root = SHA-256("")
"""

import hashlib

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()

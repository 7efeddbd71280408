"""Inclusion and consistency proofs: generation from any hash source, and verification.

Proof *generation* follows the recursive definitions of RFC 9162 section 2.1.3.1
(PATH) and 2.1.4.1 (SUBPROOF), unrolled into loops. Every hash a proof needs is
the root of a range ``[a, b)`` of leaves that is aligned the way those
recursions align it, so each range splits into a few complete subtrees
(`Node`s). A `HashReader` supplies complete-subtree hashes in one batch, which
lets a reader backed by tiles or a database fetch exactly what it needs at once.

Proof *verification* implements RFC 9162 sections 2.1.3.2 and 2.1.4.2 and
fails closed: any doubt raises `VerificationError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from overt.errors import MalformedError, VerificationError
from overt.tlog.hashing import EMPTY_ROOT, HASH_SIZE, leaf_hash, node_hash


class Node(NamedTuple):
    """The complete subtree of 2**level leaves starting at leaf n << level."""

    level: int
    n: int


class HashReader(Protocol):
    def read_hashes(self, nodes: Sequence[Node]) -> list[bytes]:
        """Return the hash of each complete subtree in `nodes`, in order."""
        ...


def _largest_power_of_two_below(n: int) -> int:
    """k such that k < n <= 2k, for n > 1 (RFC 9162 section 2.1.1)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(start: int, end: int) -> list[Node]:
    """Split the aligned range [start, end) into maximal complete subtrees, left to right."""
    nodes = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start & ((1 << level) - 1):
            raise ValueError(f"range [{start}, {end}) is not aligned for a Merkle subtree")
        nodes.append(Node(level, start >> level))
        start += 1 << level
    return nodes


def _fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a right-edge range from its complete subtrees (hashed right to left)."""
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def _resolve(reader: HashReader, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    per_range = [range_nodes(a, b) for a, b in ranges]
    flat = [n for nodes in per_range for n in nodes]
    hashes = reader.read_hashes(flat)
    if len(hashes) != len(flat):
        raise MalformedError(f"hash reader returned {len(hashes)} hashes for {len(flat)} nodes")
    out = []
    pos = 0
    for nodes in per_range:
        count = len(nodes)
        out.append(hashes[pos] if count == 1 else _fold(hashes[pos : pos + count]))
        pos += count
    return out


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots form PATH(index, D[0:size]), leaf side first."""
    if not 0 <= index < size:
        raise MalformedError(f"leaf index {index} is outside a tree of size {size}")
    ranges = []
    a, b = 0, size
    while b - a > 1:
        k = _largest_power_of_two_below(b - a)
        if index < a + k:
            ranges.append((a + k, b))
            b = a + k
        else:
            ranges.append((a, a + k))
            a += k
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots form PROOF(old_size, D[0:new_size]), inner first."""
    if not 0 <= old_size <= new_size:
        raise MalformedError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size == 0 or old_size == new_size:
        return []
    ranges = []
    a, b = 0, new_size
    complete = True  # SUBPROOF's b flag: is [a, b) still the original left edge?
    while True:
        m = old_size - a
        if m == b - a:
            if not complete:
                ranges.append((a, b))
            break
        k = _largest_power_of_two_below(b - a)
        if m <= k:
            ranges.append((a + k, b))
            b = a + k
        else:
            ranges.append((a, a + k))
            a += k
            complete = False
    ranges.reverse()
    return ranges


def inclusion_proof(reader: HashReader, index: int, size: int) -> list[bytes]:
    return _resolve(reader, inclusion_ranges(index, size))


def consistency_proof(reader: HashReader, old_size: int, new_size: int) -> list[bytes]:
    return _resolve(reader, consistency_ranges(old_size, new_size))


def root_hash(reader: HashReader, size: int) -> bytes:
    if size < 0:
        raise MalformedError(f"negative tree size {size}")
    if size == 0:
        return EMPTY_ROOT
    return _resolve(reader, [(0, size)])[0]


def _check_hash(h: bytes, what: str) -> None:
    if len(h) != HASH_SIZE:
        raise VerificationError(f"{what} is {len(h)} bytes, want {HASH_SIZE}")


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2: the root that `proof` implies for `leaf` at `index`."""
    if not 0 <= index < size:
        raise VerificationError(f"leaf index {index} is outside a tree of size {size}")
    _check_hash(leaf, "leaf hash")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        _check_hash(p, "proof hash")
        if sn == 0:
            raise VerificationError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise VerificationError unless `proof` shows `leaf` at `index` in the tree `root`."""
    if root_from_inclusion_proof(leaf, index, size, proof) != root:
        raise VerificationError(f"inclusion proof for leaf {index} does not match the root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 section 2.1.4.2: raise unless `proof` shows old is a prefix of new.

    A proof from the empty tree is refused: every tree extends the empty tree,
    so such a "proof" proves nothing, and callers that start from nothing (a
    witness's first checkpoint) must say so explicitly instead.
    """
    if old_size < 0 or new_size < old_size:
        raise VerificationError(f"no consistency from size {old_size} to {new_size}")
    if old_size == 0:
        raise VerificationError("a consistency proof from the empty tree proves nothing")
    if old_size == new_size:
        if proof:
            raise VerificationError("sizes are equal but the consistency proof is not empty")
        if old_root != new_root:
            raise VerificationError("sizes are equal but the roots differ")
        return
    if not proof:
        raise VerificationError("consistency proof is empty")
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    path = list(proof)
    for p in path:
        _check_hash(p, "proof hash")
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("consistency proof is too short")
    if fr != old_root:
        raise VerificationError("consistency proof does not match the old root")
    if sr != new_root:
        raise VerificationError("consistency proof does not match the new root")


class MemoryTree:
    """An append-only Merkle tree held in memory, keeping every complete subtree hash.

    `levels[h][i]` is the hash of the complete subtree of 2**h leaves starting
    at leaf i * 2**h, which is exactly what a `HashReader` serves. Appending in
    bulk hashes whole levels at a time, which is what makes building large
    trees fast in Python.
    """

    def __init__(self) -> None:
        self.levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append(self, entry: bytes) -> int:
        """Append one entry; return its index."""
        self.extend_hashes([leaf_hash(entry)])
        return self.size - 1

    def extend(self, entries: Sequence[bytes]) -> None:
        sha = hashlib.sha256
        self.extend_hashes([sha(b"\x00" + e).digest() for e in entries])

    def extend_hashes(self, leaf_hashes: Sequence[bytes]) -> None:
        sha = hashlib.sha256
        level = 0
        new: Sequence[bytes] = leaf_hashes
        while new:
            current = self.levels[level]
            before = len(current)
            current.extend(new)
            after = len(current)
            if level + 1 == len(self.levels):
                if after < 2:
                    break
                self.levels.append([])
            first, last = before // 2, after // 2
            c = current
            new = [sha(b"\x01" + c[2 * i] + c[2 * i + 1]).digest() for i in range(first, last)]
            level += 1

    def read_hashes(self, nodes: Sequence[Node]) -> list[bytes]:
        levels = self.levels
        try:
            return [levels[level][index] for level, index in nodes]
        except IndexError as exc:
            raise MalformedError("requested a subtree the tree does not have yet") from exc

    def root(self, size: int | None = None) -> bytes:
        return root_hash(self, self.size if size is None else size)

    def leaf_hash(self, index: int) -> bytes:
        return self.levels[0][index]

"""Merkle roots and proofs against a naive RFC 9162 reference, and tampering.

The reference below is a direct transcription of the recursive definitions of
RFC 9162 section 2.1 (MTH, PATH, PROOF/SUBPROOF) plus recursive verifiers that
follow the same recursions. It shares no code with `overt.tlog.merkle`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overt.errors import MalformedError, OvertError, VerificationError
from overt.tlog.hashing import EMPTY_ROOT
from overt.tlog.merkle import (
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    root_from_inclusion_proof,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from overt.tlog.tiles import TILE_WIDTH, Tile, TileCache, TileHashReader, tiles_for_size

# --- the reference ----------------------------------------------------------------------


def ref_leaf(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def ref_split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


N = 3000
_rng = random.Random(20240917)
ENTRIES = [_rng.randbytes(_rng.randrange(0, 40)) for _ in range(N)]
LEAVES = [ref_leaf(e) for e in ENTRIES]

TREE = MemoryTree()
TREE.extend(ENTRIES)


@cache
def mth(a: int, b: int) -> bytes:
    """MTH(D[a:b]) over the module's leaves."""
    n = b - a
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return LEAVES[a]
    k = ref_split(n)
    return ref_node(mth(a, a + k), mth(a + k, b))


def ref_path_ranges(m: int, a: int, b: int) -> list[tuple[int, int]]:
    """PATH(m, D[a:b]) as leaf ranges, m relative to a (leaf side first)."""
    n = b - a
    if n == 1:
        return []
    k = ref_split(n)
    if m < k:
        return [*ref_path_ranges(m, a, a + k), (a + k, b)]
    return [*ref_path_ranges(m - k, a + k, b), (a, a + k)]


def ref_path(m: int, n: int) -> list[bytes]:
    return [mth(a, b) for a, b in ref_path_ranges(m, 0, n)]


def ref_subproof_ranges(m: int, a: int, b: int, complete: bool) -> list[tuple[int, int]]:
    n = b - a
    if m == n:
        return [] if complete else [(a, b)]
    k = ref_split(n)
    if m <= k:
        return [*ref_subproof_ranges(m, a, a + k, complete), (a + k, b)]
    return [*ref_subproof_ranges(m - k, a + k, b, False), (a, a + k)]


def ref_proof(m: int, n: int) -> list[bytes]:
    if m == 0 or m == n:
        return []
    return [mth(a, b) for a, b in ref_subproof_ranges(m, 0, n, True)]


def ref_inclusion_ok(leaf: bytes, m: int, n: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Recursive verifier: rebuild the root along the PATH recursion."""
    if not 0 <= m < n:
        return False

    def rec(m: int, n: int, proof: Sequence[bytes]) -> bytes | None:
        if n == 1:
            return None if proof else leaf
        if not proof:
            return None
        k = ref_split(n)
        sibling, rest = proof[-1], proof[:-1]
        if m < k:
            sub = rec(m, k, rest)
            return None if sub is None else ref_node(sub, sibling)
        sub = rec(m - k, n - k, rest)
        return None if sub is None else ref_node(sibling, sub)

    if len(leaf) != 32 or any(len(p) != 32 for p in proof):
        return False
    return rec(m, n, proof) == root


def ref_consistency_ok(
    m: int, n: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Recursive verifier: rebuild both roots along the SUBPROOF recursion (0 < m < n)."""
    if not 0 < m < n or any(len(p) != 32 for p in proof):
        return False

    def rec(m: int, n: int, proof: Sequence[bytes], complete: bool) -> tuple[bytes, bytes] | None:
        if m == n:
            if complete:
                return None if proof else (old_root, old_root)
            return (proof[0], proof[0]) if len(proof) == 1 else None
        if not proof:
            return None
        k = ref_split(n)
        sibling, rest = proof[-1], proof[:-1]
        if m <= k:
            sub = rec(m, k, rest, complete)
            return None if sub is None else (sub[0], ref_node(sub[1], sibling))
        sub = rec(m - k, n - k, rest, False)
        if sub is None:
            return None
        return ref_node(sibling, sub[0]), ref_node(sibling, sub[1])

    got = rec(m, n, proof, True)
    return got is not None and got == (old_root, new_root)


def passes(check: Callable[[], None]) -> bool:
    try:
        check()
    except VerificationError:
        return False
    return True


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_reference_matches_known_root() -> None:
    """Sanity check of the reference itself against the README table (size 8)."""
    leaves = [
        ref_leaf(bytes.fromhex(h))
        for h in (
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        )
    ]

    def root(a: int, b: int) -> bytes:
        if b - a == 1:
            return leaves[a]
        k = ref_split(b - a)
        return ref_node(root(a, a + k), root(a + k, b))

    assert root(0, 8).hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    assert root(0, 7).hex() == "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"


# --- strategies -------------------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=N)


@st.composite
def size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(sizes)
    index = draw(st.one_of(st.integers(0, size - 1), st.just(size - 1), st.just(0)))
    return size, index


@st.composite
def size_pair(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(st.integers(min_value=2, max_value=N))
    old = draw(st.one_of(st.integers(1, new - 1), st.sampled_from([1, new - 1])))
    return old, new


# --- roots and proofs equal the reference -------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=N))
def test_root_matches_reference(size: int) -> None:
    assert TREE.root(size) == mth(0, size)
    assert root_hash(TREE, size) == mth(0, size)


def test_memory_tree_incremental_equals_bulk() -> None:
    tree = MemoryTree()
    for i, e in enumerate(ENTRIES[:600]):
        assert tree.append(e) == i
        if i % 37 == 0 or i < 70:
            assert tree.root() == mth(0, i + 1)
    chunks = MemoryTree()
    pos = 0
    for step in (1, 2, 3, 5, 8, 13, 64, 100, 255, 256, 257, 1000):
        chunks.extend(ENTRIES[pos : pos + step])
        pos += step
        assert chunks.root() == mth(0, chunks.size)
    assert chunks.size == pos
    bulk = MemoryTree()
    bulk.extend(ENTRIES[:pos])
    assert chunks.levels == bulk.levels


@settings(max_examples=200, deadline=None)
@given(size_and_index())
def test_inclusion_proof_matches_reference(case: tuple[int, int]) -> None:
    size, index = case
    proof = inclusion_proof(TREE, index, size)
    assert proof == ref_path(index, size)
    root = mth(0, size)
    verify_inclusion(LEAVES[index], index, size, proof, root)
    assert root_from_inclusion_proof(LEAVES[index], index, size, proof) == root
    assert ref_inclusion_ok(LEAVES[index], index, size, proof, root)


@settings(max_examples=200, deadline=None)
@given(size_pair())
def test_consistency_proof_matches_reference(case: tuple[int, int]) -> None:
    old, new = case
    proof = consistency_proof(TREE, old, new)
    assert proof == ref_proof(old, new)
    verify_consistency(old, new, mth(0, old), mth(0, new), proof)
    assert ref_consistency_ok(old, new, mth(0, old), mth(0, new), proof)


# --- edge cases ----------------------------------------------------------------------------


def test_size_one() -> None:
    assert TREE.root(1) == LEAVES[0]
    assert inclusion_proof(TREE, 0, 1) == []
    verify_inclusion(LEAVES[0], 0, 1, [], LEAVES[0])
    with pytest.raises(VerificationError):
        verify_inclusion(LEAVES[0], 0, 1, [LEAVES[1]], LEAVES[0])
    with pytest.raises(VerificationError):
        verify_inclusion(LEAVES[1], 0, 1, [], LEAVES[0])


def test_empty_tree_root() -> None:
    assert TREE.root(0) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert MemoryTree().root() == EMPTY_ROOT


@pytest.mark.parametrize("size", [1 << k for k in range(12)])
def test_powers_of_two(size: int) -> None:
    for index in sorted({0, 1 % size, size // 2, size - 2 if size > 1 else 0, size - 1}):
        proof = inclusion_proof(TREE, index, size)
        assert len(proof) == size.bit_length() - 1
        assert proof == ref_path(index, size)
        verify_inclusion(LEAVES[index], index, size, proof, mth(0, size))
    for new in (size + 1, 2 * size, N):
        if size < new <= N:
            proof = consistency_proof(TREE, size, new)
            assert proof == ref_proof(size, new)
            verify_consistency(size, new, mth(0, size), mth(0, new), proof)


@pytest.mark.parametrize("size", [2, 3, 5, 6, 7, 9, 255, 256, 257, 1000, 2047, 2049, N])
def test_last_leaf(size: int) -> None:
    proof = inclusion_proof(TREE, size - 1, size)
    assert proof == ref_path(size - 1, size)
    verify_inclusion(LEAVES[size - 1], size - 1, size, proof, mth(0, size))
    with pytest.raises(MalformedError):
        inclusion_proof(TREE, size, size)
    with pytest.raises(VerificationError):
        verify_inclusion(LEAVES[size - 1], size, size, proof, mth(0, size))


@pytest.mark.parametrize("size", [1, 2, 3, 8, 1000, N])
def test_equal_sizes(size: int) -> None:
    assert consistency_proof(TREE, size, size) == []
    verify_consistency(size, size, mth(0, size), mth(0, size), [])
    with pytest.raises(VerificationError):
        verify_consistency(size, size, mth(0, size), mth(0, size), [mth(0, size)])
    with pytest.raises(VerificationError):
        verify_consistency(size, size, mth(0, size), flip(mth(0, size), 0), [])


@pytest.mark.parametrize("new", [0, 1, 2, 7, N])
def test_old_size_zero_is_refused(new: int) -> None:
    """verify_consistency documents that a proof from the empty tree proves nothing."""
    assert consistency_proof(TREE, 0, new) == []
    for proof in ([], [EMPTY_ROOT], [mth(0, new)]):
        with pytest.raises(VerificationError):
            verify_consistency(0, new, EMPTY_ROOT, mth(0, new), proof)


def test_bad_sizes_refused() -> None:
    with pytest.raises(VerificationError):
        verify_consistency(5, 4, mth(0, 5), mth(0, 4), [])
    with pytest.raises(VerificationError):
        verify_consistency(-1, 4, mth(0, 1), mth(0, 4), [])
    with pytest.raises(MalformedError):
        consistency_proof(TREE, 5, 4)
    with pytest.raises(MalformedError):
        inclusion_proof(TREE, -1, 4)
    with pytest.raises(MalformedError):
        root_hash(TREE, -1)
    with pytest.raises(MalformedError):  # the tree does not have that many leaves yet
        TREE.root(N + 1)
    for index, size in ((0, 0), (-1, 5), (5, 5), (6, 5)):
        with pytest.raises(VerificationError):
            verify_inclusion(LEAVES[0], index, size, [], LEAVES[0])


def test_proof_size_is_not_bound_by_the_proof() -> None:
    """RFC 9162 proofs do not commit to the tree size: index 0 of size 4 and size 3 share
    the verifier's arithmetic. The size is bound by the signed checkpoint, not the proof.
    This documents why the mutation tests compare against a reference verifier."""
    proof = inclusion_proof(TREE, 0, 4)
    verify_inclusion(LEAVES[0], 0, 3, proof, mth(0, 4))
    assert ref_inclusion_ok(LEAVES[0], 0, 3, proof, mth(0, 4))


# --- tampering -------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(size_and_index(), st.data())
def test_inclusion_bit_flips_fail(case: tuple[int, int], data: st.DataObject) -> None:
    size, index = case
    proof = inclusion_proof(TREE, index, size)
    leaf, root = LEAVES[index], mth(0, size)
    targets = ["leaf", "root", *(["proof"] if proof else [])]
    target = data.draw(st.sampled_from(targets))
    bit = data.draw(st.integers(0, 255))
    if target == "leaf":
        leaf = flip(leaf, bit)
    elif target == "root":
        root = flip(root, bit)
    else:
        i = data.draw(st.integers(0, len(proof) - 1))
        proof = [*proof[:i], flip(proof[i], bit), *proof[i + 1 :]]
    with pytest.raises(VerificationError):
        verify_inclusion(leaf, index, size, proof, root)


@settings(max_examples=150, deadline=None)
@given(size_pair(), st.data())
def test_consistency_bit_flips_fail(case: tuple[int, int], data: st.DataObject) -> None:
    old, new = case
    proof = consistency_proof(TREE, old, new)
    old_root, new_root = mth(0, old), mth(0, new)
    target = data.draw(st.sampled_from(["old", "new", "proof"]))
    bit = data.draw(st.integers(0, 255))
    if target == "old":
        old_root = flip(old_root, bit)
    elif target == "new":
        new_root = flip(new_root, bit)
    else:
        i = data.draw(st.integers(0, len(proof) - 1))
        proof = [*proof[:i], flip(proof[i], bit), *proof[i + 1 :]]
    with pytest.raises(VerificationError):
        verify_consistency(old, new, old_root, new_root, proof)


@pytest.mark.parametrize(("index", "size"), [(0, 2), (5, 8), (517, 1000), (2999, 3000)])
def test_inclusion_every_single_bit_flip_fails(index: int, size: int) -> None:
    proof = inclusion_proof(TREE, index, size)
    leaf, root = LEAVES[index], mth(0, size)
    for bit in range(256):
        for i in range(len(proof)):
            bad = [*proof[:i], flip(proof[i], bit), *proof[i + 1 :]]
            assert not passes(lambda bad=bad: verify_inclusion(leaf, index, size, bad, root))
        bad_leaf, bad_root = flip(leaf, bit), flip(root, bit)
        assert not passes(lambda: verify_inclusion(bad_leaf, index, size, proof, root))  # noqa: B023
        assert not passes(lambda: verify_inclusion(leaf, index, size, proof, bad_root))  # noqa: B023


@pytest.mark.parametrize(("old", "new"), [(1, 2), (3, 7), (4, 9), (1000, 2999), (2048, 3000)])
def test_consistency_every_single_bit_flip_fails(old: int, new: int) -> None:
    proof = consistency_proof(TREE, old, new)
    r1, r2 = mth(0, old), mth(0, new)
    for bit in range(256):
        for i in range(len(proof)):
            bad = [*proof[:i], flip(proof[i], bit), *proof[i + 1 :]]
            assert not passes(lambda bad=bad: verify_consistency(old, new, r1, r2, bad))
        bad1, bad2 = flip(r1, bit), flip(r2, bit)
        assert not passes(lambda: verify_consistency(old, new, bad1, r2, proof))  # noqa: B023
        assert not passes(lambda: verify_consistency(old, new, r1, bad2, proof))  # noqa: B023


@settings(max_examples=200, deadline=None)
@given(size_and_index(), st.integers(-70, 70), st.integers(-70, 70))
def test_inclusion_changed_index_or_size(case: tuple[int, int], di: int, ds: int) -> None:
    """Any other (index, size) verifies exactly when the recursive reference says so;
    a different index in a tree of the same size never does."""
    size, index = case
    if di == 0 and ds == 0:
        ds = 1
    proof = inclusion_proof(TREE, index, size)
    leaf, root = LEAVES[index], mth(0, size)
    i2, s2 = index + di, size + ds
    got = passes(lambda: verify_inclusion(leaf, i2, s2, proof, root))
    assert got == ref_inclusion_ok(leaf, i2, s2, proof, root), (i2, s2)
    if ds == 0:
        assert not got


@settings(max_examples=200, deadline=None)
@given(size_pair(), st.integers(-40, 40), st.integers(-40, 40))
def test_consistency_changed_sizes(case: tuple[int, int], d1: int, d2: int) -> None:
    old, new = case
    if d1 == 0 and d2 == 0:
        d1 = 1
    proof = consistency_proof(TREE, old, new)
    r1, r2 = mth(0, old), mth(0, new)
    o2, n2 = old + d1, new + d2
    got = passes(lambda: verify_consistency(o2, n2, r1, r2, proof))
    if 0 < o2 < n2:
        assert got == ref_consistency_ok(o2, n2, r1, r2, proof), (o2, n2)
    else:
        assert not got


@settings(max_examples=100, deadline=None)
@given(size_and_index(), st.data())
def test_inclusion_truncated_or_extended_proof_fails(
    case: tuple[int, int], data: st.DataObject
) -> None:
    size, index = case
    proof = inclusion_proof(TREE, index, size)
    leaf, root = LEAVES[index], mth(0, size)
    extra = data.draw(st.sampled_from([LEAVES[0], root, leaf, bytes(32)]))
    variants = [[*proof, extra], [extra, *proof]]
    if proof:
        variants += [proof[:-1], proof[1:]]
    for bad in variants:
        with pytest.raises(VerificationError):
            verify_inclusion(leaf, index, size, bad, root)


def test_wrong_length_hashes_refused() -> None:
    proof = inclusion_proof(TREE, 3, 10)
    for bad in (b"", b"\x00" * 31, b"\x00" * 33):
        with pytest.raises(VerificationError):
            verify_inclusion(bad, 3, 10, proof, mth(0, 10))
        with pytest.raises(VerificationError):
            verify_inclusion(LEAVES[3], 3, 10, [bad, *proof[1:]], mth(0, 10))
        with pytest.raises(VerificationError):
            verify_consistency(3, 10, mth(0, 3), mth(0, 10), [bad])


# --- TileHashReader ----------------------------------------------------------------------

BIG = 70_000  # three tile levels: 256**2 = 65,536 < BIG
_big_rng = random.Random(99)
BIG_TREE = MemoryTree()
BIG_TREE.extend_hashes([_big_rng.randbytes(32) for _ in range(BIG)])


def tile_bytes(tree: MemoryTree, tile: Tile) -> bytes:
    row = tree.levels[8 * tile.level]
    start = tile.index * TILE_WIDTH
    return b"".join(row[start : start + tile.width])


def expected_width(level: int, index: int, size: int) -> int:
    return min(TILE_WIDTH, (size >> (8 * level)) - index * TILE_WIDTH)


class Fetcher:
    """Serves tiles for a tree of `size` from a MemoryTree, recording every request."""

    def __init__(self, tree: MemoryTree, size: int, corrupt: tuple[Tile, int] | None = None):
        self.tree, self.size, self.corrupt = tree, size, corrupt
        self.calls: list[list[Tile]] = []

    def __call__(self, tiles: Sequence[Tile]) -> list[bytes]:
        self.calls.append(list(tiles))
        out = []
        for t in tiles:
            assert not t.entries
            assert t.width == expected_width(t.level, t.index, self.size), t
            data = tile_bytes(self.tree, t)
            assert len(data) == 32 * t.width
            if self.corrupt is not None and self.corrupt[0] == t:
                data = flip(data, self.corrupt[1])
            out.append(data)
        return out

    @property
    def fetched(self) -> list[Tile]:
        return [t for call in self.calls for t in call]


def subtrees(a: int, b: int) -> list[tuple[int, int]]:
    """Maximal complete subtrees (level, n) covering [a, b), left to right."""
    out = []
    while a < b:
        h = (b - a).bit_length() - 1
        while a % (1 << h):
            h -= 1
        out.append((h, a >> h))
        a += 1 << h
    return out


def tiles_needed(ranges: Sequence[tuple[int, int]], size: int) -> set[Tile]:
    need = set()
    for a, b in ranges:
        for h, n in subtrees(a, b):
            level, sub = divmod(h, 8)
            index = (n << sub) // TILE_WIDTH
            need.add(Tile(level, index, expected_width(level, index, size)))
    return need


def ref_consistency_ranges(m: int, n: int) -> list[tuple[int, int]]:
    return [] if m in (0, n) else ref_subproof_ranges(m, 0, n, True)


big_size_and_index = st.integers(1, BIG).flatmap(
    lambda s: st.tuples(st.just(s), st.one_of(st.integers(0, s - 1), st.just(s - 1)))
)
interesting_sizes = st.one_of(
    st.integers(1, BIG),
    st.sampled_from([1, 255, 256, 257, 511, 512, 65535, 65536, 65537, BIG]),
)


@settings(max_examples=120, deadline=None)
@given(big_size_and_index)
def test_tile_reader_inclusion_equals_memory_tree(case: tuple[int, int]) -> None:
    size, index = case
    fetch = Fetcher(BIG_TREE, size)
    reader = TileHashReader(size, fetch)
    proof = inclusion_proof(reader, index, size)
    assert proof == inclusion_proof(BIG_TREE, index, size)
    verify_inclusion(BIG_TREE.leaf_hash(index), index, size, proof, BIG_TREE.root(size))

    need = tiles_needed(ref_path_ranges(index, 0, size), size)
    assert len(fetch.calls) <= 1
    assert sorted(fetch.fetched) == sorted(need)  # each needed tile, once, nothing else
    assert reader.tiles_fetched == len(need)
    assert need <= set(tiles_for_size(size))
    assert len(need) <= 2 * 3  # at most two tiles per tile level for 3 levels

    # The same request again is served from the cache.
    assert inclusion_proof(reader, index, size) == proof
    assert reader.tiles_fetched == len(need)


@settings(max_examples=80, deadline=None)
@given(interesting_sizes)
def test_tile_reader_root_equals_memory_tree(size: int) -> None:
    fetch = Fetcher(BIG_TREE, size)
    reader = TileHashReader(size, fetch)
    assert root_hash(reader, size) == BIG_TREE.root(size)
    need = tiles_needed([(0, size)], size)
    assert sorted(fetch.fetched) == sorted(need)
    assert reader.tiles_fetched == len(need)


@settings(max_examples=80, deadline=None)
@given(interesting_sizes, st.data())
def test_tile_reader_consistency_equals_memory_tree(size: int, data: st.DataObject) -> None:
    if size < 2:
        size = 2
    old = data.draw(st.integers(1, size - 1))
    fetch = Fetcher(BIG_TREE, size)
    reader = TileHashReader(size, fetch)
    proof = consistency_proof(reader, old, size)
    assert proof == consistency_proof(BIG_TREE, old, size)
    verify_consistency(old, size, BIG_TREE.root(old), BIG_TREE.root(size), proof)
    need = tiles_needed(ref_consistency_ranges(old, size), size)
    assert sorted(fetch.fetched) == sorted(need)
    assert reader.tiles_fetched == len(need)


def test_tile_reader_matches_reference_on_small_tree() -> None:
    """Against the naive reference directly, on the 3000-entry tree (two tile levels)."""
    for size in (1, 2, 255, 256, 257, 1024, 2999, N):
        reader = TileHashReader(size, Fetcher(TREE, size))
        assert root_hash(reader, size) == mth(0, size)
        for index in {0, size // 3, size - 1}:
            assert inclusion_proof(reader, index, size) == ref_path(index, size)


def test_tile_reader_cache_is_bounded() -> None:
    size = BIG
    fetch = Fetcher(BIG_TREE, size)
    reader = TileHashReader(size, fetch, TileCache(max_tiles=2))
    first = inclusion_proof(reader, 0, size)
    inclusion_proof(reader, BIG - 1, size)
    before = reader.tiles_fetched
    assert inclusion_proof(reader, 0, size) == first
    assert reader.tiles_fetched > before  # evicted tiles are fetched again


def test_tile_cache_shared_between_readers() -> None:
    """Readers for different sizes share full tiles; partial tiles differ by width."""
    cache = TileCache()
    a = TileHashReader(60_000, Fetcher(BIG_TREE, 60_000), cache)
    proof_a = inclusion_proof(a, 1234, 60_000)
    b_fetch = Fetcher(BIG_TREE, 60_000)
    b = TileHashReader(60_000, b_fetch, cache)
    assert inclusion_proof(b, 1234, 60_000) == proof_a
    assert b.tiles_fetched == 0 and b_fetch.calls == []
    c_fetch = Fetcher(BIG_TREE, 60_001)
    c = TileHashReader(60_001, c_fetch, cache)
    assert inclusion_proof(c, 1234, 60_001) == inclusion_proof(BIG_TREE, 1234, 60_001)
    assert all(t.partial for t in c_fetch.fetched)  # only the right-edge tiles changed
    assert root_hash(c, 60_001) == BIG_TREE.root(60_001)


def test_tile_reader_refuses_bad_fetcher_output() -> None:
    size = 1000
    with pytest.raises(MalformedError):  # wrong number of tiles
        inclusion_proof(TileHashReader(size, lambda tiles: []), 5, size)
    with pytest.raises(MalformedError):  # wrong tile length
        inclusion_proof(TileHashReader(size, lambda tiles: [b"\x00" * 31 for _ in tiles]), 5, size)


def test_tile_reader_refuses_nodes_beyond_size() -> None:
    reader = TileHashReader(300, Fetcher(BIG_TREE, 300))
    with pytest.raises(MalformedError):
        root_hash(reader, 512)


@settings(max_examples=100, deadline=None)
@given(big_size_and_index, st.data())
def test_tile_reader_corrupted_tile(case: tuple[int, int], data: st.DataObject) -> None:
    """One flipped bit in any fetched tile: the proof either does not use that hash
    (and is unchanged) or fails verification against the true root."""
    size, index = case
    need = sorted(tiles_needed(ref_path_ranges(index, 0, size), size))
    true_proof = inclusion_proof(BIG_TREE, index, size)
    if not need:
        assert size == 1 and true_proof == []
        return
    tile = data.draw(st.sampled_from(need))
    bit = data.draw(st.integers(0, tile.width * 256 - 1))
    reader = TileHashReader(size, Fetcher(BIG_TREE, size, corrupt=(tile, bit)))
    proof = inclusion_proof(reader, index, size)
    if proof != true_proof:
        with pytest.raises(VerificationError):
            verify_inclusion(BIG_TREE.leaf_hash(index), index, size, proof, BIG_TREE.root(size))


@settings(max_examples=60, deadline=None)
@given(big_size_and_index, st.integers(0, 255))
def test_tile_reader_corrupted_sibling_always_detected(case: tuple[int, int], bit: int) -> None:
    """Flip a bit of the leaf's sibling in its level-0 tile: the proof must fail."""
    size, index = case
    sibling = index ^ 1
    if sibling >= size:
        return
    tile = Tile(0, sibling // TILE_WIDTH, expected_width(0, sibling // TILE_WIDTH, size))
    corrupt = (tile, (sibling % TILE_WIDTH) * 256 + bit)
    reader = TileHashReader(size, Fetcher(BIG_TREE, size, corrupt=corrupt))
    proof = inclusion_proof(reader, index, size)
    assert proof[0] != BIG_TREE.leaf_hash(sibling)
    with pytest.raises(OvertError):
        verify_inclusion(BIG_TREE.leaf_hash(index), index, size, proof, BIG_TREE.root(size))

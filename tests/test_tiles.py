"""C2SP tlog-tiles: paths, which tiles exist for a size, and entry bundles."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overt.errors import MalformedError
from overt.tlog.tiles import (
    MAX_ENTRY_SIZE,
    TILE_WIDTH,
    Tile,
    decode_bundle,
    encode_bundle,
    encode_index,
    entry_bundle_tiles,
    new_tiles,
    parse_index,
    tile_hashes,
    tile_levels,
    tile_width_at,
    tiles_for_size,
)

# --- paths ------------------------------------------------------------------------------


def spec_index_path(n: int) -> str:
    """tlog-tiles: 3-digit groups, every group but the last prefixed with 'x'."""
    digits = str(n)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


@st.composite
def tiles(draw: st.DrawFn) -> Tile:
    entries = draw(st.booleans())
    level = 0 if entries else draw(st.integers(0, 63))
    index = draw(st.one_of(st.integers(0, 10**12), st.sampled_from([0, 999, 1000, 10**12])))
    width = draw(st.one_of(st.integers(1, 256), st.just(256)))
    return Tile(level, index, width, entries=entries)


@settings(max_examples=500, deadline=None)
@given(tiles())
def test_tile_path_round_trip(tile: Tile) -> None:
    path = tile.path()
    level = "entries" if tile.entries else str(tile.level)
    suffix = "" if tile.width == 256 else f".p/{tile.width}"
    assert path == f"tile/{level}/{spec_index_path(tile.index)}{suffix}"
    assert Tile.parse_path(path) == tile
    assert parse_index(encode_index(tile.index)) == tile.index


@pytest.mark.parametrize(
    ("index", "text"),
    [
        (0, "000"),
        (7, "007"),
        (999, "999"),
        (1000, "x001/000"),
        (1234067, "x001/x234/067"),
        (10**12, "x001/x000/x000/x000/000"),
    ],
)
def test_encode_index(index: int, text: str) -> None:
    assert encode_index(index) == text
    assert parse_index(text) == index


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/0",  # not 3 digits
        "tile/0/00",
        "tile/0/0000",
        "tile/0/x000/001",  # leading zero group
        "tile/0/x000/000",
        "tile/0/x001/x000/x000/x000/x000/000/000",  # missing x prefix on an inner group
        "tile/0/001/000",  # missing x prefix
        "tile/0/x001/x000",  # x prefix on the last group
        "tile/0/x01/000",
        "tile/0/x1000/000",
        "tile/0/000.p/256",  # a full tile is not partial
        "tile/0/000.p/0",
        "tile/0/000.p/00",
        "tile/0/000.p/007",
        "tile/0/000.p/257",
        "tile/0/000.p/999",
        "tile/0/000.p/",
        "tile/0/000.p",
        "tile/0/000.P/5",
        "tile/0/000.p/-1",
        "tile/64/000",  # level 64
        "tile/99/000",
        "tile/00/000",  # level with a leading zero
        "tile/01/000",
        "tile/-1/000",
        "tile/x/000",
        "tile//0/000",  # extra slashes
        "tile/0//000",
        "tile/0/000/",
        "/tile/0/000",
        "tile/0/x001//000",
        "tile/0/x001/000/",
        "tile/0/000 ",
        " tile/0/000",
        "tile/0/000\n",
        "tiles/0/000",
        "tile/entries/1/000",
        "tile/entry/000",
        "tile/entries/000.p/256",
        "tile/0/٠٠٠",  # non-ASCII digits
        "tile/0/000.p/１",
        "",
        "tile",
        "tile/0",
    ],
)
def test_non_canonical_paths_refused(path: str) -> None:
    with pytest.raises(MalformedError):
        Tile.parse_path(path)


@pytest.mark.parametrize(
    "args",
    [(-1, 0), (64, 0), (0, -1), (0, 0, 0), (0, 0, 257), (0, 0, -5), (1, 0, 256, True)],
)
def test_tile_constructor_refuses(args: tuple[int | bool, ...]) -> None:
    with pytest.raises(MalformedError):
        Tile(*args)  # type: ignore[arg-type]


def test_encode_index_refuses_negative() -> None:
    with pytest.raises(MalformedError):
        encode_index(-1)


def test_level_63_is_the_last_level() -> None:
    assert Tile.parse_path("tile/63/000") == Tile(63, 0)
    assert Tile.parse_path("tile/63/000.p/1") == Tile(63, 0, 1)


# --- which tiles exist -----------------------------------------------------------------


def spec_tiles(size: int) -> set[Tile]:
    """Every tile for `size`, straight from the spec: level l has floor(s / 256**l)
    hashes, so floor(that / 256) full tiles and a partial one of (that mod 256) hashes."""
    out = set()
    level = 0
    while size // 256**level > 0:
        hashes = size // 256**level
        out.update(Tile(level, i) for i in range(hashes // 256))
        if hashes % 256:
            out.add(Tile(level, hashes // 256, hashes % 256))
        level += 1
    return out


sizes = st.one_of(
    st.integers(0, 3 * 256**2),
    st.integers(0, 2**40),
    st.sampled_from([0, 1, 255, 256, 257, 65535, 65536, 65537, 256**3, 256**3 + 1]),
)
# Growth steps stay small so that the number of new tiles stays small.
growth = st.one_of(st.integers(0, 600), st.integers(0, 3 * 256**2), st.sampled_from([1, 256]))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(0, 3 * 256**2), st.sampled_from([0, 1, 256, 65536, 70000])))
def test_tiles_for_size_follows_the_spec_rule(size: int) -> None:
    got = tiles_for_size(size)
    assert len(got) == len(set(got))
    assert set(got) == spec_tiles(size)
    for level in {t.level for t in got}:
        partial = [t for t in got if t.level == level and t.partial]
        assert len(partial) <= 1
        if partial:
            assert partial[0].width == (size // 256**level) % 256


@settings(max_examples=300, deadline=None)
@given(sizes, growth)
def test_new_tiles_are_the_difference(old: int, step: int) -> None:
    """new_tiles(old, new) = tiles of `new` that do not exist, with that width, at `old`.
    For large trees this is checked per tile and by count per level."""
    new = old + step
    got = new_tiles(old, new)
    assert len(got) == len(set(got))
    if new <= 3 * 256**2:
        assert set(got) == spec_tiles(new) - spec_tiles(old)
    else:
        for t in got:
            assert tile_width_at(t.level, t.index, new) == t.width
            assert tile_width_at(t.level, t.index, old) != t.width
        # Count per level: full tiles from the old (possibly partial) tile onwards + partial.
        level = 0
        while new // 256**level > old // 256**level:
            o, n = old // 256**level, new // 256**level
            want = n // 256 - o // 256 + (1 if n % 256 else 0)
            assert sum(1 for t in got if t.level == level) == want
            level += 1
        assert all(t.level < level for t in got)


def test_new_tiles_examples() -> None:
    assert new_tiles(0, 0) == []
    assert new_tiles(5, 5) == []
    assert new_tiles(0, 1) == [Tile(0, 0, 1)]
    assert new_tiles(1, 2) == [Tile(0, 0, 2)]
    assert new_tiles(255, 256) == [Tile(0, 0), Tile(1, 0, 1)]
    assert new_tiles(256, 257) == [Tile(0, 1, 1)]
    assert new_tiles(0, 512) == [Tile(0, 0), Tile(0, 1), Tile(1, 0, 2)]
    assert new_tiles(300, 65536) == [
        *(Tile(0, i) for i in range(1, 256)),
        *[Tile(1, 0)],
        Tile(2, 0, 1),
    ]
    with pytest.raises(MalformedError):
        new_tiles(5, 4)
    with pytest.raises(MalformedError):
        new_tiles(-1, 4)


@settings(max_examples=200, deadline=None)
@given(sizes, growth)
def test_entry_bundle_tiles_mirror_level_zero(old: int, step: int) -> None:
    new = old + step
    bundles = entry_bundle_tiles(old, new)
    level0 = [t for t in new_tiles(old, new) if t.level == 0]
    assert [(t.index, t.width) for t in bundles] == [(t.index, t.width) for t in level0]
    assert all(t.entries and t.level == 0 for t in bundles)
    for t in bundles:
        assert t.path().startswith("tile/entries/")


@pytest.mark.parametrize(
    ("level", "index", "size", "want"),
    [
        (0, 0, 0, 0),
        (0, 0, 1, 1),
        (0, 0, 256, 256),
        (0, 1, 256, 0),
        (0, 1, 300, 44),
        (1, 0, 255, 0),
        (1, 0, 256, 1),
        (1, 0, 70000, 256),
        (1, 1, 70000, 17),
        (2, 0, 70000, 1),
        (3, 0, 70000, 0),
    ],
)
def test_tile_width_at(level: int, index: int, size: int, want: int) -> None:
    assert tile_width_at(level, index, size) == want


# --- hash tiles ---------------------------------------------------------------------------


def test_tile_hashes_checks_length() -> None:
    tile = Tile(0, 0, 3)
    data = bytes(range(96))
    assert tile_hashes(data, tile) == [data[0:32], data[32:64], data[64:96]]
    for bad in (data[:-1], data + b"\x00", b""):
        with pytest.raises(MalformedError):
            tile_hashes(bad, tile)
    with pytest.raises(MalformedError):
        tile_hashes(data, Tile(0, 0, 3, entries=True))


def test_tile_levels_partial() -> None:
    hashes = [bytes([i]) * 32 for i in range(5)]
    levels = tile_levels(hashes)
    assert [len(row) for row in levels] == [5, 2, 1]
    full = tile_levels([bytes([i]) * 32 for i in range(256)])
    assert [len(row) for row in full] == [256, 128, 64, 32, 16, 8, 4, 2, 1]


# --- entry bundles ----------------------------------------------------------------------

entries_st = st.lists(st.binary(max_size=300), max_size=256)


@settings(max_examples=300, deadline=None)
@given(entries_st)
def test_bundle_round_trip(entries: list[bytes]) -> None:
    data = encode_bundle(entries)
    assert len(data) == sum(2 + len(e) for e in entries)
    assert decode_bundle(data) == entries
    assert decode_bundle(data, width=len(entries)) == entries
    with pytest.raises(MalformedError):
        decode_bundle(data, width=len(entries) + 1)
    if entries:
        with pytest.raises(MalformedError):
            decode_bundle(data, width=len(entries) - 1)


def test_bundle_format_is_uint16_length_prefixed() -> None:
    assert encode_bundle([b"", b"a", b"bc"]) == b"\x00\x00\x00\x01a\x00\x02bc"
    assert encode_bundle([]) == b""
    assert decode_bundle(b"") == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=50), min_size=1, max_size=20), st.data())
def test_bundle_truncated_refused(entries: list[bytes], data: st.DataObject) -> None:
    encoded = encode_bundle(entries)
    cut = data.draw(st.integers(1, len(encoded) - 1))
    truncated = encoded[:cut]
    # A cut exactly at an entry boundary is a shorter valid bundle; anything else is refused.
    boundaries = set()
    pos = 0
    for e in entries:
        pos += 2 + len(e)
        boundaries.add(pos)
    if cut in boundaries:
        assert decode_bundle(truncated) == entries[: sorted(boundaries).index(cut) + 1]
        with pytest.raises(MalformedError):
            decode_bundle(truncated, width=len(entries))
    else:
        with pytest.raises(MalformedError):
            decode_bundle(truncated)


def test_bundle_entry_size_limit() -> None:
    biggest = b"x" * MAX_ENTRY_SIZE
    assert MAX_ENTRY_SIZE == 65_535
    assert decode_bundle(encode_bundle([biggest])) == [biggest]
    with pytest.raises(MalformedError):
        encode_bundle([b"x" * 65_536])
    with pytest.raises(MalformedError):
        encode_bundle([b"ok", b"x" * 65_536])


def test_bundle_entry_count_limit() -> None:
    full = [bytes([i]) for i in range(TILE_WIDTH)]
    data = encode_bundle(full)
    assert decode_bundle(data, width=256) == full
    with pytest.raises(MalformedError):
        encode_bundle([*full, b"extra"])
    with pytest.raises(MalformedError):
        decode_bundle(data + b"\x00\x00")  # a 257th (empty) entry
    with pytest.raises(MalformedError):
        decode_bundle(data + b"\x00")


def test_bundle_width_mismatch() -> None:
    data = encode_bundle([b"a", b"b", b"c"])
    assert decode_bundle(data, width=3) == [b"a", b"b", b"c"]
    for width in (0, 1, 2, 4, 256):
        with pytest.raises(MalformedError):
            decode_bundle(data, width=width)


@pytest.mark.parametrize(
    "data",
    [b"\x00", b"\x00\x05abcd", b"\x00\x01a\x00", b"\xff\xff" + b"x" * 100, b"\x00\x02a"],
)
def test_bundle_malformed(data: bytes) -> None:
    with pytest.raises(MalformedError):
        decode_bundle(data)

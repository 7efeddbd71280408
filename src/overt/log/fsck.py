"""`overt log verify`: re-read a whole log from its tiles and recompute everything.

Every entry bundle is decoded and hashed; every tile is rebuilt from the
entries and compared byte for byte with the published one; the final root must
be the checkpoint's. Anything a reader could be served — a flipped bit in a
tile or bundle, a missing file, a checkpoint over a different tree — is found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from overt.crypto.keys import Verifier
from overt.errors import OvertError, VerificationError
from overt.log.edge import EdgeTree
from overt.tlog.checkpoint import Checkpoint, open_checkpoint
from overt.tlog.hashing import HASH_SIZE
from overt.tlog.tiles import TILE_WIDTH, Tile, decode_bundle, encode_bundle, tile_width_at

Progress = Callable[[int], None]


@dataclass
class FsckReport:
    checkpoint: Checkpoint
    entries: int
    tiles_checked: int


def verify_log(
    fetch: Callable[[str], bytes],
    log_key: Verifier,
    progress: Progress | None = None,
    older_partials: Iterable[str] = (),
) -> FsckReport:
    """Recompute the log from its entries; raise VerificationError at the first mismatch.

    `older_partials` lists partial tiles kept for older checkpoints (found by
    listing a tiles directory; a URL cannot be listed). Each must be a prefix
    of the tile that replaced it, since clients at those sizes still read it.
    """
    checkpoint = open_checkpoint(fetch("checkpoint"), log_key).checkpoint
    older: dict[tuple[int, int, bool], list[Tile]] = {}
    for path in older_partials:
        try:
            tile = Tile.parse_path(path)
        except OvertError as exc:
            raise VerificationError(f"{path}: not a tile path: {exc}") from exc
        older.setdefault((tile.level, tile.index, tile.entries), []).append(tile)
    size = checkpoint.size
    tree = EdgeTree()
    checked = 0
    bundles = (size + TILE_WIDTH - 1) // TILE_WIDTH
    for n in range(bundles):
        width = tile_width_at(0, n, size)
        bundle = Tile(0, n, width, entries=True)
        try:
            entries = decode_bundle(fetch(bundle.path()), width)
        except OvertError as exc:
            raise VerificationError(f"{bundle.path()}: {exc}") from exc
        for tile, expected in tree.extend(entries):
            # Partial tiles of intermediate sizes need not exist; the final
            # edge is checked below.
            if not tile.partial:
                if not tile.entries:
                    _compare(fetch, tile, expected)
                    checked += 1
                checked += _compare_older(fetch, older, tile, expected)
        if progress is not None:
            progress(len(entries))
    for level, row in enumerate(tree.edge):
        if row:
            n = (size >> (8 * level)) // TILE_WIDTH
            edge_tile = Tile(level, n, len(row))
            _compare(fetch, edge_tile, b"".join(row))
            checked += 1 + _compare_older(fetch, older, edge_tile, b"".join(row))
    if tree.edge_entries:
        bundle = Tile(0, size // TILE_WIDTH, len(tree.edge_entries), entries=True)
        checked += _compare_older(fetch, older, bundle, encode_bundle(tree.edge_entries))
    if tree.root() != checkpoint.root_hash:
        raise VerificationError("the entries do not hash to the checkpoint's root")
    return FsckReport(checkpoint, size, checked)


def _compare(fetch: Callable[[str], bytes], tile: Tile, expected: bytes) -> None:
    try:
        actual = fetch(tile.path())
    except OvertError as exc:
        raise VerificationError(f"{tile.path()}: {exc}") from exc
    if actual != expected:
        raise VerificationError(f"{tile.path()} does not match the entries it covers")


def _compare_older(
    fetch: Callable[[str], bytes],
    older: dict[tuple[int, int, bool], list[Tile]],
    tile: Tile,
    expected: bytes,
) -> int:
    """Check the older, narrower partial copies of `tile`; return how many."""
    checked = 0
    for partial in older.get((tile.level, tile.index, tile.entries), []):
        if partial.width > tile.width or partial == tile:
            continue
        if tile.entries:
            want = encode_bundle(decode_bundle(expected)[: partial.width])
        else:
            want = expected[: partial.width * HASH_SIZE]
        _compare(fetch, partial, want)
        checked += 1
    return checked

"""`overt log verify`: re-read a whole log from its tiles and recompute everything.

Every entry bundle is decoded and hashed; every tile is rebuilt from the
entries and compared byte for byte with the published one; the final root must
be the checkpoint's. Anything a reader could be served — a flipped bit in a
tile or bundle, a missing file, a checkpoint over a different tree — is found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from overt.crypto.keys import Verifier
from overt.errors import OvertError, VerificationError
from overt.log.edge import EdgeTree
from overt.tlog.checkpoint import Checkpoint, open_checkpoint
from overt.tlog.tiles import TILE_WIDTH, Tile, decode_bundle, tile_width_at

Progress = Callable[[int], None]


@dataclass
class FsckReport:
    checkpoint: Checkpoint
    entries: int
    tiles_checked: int


def verify_log(
    fetch: Callable[[str], bytes], log_key: Verifier, progress: Progress | None = None
) -> FsckReport:
    """Recompute the log from its entries; raise VerificationError at the first mismatch."""
    checkpoint = open_checkpoint(fetch("checkpoint"), log_key).checkpoint
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
            if not tile.partial and not tile.entries:
                _compare(fetch, tile, expected)
                checked += 1
        if progress is not None:
            progress(len(entries))
    for level, row in enumerate(tree.edge):
        if row:
            n = (size >> (8 * level)) // TILE_WIDTH
            _compare(fetch, Tile(level, n, len(row)), b"".join(row))
            checked += 1
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

"""Writing a tree's tiles and entry bundles in the C2SP tlog-tiles layout.

Given the hashes of a tree (any `HashReader`) and the entries it was built
from, `write_growth` writes every tile and entry bundle that appears or
changes when the tree grows from `old_size` to `new_size`. It must complete
before a checkpoint for `new_size` is published (DESIGN.md, "Storage"): a
checkpoint never commits to tiles that are not yet durable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from overt.log.files import atomic_write
from overt.tlog.merkle import HashReader
from overt.tlog.tiles import TILE_WIDTH, encode_bundle, entry_bundle_tiles, new_tiles, tile_nodes


def write_growth(
    root: Path,
    reader: HashReader,
    entries: Callable[[int, int], Sequence[bytes]],
    old_size: int,
    new_size: int,
) -> int:
    """Write the tiles and bundles for growth old_size -> new_size under `root`.

    `entries(start, end)` returns the entries with indexes [start, end).
    Returns the number of files written.
    """
    written = 0
    for bundle in entry_bundle_tiles(old_size, new_size):
        start = bundle.index * TILE_WIDTH
        data = encode_bundle(entries(start, start + bundle.width))
        atomic_write(root / bundle.path(), data)
        written += 1
    for tile in new_tiles(old_size, new_size):
        atomic_write(root / tile.path(), b"".join(reader.read_hashes(tile_nodes(tile))))
        written += 1
    return written

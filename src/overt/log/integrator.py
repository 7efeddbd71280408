"""The integrator: grows the tiled Merkle tree on disk.

It keeps in memory only the right edge of the tree (`EdgeTree`), so
integrating a million entries needs a few megabytes, not the whole tree.
Growing the tree writes every new full tile and bundle plus the new partial
ones, then syncs the file system once; only after that may the caller sign and
publish a checkpoint (DESIGN.md, "Storage").

Full tiles are a pure function of the entries, so re-integrating after a crash
rewrites identical bytes. Older partial tiles are kept, because clients holding
an older checkpoint may still ask for them (tlog-tiles, "Partial Tiles").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from overt.durable import sync_filesystem, write_file
from overt.errors import OvertError
from overt.log.edge import EdgeTree
from overt.tlog.hashing import HASH_SIZE
from overt.tlog.tiles import TILE_HEIGHT, TILE_WIDTH, Tile, decode_bundle, tile_hashes


class TileCorruptError(OvertError):
    """Tiles on disk do not match what the log published."""


def load_edge(tiles_dir: Path, size: int) -> EdgeTree:
    """Read the partial tiles and bundle of a published tree of `size` entries."""

    def read(tile: Tile) -> bytes:
        try:
            return (tiles_dir / tile.path()).read_bytes()
        except FileNotFoundError as exc:
            raise TileCorruptError(f"{tile.path()} is missing for tree size {size}") from exc

    edge: list[list[bytes]] = []
    level = 0
    while size >> (TILE_HEIGHT * level) > 0:
        count = size >> (TILE_HEIGHT * level)
        width = count % TILE_WIDTH
        row: list[bytes] = []
        if width:
            tile = Tile(level, count // TILE_WIDTH, width)
            try:
                row = tile_hashes(read(tile), tile)
            except OvertError as exc:
                raise TileCorruptError(f"{tile.path()}: {exc}") from exc
        edge.append(row)
        level += 1
    entries: list[bytes] = []
    width = size % TILE_WIDTH
    if width:
        bundle = Tile(0, size // TILE_WIDTH, width, entries=True)
        try:
            entries = decode_bundle(read(bundle), width)
        except OvertError as exc:
            raise TileCorruptError(f"{bundle.path()}: {exc}") from exc
    return EdgeTree(size, edge, entries)


class Integrator:
    """The tiled tree of `size` leaves stored under `tiles_dir`."""

    def __init__(self, tiles_dir: Path, size: int) -> None:
        self.tiles_dir = tiles_dir
        self._tree = load_edge(tiles_dir, size)

    @property
    def size(self) -> int:
        return self._tree.size

    def root(self) -> bytes:
        return self._tree.root()

    def leaf_hash(self, index: int) -> bytes:
        """Leaf hash of an integrated entry, from its level-0 tile."""
        if not 0 <= index < self.size:
            raise IndexError(index)
        if index // TILE_WIDTH == self.size // TILE_WIDTH:
            return self._tree.edge[0][index % TILE_WIDTH]
        path = self.tiles_dir / Tile(0, index // TILE_WIDTH).path()
        with path.open("rb") as f:
            f.seek((index % TILE_WIDTH) * HASH_SIZE)
            return f.read(HASH_SIZE)

    def extend(self, entries: Sequence[bytes], leaf_hashes: Sequence[bytes] | None = None) -> int:
        """Append entries, write their tiles and bundles, sync; return files written."""
        written = 0
        for tile, data in self._tree.extend(entries, leaf_hashes):
            write_file(self.tiles_dir / tile.path(), data)
            written += 1
        if written:
            sync_filesystem(self.tiles_dir)
        return written

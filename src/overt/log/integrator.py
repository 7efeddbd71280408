"""The integrator: grows the tiled Merkle tree on disk.

It keeps in memory only the right edge of the tree, the one partial tile per
level and the partial entry bundle (at most 255 hashes or entries each), so
integrating a million entries needs a few megabytes, not the whole tree.
Growing the tree writes every new full tile and bundle, plus the new partial
ones, then syncs the file system once; only after that may the caller sign and
publish a checkpoint (DESIGN.md, "Storage").

Full tiles are a pure function of the entries, so re-integrating after a crash
rewrites identical bytes; older partial tiles are kept, because clients
holding an older checkpoint may still ask for them (tlog-tiles, "Partial
Tiles").
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from overt.errors import OvertError
from overt.log.files import sync_filesystem, write_file
from overt.tlog.hashing import EMPTY_ROOT
from overt.tlog.merkle import Node, range_nodes
from overt.tlog.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    Tile,
    decode_bundle,
    encode_bundle,
    tile_hashes,
)

_sha256 = hashlib.sha256


class TileCorruptError(OvertError):
    """Tiles on disk do not match what the log published."""


def _full_tile_root(hashes: Sequence[bytes]) -> bytes:
    """MTH of a full tile: the level-8 hash above its 256 hashes."""
    row = list(hashes)
    while len(row) > 1:
        row = [_sha256(b"\x01" + row[i] + row[i + 1]).digest() for i in range(0, len(row), 2)]
    return row[0]


class Integrator:
    """The right edge of a tiled tree of `size` leaves stored under `tiles_dir`."""

    def __init__(self, tiles_dir: Path, size: int) -> None:
        self.tiles_dir = tiles_dir
        self.size = size
        self._edge: list[list[bytes]] = []  # per tile level: hashes of the partial tile
        self._edge_entries: list[bytes] = []
        self._load()

    def _read(self, tile: Tile) -> bytes:
        try:
            return (self.tiles_dir / tile.path()).read_bytes()
        except FileNotFoundError as exc:
            raise TileCorruptError(f"{tile.path()} is missing for tree size {self.size}") from exc

    def _load(self) -> None:
        level = 0
        while self.size >> (TILE_HEIGHT * level) > 0:
            count = self.size >> (TILE_HEIGHT * level)
            width = count % TILE_WIDTH
            if width:
                tile = Tile(level, count // TILE_WIDTH, width)
                try:
                    hashes = tile_hashes(self._read(tile), tile)
                except OvertError as exc:
                    raise TileCorruptError(f"{tile.path()}: {exc}") from exc
                self._edge.append(hashes)
            else:
                self._edge.append([])
            level += 1
        width = self.size % TILE_WIDTH
        if width:
            bundle = Tile(0, self.size // TILE_WIDTH, width, entries=True)
            try:
                self._edge_entries = decode_bundle(self._read(bundle), width)
            except OvertError as exc:
                raise TileCorruptError(f"{bundle.path()}: {exc}") from exc

    def root(self) -> bytes:
        """The root of the current tree, from the partial tiles alone.

        Each complete subtree in the decomposition of [0, size) lies in the
        partial tile of its level band, so nothing else is needed.
        """
        if self.size == 0:
            return EMPTY_ROOT
        hashes = [self._node(n) for n in range_nodes(0, self.size)]
        h = hashes[-1]
        for left in reversed(hashes[:-1]):
            h = _sha256(b"\x01" + left + h).digest()
        return h

    def _node(self, node: Node) -> bytes:
        band, sub = divmod(node.level, TILE_HEIGHT)
        row = self._edge[band]
        first = (node.n << sub) % TILE_WIDTH
        group = row[first : first + (1 << sub)]
        while len(group) > 1:
            group = [
                _sha256(b"\x01" + group[i] + group[i + 1]).digest() for i in range(0, len(group), 2)
            ]
        return group[0]

    def leaf_hash(self, index: int) -> bytes:
        """Leaf hash of an integrated entry, read from its level-0 tile."""
        if not 0 <= index < self.size:
            raise IndexError(index)
        tile_index = index // TILE_WIDTH
        if tile_index == self.size // TILE_WIDTH:
            return self._edge[0][index % TILE_WIDTH]
        tile = Tile(0, tile_index)
        data = self._read(tile)
        offset = (index % TILE_WIDTH) * 32
        return data[offset : offset + 32]

    def extend(self, entries: Sequence[bytes]) -> int:
        """Append entries (indexes size, size+1, ...), write their tiles, sync.

        Returns the number of files written.
        """
        if not entries:
            return 0
        written = 0
        start = self.size
        # Entry bundles.
        bundle_rows = self._edge_entries + list(entries)
        first_bundle = start // TILE_WIDTH
        full = len(bundle_rows) // TILE_WIDTH
        for k in range(full):
            chunk = bundle_rows[k * TILE_WIDTH : (k + 1) * TILE_WIDTH]
            write_file(
                self.tiles_dir / Tile(0, first_bundle + k, entries=True).path(),
                encode_bundle(chunk),
            )
            written += 1
        self._edge_entries = bundle_rows[full * TILE_WIDTH :]
        if self._edge_entries:
            tile = Tile(0, first_bundle + full, len(self._edge_entries), entries=True)
            write_file(self.tiles_dir / tile.path(), encode_bundle(self._edge_entries))
            written += 1
        # Hash tiles, level by level: full tiles feed one hash each to the level above.
        incoming = [_sha256(b"\x00" + e).digest() for e in entries]
        level = 0
        new_size = start + len(entries)
        while incoming:
            if level == len(self._edge):
                self._edge.append([])
            row = self._edge[level] + incoming
            first_tile = (start >> (TILE_HEIGHT * level)) // TILE_WIDTH
            full = len(row) // TILE_WIDTH
            incoming = []
            for k in range(full):
                chunk = row[k * TILE_WIDTH : (k + 1) * TILE_WIDTH]
                write_file(self.tiles_dir / Tile(level, first_tile + k).path(), b"".join(chunk))
                written += 1
                incoming.append(_full_tile_root(chunk))
            self._edge[level] = row[full * TILE_WIDTH :]
            if self._edge[level]:
                tile = Tile(level, first_tile + full, len(self._edge[level]))
                write_file(self.tiles_dir / tile.path(), b"".join(self._edge[level]))
                written += 1
            level += 1
        self.size = new_size
        sync_filesystem(self.tiles_dir)
        return written

"""The right edge of a tiled Merkle tree, and growing it.

A tiled tree is fully described by its tiles, and growing it only ever touches
the right edge: the one partial tile per level (at most 255 hashes) and the
partial entry bundle. `EdgeTree` keeps just that edge in memory and, given new
entries, produces every tile and bundle that appears or changes. The
integrator writes what it produces; `overt log verify` compares it with what is
on disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

from overt.tlog.merkle import Node, root_hash
from overt.tlog.tiles import TILE_HEIGHT, TILE_WIDTH, Tile, encode_bundle, subtree_root

_sha256 = hashlib.sha256


class EdgeTree:
    def __init__(
        self,
        size: int = 0,
        edge: Sequence[Sequence[bytes]] = (),
        edge_entries: Sequence[bytes] = (),
    ) -> None:
        """`edge[L]` holds the hashes of the partial tile at level L (empty if none)."""
        self.size = size
        self.edge: list[list[bytes]] = [list(row) for row in edge]
        self.edge_entries: list[bytes] = list(edge_entries)

    def extend(
        self, entries: Sequence[bytes], leaf_hashes: Sequence[bytes] | None = None
    ) -> Iterator[tuple[Tile, bytes]]:
        """Append entries; yield (tile, bytes) for each new or changed tile and bundle.

        `leaf_hashes`, if the caller already has them, must be the entries'
        RFC 9162 leaf hashes. Full tiles come first at each level, then the
        level's new partial tile. The generator must be consumed completely
        for the tree to grow.
        """
        if not entries:
            return
        if leaf_hashes is not None and len(leaf_hashes) != len(entries):
            raise ValueError("one leaf hash per entry is needed")
        start = self.size
        rows = self.edge_entries + list(entries)
        first = start // TILE_WIDTH
        full = len(rows) // TILE_WIDTH
        for k in range(full):
            chunk = rows[k * TILE_WIDTH : (k + 1) * TILE_WIDTH]
            yield Tile(0, first + k, entries=True), encode_bundle(chunk)
        self.edge_entries = rows[full * TILE_WIDTH :]
        if self.edge_entries:
            tile = Tile(0, first + full, len(self.edge_entries), entries=True)
            yield tile, encode_bundle(self.edge_entries)
        incoming = (
            list(leaf_hashes)
            if leaf_hashes is not None
            else [_sha256(b"\x00" + e).digest() for e in entries]
        )
        level = 0
        while incoming:
            if level == len(self.edge):
                self.edge.append([])
            row = self.edge[level] + incoming
            first = (start >> (TILE_HEIGHT * level)) // TILE_WIDTH
            full = len(row) // TILE_WIDTH
            incoming = []
            for k in range(full):
                chunk = row[k * TILE_WIDTH : (k + 1) * TILE_WIDTH]
                yield Tile(level, first + k), b"".join(chunk)
                incoming.append(subtree_root(chunk))
            self.edge[level] = row[full * TILE_WIDTH :]
            if self.edge[level]:
                yield Tile(level, first + full, len(self.edge[level])), b"".join(self.edge[level])
            level += 1
        self.size = start + len(entries)

    def root(self) -> bytes:
        """The tree's root from the edge alone.

        Every complete subtree in the decomposition of [0, size) lies inside
        the partial tile of its level band, so nothing else is needed.
        """
        return root_hash(self, self.size)

    def read_hashes(self, nodes: Sequence[Node]) -> list[bytes]:
        """`HashReader` over the edge: only nodes the root needs are answerable."""
        return [self._node(n) for n in nodes]

    def _node(self, node: Node) -> bytes:
        band, sub = divmod(node.level, TILE_HEIGHT)
        first = (node.n << sub) % TILE_WIDTH
        return subtree_root(self.edge[band][first : first + (1 << sub)])

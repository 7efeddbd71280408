"""C2SP tlog-tiles: tile coordinates, paths, entry bundles, and hashes from tiles.

A tile at level L, index N holds up to 256 consecutive hashes of level-8L
complete subtrees (tlog-tiles, "Merkle Tree"): hash i is
MTH(D[(N*256 + i) * 256**L : (N*256 + i + 1) * 256**L]). A tile with fewer than
256 hashes is *partial* and is named ``.p/W``. Entry bundles
(``tile/entries/N``) hold the entries whose leaf hashes make up level-0 tile N.

`TileHashReader` computes proofs from tiles: it maps each complete subtree a
proof needs to the one tile that holds it (choosing the partial width the tree
size implies), asks the caller for just those tiles, and hashes within a tile
the few levels that tiles do not store.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from overt.errors import MalformedError
from overt.tlog.hashing import HASH_SIZE, node_hash
from overt.tlog.merkle import Node

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256 hashes, 8,192 bytes
MAX_LEVEL = 63
MAX_ENTRY_SIZE = 0xFFFF  # uint16 length prefix in entry bundles
# Tree sizes are below 2**64, so no level-0 tile index reaches 2**56 and no
# path needs more than six 3-digit groups.
MAX_TILE_INDEX = (1 << 56) - 1


@dataclass(frozen=True, order=True)
class Tile:
    """One tile (``entries`` False) or entry bundle (``entries`` True)."""

    level: int
    index: int
    width: int = TILE_WIDTH
    entries: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.level <= MAX_LEVEL:
            raise MalformedError(f"tile level {self.level} is outside 0..{MAX_LEVEL}")
        if self.entries and self.level != 0:
            raise MalformedError("entry bundles are level 0")
        if not 0 <= self.index <= MAX_TILE_INDEX:
            raise MalformedError(f"tile index {self.index} is outside 0..{MAX_TILE_INDEX}")
        if not 1 <= self.width <= TILE_WIDTH:
            raise MalformedError(f"tile width {self.width} is outside 1..{TILE_WIDTH}")

    @property
    def partial(self) -> bool:
        return self.width < TILE_WIDTH

    def path(self) -> str:
        """The resource path, e.g. ``tile/0/x001/x234/067.p/1`` (tlog-tiles, "Merkle Tree")."""
        level = "entries" if self.entries else str(self.level)
        suffix = f".p/{self.width}" if self.partial else ""
        return f"tile/{level}/{encode_index(self.index)}{suffix}"

    @classmethod
    def parse_path(cls, path: str) -> Tile:
        """Parse a tile or entry-bundle path, accepting only the canonical form."""
        m = _PATH.fullmatch(path)
        if m is None:
            raise MalformedError(f"not a tile path: {path!r}")
        level_s, index_s, width_s = m.group("level"), m.group("index"), m.group("width")
        entries = level_s == "entries"
        level = 0 if entries else int(level_s)
        width = TILE_WIDTH if width_s is None else int(width_s)
        if width_s is not None and width == TILE_WIDTH:
            raise MalformedError(f"tile path {path!r}: a 256-wide tile is not partial")
        tile = cls(level, parse_index(index_s), width, entries)
        if tile.path() != path:
            raise MalformedError(f"tile path {path!r} is not in canonical form")
        return tile

    @property
    def start(self) -> int:
        """Index of the first level-8L hash this tile holds."""
        return self.index * TILE_WIDTH


_PATH = re.compile(
    r"tile/(?P<level>entries|0|[1-9][0-9]?)/(?P<index>(?:x[0-9]{3}/)*[0-9]{3})"
    r"(?:\.p/(?P<width>[1-9][0-9]{0,2}))?"
)


def encode_index(n: int) -> str:
    """Zero-padded 3-digit groups, all but the last prefixed with ``x``."""
    if n < 0:
        raise MalformedError(f"tile index {n} is negative")
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def parse_index(text: str) -> int:
    parts = text.split("/")
    if len(parts) > 6:
        raise MalformedError(f"tile index {text[:40]!r}... has too many groups")
    n = 0
    for i, part in enumerate(parts):
        digits = part[1:] if i < len(parts) - 1 else part
        if (i < len(parts) - 1) != part.startswith("x") or not re.fullmatch(r"[0-9]{3}", digits):
            raise MalformedError(f"tile index {text!r} is not 3-digit groups")
        n = n * 1000 + int(digits)
    if encode_index(n) != text:
        raise MalformedError(f"tile index {text!r} has leading zero groups")
    return n


def tiles_for_size(size: int) -> list[Tile]:
    """Every hash tile a tree of `size` leaves has: full tiles and the partial ones."""
    return new_tiles(0, size)


def new_tiles(old_size: int, new_size: int) -> list[Tile]:
    """Tiles that appear or change when the tree grows from old_size to new_size.

    A partial tile for the old size is superseded by a wider (or full) one; the
    list includes every tile that must be written for `new_size`.
    """
    if not 0 <= old_size <= new_size:
        raise MalformedError(f"cannot grow a tree from {old_size} to {new_size}")
    tiles = []
    level = 0
    while new_size >> (TILE_HEIGHT * level) > 0:
        old_n = old_size >> (TILE_HEIGHT * level)
        new_n = new_size >> (TILE_HEIGHT * level)
        if old_n == new_n:
            break
        for index in range(old_n // TILE_WIDTH, new_n // TILE_WIDTH):
            tiles.append(Tile(level, index))
        width = new_n % TILE_WIDTH
        if width:
            tiles.append(Tile(level, new_n // TILE_WIDTH, width))
        level += 1
    return tiles


def tile_width_at(level: int, index: int, size: int) -> int:
    """The width tile (level, index) has in a tree of `size` leaves (0: not there)."""
    hashes = size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, hashes - index * TILE_WIDTH))


def entry_bundle_tiles(old_size: int, new_size: int) -> list[Tile]:
    """Entry bundles that appear or change when the tree grows (same indexes as level 0)."""
    return [
        Tile(0, t.index, t.width, entries=True)
        for t in new_tiles(old_size, new_size)
        if t.level == 0
    ]


def encode_bundle(entries: Iterable[bytes]) -> bytes:
    """Entry bundle: each entry as a big-endian uint16 length then its bytes."""
    out = bytearray()
    count = 0
    for e in entries:
        if len(e) > MAX_ENTRY_SIZE:
            raise MalformedError(f"entry of {len(e)} bytes exceeds {MAX_ENTRY_SIZE}")
        out += len(e).to_bytes(2, "big")
        out += e
        count += 1
    if count > TILE_WIDTH:
        raise MalformedError(f"an entry bundle holds at most {TILE_WIDTH} entries")
    return bytes(out)


def decode_bundle(data: bytes, width: int | None = None) -> list[bytes]:
    """Parse an entry bundle; if `width` is given, require exactly that many entries."""
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if len(entries) == TILE_WIDTH:
            raise MalformedError(f"entry bundle holds more than {TILE_WIDTH} entries")
        if pos + 2 > len(data):
            raise MalformedError(f"entry bundle truncated in the length of entry {len(entries)}")
        n = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if pos + n > len(data):
            raise MalformedError(f"entry bundle truncated inside entry {len(entries)}")
        entries.append(bytes(data[pos : pos + n]))
        pos += n
    if width is not None and len(entries) != width:
        raise MalformedError(f"entry bundle holds {len(entries)} entries, expected {width}")
    return entries


def bundle_entry(data: bytes, position: int) -> bytes:
    """Entry `position` of an entry bundle, skipping over the others without copying them."""
    pos = 0
    for n in range(position + 1):
        if pos + 2 > len(data):
            raise MalformedError(f"entry bundle has no entry {position}")
        size = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if pos + size > len(data):
            raise MalformedError(f"entry bundle truncated inside entry {n}")
        if n == position:
            return bytes(data[pos : pos + size])
        pos += size
    raise MalformedError(f"entry bundle has no entry {position}")


def tile_hashes(data: bytes, tile: Tile) -> list[bytes]:
    """Split a hash tile's bytes into its hashes, checking its length."""
    if tile.entries:
        raise MalformedError("an entry bundle is not a hash tile")
    if len(data) != tile.width * HASH_SIZE:
        raise MalformedError(
            f"tile {tile.path()} is {len(data)} bytes, expected {tile.width * HASH_SIZE}"
        )
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def subtree_root(hashes: Sequence[bytes]) -> bytes:
    """MTH of a run of 2**k adjacent complete subtrees (e.g. a full tile's 256 hashes)."""
    sha = hashlib.sha256
    row = list(hashes)
    if not row or len(row) & (len(row) - 1):
        raise ValueError(f"a subtree root needs a power-of-two run, got {len(row)}")
    while len(row) > 1:
        row = [sha(b"\x01" + row[i] + row[i + 1]).digest() for i in range(0, len(row), 2)]
    return row[0]


def tile_levels(hashes: Sequence[bytes]) -> list[list[bytes]]:
    """Hash a tile's bottom row up through the 8 levels a tile spans.

    ``levels[s][j]`` is the root of hashes ``[j * 2**s, (j+1) * 2**s)``; only
    complete groups are hashed, so a partial tile yields what it can.
    """
    levels = [list(hashes)]
    for _ in range(TILE_HEIGHT):
        row = levels[-1]
        if len(row) < 2:
            break
        levels.append([node_hash(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)])
    return levels


def node_tile(node: Node, size: int) -> tuple[Tile, int, int]:
    """The tile holding complete subtree `node` in a tree of `size` leaves.

    Returns the tile (with the width `size` implies), the sub-level within the
    tile and the position of the node at that sub-level.
    """
    level, sub = divmod(node.level, TILE_HEIGHT)
    first = node.n << sub  # first level-8L hash under the node
    tile_index = first // TILE_WIDTH
    width = tile_width_at(level, tile_index, size)
    if width < ((first + (1 << sub)) - tile_index * TILE_WIDTH):
        raise MalformedError(f"subtree {node} is not complete in a tree of size {size}")
    return Tile(level, tile_index, width), sub, (first - tile_index * TILE_WIDTH) >> sub


TileFetcher = Callable[[Sequence[Tile]], Sequence[bytes]]


class TileCache:
    """A bounded, thread-safe LRU of hashed tiles, shareable between readers.

    Tiles are immutable once published (a partial tile of a given width never
    changes), so cached tiles never go stale.
    """

    def __init__(self, max_tiles: int = 256) -> None:
        self._tiles: OrderedDict[Tile, list[list[bytes]]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_tiles = max_tiles

    def get(self, tile: Tile) -> list[list[bytes]] | None:
        with self._lock:
            levels = self._tiles.get(tile)
            if levels is not None:
                self._tiles.move_to_end(tile)
            return levels

    def put(self, tile: Tile, levels: list[list[bytes]]) -> None:
        with self._lock:
            self._tiles[tile] = levels
            while len(self._tiles) > self.max_tiles:
                self._tiles.popitem(last=False)


class TileHashReader:
    """A `HashReader` over tiles of a tree of a known size.

    `fetch` receives the list of tiles a request needs (each once, with the
    width the tree size implies) and returns their bytes. Hashed tiles are kept
    in a `TileCache`, since proofs for nearby entries share tiles.
    """

    def __init__(self, size: int, fetch: TileFetcher, cache: TileCache | None = None) -> None:
        self.size = size
        self._fetch = fetch
        self._cache = cache if cache is not None else TileCache()
        self.tiles_fetched = 0

    def read_hashes(self, nodes: Sequence[Node]) -> list[bytes]:
        located = [node_tile(n, self.size) for n in nodes]
        have: dict[Tile, list[list[bytes]]] = {}
        wanted = []
        for tile in sorted({t for t, _, _ in located}):
            cached = self._cache.get(tile)
            if cached is None:
                wanted.append(tile)
            else:
                have[tile] = cached
        if wanted:
            blobs = self._fetch(wanted)
            if len(blobs) != len(wanted):
                raise MalformedError(f"tile fetcher returned {len(blobs)} tiles for {len(wanted)}")
            self.tiles_fetched += len(wanted)
            for tile, blob in zip(wanted, blobs, strict=True):
                have[tile] = tile_levels(tile_hashes(blob, tile))
                self._cache.put(tile, have[tile])
        return [have[tile][sub][pos] for tile, sub, pos in located]


def tile_nodes(tile: Tile) -> list[Node]:
    """The complete subtrees whose hashes make up hash tile `tile`, in order."""
    if tile.entries:
        raise MalformedError("an entry bundle holds entries, not hashes")
    level = tile.level * TILE_HEIGHT
    return [Node(level, tile.start + i) for i in range(tile.width)]

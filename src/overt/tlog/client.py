"""A tlog-tiles client that verifies everything it reads.

A server (or a CDN in front of it) can serve any bytes; nothing it sends is
trusted until it is tied to a verified checkpoint:

* the checkpoint must verify against the log's key (or a tlog-policy), and
  must be consistent with the last checkpoint this client accepted for the
  same origin, which it remembers: a log that goes backwards or forks is
  detected, not followed;
* the partial tiles on the tree's right edge must hash to the checkpoint's
  root; every full tile must hash to its slot in its (verified) parent tile;
* entries in a bundle must hash to the leaf hashes of the verified level-0
  tile.

A forged tile therefore fails before any proof is computed from it (cf.
golang/go#80744, where tiles were trusted before being checked).

This module does no I/O: the caller passes `fetch(path) -> bytes` and a
`CheckpointMemory`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from overt.crypto.keys import Verifier
from overt.crypto.note import split
from overt.errors import MalformedError, VerificationError
from overt.tlog.checkpoint import Checkpoint, open_checkpoint
from overt.tlog.hashing import leaf_hash
from overt.tlog.merkle import (
    HashReader,
    consistency_proof,
    inclusion_proof,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from overt.tlog.policy import Policy
from overt.tlog.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    Tile,
    TileCache,
    TileHashReader,
    decode_bundle,
    subtree_root,
    tile_hashes,
    tile_width_at,
)

Fetch = Callable[[str], bytes]


class LogMisbehaviour(VerificationError):
    """Evidence that the log itself misbehaved, not just a bad download.

    `kind` is one of: ``rollback`` (a checkpoint smaller than one accepted
    before), ``fork`` (two roots for one size, or a tree that does not extend
    the one accepted before), ``bad-tile`` (a tile or bundle that does not
    match a verified checkpoint).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class CheckpointMemory(Protocol):
    """Where a client keeps the last checkpoint it accepted for each log.

    Keyed by the log's identity: its origin line, then the keys trusted for it.
    """

    def load(self, identity: str) -> str | None: ...

    def store(self, identity: str, signed_checkpoint: str) -> None: ...


class DictMemory:
    """A `CheckpointMemory` that lasts as long as the process."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def load(self, identity: str) -> str | None:
        return self._seen.get(identity)

    def store(self, identity: str, signed_checkpoint: str) -> None:
        self._seen[identity] = signed_checkpoint


class VerifiedTiles:
    """Tiles of one checkpointed tree, each checked before it is returned."""

    def __init__(self, checkpoint: Checkpoint, fetch: Fetch) -> None:
        self.checkpoint = checkpoint
        self._fetch = fetch
        self._verified: dict[Tile, bytes] = {}
        self._edge_checked = False
        self.fetched = 0

    @property
    def size(self) -> int:
        return self.checkpoint.size

    def _get(self, tile: Tile) -> bytes:
        self.fetched += 1
        data = self._fetch(tile.path())
        try:
            tile_hashes(data, tile)  # the length a tile of this width must have
        except MalformedError as exc:
            raise LogMisbehaviour("bad-tile", str(exc)) from exc
        return data

    def _check_edge(self) -> None:
        """Fetch the partial tile of each level and check they hash to the root."""
        if self._edge_checked:
            return
        edge: dict[Tile, bytes] = {}
        level = 0
        while self.size >> (TILE_HEIGHT * level) > 0:
            count = self.size >> (TILE_HEIGHT * level)
            if count % TILE_WIDTH:
                tile = Tile(level, count // TILE_WIDTH, count % TILE_WIDTH)
                edge[tile] = self._get(tile)
            level += 1
        reader = TileHashReader(self.size, lambda ts: [edge[t] for t in ts], TileCache(64))
        if root_hash(reader, self.size) != self.checkpoint.root_hash:
            raise LogMisbehaviour(
                "bad-tile",
                f"the log's partial tiles do not hash to the root of checkpoint size {self.size}",
            )
        self._verified.update(edge)
        self._edge_checked = True

    def tile(self, tile: Tile) -> bytes:
        """The bytes of a hash tile, verified against the checkpoint."""
        if tile.entries:
            raise MalformedError("use entries() for entry bundles")
        if tile.width != tile_width_at(tile.level, tile.index, self.size):
            raise MalformedError(f"{tile.path()} is not part of a tree of size {self.size}")
        cached = self._verified.get(tile)
        if cached is not None:
            return cached
        if tile.partial:
            self._check_edge()
            return self._verified[tile]
        parent_index, slot = divmod(tile.index, TILE_WIDTH)
        parent = Tile(
            tile.level + 1, parent_index, tile_width_at(tile.level + 1, parent_index, self.size)
        )
        parent_hashes = tile_hashes(self.tile(parent), parent)
        data = self._get(tile)
        if subtree_root(tile_hashes(data, tile)) != parent_hashes[slot]:
            raise LogMisbehaviour(
                "bad-tile", f"tile {tile.path()} does not match the verified tree"
            )
        self._verified[tile] = data
        return data

    def tiles(self, tiles: Sequence[Tile]) -> list[bytes]:
        return [self.tile(t) for t in tiles]

    def hash_reader(self) -> HashReader:
        return TileHashReader(self.size, self.tiles, TileCache(256))

    def bundle(self, index: int) -> list[bytes]:
        """The entries of bundle `index`, each checked against its leaf hash."""
        width = tile_width_at(0, index, self.size)
        if width == 0:
            raise MalformedError(f"bundle {index} is beyond tree size {self.size}")
        tile = Tile(0, index, width)
        hashes = tile_hashes(self.tile(tile), tile)
        bundle = Tile(0, index, width, entries=True)
        self.fetched += 1
        try:
            entries = decode_bundle(self._fetch(bundle.path()), width)
        except MalformedError as exc:
            raise LogMisbehaviour("bad-tile", f"{bundle.path()}: {exc}") from exc
        for i, (entry, expected) in enumerate(zip(entries, hashes, strict=True)):
            if leaf_hash(entry) != expected:
                number = index * TILE_WIDTH + i
                raise LogMisbehaviour(
                    "bad-tile", f"entry {number} in {bundle.path()} does not match its leaf hash"
                )
        return entries


class LogClient:
    """Follows one log: verified checkpoints, entries and proofs."""

    def __init__(
        self,
        fetch: Fetch,
        log_key: Verifier | None = None,
        policy: Policy | None = None,
        memory: CheckpointMemory | None = None,
    ) -> None:
        if (log_key is None) == (policy is None):
            raise MalformedError("give the log's key or a tlog-policy, not both")
        self._fetch = fetch
        self._log_key = log_key
        self._policy = policy
        self._memory = memory if memory is not None else DictMemory()
        self._tiles: VerifiedTiles | None = None
        self._signed = ""

    def _open(self, signed: str) -> Checkpoint:
        if self._policy is not None:
            return self._policy.verify_checkpoint(signed).checkpoint
        assert self._log_key is not None
        return open_checkpoint(signed, self._log_key).checkpoint

    def _identity(self, origin: str) -> str:
        """What the memory is keyed by: the origin and the key(s) trusted for it.

        Two logs that share an origin but not a key are different logs to
        this client (a test log, a re-created log); each keeps its own record.
        """
        if self._log_key is not None:
            keys = [f"{self._log_key.name}+{self._log_key.key_id:08x}"]
        else:
            assert self._policy is not None
            keys = sorted(str(log.vkey) for log in self._policy.logs if log.vkey.name == origin)
        return "\n".join([origin, *keys])

    def update(self) -> Checkpoint:
        """Fetch, verify and accept the log's current checkpoint.

        Refuses a checkpoint smaller than, or inconsistent with, the last one
        accepted for this origin.
        """
        try:
            signed = self._fetch("checkpoint").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedError("checkpoint is not UTF-8") from exc
        new = self._open(signed)
        tiles = VerifiedTiles(new, self._fetch)
        identity = self._identity(new.origin)
        previous = self._memory.load(identity)
        if previous is not None:
            # Our own record of what we accepted earlier: its signatures were
            # checked then, and the key or policy may have changed since.
            old = Checkpoint.parse(split(previous)[0])
            if new.size < old.size:
                raise LogMisbehaviour(
                    "rollback", f"log {new.origin} went backwards: size {new.size} after {old.size}"
                )
            if new.size == old.size:
                if new.root_hash != old.root_hash:
                    raise LogMisbehaviour(
                        "fork", f"log {new.origin} forked: two roots for size {new.size}"
                    )
            elif old.size > 0:
                proof = consistency_proof(tiles.hash_reader(), old.size, new.size)
                try:
                    verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
                except VerificationError as exc:
                    raise LogMisbehaviour(
                        "fork", f"log {new.origin} is inconsistent with size {old.size}: {exc}"
                    ) from exc
        self._memory.store(identity, signed)
        self._tiles = tiles
        self._signed = signed
        return new

    @property
    def tiles(self) -> VerifiedTiles:
        if self._tiles is None:
            self.update()
        assert self._tiles is not None
        return self._tiles

    @property
    def checkpoint(self) -> Checkpoint:
        return self.tiles.checkpoint

    @property
    def signed_checkpoint(self) -> str:
        """The current checkpoint note exactly as the log served it (with cosignatures)."""
        self.tiles  # noqa: B018 (fetches and verifies the checkpoint on first use)
        return self._signed

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Verified entries [start, end) of the current checkpoint."""
        tiles = self.tiles
        end = tiles.size if end is None else end
        if not 0 <= start <= end <= tiles.size:
            raise MalformedError(f"range {start}..{end} is outside tree size {tiles.size}")
        index = start
        while index < end:
            bundle = tiles.bundle(index // TILE_WIDTH)
            for offset in range(index % TILE_WIDTH, len(bundle)):
                if index >= end:
                    break
                yield index, bundle[offset]
                index += 1

    def entry(self, index: int) -> bytes:
        for _, entry in self.entries(index, index + 1):
            return entry
        raise MalformedError(f"no entry {index}")

    def inclusion_proof(self, index: int) -> list[bytes]:
        tiles = self.tiles
        proof = inclusion_proof(tiles.hash_reader(), index, tiles.size)
        leaf = tile_hashes(self.tiles.tile(self._leaf_tile(index)), self._leaf_tile(index))[
            index % TILE_WIDTH
        ]
        verify_inclusion(leaf, index, tiles.size, proof, tiles.checkpoint.root_hash)
        return proof

    def _leaf_tile(self, index: int) -> Tile:
        n = index // TILE_WIDTH
        return Tile(0, n, tile_width_at(0, n, self.tiles.size))

    def verify_entry(self, entry: bytes, index: int) -> None:
        """Check that `entry` is the log's entry at `index` under the current checkpoint."""
        tiles = self.tiles
        proof = inclusion_proof(tiles.hash_reader(), index, tiles.size)
        verify_inclusion(leaf_hash(entry), index, tiles.size, proof, tiles.checkpoint.root_hash)

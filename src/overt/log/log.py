"""One log: its directory, keys, sequencing store, tiles and checkpoint.

Directory layout (docs/log.md):

    DIR/log.toml              configuration
    DIR/log.vkey              the log's verifier key (public)
    DIR/secrets/log.key       the log's private key (0600)
    DIR/secrets/write-token   bearer token for adds (0600)
    DIR/state/sequence.db     SQLite (WAL): pending entries, dedup index, metadata
                              (or, with `database` in log.toml, PostgreSQL)
    DIR/tiles/                checkpoint, tile/..., tile/entries/... (C2SP tlog-tiles)

`Log` is the Python API the CLI, the HTTP server and the benchmarks share.
Adding is two steps: `sequence` makes entries durable and gives them indexes;
`integrate` extends the tiles and publishes a checkpoint that covers them.

With SQLite only one process may open a log directory at a time (an exclusive
lock file enforces it). With PostgreSQL any number may (they share the lock),
all sequence, and the one holding the database's integration lock integrates;
the others follow the published checkpoint file and take over within about a
second when the integrator dies (pg_store.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from overt.crypto.keyfile import read_private_key, write_private_key
from overt.crypto.keys import Ed25519Signer, VerifierKey, ed25519_verifier
from overt.durable import atomic_write
from overt.errors import MalformedError, OvertError
from overt.log.config import LogConfig, load_config
from overt.log.integrator import Integrator, TileCorruptError
from overt.log.sqlite_store import SQLiteStore
from overt.log.store import SequenceStore
from overt.tlog.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from overt.tlog.hashing import EMPTY_ROOT, HASH_SIZE
from overt.tlog.merkle import consistency_proof, inclusion_proof
from overt.tlog.policy import Policy
from overt.tlog.tiles import (
    TILE_WIDTH,
    Tile,
    TileCache,
    TileHashReader,
    bundle_entry,
    decode_bundle,
    encode_bundle,
    tile_hashes,
    tile_width_at,
)
from overt.witness.gather import Gatherer

if TYPE_CHECKING:
    from overt.log.pg_store import PostgresStore

log = logging.getLogger("overt.log")

# With PostgreSQL: how often a front end that is not integrating tries to take
# the integration lock, and looks for a newer published checkpoint.
LEAD_RETRY_S = 1.0
FOLLOW_POLL_S = 0.05


def check_witness_policy(policy: Policy, log_key: VerifierKey) -> None:
    """A log's witness policy must list the log itself and give each witness a URL."""
    if not any(entry.vkey == log_key for entry in policy.logs):
        raise MalformedError(f"the witness policy does not list this log's key {log_key}")
    missing = [w.name for w in policy.witnesses.values() if not w.url]
    if missing:
        raise MalformedError(f"witnesses without a URL in the policy: {', '.join(missing)}")
    if not policy.witnesses:
        raise MalformedError("the witness policy lists no witness")


class LogError(OvertError):
    """The log cannot do what was asked (not a log directory, locked, full...)."""


class EntryTooLarge(MalformedError):
    pass


class NotFound(LogError):
    """No such entry (or tree size) in this log."""


@dataclass(frozen=True)
class LogPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "log.toml"

    @property
    def vkey(self) -> Path:
        return self.root / "log.vkey"

    @property
    def key(self) -> Path:
        return self.root / "secrets" / "log.key"

    @property
    def token(self) -> Path:
        return self.root / "secrets" / "write-token"

    @property
    def db(self) -> Path:
        return self.root / "state" / "sequence.db"

    @property
    def lock(self) -> Path:
        return self.root / "state" / "lock"

    @property
    def tiles(self) -> Path:
        return self.root / "tiles"

    @property
    def checkpoint(self) -> Path:
        return self.tiles / "checkpoint"


def init_log(root: Path, config: LogConfig) -> str:
    """Create a new log directory; return the log's verifier key."""
    paths = LogPaths(root)
    if paths.config.exists():
        raise LogError(f"{root} already holds a log ({paths.config} exists)")
    if root.exists() and any(root.iterdir()):
        raise LogError(f"{root} is not empty; choose a new directory for the log")
    signer = Ed25519Signer.generate(config.origin)
    vkey = str(signer.verifier_key())
    if config.database:
        # First, so that an unreachable database leaves no half-made directory.
        from overt.log.pg_store import create_log

        create_log(config.database, vkey, config.origin)
    for d in (root, paths.key.parent, paths.db.parent, paths.tiles):
        d.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.key.parent, 0o700)
    write_private_key(paths.key, signer)
    atomic_write(paths.vkey, (vkey + "\n").encode())
    atomic_write(paths.token, (secrets.token_urlsafe(32) + "\n").encode(), mode=0o600)
    # The empty tree gets a checkpoint too, so clients can start following at once.
    atomic_write(
        paths.checkpoint,
        sign_checkpoint(Checkpoint(config.origin, 0, EMPTY_ROOT), [signer]).encode(),
    )
    atomic_write(paths.config, config.to_toml().encode())
    return vkey


def _take_lock(paths: LogPaths, shared: bool = False) -> int:
    """Hold the log directory for this process alone, or `shared` with other front
    ends (PostgreSQL), but never with a process that holds it alone (released
    when the fd is closed)."""
    paths.lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise LogError(f"{paths.root} is in use by another overt process") from exc
    return fd


def migrate_sqlite_state(root: Path) -> int:
    """Create or upgrade a stopped SQLite log's state database; return its schema version."""
    from overt.log.sqlite_store import SCHEMA_VERSION

    paths = LogPaths(root)

    def no_tiles(i: int) -> bytes:
        raise IndexError(i)

    fd = _take_lock(paths)
    try:
        SQLiteStore(paths.db, no_tiles).close()
    finally:
        os.close(fd)
    return SCHEMA_VERSION


WITNESS_POLICY_FILE = "witnesses.tlog-policy"


def set_witness_policy(root: Path, policy: bytes | None) -> Policy | None:
    """Make a stopped log publish only checkpoints the policy's quorum cosigned.

    `policy` is a C2SP tlog-policy listing this log's key and each witness
    with its URL; None stops asking witnesses. Nothing is written unless the
    policy is valid for this log and no process has the log open.
    """
    paths = LogPaths(root)
    config = load_config(paths.config)
    parsed = None
    if policy is not None:
        parsed = Policy.parse(policy)
        check_witness_policy(parsed, VerifierKey.parse(paths.vkey.read_text().strip()))
    fd = _take_lock(paths)
    try:
        if policy is not None:
            atomic_write(root / WITNESS_POLICY_FILE, policy)
        name = WITNESS_POLICY_FILE if policy is not None else ""
        atomic_write(paths.config, replace(config, witness_policy=name).to_toml().encode())
    finally:
        os.close(fd)
    return parsed


class Log:
    """An open log directory. Thread-safe; one writer process per directory with
    SQLite, any number of front ends with PostgreSQL."""

    def __init__(self, root: Path) -> None:
        self.paths = LogPaths(root)
        if not self.paths.config.exists():
            raise LogError(f"{root} is not a log directory (no log.toml); run 'overt log init'")
        self.config = load_config(self.paths.config)
        self.shared = bool(self.config.database)
        self._lock_fd = _take_lock(self.paths, shared=self.shared)
        try:
            self._open()
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _open(self) -> None:
        self._signer = read_private_key(self.paths.key)
        if self._signer.name != self.config.origin:
            raise LogError(
                f"log key name {self._signer.name!r} differs from origin {self.config.origin!r}"
            )
        self.verifier = ed25519_verifier(self._signer.verifier_key())
        self.token = self.paths.token.read_text(encoding="utf-8").strip()
        published = self._read_published()
        self._integrator = Integrator(self.paths.tiles, published.size)
        if self._integrator.root() != published.root_hash:
            raise TileCorruptError(
                f"tiles under {self.paths.tiles} do not hash to the published checkpoint's root; "
                "run 'overt log verify' to find the damage"
            )
        self._checkpoint = published
        self._signed = self.paths.checkpoint.read_bytes()
        self._checkpoint_stat = self._stat_checkpoint()
        self._pg: PostgresStore | None = None
        self._sqlite: SQLiteStore | None = None
        self._store: SequenceStore
        if self.shared:
            from overt.log.pg_store import PostgresStore

            # The published state is reconciled with the database by whichever
            # front end takes the integration lock (`_take_over`), not here:
            # others may publish while this one opens.
            self._pg = PostgresStore(self.config.database, str(self.verifier.vkey))
            self._store = self._pg
        else:
            self._sqlite = SQLiteStore(self.paths.db, lambda i: self._integrator.leaf_hash(i))
            self._store = self._sqlite
            recorded, _ = self._sqlite.published()
            if recorded > published.size:
                self._sqlite.close()
                raise LogError(
                    f"the published checkpoint (size {published.size}) is older than one this "
                    f"log already published (size {recorded}); was tiles/ restored from a backup?"
                )
            if self._sqlite.next_index() < published.size:
                # A crash between publishing a bulk checkpoint and committing its
                # transaction: the published tiles hold the truth; index them.
                self._repair(self._sqlite.next_index(), published)
        self._next_lead_attempt = 0.0
        self._gatherer = self._load_witnesses()
        self.witness_errors: dict[str, str] = {}
        self._tile_cache = TileCache(4096)
        self._write_lock = threading.Lock()
        self._integrated = threading.Condition()

    def _load_witnesses(self) -> Gatherer | None:
        if not self.config.witness_policy:
            return None
        path = self.paths.root / self.config.witness_policy
        try:
            policy = Policy.parse(path.read_bytes())
        except FileNotFoundError as exc:
            raise LogError(f"{path}: witness policy file is missing") from exc
        check_witness_policy(policy, self.verifier.vkey)
        return Gatherer(policy, self.config.witness_timeout_ms / 1000)

    def _read_published(self) -> Checkpoint:
        try:
            data = self.paths.checkpoint.read_bytes()
        except FileNotFoundError as exc:
            raise LogError(f"{self.paths.checkpoint} is missing") from exc
        return open_checkpoint(data, self.verifier).checkpoint

    def _stat_checkpoint(self) -> tuple[int, int, int]:
        st = os.stat(self.paths.checkpoint)
        return st.st_mtime_ns, st.st_size, st.st_ino

    def close(self) -> None:
        if self._gatherer is not None:
            self._gatherer.close()
        self._store.close()
        os.close(self._lock_fd)

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing -------------------------------------------------------

    def check_entry(self, entry: bytes) -> None:
        if len(entry) > self.config.max_entry_size:
            raise EntryTooLarge(
                f"entry of {len(entry)} bytes exceeds this log's limit of "
                f"{self.config.max_entry_size} bytes"
            )

    def _check_sizes(self, entries: Sequence[bytes]) -> None:
        if entries and max(map(len, entries)) > self.config.max_entry_size:
            for e in entries:
                self.check_entry(e)

    def sequence(self, entries: Sequence[bytes]) -> list[int]:
        """Durably assign indexes (existing index for an entry already logged)."""
        self._check_sizes(entries)
        sha = hashlib.sha256
        hashes = [sha(b"\x00" + e).digest() for e in entries]
        return self._store.sequence(hashes, entries)

    @property
    def integrating(self) -> bool:
        """Whether this process integrates (always, with SQLite)."""
        return self._pg is None or self._pg.leading

    def integrate(self) -> Checkpoint:
        """Integrate everything sequenced so far and publish a new checkpoint.

        With witnesses configured, the checkpoint is published only once the
        policy's quorum has cosigned it; otherwise the previous one stays the
        public one (the tiles are kept, and the next call tries again).
        With PostgreSQL, only the front end holding the integration lock
        integrates; on any other this takes the lock if it is free (at most
        once a second), or else just follows the published checkpoint.
        """
        with self._write_lock:
            if not self._lead():
                return self.refresh()
            try:
                target = self._store.next_index()
                start = self._integrator.size
                if target > start:
                    hashes, entries = self._store.pending(start, target)
                    self._integrator.extend(entries, hashes)
                published = self._publish()
                if published is not None and self._sqlite is not None:
                    self._sqlite.record_published(published.size, published.root_hash)
            except BaseException:
                self._step_down()
                raise
            return self._checkpoint

    def _lead(self) -> bool:
        """With PostgreSQL: hold the integration lock, taking it if it is free."""
        pg = self._pg
        if pg is None or pg.leading:
            return True
        now = time.monotonic()
        if now < self._next_lead_attempt:
            return False
        self._next_lead_attempt = now + LEAD_RETRY_S
        try:
            if not pg.try_lead():
                return False
        except OvertError as exc:
            log.warning("cannot try the integration lock: %s", exc)
            return False
        try:
            self._take_over()
        except BaseException:
            pg.step_down()
            raise
        log.info("%s: this process now integrates the log", self.config.origin)
        return True

    def _step_down(self) -> None:
        """After a failure while integrating with PostgreSQL: let another front end try."""
        if self._pg is not None and self._pg.leading:
            self._pg.step_down()
            log.warning("%s: gave up the integration lock", self.config.origin)

    def _take_over(self) -> None:
        """Just took the integration lock: re-read what was published and reconcile.

        The checkpoint file is the public truth. The database may lag it by one
        publication (an integrator died between replacing the file and
        recording it), and its bulk path may have synced tiles beyond it that
        are not yet published (`integrated`). Anything else is refused.
        """
        pg = self._pg
        assert pg is not None
        signed = self.paths.checkpoint.read_bytes()
        stat = self._stat_checkpoint()
        cp = open_checkpoint(signed, self.verifier).checkpoint
        recorded, recorded_root = pg.published()
        if recorded > cp.size or (recorded == cp.size and recorded_root != cp.root_hash):
            raise LogError(
                f"the published checkpoint (size {cp.size}) is not the one this log last "
                f"published (size {recorded}); was tiles/ restored from a backup?"
            )
        if pg.next_index() < cp.size:
            raise LogError(
                f"the database has fewer entries ({pg.next_index()}) than the published "
                f"checkpoint ({cp.size}); was it restored from an older backup?"
            )
        integrated, integrated_root = pg.integrated()
        if integrated > cp.size:
            integrator = Integrator(self.paths.tiles, integrated)
            if integrator.root() != integrated_root:
                raise TileCorruptError(
                    f"tiles under {self.paths.tiles} for size {integrated} do not hash to the "
                    "root the database recorded for them"
                )
        else:
            integrator = Integrator(self.paths.tiles, cp.size)
            if integrator.root() != cp.root_hash:
                raise TileCorruptError(
                    f"tiles under {self.paths.tiles} do not hash to the published checkpoint's "
                    "root; run 'overt log verify' to find the damage"
                )
        if recorded < cp.size:
            log.warning(
                "%s: recording checkpoint %d published by a lost integrator", cp.origin, cp.size
            )
            pg.publish(
                (recorded, recorded_root or EMPTY_ROOT), (cp.size, cp.root_hash), lambda: None
            )
        self._integrator = integrator
        with self._integrated:
            if cp.size < self._checkpoint.size:
                raise LogError(
                    f"the published checkpoint went back from size {self._checkpoint.size} "
                    f"to {cp.size}"
                )
            self._checkpoint, self._signed, self._checkpoint_stat = cp, signed, stat
            self._integrated.notify_all()

    def refresh(self) -> Checkpoint:
        """With PostgreSQL, on a front end that does not integrate: read the checkpoint
        file again if it changed, and move on to it if it is newer."""
        if self.integrating:
            return self._checkpoint
        try:
            stat = self._stat_checkpoint()
            if stat == self._checkpoint_stat:
                return self._checkpoint
            signed = self.paths.checkpoint.read_bytes()
            cp = open_checkpoint(signed, self.verifier).checkpoint
        except (OSError, OvertError) as exc:
            log.warning("cannot read the published checkpoint: %s", exc)
            return self._checkpoint
        with self._integrated:
            self._checkpoint_stat = stat
            current = self._checkpoint
            if cp.size > current.size:
                self._checkpoint, self._signed = cp, signed
                self._integrated.notify_all()
            elif cp.size < current.size or cp.root_hash != current.root_hash:
                log.error(
                    "%s: the published checkpoint changed from size %d to %d%s; keeping %d",
                    cp.origin,
                    current.size,
                    cp.size,
                    " with another root" if cp.size == current.size else "",
                    current.size,
                )
            return self._checkpoint

    def add(self, entries: Sequence[bytes]) -> tuple[list[int], Checkpoint]:
        """Add entries and publish a checkpoint covering them: the bulk path.

        When nothing else is waiting, the entries go straight into the tiles
        under one open transaction that also records them (and, with SQLite,
        the publication), instead of being stored, read back and deleted as
        pending rows. The checkpoint returned covers the entries unless a
        witness quorum could not be reached; then they are kept and published
        later. With PostgreSQL, a front end that does not integrate sequences
        the entries and waits (up to a minute) for the integrator to publish them.
        """
        self._check_sizes(entries)
        sha = hashlib.sha256
        hashes = [sha(b"\x00" + e).digest() for e in entries]
        with self._write_lock:
            if (
                self._lead()
                and self._store.next_index() == self._integrator.size == self._checkpoint.size
            ):
                done = self._add_bulk(entries, hashes)
                if done is not None:
                    return done
        # Entries are pending (from the pool, or sequenced concurrently): the
        # ordinary path keeps everyone's order.
        indexes = self._store.sequence(hashes, entries)
        checkpoint = self.integrate()
        if indexes and checkpoint.size <= max(indexes) and not self.integrating:
            checkpoint = self.wait_integrated(max(indexes) + 1, 60.0) or self._checkpoint
        return indexes, checkpoint

    def _add_bulk(
        self, entries: Sequence[bytes], hashes: list[bytes]
    ) -> tuple[list[int], Checkpoint] | None:
        """The bulk path, under the write lock; None if the log turned out not to be idle."""
        if self._pg is not None:
            return self._add_bulk_shared(entries, hashes)
        store = self._sqlite
        assert store is not None
        indexes, new = store.reserve(hashes)
        if not new:  # every entry was logged already
            store.rollback()
            return indexes, self._checkpoint
        if indexes[new[0]] != self._integrator.size:
            # Another thread sequenced entries since the check: they come first.
            store.rollback()
            return None
        try:
            self._integrator.extend([entries[p] for p in new], [hashes[p] for p in new])
            published = self._publish()
        except BaseException:
            store.rollback()
            self._integrator = Integrator(self.paths.tiles, self._checkpoint.size)
            raise
        if published is not None:
            store.commit_published(published.size, published.root_hash)
            return indexes, published
        # No witness quorum: keep the entries the ordinary, durable way.
        store.rollback()
        self._integrator = Integrator(self.paths.tiles, self._checkpoint.size)
        return store.sequence(hashes, entries), self._checkpoint

    def _add_bulk_shared(
        self, entries: Sequence[bytes], hashes: list[bytes]
    ) -> tuple[list[int], Checkpoint] | None:
        """The bulk path with PostgreSQL (as the integrator, under the write lock).

        The reservation commits once the tiles are synced, before the
        checkpoint is signed: other front ends sequence meanwhile, and must
        never be handed an index the published checkpoint already covers.
        If this process dies between the commit and the publication, the next
        integrator publishes the synced tiles (`_take_over`).
        """
        pg = self._pg
        assert pg is not None
        indexes, new = pg.reserve(hashes)
        if not new:
            pg.rollback()
            return indexes, self._checkpoint
        if indexes[new[0]] != self._integrator.size:
            pg.rollback()  # another front end sequenced first: the ordinary path
            return None
        try:
            self._integrator.extend([entries[p] for p in new], [hashes[p] for p in new])
            pg.commit_reserved(self._integrator.size, self._integrator.root())
        except BaseException:
            pg.rollback()
            self._step_down()  # the next takeover rebuilds the tree from the tiles
            raise
        try:
            published = self._publish()
        except BaseException:
            self._step_down()
            raise
        return indexes, published or self._checkpoint

    def _publish(self) -> Checkpoint | None:
        """Sign (and have witnessed) a checkpoint for the integrated tree, and publish it.

        Returns None if there is nothing new or the witness quorum was not met.
        With SQLite the caller records the publication in the store; with
        PostgreSQL it is recorded here, under the fence.
        """
        size = self._integrator.size
        if size == self._checkpoint.size and not self._cosignatures_stale():
            return None
        checkpoint = Checkpoint(self.config.origin, size, self._integrator.root())
        note = sign_checkpoint(checkpoint, [self._signer])
        if self._gatherer is not None:
            result = self._gatherer.gather(note, checkpoint, self._unpublished_consistency)
            self.witness_errors = result.errors
            if not self._gatherer.quorum_met(result.cosigners):
                log.warning(
                    "checkpoint %d not published: witness quorum not met (%s)",
                    size,
                    "; ".join(f"{k}: {v}" for k, v in result.errors.items()) or "no answers",
                )
                return None
            note = result.note
        data = note.encode()

        def switch() -> None:
            # Readers switch to the new tree before the pending copies of its
            # entries are dropped, so an entry is always readable.
            stat = self._stat_checkpoint() if self.shared else self._checkpoint_stat
            with self._integrated:
                self._checkpoint, self._signed, self._checkpoint_stat = checkpoint, data, stat
                self._integrated.notify_all()

        if self._pg is not None:
            base = (self._checkpoint.size, self._checkpoint.root_hash)

            def write() -> None:
                atomic_write(self.paths.checkpoint, data)
                switch()

            self._pg.publish(base, (size, checkpoint.root_hash), write)
        else:
            atomic_write(self.paths.checkpoint, data)
            switch()
        return checkpoint

    def _cosignatures_stale(self) -> bool:
        """Witnessed and idle for longer than witness_refresh_ms: time to re-cosign."""
        if self._gatherer is None or self._checkpoint.size == 0:
            return False
        try:
            age = time.time() - os.stat(self.paths.checkpoint).st_mtime
        except FileNotFoundError:
            return False
        return age * 1000 >= self.config.witness_refresh_ms

    def _repair(self, start: int, published: Checkpoint) -> None:
        assert self._sqlite is not None
        hashes: list[bytes] = []
        for n in range(start // TILE_WIDTH, (published.size + TILE_WIDTH - 1) // TILE_WIDTH):
            tile = Tile(0, n, tile_width_at(0, n, published.size))
            row = tile_hashes(self._read_tile(tile), tile)
            first = max(start - n * TILE_WIDTH, 0)
            hashes.extend(row[first:])
        log.warning(
            "re-indexing entries %d..%d from the published tiles", start, published.size - 1
        )
        self._sqlite.repair(start, hashes)
        self._sqlite.record_published(published.size, published.root_hash)

    def _unpublished_consistency(self, old: int, new: int) -> list[bytes]:
        """A consistency proof into the integrated, not yet published tree."""
        return consistency_proof(TileHashReader(new, self._read_tiles, self._tile_cache), old, new)

    def wait_integrated(self, size: int, timeout: float) -> Checkpoint | None:
        """Block until a published checkpoint has at least `size` entries."""
        deadline = time.monotonic() + timeout
        with self._integrated:
            while self._checkpoint.size < size:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if self.shared and not self.integrating:
                    # Nobody notifies a follower: look at the file now and then.
                    self._integrated.wait(min(left, FOLLOW_POLL_S))
                    self._integrated.release()
                    try:
                        self.refresh()
                    finally:
                        self._integrated.acquire()
                else:
                    self._integrated.wait(left)
            return self._checkpoint

    # --- reading -------------------------------------------------------

    @property
    def checkpoint(self) -> Checkpoint:
        return self._checkpoint

    def signed_checkpoint(self) -> bytes:
        return self._signed

    def published(self) -> tuple[Checkpoint, bytes]:
        """The current checkpoint and its signed note, as one consistent pair."""
        with self._integrated:
            return self._checkpoint, self._signed

    def sequenced_size(self) -> int:
        return self._store.next_index()

    def lookup(self, leaf: bytes) -> int | None:
        return self._store.lookup(leaf)

    def _read_tiles(self, tiles: Sequence[Tile]) -> list[bytes]:
        return [self._read_tile(t) for t in tiles]

    def _read_tile(self, tile: Tile) -> bytes:
        """Read a tile; a partial one no longer on disk is cut from a wider copy.

        Partial tiles exist for sizes the log published a checkpoint at; a
        proof for another size can use the prefix of the full tile, or of the
        current partial tile, which hold the same hashes.
        """
        candidates = [tile]
        if tile.partial:
            current = tile_width_at(tile.level, tile.index, self._checkpoint.size)
            candidates.append(Tile(tile.level, tile.index, entries=tile.entries))
            if tile.width < current < TILE_WIDTH:
                candidates.append(Tile(tile.level, tile.index, current, tile.entries))
        for candidate in candidates:
            try:
                data = (self.paths.tiles / candidate.path()).read_bytes()
            except FileNotFoundError:
                continue
            if candidate == tile:
                return data
            if tile.entries:
                return encode_bundle(decode_bundle(data)[: tile.width])
            return data[: tile.width * HASH_SIZE]
        raise TileCorruptError(f"{tile.path()} is missing")

    def entry(self, index: int, size: int | None = None) -> bytes:
        """The entry at `index`: from the tree of `size` (default: the published
        one), or still pending integration."""
        if index < 0:
            raise NotFound(f"no entry {index}")
        for _ in range(2):
            tree = self._checkpoint.size if size is None else size
            if index < tree:
                bundle_index = index // TILE_WIDTH
                width = tile_width_at(0, bundle_index, tree)
                data = self._read_tile(Tile(0, bundle_index, width, entries=True))
                return bundle_entry(data, index % TILE_WIDTH)
            pending = self._store.pending_entry(index)
            if pending is not None:
                return pending
            if size is None and self._pg is not None:
                # The bulk path's entries are in synced tiles, not in the
                # store, until a checkpoint covers them (no witness quorum yet).
                unpublished = (
                    self._integrator.size if self.integrating else self._pg.integrated()[0]
                )
                if index < unpublished:
                    width = tile_width_at(0, index // TILE_WIDTH, unpublished)
                    data = self._read_tile(Tile(0, index // TILE_WIDTH, width, entries=True))
                    return bundle_entry(data, index % TILE_WIDTH)
            if (
                size is not None
                or (self.refresh() if self.shared else self._checkpoint).size == tree
            ):
                break
            # Published between our two reads: it is in the bundles now.
        raise NotFound(f"no entry {index}: the log has {self.sequenced_size()} entries")

    def hash_reader(self, size: int) -> TileHashReader:
        return TileHashReader(size, self._read_tiles, self._tile_cache)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self._checkpoint.size if size is None else size
        self._check_size(size)
        return inclusion_proof(self.hash_reader(size), index, size)

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        new = self._checkpoint.size if new is None else new
        self._check_size(new)
        return consistency_proof(self.hash_reader(new), old, new)

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self._checkpoint.size:
            raise MalformedError(
                f"tree size {size} is beyond the published checkpoint ({self._checkpoint.size})"
            )

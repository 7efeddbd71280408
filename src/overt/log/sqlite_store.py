"""The embedded sequencing store: SQLite in WAL mode inside the log directory.

Sequencing is the log's durability point: once `sequence` returns, the entries
have their indexes and survive a crash (``synchronous=FULL`` makes every commit
reach the disk). The store keeps:

* ``pending``: sequenced entries not yet covered by a published checkpoint
  (after publication they live in the entry bundles, and are dropped here);
* ``dedup``: the first 8 bytes of every leaf hash, as a signed 64-bit integer
  key, mapping to its index. A full 32-byte key would make the table three
  times larger and inserts markedly slower; a prefix match is confirmed against
  the full leaf hash before it counts as a duplicate;
* ``collisions``: full leaf hashes of entries whose 8-byte prefix was already
  taken by a different entry. Finding such a pair takes about 2**32 hashes, so
  an attacker can do it; they must not be able to make the log drop an entry;
* ``meta``: the next index and the last published checkpoint's size and root.
"""

from __future__ import annotations

import sqlite3
import struct
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from overt.durable import open_database
from overt.errors import MalformedError, OvertError

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    idx INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dedup (
    h64 INTEGER PRIMARY KEY,
    idx INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS collisions (
    hash BLOB PRIMARY KEY,
    idx INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value
);
"""

# The layout of this database; a log refuses a database written by a newer
# Overt (`meta.schema_version` above this).
SCHEMA_VERSION = 1

# Larger pages make the random inserts into `dedup` markedly cheaper.
PAGE_SIZE = 16384


class StoreError(OvertError):
    """The sequencing database is unusable (corrupt, locked, or from elsewhere)."""


_H64 = struct.Struct(">q")


def _h64(leaf_hash: bytes) -> int:
    return int(_H64.unpack_from(leaf_hash)[0])


LeafHashAt = Callable[[int], bytes]


class SQLiteStore:
    """Durable sequencing for one log. Thread-safe: calls are serialised."""

    shared = False  # one process per log directory (the directory lock)

    def __init__(self, path: Path, leaf_hash_at: LeafHashAt) -> None:
        """`leaf_hash_at(i)` returns the leaf hash of published entry i (from the tiles)."""
        self._leaf_hash_at = leaf_hash_at
        self._lock = threading.Lock()
        self._reserved: dict[int, bytes] = {}  # bulk path: index -> leaf hash, uncommitted
        try:
            self._db = open_database(path, SCHEMA, page_size=PAGE_SIZE)
            self._db.execute("PRAGMA cache_size=-65536")
            version = self._meta("schema_version")
            if version is None:
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                )
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: {exc}") from exc
        if not isinstance(version, int | None) or (version or 0) > SCHEMA_VERSION:
            self._db.close()
            raise StoreError(
                f"{path}: schema version {version!r} is newer than this version of overt "
                f"supports ({SCHEMA_VERSION}); upgrade overt on this machine"
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _meta(self, key: str, default: int | bytes | None = None) -> int | bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def next_index(self) -> int:
        with self._lock:
            value = self._meta("next_index", 0)
            assert isinstance(value, int)
            return value

    def published(self) -> tuple[int, bytes | None]:
        """Size and root hash of the last checkpoint recorded as published."""
        with self._lock:
            size = self._meta("published_size", 0)
            root = self._meta("published_root")
            assert isinstance(size, int)
            assert root is None or isinstance(root, bytes)
            return size, root

    def sequence(self, leaf_hashes: Sequence[bytes], entries: Sequence[bytes]) -> list[int]:
        """Assign indexes durably; a duplicate gets the index of its first copy."""
        if len(leaf_hashes) != len(entries):
            raise MalformedError("leaf hashes and entries differ in number")
        if not entries:
            return []
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                indexes, added = self._assign(leaf_hashes, entries)
                self._set_next(added)
                self._db.execute("COMMIT")
                return indexes
            except sqlite3.DatabaseError as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"sequencing failed: {exc}") from exc

    def reserve(self, leaf_hashes: Sequence[bytes]) -> tuple[list[int], list[int]]:
        """Bulk path: assign indexes in an open transaction, without storing entries.

        Returns each entry's index and the positions of the new ones. The
        caller makes the new entries durable itself (in tiles), then calls
        `commit_published`; or `rollback`. Nothing else can use the store
        meanwhile.
        """
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
            first_new = self._meta("next_index", 0)
            assert isinstance(first_new, int)
            indexes, added = self._assign(leaf_hashes, None)
            self._set_next(added)
        except BaseException as exc:
            self._reserved.clear()
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._lock.release()
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"sequencing failed: {exc}") from exc
            raise
        # New entries got consecutive indexes from first_new, in batch order.
        seen: set[int] = set()
        new = []
        for pos, idx in enumerate(indexes):
            if idx >= first_new and idx not in seen:
                seen.add(idx)
                new.append(pos)
        return indexes, new

    def commit_published(self, size: int, root: bytes) -> None:
        """End a `reserve`: record the published checkpoint and commit."""
        try:
            self._record_published(size, root)
            self._db.execute("COMMIT")
        finally:
            self._reserved.clear()
            self._lock.release()

    def rollback(self) -> None:
        """End a `reserve` without keeping anything."""
        try:
            self._db.execute("ROLLBACK")
        finally:
            self._reserved.clear()
            self._lock.release()

    def _set_next(self, added: int) -> None:
        start = self._meta("next_index", 0)
        assert isinstance(start, int)
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_index', ?)", (start + added,)
        )

    def _assign(
        self, leaf_hashes: Sequence[bytes], entries: Sequence[bytes] | None
    ) -> tuple[list[int], int]:
        """Give each entry its index inside the open transaction.

        With `entries`, new entries are stored as pending; without (the bulk
        path), their hashes are kept in memory until the transaction ends.
        """
        db = self._db
        start = self._meta("next_index", 0)
        assert isinstance(start, int)
        # Duplicates inside the batch share the first copy's index.
        first: dict[bytes, int] = {}
        order: list[int] = []  # positions of the unique entries in the batch
        for pos, h in enumerate(leaf_hashes):
            if h not in first:
                first[h] = pos
                order.append(pos)
        # Fast path: no unique entry's prefix is known yet, which one
        # INSERT OR IGNORE tells us by its change count.
        db.execute("SAVEPOINT assign")
        unpack = _H64.unpack_from
        rows = [(unpack(leaf_hashes[pos])[0], start + n) for n, pos in enumerate(order)]
        before = db.total_changes
        db.executemany("INSERT OR IGNORE INTO dedup (h64, idx) VALUES (?, ?)", sorted(rows))
        if db.total_changes - before == len(rows):
            db.execute("RELEASE assign")
            index_of = {leaf_hashes[pos]: start + n for n, pos in enumerate(order)}
            if entries is not None:
                db.executemany(
                    "INSERT INTO pending (idx, hash, data) VALUES (?, ?, ?)",
                    [(start + n, leaf_hashes[pos], entries[pos]) for n, pos in enumerate(order)],
                )
            else:
                self._reserved.update((start + n, leaf_hashes[pos]) for n, pos in enumerate(order))
            added = len(order)
        else:
            db.execute("ROLLBACK TO assign")
            db.execute("RELEASE assign")
            index_of, added = self._assign_slow(leaf_hashes, entries, order, start)
        return [index_of[h] for h in leaf_hashes], added

    def _assign_slow(
        self,
        leaf_hashes: Sequence[bytes],
        entries: Sequence[bytes] | None,
        order: list[int],
        start: int,
    ) -> tuple[dict[bytes, int], int]:
        """One entry at a time, for batches holding a known entry or a prefix collision."""
        index_of: dict[bytes, int] = {}
        added = 0
        for pos in order:
            h = leaf_hashes[pos]
            existing = self._find(h)
            if existing is not None:
                index_of[h] = existing
                continue
            idx = start + added
            cur = self._db.execute(
                "INSERT OR IGNORE INTO dedup (h64, idx) VALUES (?, ?)", (_h64(h), idx)
            )
            if cur.rowcount == 0:  # prefix taken by a different entry
                self._db.execute("INSERT INTO collisions (hash, idx) VALUES (?, ?)", (h, idx))
            # Record it now, so a later entry of this batch sharing the prefix
            # can compare against this one's full hash.
            if entries is not None:
                self._db.execute(
                    "INSERT INTO pending (idx, hash, data) VALUES (?, ?, ?)", (idx, h, entries[pos])
                )
            else:
                self._reserved[idx] = h
            index_of[h] = idx
            added += 1
        return index_of, added

    def _find(self, leaf_hash: bytes) -> int | None:
        row = self._db.execute("SELECT idx FROM dedup WHERE h64 = ?", (_h64(leaf_hash),)).fetchone()
        if row is not None and self._leaf_hash(row[0]) == leaf_hash:
            return int(row[0])
        row = self._db.execute("SELECT idx FROM collisions WHERE hash = ?", (leaf_hash,)).fetchone()
        return None if row is None else int(row[0])

    def _leaf_hash(self, idx: int) -> bytes:
        reserved = self._reserved.get(idx)
        if reserved is not None:
            return reserved
        row = self._db.execute("SELECT hash FROM pending WHERE idx = ?", (idx,)).fetchone()
        return bytes(row[0]) if row is not None else self._leaf_hash_at(idx)

    def lookup(self, leaf_hash: bytes) -> int | None:
        """The index of the entry with this leaf hash, if it was ever sequenced."""
        with self._lock:
            return self._find(leaf_hash)

    def pending(self, start: int, end: int) -> tuple[list[bytes], list[bytes]]:
        """Leaf hashes and entries [start, end), which must all still be pending."""
        with self._lock:
            rows = self._db.execute(
                "SELECT idx, hash, data FROM pending WHERE idx >= ? AND idx < ? ORDER BY idx",
                (start, end),
            ).fetchall()
        if len(rows) != end - start or (rows and rows[0][0] != start):
            raise StoreError(f"sequenced entries {start}..{end - 1} are missing from the store")
        return [r[1] for r in rows], [r[2] for r in rows]

    def pending_entry(self, idx: int) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM pending WHERE idx = ?", (idx,)).fetchone()
        return None if row is None else bytes(row[0])

    def record_published(self, size: int, root: bytes) -> None:
        """Note a published checkpoint and drop the pending entries it covers."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._record_published(size, root)
            self._db.execute("COMMIT")

    def _record_published(self, size: int, root: bytes) -> None:
        db = self._db
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('published_size', ?)", (size,))
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('published_root', ?)", (root,))
        db.execute("DELETE FROM pending WHERE idx < ?", (size,))

    def repair(self, start: int, leaf_hashes: Sequence[bytes]) -> None:
        """Re-index entries [start, start+n) found in published tiles but not in the store.

        Only needed after a crash between publishing a bulk checkpoint and
        committing its transaction: the published tiles are the truth then.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for offset, h in enumerate(leaf_hashes):
                idx = start + offset
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO dedup (h64, idx) VALUES (?, ?)", (_h64(h), idx)
                )
                if cur.rowcount == 0:
                    self._db.execute(
                        "INSERT OR IGNORE INTO collisions (hash, idx) VALUES (?, ?)", (h, idx)
                    )
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_index', ?)",
                (start + len(leaf_hashes),),
            )
            self._db.execute("COMMIT")

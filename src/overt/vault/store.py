"""One region's store: ciphertexts, their metadata and journal, and the keyring.

    VAULT/regions/<region>/meta.db                 objects (with their sealed contents,
                                                   nonce || AES-GCM) and the operation journal
                                                   (or, with a database in vault.toml, the
                                                   tables overt_vault_object and
                                                   overt_vault_journal in PostgreSQL)
    VAULT/keyring/<region>/kek                     the region's key-encryption key (0600)
    VAULT/keyring/<region>/keys.db                 wrapped data keys, one per object

Sealed contents live in the object rows, so a batch of objects lands in one
transaction with its metadata (one file per object cost more than everything
else together). Nothing is written in plaintext. Every operation on an object is journalled
with the index of the access event that authorised it, so the supervisor's
audit can reconcile the journal with the access log: an operation without an
event is an access that bypassed the gate.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from overt.durable import atomic_write, open_database, write_file
from overt.errors import OvertError
from overt.vault.envelope import (
    DecryptionError,
    key_aad,
    new_key,
    object_aad,
    open_sealed,
    seal,
)

META_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    id TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    country TEXT NOT NULL,
    category TEXT NOT NULL,
    size INTEGER NOT NULL,
    created INTEGER NOT NULL,
    sealed_sha256 TEXT NOT NULL,
    write_event INTEGER NOT NULL,
    erased INTEGER,
    sealed BLOB
);
CREATE INDEX IF NOT EXISTS objects_by_customer ON objects (customer);
CREATE INDEX IF NOT EXISTS objects_by_event ON objects (write_event);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    op TEXT NOT NULL,
    object TEXT NOT NULL,
    event INTEGER
);
"""

KEYS_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (id TEXT PRIMARY KEY, wrapped BLOB NOT NULL);
"""


class StoreError(OvertError):
    pass


@dataclass(frozen=True)
class StoredObject:
    id: str
    customer: str
    country: str
    category: str
    size: int
    created: int
    sealed_sha256: str
    write_event: int
    erased: int | None


@dataclass(frozen=True)
class NewObject:
    id: str
    customer: str
    country: str
    category: str
    content: bytes


# id, customer, country, category, size, created, sealed_sha256, write_event, sealed
ObjectRow = tuple[str, str, str, str, int, int, str, int, bytes]
JournalRow = tuple[int, int, str, str, int | None]


class MetaStore(Protocol):
    """A region's object records and operation journal."""

    def close(self) -> None: ...

    def ids(self) -> set[str]: ...

    def erased_ids(self) -> list[str]: ...

    def is_erased(self, object_id: str) -> bool | None:
        """Whether the object is erased; None if there is no such object."""
        ...

    def add_objects(
        self, rows: Sequence[ObjectRow], now: int, event: int, op: str = "write"
    ) -> None:
        """Records, ciphertexts and their journal rows (`op`), in one durable transaction."""
        ...

    def fetch(self, ids: Sequence[str]) -> dict[str, tuple[StoredObject, bytes | None]]:
        """The records and sealed contents of those of `ids` the region holds."""
        ...

    def journal_many(
        self, op: str, ids: Sequence[str], event: int, now: int, synced: bool = True
    ) -> None:
        """Journal one operation on each of `ids`, in one transaction (durable if `synced`;
        otherwise as `record`: made durable by the next synced commit)."""
        ...

    def journalled(self, op: str, event: int) -> int:
        """How many journal rows record `op` under `event`."""
        ...

    def live_countries(self) -> dict[str, int]:
        """Country -> number of objects not erased."""
        ...

    def live_of(self, countries: Sequence[str]) -> list[StoredObject]:
        """The objects not erased of customers in `countries`."""
        ...

    def shred(self, ids: Sequence[str], now: int, event: int) -> None:
        """Mark `ids` erased (those not yet), drop their ciphertexts and journal 'shred'
        for each, in one durable transaction."""
        ...

    def object(self, object_id: str) -> StoredObject | None: ...

    def objects(self) -> list[StoredObject]: ...

    def journal(self) -> list[JournalRow]: ...

    def record(self, op: str, object_id: str, event: int | None, now: int) -> None:
        """A journal row committed without waiting for the disk (see RegionStore.record)."""
        ...

    def erase(self, object_id: str, now: int, event: int) -> None:
        """Mark erased, drop the ciphertext and journal it, in one durable transaction."""
        ...

    def drop_erased_ciphertexts(self) -> None: ...

    def sealed(self, object_id: str) -> bytes | None: ...

    def replace_sealed(self, object_id: str, sealed: bytes) -> None: ...


_COLUMNS = "id, customer, country, category, size, created, sealed_sha256, write_event, erased"
_CHUNK = 500  # ids per "IN (...)" query


class SQLiteMeta:
    """VAULT/regions/<region>/meta.db. Callers serialise their calls."""

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, META_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def ids(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT id FROM objects")}

    def erased_ids(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT id FROM objects WHERE erased")]

    def is_erased(self, object_id: str) -> bool | None:
        row = self._db.execute("SELECT erased FROM objects WHERE id = ?", (object_id,)).fetchone()
        return None if row is None else bool(row[0])

    def add_objects(
        self, rows: Sequence[ObjectRow], now: int, event: int, op: str = "write"
    ) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany(
            "INSERT INTO objects (id, customer, country, category, size, created, "
            "sealed_sha256, write_event, sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        self._db.executemany(
            "INSERT INTO journal (time, op, object, event) VALUES (?, ?, ?, ?)",
            [(now, op, r[0], event) for r in rows],
        )
        self._db.execute("COMMIT")

    def fetch(self, ids: Sequence[str]) -> dict[str, tuple[StoredObject, bytes | None]]:
        found: dict[str, tuple[StoredObject, bytes | None]] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = list(ids[start : start + _CHUNK])
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(
                f"SELECT {_COLUMNS}, sealed FROM objects WHERE id IN ({marks})", chunk
            ):
                found[row[0]] = (
                    StoredObject(*row[:-1]),
                    None if row[-1] is None else bytes(row[-1]),
                )
        return found

    def journal_many(
        self, op: str, ids: Sequence[str], event: int, now: int, synced: bool = True
    ) -> None:
        if not synced:
            self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO journal (time, op, object, event) VALUES (?, ?, ?, ?)",
                [(now, op, i, event) for i in ids],
            )
            self._db.execute("COMMIT")
        finally:
            if not synced:
                self._db.execute("PRAGMA synchronous=FULL")

    def live_countries(self) -> dict[str, int]:
        return {
            str(r[0]): int(r[1])
            for r in self._db.execute(
                "SELECT country, COUNT(*) FROM objects WHERE erased IS NULL GROUP BY country"
            )
        }

    def live_of(self, countries: Sequence[str]) -> list[StoredObject]:
        if not countries:
            return []
        marks = ",".join("?" * len(countries))
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM objects WHERE erased IS NULL AND country IN ({marks})",
            list(countries),
        ).fetchall()
        return [StoredObject(*r) for r in rows]

    def journalled(self, op: str, event: int) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM journal WHERE event = ? AND op = ?", (event, op)
        ).fetchone()
        return int(row[0])

    def shred(self, ids: Sequence[str], now: int, event: int) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany(
            "UPDATE objects SET erased = ? WHERE id = ? AND erased IS NULL",
            [(now, i) for i in ids],
        )
        self._db.executemany("UPDATE objects SET sealed = NULL WHERE id = ?", [(i,) for i in ids])
        self._db.executemany(
            "INSERT INTO journal (time, op, object, event) VALUES (?, 'shred', ?, ?)",
            [(now, i, event) for i in ids],
        )
        self._db.execute("COMMIT")

    def object(self, object_id: str) -> StoredObject | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM objects WHERE id = ?", (object_id,)
        ).fetchone()
        return None if row is None else StoredObject(*row)

    def objects(self) -> list[StoredObject]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM objects ORDER BY write_event, id"
        ).fetchall()
        return [StoredObject(*r) for r in rows]

    def journal(self) -> list[JournalRow]:
        rows = self._db.execute(
            "SELECT seq, time, op, object, event FROM journal ORDER BY seq"
        ).fetchall()
        return [(int(r[0]), int(r[1]), str(r[2]), str(r[3]), r[4]) for r in rows]

    def record(self, op: str, object_id: str, event: int | None, now: int) -> None:
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._db.execute(
                "INSERT INTO journal (time, op, object, event) VALUES (?, ?, ?, ?)",
                (now, op, object_id, event),
            )
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def erase(self, object_id: str, now: int, event: int) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute(
            "UPDATE objects SET erased = ?, sealed = NULL WHERE id = ?", (now, object_id)
        )
        self._db.execute(
            "INSERT INTO journal (time, op, object, event) VALUES (?, 'erase', ?, ?)",
            (now, object_id, event),
        )
        self._db.execute("COMMIT")

    def drop_erased_ciphertexts(self) -> None:
        self._db.execute("UPDATE objects SET sealed = NULL WHERE erased")

    def sealed(self, object_id: str) -> bytes | None:
        row = self._db.execute("SELECT sealed FROM objects WHERE id = ?", (object_id,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def replace_sealed(self, object_id: str, sealed: bytes) -> None:
        self._db.execute("UPDATE objects SET sealed = ? WHERE id = ?", (sealed, object_id))


class RegionStore:
    def __init__(self, vault_root: Path, region: str, meta: MetaStore | None = None) -> None:
        """`meta`: where the region's records live (default: SQLite in its directory)."""
        self.region = region
        self.dir = vault_root / "regions" / region
        self.objects_dir = self.dir / "objects"
        keyring = vault_root / "keyring" / region
        self._lock = threading.Lock()
        self.objects_dir.mkdir(parents=True, exist_ok=True)
        keyring.mkdir(parents=True, exist_ok=True)
        os.chmod(keyring, 0o700)
        kek_file = keyring / "kek"
        if not kek_file.exists():
            atomic_write(kek_file, new_key(), mode=0o600)
        self._kek = kek_file.read_bytes()
        if len(self._kek) != 32:
            raise StoreError(f"{kek_file}: not a 256-bit key")
        self._meta: MetaStore = meta if meta is not None else SQLiteMeta(self.dir / "meta.db")
        # The keyring is not in WAL mode: a WAL keeps old pages (with erased
        # keys) until it is overwritten. A rollback journal is deleted at each
        # commit, and secure_delete zeroes the freed space in the file itself.
        self._keys = open_database(keyring / "keys.db", KEYS_SCHEMA, journal="DELETE")
        self._keys.execute("PRAGMA secure_delete=ON")
        self._marker = self.dir / "put-in-progress"
        self._erase_marker = self.dir / "erase-in-progress"
        self._shred_marker = self.dir / "shred-in-progress"
        if self._marker.exists():
            self._sweep()
        if self._erase_marker.exists():
            self._finish_erasures()
        if self._shred_marker.exists():
            self._finish_shredding()

    def _finish_erasures(self) -> None:
        """Complete an erasure a crash interrupted (its event is already in the log)."""
        object_id, _, event = self._erase_marker.read_text().partition(" ")
        if self._meta.is_erased(object_id) is False and event.isdigit():
            self._erase_locked(object_id, int(event))
        erased = self._meta.erased_ids()
        self._keys.executemany("DELETE FROM keys WHERE id = ?", [(i,) for i in erased])
        self._meta.drop_erased_ciphertexts()
        self._erase_marker.unlink(missing_ok=True)

    def _finish_shredding(self) -> None:
        """Destroy the data keys of objects a crash left marked erased (shredded) with
        their keys still in the keyring (their shred event is already in the log)."""
        erased = self._meta.erased_ids()
        self._keys.execute("BEGIN IMMEDIATE")
        self._keys.executemany("DELETE FROM keys WHERE id = ?", [(i,) for i in erased])
        self._keys.execute("COMMIT")
        self._meta.drop_erased_ciphertexts()
        self._shred_marker.unlink(missing_ok=True)

    def _sweep(self) -> None:
        """Remove what an interrupted `put` left: data keys without an object record."""
        known = self._meta.ids()
        stale = [r[0] for r in self._keys.execute("SELECT id FROM keys") if r[0] not in known]
        self._keys.executemany("DELETE FROM keys WHERE id = ?", [(i,) for i in stale])
        self._marker.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            self._meta.close()
            self._keys.close()

    def put(self, objects: list[NewObject], event: int) -> None:
        """Seal and store objects authorised by access event `event` (already durable)."""
        rows: list[ObjectRow] = []
        key_rows = []
        now = int(time.time())
        # A crash before the object records commit leaves keys that no record
        # names; the marker makes the next open sweep them.
        atomic_write(self._marker, str(event).encode())
        for obj in objects:
            data_key = new_key()
            aad = object_aad(obj.id, self.region, obj.customer, obj.category)
            sealed = seal(data_key, obj.content, aad)
            key_rows.append((obj.id, seal(self._kek, data_key, key_aad(obj.id, self.region))))
            rows.append(
                (
                    obj.id,
                    obj.customer,
                    obj.country,
                    obj.category,
                    len(obj.content),
                    now,
                    hashlib.sha256(sealed).hexdigest(),
                    event,
                    sealed,
                )
            )
        with self._lock:
            self._keys.execute("BEGIN IMMEDIATE")
            self._keys.executemany("INSERT INTO keys (id, wrapped) VALUES (?, ?)", key_rows)
            self._keys.execute("COMMIT")
            self._commit_objects(rows, now, event)
        self._marker.unlink(missing_ok=True)

    def _commit_objects(self, rows: list[ObjectRow], now: int, event: int) -> None:
        """The acknowledgement point of a write: records, ciphertexts and journal at once."""
        self._meta.add_objects(rows, now, event)

    def object(self, object_id: str) -> StoredObject | None:
        with self._lock:
            return self._meta.object(object_id)

    def objects(self) -> list[StoredObject]:
        with self._lock:
            return self._meta.objects()

    def journal(self) -> list[JournalRow]:
        with self._lock:
            return self._meta.journal()

    def record(self, op: str, object_id: str, event: int | None) -> None:
        """Journal an operation whose access event is already durable in the log.

        The row is committed without waiting for the disk (SQLite: WAL with
        synchronous NORMAL; PostgreSQL: synchronous_commit off): after a power
        cut the log may hold an event whose journal row is gone, which the
        audit accepts; the reverse, an operation without an event, cannot happen.
        """
        with self._lock:
            self._meta.record(op, object_id, event, int(time.time()))

    def data_key(self, object_id: str) -> bytes | None:
        with self._lock:
            row = self._keys.execute(
                "SELECT wrapped FROM keys WHERE id = ?", (object_id,)
            ).fetchone()
        if row is None:
            return None
        return open_sealed(
            self._kek, row[0], key_aad(object_id, self.region), f"key of {object_id}"
        )

    def decrypt(self, obj: StoredObject, sealed: bytes | None = None) -> bytes:
        """Decrypt an object (from the store, or a copy of its sealed bytes)."""
        data_key = self.data_key(obj.id)
        if data_key is None:
            raise DecryptionError(f"object {obj.id}: its data key is gone (erased)")
        if sealed is None:
            sealed = self.sealed(obj.id)
            if sealed is None:
                raise StoreError(f"object {obj.id}: its ciphertext is missing")
        aad = object_aad(obj.id, self.region, obj.customer, obj.category)
        return open_sealed(data_key, sealed, aad, f"object {obj.id}")

    def read(self, object_id: str, event: int) -> bytes:
        """Decrypt an object for an access authorised by durable event `event`."""
        obj = self.object(object_id)
        if obj is None or obj.erased:
            raise StoreError(f"object {object_id} is not in region {self.region}")
        self.record("read", object_id, event)
        return self.decrypt(obj)

    def erase(self, object_id: str, event: int) -> None:
        """Crypto-shred: record the erasure, then destroy the data key.

        The record (with its journal row) commits first, so a crash between
        the two leaves an object marked erased whose key the next open
        destroys (`_finish_erasures`), never a keyless object nobody erased.
        """
        atomic_write(self._erase_marker, f"{object_id} {event}".encode())
        with self._lock:
            self._erase_locked(object_id, event)
        self._erase_marker.unlink(missing_ok=True)

    def _erase_locked(self, object_id: str, event: int) -> None:
        self._meta.erase(object_id, int(time.time()), event)
        self._keys.execute("BEGIN IMMEDIATE")
        self._keys.execute("DELETE FROM keys WHERE id = ?", (object_id,))
        self._keys.execute("COMMIT")

    # --- relocation (relocate.py) ----------------------------------------

    def fetch(self, ids: Sequence[str]) -> dict[str, tuple[StoredObject, bytes | None]]:
        """Records and sealed contents of those of `ids` this region holds."""
        with self._lock:
            return self._meta.fetch(ids)

    def data_keys(self, ids: Sequence[str]) -> dict[str, bytes]:
        """The unwrapped data keys of those of `ids` whose key is in the keyring."""
        wrapped: list[tuple[str, bytes]] = []
        with self._lock:
            for start in range(0, len(ids), _CHUNK):
                chunk = list(ids[start : start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                wrapped.extend(
                    (str(r[0]), bytes(r[1]))
                    for r in self._keys.execute(
                        f"SELECT id, wrapped FROM keys WHERE id IN ({marks})", chunk
                    )
                )
        return {
            i: open_sealed(self._kek, w, key_aad(i, self.region), f"key of {i}") for i, w in wrapped
        }

    def decrypt_many(self, found: dict[str, tuple[StoredObject, bytes | None]]) -> dict[str, bytes]:
        """Decrypt fetched objects; raises on any that does not decrypt or lost its key."""
        keys = self.data_keys(list(found))
        out: dict[str, bytes] = {}
        for object_id, (obj, sealed) in found.items():
            data_key = keys.get(object_id)
            if data_key is None:
                raise DecryptionError(f"object {object_id}: its data key is gone (erased)")
            if sealed is None:
                raise StoreError(f"object {object_id}: its ciphertext is missing")
            aad = object_aad(object_id, self.region, obj.customer, obj.category)
            out[object_id] = open_sealed(data_key, sealed, aad, f"object {object_id}")
        return out

    def put_copies(self, copies: Sequence[tuple[StoredObject, bytes]], event: int) -> None:
        """Store objects relocated here, authorised by durable event `event`: each
        sealed under a fresh data key wrapped by this region's KEK, keeping its id,
        customer, country, category and creation time; journalled as 'relocate'."""
        rows: list[ObjectRow] = []
        key_rows = []
        now = int(time.time())
        # No put-in-progress marker: a crash between the keys and the records
        # leaves keys the relocation's resumption overwrites (INSERT OR REPLACE)
        # or drops (`drop_keys`), from its own journal.
        for obj, content in copies:
            data_key = new_key()
            aad = object_aad(obj.id, self.region, obj.customer, obj.category)
            sealed = seal(data_key, content, aad)
            key_rows.append((obj.id, seal(self._kek, data_key, key_aad(obj.id, self.region))))
            rows.append(
                (
                    obj.id,
                    obj.customer,
                    obj.country,
                    obj.category,
                    len(content),
                    obj.created,
                    hashlib.sha256(sealed).hexdigest(),
                    event,
                    sealed,
                )
            )
        with self._lock:
            self._keys.execute("BEGIN IMMEDIATE")
            self._keys.executemany(
                "INSERT OR REPLACE INTO keys (id, wrapped) VALUES (?, ?)", key_rows
            )
            self._keys.execute("COMMIT")
            self._meta.add_objects(rows, now, event, op="relocate")

    def drop_keys(self, ids: Sequence[str]) -> None:
        """Delete the data keys of those of `ids` that have no record here (left by a
        copy a crash interrupted)."""
        known = self.fetch(ids)
        stale = [(i,) for i in ids if i not in known]
        if stale:
            with self._lock:
                self._keys.execute("BEGIN IMMEDIATE")
                self._keys.executemany("DELETE FROM keys WHERE id = ?", stale)
                self._keys.execute("COMMIT")

    def journal_many(self, op: str, ids: Sequence[str], event: int, synced: bool = True) -> None:
        """Journal `op` on each of `ids` under durable access event `event`."""
        with self._lock:
            self._meta.journal_many(op, ids, event, int(time.time()), synced)

    def journalled(self, op: str, event: int) -> int:
        with self._lock:
            return self._meta.journalled(op, event)

    def live_countries(self) -> dict[str, int]:
        with self._lock:
            return self._meta.live_countries()

    def live_of(self, countries: Sequence[str]) -> list[StoredObject]:
        with self._lock:
            return self._meta.live_of(countries)

    def shred(self, ids: Sequence[str], event: int, maybe_done: bool = False) -> None:
        """Crypto-shred relocated copies: records first (erased, no ciphertext,
        journalled under durable shred event `event`), then the data keys, deleted
        from the keyring (secure_delete, rollback journal). A crash between the two
        leaves a marker that the next open finishes (`_finish_shredding`).
        `maybe_done`: the records may have been shredded before a crash; then they
        are not journalled twice."""
        # Not synced: after a power cut the relocation journal resumes the shredding.
        write_file(self._shred_marker, str(event).encode())
        with self._lock:
            if not maybe_done or self._meta.journalled("shred", event) < len(ids):
                self._meta.shred(ids, int(time.time()), event)
            self._keys.execute("BEGIN IMMEDIATE")
            self._keys.executemany("DELETE FROM keys WHERE id = ?", [(i,) for i in ids])
            self._keys.execute("COMMIT")
        self._shred_marker.unlink(missing_ok=True)

    def sealed(self, object_id: str) -> bytes | None:
        """The sealed contents of an object as stored (None once erased)."""
        with self._lock:
            return self._meta.sealed(object_id)

    def replace_sealed(self, object_id: str, sealed: bytes) -> None:
        """Overwrite an object's stored ciphertext (for restoring from a backup)."""
        with self._lock:
            self._meta.replace_sealed(object_id, sealed)

    def files(self) -> list[str]:
        """Files under the region's objects directory: ciphertexts live in the
        object rows, so any file there is a stray copy for the audit to flag."""
        return sorted(
            str(p.relative_to(self.objects_dir)) for p in self.objects_dir.rglob("*") if p.is_file()
        )

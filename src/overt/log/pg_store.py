"""The scale-out sequencing store: PostgreSQL, shared by several front ends.

Every `overt log serve` process of a log opens this store; each sequences its
own batches, and all of them agree on indexes because a sequencing
transaction locks the log's row in ``overt_log`` (``SELECT ... FOR UPDATE``)
while it reads ``next_index``, inserts the batch and moves the counter on. One
commit covers a whole batch, so the lock is held for one round of inserts and
one WAL flush; the front ends take turns, batch by batch.

Deduplication uses ``overt_log_dedup``, keyed by the full leaf hash: a batch
is first inserted as if every entry were new (one ``COPY``), and only when
the unique key refuses it is the batch split into known entries (one
``SELECT ... = ANY``) and new ones. Since the counter row is locked meanwhile,
the same entry sent to two front ends at once gets one index.

Integration is done by one process at a time: the holder of a session-level
advisory lock (class ``LOCK_CLASS``, object: the log's id) on a connection of
its own. When that process dies its connection closes and PostgreSQL releases
the lock; the other front ends try to take it every second (`Log.integrate`).
A checkpoint is published under a fence: the publisher locks the log's row in
``overt_log_published`` and checks that the last publication is still the one
it integrated from before it replaces the checkpoint file, so an integrator
that lost the lock unnoticed cannot publish over its successor.
"""

from __future__ import annotations

import contextlib
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from overt.errors import MalformedError
from overt.log.sqlite_store import StoreError
from overt.postgres import (
    LOCK_CLASS,
    DatabaseError,
    check_schema,
    connect,
    migrate,
    open_pool,
)
from overt.tlog.hashing import EMPTY_ROOT, HASH_SIZE


class LostLeadership(StoreError):
    """This process is no longer the log's integrator (another one published since)."""


# COPY ... (FORMAT BINARY): a header, rows of (field count, then length + bytes
# per field), and a trailer. Built by hand: much faster than row-by-row adaptation.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_DEDUP_ROW = struct.Struct(">hii" + f"i{HASH_SIZE}s" + "iq")
_PENDING_ROW = struct.Struct(">hii" + "iq" + f"i{HASH_SIZE}s" + "i")


def _dedup_copy(log_id: int, rows: Iterable[tuple[bytes, int]]) -> bytes:
    pack = _DEDUP_ROW.pack
    body = b"".join(pack(3, 4, log_id, HASH_SIZE, h, 8, idx) for h, idx in rows)
    return _COPY_HEADER + body + _COPY_TRAILER


def _pending_copy(log_id: int, rows: Iterable[tuple[int, bytes, bytes]]) -> bytes:
    pack = _PENDING_ROW.pack
    parts = [_COPY_HEADER]
    for idx, h, data in rows:
        parts.append(pack(4, 4, log_id, 8, idx, HASH_SIZE, h, len(data)))
        parts.append(data)
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


def _copy(conn: psycopg.Connection[Any], sql: str, data: bytes) -> None:
    with conn.cursor() as cur, cur.copy(sql) as copy:
        copy.write(data)


_COPY_DEDUP = "COPY overt_log_dedup (log_id, hash, idx) FROM STDIN (FORMAT BINARY)"
_COPY_PENDING = "COPY overt_log_pending (log_id, idx, hash, data) FROM STDIN (FORMAT BINARY)"


def create_log(dsn: str, vkey: str, origin: str) -> int:
    """Register a new log in the database (creating or upgrading the schema); return its id."""
    migrate(dsn)
    with connect(dsn) as conn:
        check_schema(conn)
        try:
            with conn.transaction():
                row = conn.execute(
                    "INSERT INTO overt_log (vkey, origin) VALUES (%s, %s) RETURNING id",
                    (vkey, origin),
                ).fetchone()
                assert row is not None
                conn.execute(
                    "INSERT INTO overt_log_published (log_id, size, root) VALUES (%s, 0, %s)",
                    (row[0], EMPTY_ROOT),
                )
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot register the log in the database: {exc}") from exc
        return int(row[0])


class PostgresStore:
    """Durable, shared sequencing for one log. Thread-safe (a connection pool)."""

    shared = True

    def __init__(self, dsn: str, vkey: str, pool_size: int = 4) -> None:
        self._dsn = dsn
        self._pool: ConnectionPool = open_pool(dsn, "overt-log", pool_size)
        try:
            with self._pool.connection() as conn:
                check_schema(conn)
                row = conn.execute("SELECT id FROM overt_log WHERE vkey = %s", (vkey,)).fetchone()
        except BaseException:
            self._pool.close()
            raise
        if row is None:
            self._pool.close()
            raise StoreError(
                f"the database holds no log with key {vkey}; was this log created with "
                "'overt log init --database' on this database?"
            )
        self.log_id = int(row[0])
        self._lead_conn: psycopg.Connection[Any] | None = None
        self._lead_guard = threading.Lock()
        self._bulk_ctx: Any = None
        self._bulk_conn: psycopg.Connection[Any] | None = None

    def close(self) -> None:
        self.rollback()
        self.step_down()
        self._pool.close()

    # --- reading state ---------------------------------------------------

    def _one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...]:
        try:
            with self._pool.connection() as conn:
                row = conn.execute(sql, params).fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"database: {exc}") from exc
        if row is None:
            raise StoreError(f"log {self.log_id} vanished from the database")
        return tuple(row)

    def next_index(self) -> int:
        return int(self._one("SELECT next_index FROM overt_log WHERE id = %s", (self.log_id,))[0])

    def published(self) -> tuple[int, bytes | None]:
        """Size and root hash of the last checkpoint recorded as published."""
        size, root = self._one(
            "SELECT size, root FROM overt_log_published WHERE log_id = %s", (self.log_id,)
        )
        return int(size), None if root is None else bytes(root)

    def integrated(self) -> tuple[int, bytes | None]:
        """Size and root of the tiles the bulk path wrote and synced (maybe unpublished)."""
        size, root = self._one(
            "SELECT integrated_size, integrated_root FROM overt_log WHERE id = %s", (self.log_id,)
        )
        return int(size), None if root is None else bytes(root)

    def lookup(self, leaf_hash: bytes) -> int | None:
        try:
            with self._pool.connection() as conn:
                row = conn.execute(
                    "SELECT idx FROM overt_log_dedup WHERE log_id = %s AND hash = %s",
                    (self.log_id, leaf_hash),
                ).fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"database: {exc}") from exc
        return None if row is None else int(row[0])

    def pending(self, start: int, end: int) -> tuple[list[bytes], list[bytes]]:
        """Leaf hashes and entries [start, end), which must all still be pending."""
        try:
            with self._pool.connection() as conn:
                rows = conn.execute(
                    "SELECT idx, hash, data FROM overt_log_pending "
                    "WHERE log_id = %s AND idx >= %s AND idx < %s ORDER BY idx",
                    (self.log_id, start, end),
                ).fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"database: {exc}") from exc
        if len(rows) != end - start or (rows and rows[0][0] != start):
            raise StoreError(f"sequenced entries {start}..{end - 1} are missing from the store")
        return [bytes(r[1]) for r in rows], [bytes(r[2]) for r in rows]

    def pending_entry(self, idx: int) -> bytes | None:
        try:
            with self._pool.connection() as conn:
                row = conn.execute(
                    "SELECT data FROM overt_log_pending WHERE log_id = %s AND idx = %s",
                    (self.log_id, idx),
                ).fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"database: {exc}") from exc
        return None if row is None else bytes(row[0])

    # --- sequencing --------------------------------------------------------

    def sequence(self, leaf_hashes: Sequence[bytes], entries: Sequence[bytes]) -> list[int]:
        """Assign indexes durably; a duplicate gets the index of its first copy."""
        if len(leaf_hashes) != len(entries):
            raise MalformedError("leaf hashes and entries differ in number")
        if not entries:
            return []
        try:
            with self._pool.connection() as conn, conn.transaction():
                start = self._lock_counter(conn)
                indexes, new = self._assign(conn, leaf_hashes, start)
                if new:
                    _copy(
                        conn,
                        _COPY_PENDING,
                        _pending_copy(
                            self.log_id,
                            (
                                (start + n, leaf_hashes[pos], entries[pos])
                                for n, pos in enumerate(new)
                            ),
                        ),
                    )
                    self._set_next(conn, start + len(new))
                return indexes
        except psycopg.Error as exc:
            raise StoreError(f"sequencing failed: {exc}") from exc

    def _lock_counter(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            "SELECT next_index FROM overt_log WHERE id = %s FOR UPDATE", (self.log_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"log {self.log_id} vanished from the database")
        return int(row[0])

    def _set_next(self, conn: psycopg.Connection[Any], next_index: int) -> None:
        conn.execute(
            "UPDATE overt_log SET next_index = %s WHERE id = %s", (next_index, self.log_id)
        )

    def _assign(
        self, conn: psycopg.Connection[Any], leaf_hashes: Sequence[bytes], start: int
    ) -> tuple[list[int], list[int]]:
        """Give each entry its index (the counter row is locked); return the indexes and
        the batch positions of the new entries, which get start, start+1, ... in order."""
        first: dict[bytes, int] = {}
        order: list[int] = []
        for pos, h in enumerate(leaf_hashes):
            if h not in first:
                first[h] = pos
                order.append(pos)
        try:
            # Fast path: nothing in the batch is known yet.
            with conn.transaction():
                _copy(
                    conn,
                    _COPY_DEDUP,
                    _dedup_copy(
                        self.log_id, ((leaf_hashes[p], start + n) for n, p in enumerate(order))
                    ),
                )
            new = order
            index_of = {leaf_hashes[p]: start + n for n, p in enumerate(order)}
        except psycopg.errors.UniqueViolation:
            rows = conn.execute(
                "SELECT hash, idx FROM overt_log_dedup WHERE log_id = %s AND hash = ANY(%s)",
                (self.log_id, [leaf_hashes[p] for p in order]),
            ).fetchall()
            index_of = {bytes(h): int(i) for h, i in rows}
            new = [p for p in order if leaf_hashes[p] not in index_of]
            if new:
                _copy(
                    conn,
                    _COPY_DEDUP,
                    _dedup_copy(
                        self.log_id, ((leaf_hashes[p], start + n) for n, p in enumerate(new))
                    ),
                )
            index_of.update((leaf_hashes[p], start + n) for n, p in enumerate(new))
        return [index_of[h] for h in leaf_hashes], new

    # --- the bulk path -------------------------------------------------------

    def reserve(self, leaf_hashes: Sequence[bytes]) -> tuple[list[int], list[int]]:
        """Bulk path: assign indexes in an open transaction, without storing entries.

        Returns each entry's index and the positions of the new ones. The
        counter row stays locked (other front ends wait to sequence) until
        `commit_reserved` (the caller has written and synced the tiles) or
        `rollback`.
        """
        ctx = self._pool.connection()
        conn = ctx.__enter__()
        try:
            start = self._lock_counter(conn)  # opens the transaction
            indexes, new = self._assign(conn, leaf_hashes, start)
        except BaseException as exc:
            conn.rollback()
            ctx.__exit__(None, None, None)
            if isinstance(exc, psycopg.Error):
                raise StoreError(f"sequencing failed: {exc}") from exc
            raise
        self._bulk_ctx, self._bulk_conn = ctx, conn
        return indexes, new

    def commit_reserved(self, size: int, root: bytes) -> None:
        """End a `reserve`: the new entries are in tiles up to `size`, synced; commit."""
        conn, ctx = self._bulk_conn, self._bulk_ctx
        assert conn is not None
        self._bulk_ctx = self._bulk_conn = None
        try:
            conn.execute(
                "UPDATE overt_log SET next_index = %s, integrated_size = %s, integrated_root = %s "
                "WHERE id = %s",
                (size, size, root, self.log_id),
            )
            conn.commit()
        except psycopg.Error as exc:
            conn.rollback()
            raise StoreError(f"sequencing failed: {exc}") from exc
        finally:
            ctx.__exit__(None, None, None)

    def rollback(self) -> None:
        """End a `reserve` without keeping anything."""
        conn, ctx = self._bulk_conn, self._bulk_ctx
        if conn is None:
            return
        self._bulk_ctx = self._bulk_conn = None
        try:
            conn.rollback()
        finally:
            ctx.__exit__(None, None, None)

    def record_published(self, size: int, root: bytes) -> None:
        """Note a published checkpoint and drop the pending entries it covers (unfenced)."""
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute(
                    "UPDATE overt_log_published SET size = %s, root = %s WHERE log_id = %s",
                    (size, root, self.log_id),
                )
                conn.execute(
                    "DELETE FROM overt_log_pending WHERE log_id = %s AND idx < %s",
                    (self.log_id, size),
                )
        except psycopg.Error as exc:
            raise StoreError(f"recording the publication failed: {exc}") from exc

    # --- integration: the lock, and publishing under the fence ------------------

    @property
    def leading(self) -> bool:
        return self._lead_conn is not None

    def try_lead(self) -> bool:
        """Take the log's integration lock if it is free; True while this process holds it."""
        with self._lead_guard:
            if self._lead_conn is not None:
                return True
            conn = connect(self._dsn, autocommit=True)
            try:
                row = conn.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, self.log_id)
                ).fetchone()
            except psycopg.Error as exc:
                conn.close()
                raise DatabaseError(f"cannot ask for the integration lock: {exc}") from exc
            if row is None or not row[0]:
                conn.close()
                return False
            conn.execute("SET application_name = 'overt-log integrator'")
            self._lead_conn = conn
            return True

    def step_down(self) -> None:
        """Give up the integration lock (closing its connection releases it)."""
        with self._lead_guard:
            conn, self._lead_conn = self._lead_conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def publish(
        self,
        base: tuple[int, bytes],
        new: tuple[int, bytes],
        write: Callable[[], None],
    ) -> None:
        """Run `write` (which replaces the checkpoint file) under the fence, and record it.

        `base` is the publication this integrator extended. If the database
        records another one, someone else integrated meanwhile:
        `LostLeadership`, and nothing is written.
        """
        conn = self._lead_conn
        if conn is None:
            raise LostLeadership("this process does not hold the integration lock")
        try:
            with conn.transaction():
                row = conn.execute(
                    "SELECT size, root FROM overt_log_published WHERE log_id = %s FOR UPDATE",
                    (self.log_id,),
                ).fetchone()
                if row is None or (int(row[0]), bytes(row[1] or EMPTY_ROOT)) != base:
                    raise LostLeadership(
                        f"another integrator published size {row and row[0]} meanwhile"
                    )
                write()
                conn.execute(
                    "UPDATE overt_log_published SET size = %s, root = %s WHERE log_id = %s",
                    (new[0], new[1], self.log_id),
                )
                conn.execute(
                    "DELETE FROM overt_log_pending WHERE log_id = %s AND idx < %s",
                    (self.log_id, new[0]),
                )
        except psycopg.Error as exc:
            self.step_down()
            raise StoreError(f"recording the publication failed: {exc}") from exc

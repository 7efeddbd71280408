"""The vault's object records and operation journals in PostgreSQL.

One row in ``overt_vault`` per vault (keyed by the vault's signing key);
``overt_vault_object`` and ``overt_vault_journal`` hold every region's
records, keyed by the vault and the region. The keyring stays in local files
(store.py says why), and so do the customers' pseudonym keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from overt.postgres import DatabaseError, check_schema, connect, migrate, open_pool
from overt.vault.store import JournalRow, ObjectRow, StoredObject, StoreError

_COLUMNS = "id, customer, country, category, size, created, sealed_sha256, write_event, erased"


def create_vault(dsn: str, vkey: str) -> int:
    """Register a new vault in the database (creating or upgrading the schema)."""
    migrate(dsn)
    with connect(dsn) as conn:
        check_schema(conn)
        try:
            row = conn.execute(
                "INSERT INTO overt_vault (vkey) VALUES (%s) RETURNING id", (vkey,)
            ).fetchone()
            conn.commit()
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot register the vault in the database: {exc}") from exc
    assert row is not None
    return int(row[0])


class VaultDatabase:
    """A vault's connection pool; `region` gives each region's `MetaStore`."""

    def __init__(self, dsn: str, vkey: str) -> None:
        self.pool: ConnectionPool = open_pool(dsn, "overt-vault")
        try:
            with self.pool.connection() as conn:
                check_schema(conn)
                row = conn.execute("SELECT id FROM overt_vault WHERE vkey = %s", (vkey,)).fetchone()
        except BaseException:
            self.pool.close()
            raise
        if row is None:
            self.pool.close()
            raise StoreError(
                f"the database holds no vault with key {vkey}; was this vault created with "
                "'overt vault init --database' on this database?"
            )
        self.vault_id = int(row[0])

    def region(self, region: str) -> PostgresMeta:
        return PostgresMeta(self, region)

    def close(self) -> None:
        self.pool.close()


class PostgresMeta:
    """One region's records. Thread-safe (the pool)."""

    def __init__(self, database: VaultDatabase, region: str) -> None:
        self._pool = database.pool
        self._key = (database.vault_id, region)

    def close(self) -> None:
        """The pool belongs to the vault, which closes it."""

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._pool.connection() as conn:
                return [tuple(r) for r in conn.execute(sql, (*self._key, *params)).fetchall()]
        except psycopg.Error as exc:
            raise StoreError(f"vault database: {exc}") from exc

    def _write(self, statements: Sequence[tuple[str, Sequence[Any]]], synced: bool = True) -> None:
        """Run the statements (parameters in full) in one transaction."""
        try:
            with self._pool.connection() as conn, conn.transaction():
                if not synced:
                    conn.execute("SET LOCAL synchronous_commit = off")
                for sql, params in statements:
                    conn.execute(sql, params)
        except psycopg.Error as exc:
            raise StoreError(f"vault database: {exc}") from exc

    _WHERE = "vault_id = %s AND region = %s"

    def ids(self) -> set[str]:
        return {r[0] for r in self._rows(f"SELECT id FROM overt_vault_object WHERE {self._WHERE}")}

    def erased_ids(self) -> list[str]:
        return [
            r[0]
            for r in self._rows(
                f"SELECT id FROM overt_vault_object WHERE {self._WHERE} AND erased IS NOT NULL"
            )
        ]

    def is_erased(self, object_id: str) -> bool | None:
        rows = self._rows(
            f"SELECT erased FROM overt_vault_object WHERE {self._WHERE} AND id = %s", (object_id,)
        )
        return None if not rows else rows[0][0] is not None

    def add_objects(
        self, rows: Sequence[ObjectRow], now: int, event: int, op: str = "write"
    ) -> None:
        vault_id, region = self._key
        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO overt_vault_object (vault_id, region, id, customer, country, "
                    "category, size, created, sealed_sha256, write_event, sealed) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [(vault_id, region, *r) for r in rows],
                )
                cur.executemany(
                    "INSERT INTO overt_vault_journal (vault_id, region, time, op, object, event) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    [(vault_id, region, now, op, r[0], event) for r in rows],
                )
        except psycopg.Error as exc:
            raise StoreError(f"vault database: {exc}") from exc

    def fetch(self, ids: Sequence[str]) -> dict[str, tuple[StoredObject, bytes | None]]:
        rows = self._rows(
            f"SELECT {_COLUMNS}, sealed FROM overt_vault_object "
            f"WHERE {self._WHERE} AND id = ANY(%s)",
            (list(ids),),
        )
        return {
            r[0]: (StoredObject(*r[:-1]), None if r[-1] is None else bytes(r[-1])) for r in rows
        }

    def journal_many(
        self, op: str, ids: Sequence[str], event: int, now: int, synced: bool = True
    ) -> None:
        vault_id, region = self._key
        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                if not synced:
                    cur.execute("SET LOCAL synchronous_commit = off")
                cur.executemany(
                    "INSERT INTO overt_vault_journal (vault_id, region, time, op, object, event) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    [(vault_id, region, now, op, i, event) for i in ids],
                )
        except psycopg.Error as exc:
            raise StoreError(f"vault database: {exc}") from exc

    def live_countries(self) -> dict[str, int]:
        rows = self._rows(
            f"SELECT country, COUNT(*) FROM overt_vault_object WHERE {self._WHERE} "
            "AND erased IS NULL GROUP BY country"
        )
        return {str(r[0]): int(r[1]) for r in rows}

    def live_of(self, countries: Sequence[str]) -> list[StoredObject]:
        if not countries:
            return []
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM overt_vault_object WHERE {self._WHERE} "
            "AND erased IS NULL AND country = ANY(%s)",
            (list(countries),),
        )
        return [StoredObject(*r) for r in rows]

    def journalled(self, op: str, event: int) -> int:
        rows = self._rows(
            f"SELECT COUNT(*) FROM overt_vault_journal WHERE {self._WHERE} "
            "AND event = %s AND op = %s",
            (event, op),
        )
        return int(rows[0][0])

    def shred(self, ids: Sequence[str], now: int, event: int) -> None:
        vault_id, region = self._key
        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "UPDATE overt_vault_object SET erased = COALESCE(erased, %s), sealed = NULL "
                    f"WHERE {self._WHERE} AND id = ANY(%s)",
                    (now, vault_id, region, list(ids)),
                )
                cur.executemany(
                    "INSERT INTO overt_vault_journal (vault_id, region, time, op, object, event) "
                    "VALUES (%s, %s, %s, 'shred', %s, %s)",
                    [(vault_id, region, now, i, event) for i in ids],
                )
        except psycopg.Error as exc:
            raise StoreError(f"vault database: {exc}") from exc

    def object(self, object_id: str) -> StoredObject | None:
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM overt_vault_object WHERE {self._WHERE} AND id = %s",
            (object_id,),
        )
        return StoredObject(*rows[0]) if rows else None

    def objects(self) -> list[StoredObject]:
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM overt_vault_object WHERE {self._WHERE} "
            "ORDER BY write_event, id"
        )
        return [StoredObject(*r) for r in rows]

    def journal(self) -> list[JournalRow]:
        # Numbered 1, 2, ... within the region, as in SQLite (the table's own
        # sequence is shared by every region and vault).
        rows = self._rows(
            "SELECT row_number() OVER (ORDER BY seq), time, op, object, event "
            f"FROM overt_vault_journal WHERE {self._WHERE} ORDER BY seq"
        )
        return [(int(r[0]), int(r[1]), str(r[2]), str(r[3]), r[4]) for r in rows]

    def record(self, op: str, object_id: str, event: int | None, now: int) -> None:
        self._write(
            [
                (
                    "INSERT INTO overt_vault_journal (vault_id, region, time, op, object, event) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (*self._key, now, op, object_id, event),
                )
            ],
            synced=False,
        )

    def erase(self, object_id: str, now: int, event: int) -> None:
        vault_id, region = self._key
        self._write(
            [
                (
                    f"UPDATE overt_vault_object SET erased = %s, sealed = NULL "
                    f"WHERE {self._WHERE} AND id = %s",
                    (now, vault_id, region, object_id),
                ),
                (
                    "INSERT INTO overt_vault_journal (vault_id, region, time, op, object, event) "
                    "VALUES (%s, %s, %s, 'erase', %s, %s)",
                    (vault_id, region, now, object_id, event),
                ),
            ]
        )

    def drop_erased_ciphertexts(self) -> None:
        self._write(
            [
                (
                    f"UPDATE overt_vault_object SET sealed = NULL "
                    f"WHERE {self._WHERE} AND erased IS NOT NULL AND sealed IS NOT NULL",
                    self._key,
                )
            ]
        )

    def sealed(self, object_id: str) -> bytes | None:
        rows = self._rows(
            f"SELECT sealed FROM overt_vault_object WHERE {self._WHERE} AND id = %s", (object_id,)
        )
        return None if not rows or rows[0][0] is None else bytes(rows[0][0])

    def replace_sealed(self, object_id: str, sealed: bytes) -> None:
        self._write(
            [
                (
                    f"UPDATE overt_vault_object SET sealed = %s WHERE {self._WHERE} AND id = %s",
                    (sealed, *self._key, object_id),
                )
            ]
        )

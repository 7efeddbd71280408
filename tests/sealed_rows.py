"""Test helpers: a vault object's stored ciphertext, which lives in its region's record.

The record is a row of VAULT/regions/<region>/meta.db (SQLite), or of
``overt_vault_object`` in PostgreSQL when the vault has a database
(VAULT/vault.toml). These helpers reach it behind the vault's back, as a
damaged or tampered store would.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from overt.vault.vault import vault_database


class _Rows:
    """One region's object rows, in whichever database the vault uses."""

    def __init__(self, root: Path, region: str) -> None:
        self.database = vault_database(root)
        self.sqlite_path = root / "regions" / region / "meta.db"
        self.region = region
        self.root = root

    @property
    def vkey(self) -> str:
        return (self.root / "vault.vkey").read_text().strip()

    def run(
        self, sqlite_sql: str, pg_sql: str, params: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        """`pg_sql` starts its WHERE with ``vault_id = %s AND region = %s``."""
        if self.database:
            import psycopg

            with psycopg.connect(self.database, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT id FROM overt_vault WHERE vkey = %s", (self.vkey,)
                ).fetchone()
                assert row is not None, "the vault is not in its database"
                cur = conn.execute(pg_sql, (row[0], self.region, *params))
                return [tuple(r) for r in cur.fetchall()] if cur.description else [(cur.rowcount,)]
        if not self.sqlite_path.exists():
            return []
        db = sqlite3.connect(self.sqlite_path)
        try:
            cur = db.execute(sqlite_sql, tuple(params))
            rows = cur.fetchall() if cur.description else [(cur.rowcount,)]
            db.commit()
            return [tuple(r) for r in rows]
        finally:
            db.close()


class SealedRef:
    """Reads and overwrites one object's sealed bytes like a file would be."""

    def __init__(self, root: Path, region: str, object_id: str) -> None:
        self.rows = _Rows(root, region)
        self.object_id = object_id

    def _row(self) -> tuple[bytes | None] | None:
        rows = self.rows.run(
            "SELECT sealed FROM objects WHERE id = ?",
            "SELECT sealed FROM overt_vault_object WHERE vault_id = %s AND region = %s AND id = %s",
            (self.object_id,),
        )
        return None if not rows else (None if rows[0][0] is None else bytes(rows[0][0]),)

    def read_bytes(self) -> bytes:
        row = self._row()
        if row is None or row[0] is None:
            raise FileNotFoundError(f"no stored ciphertext for {self.object_id}")
        return bytes(row[0])

    def write_bytes(self, data: bytes) -> None:
        if self.rows.database:
            count = self._pg_update("sealed = %s", (data,))
        else:
            ((count,),) = self.rows.run(
                "UPDATE objects SET sealed = ? WHERE id = ?", "", (data, self.object_id)
            )
        assert count == 1, f"no object {self.object_id}"

    def _pg_update(self, assignment: str, values: Sequence[Any]) -> int:
        import psycopg

        with psycopg.connect(self.rows.database, autocommit=True) as conn:
            cur = conn.execute(
                f"UPDATE overt_vault_object SET {assignment} FROM overt_vault v "
                "WHERE v.vkey = %s AND overt_vault_object.vault_id = v.id "
                "AND overt_vault_object.region = %s AND overt_vault_object.id = %s",
                (*values, self.rows.vkey, self.rows.region, self.object_id),
            )
            return cur.rowcount

    def exists(self) -> bool:
        row = self._row()
        return row is not None and row[0] is not None

    is_file = exists

    def unlink(self) -> None:
        """Lose the stored ciphertext (as a damaged store would)."""
        if self.rows.database:
            self._pg_update("sealed = NULL", ())
        else:
            self.rows.run("UPDATE objects SET sealed = NULL WHERE id = ?", "", (self.object_id,))

    def mark_erased(self) -> None:
        """Mark the object erased and drop its ciphertext, bypassing the gate and the journal."""
        if self.rows.database:
            self._pg_update("erased = 1, sealed = NULL", ())
        else:
            self.rows.run(
                "UPDATE objects SET erased = 1, sealed = NULL WHERE id = ?", "", (self.object_id,)
            )


def stored_ids(root: Path, region: str) -> list[str]:
    """Objects whose ciphertext the region stores, and any file in its objects directory."""
    names = [
        str(r[0])
        for r in _Rows(root, region).run(
            "SELECT id FROM objects WHERE sealed IS NOT NULL",
            "SELECT id FROM overt_vault_object "
            "WHERE vault_id = %s AND region = %s AND sealed IS NOT NULL",
        )
    ]
    objects = root / "regions" / region / "objects"
    if objects.exists():
        names += [p.name for p in objects.rglob("*") if p.is_file()]
    return sorted(names)

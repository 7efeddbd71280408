"""Test helpers: a vault object's stored ciphertext, which lives in its region's meta.db row."""

from __future__ import annotations

import sqlite3
from pathlib import Path


class SealedRef:
    """Reads and overwrites one object's sealed bytes like a file would be."""

    def __init__(self, root: Path, region: str, object_id: str) -> None:
        self.db = root / "regions" / region / "meta.db"
        self.object_id = object_id

    def _row(self) -> tuple[bytes | None] | None:
        with sqlite3.connect(self.db) as db:
            row = db.execute(
                "SELECT sealed FROM objects WHERE id = ?", (self.object_id,)
            ).fetchone()
        return None if row is None else (row[0],)

    def read_bytes(self) -> bytes:
        row = self._row()
        if row is None or row[0] is None:
            raise FileNotFoundError(f"no stored ciphertext for {self.object_id}")
        return bytes(row[0])

    def write_bytes(self, data: bytes) -> None:
        db = sqlite3.connect(self.db)
        try:
            cur = db.execute("UPDATE objects SET sealed = ? WHERE id = ?", (data, self.object_id))
            db.commit()
            assert cur.rowcount == 1, f"no object {self.object_id} in {self.db}"
        finally:
            db.close()

    def exists(self) -> bool:
        row = self._row()
        return row is not None and row[0] is not None

    is_file = exists

    def unlink(self) -> None:
        """Lose the stored ciphertext (as a damaged store would)."""
        db = sqlite3.connect(self.db)
        try:
            db.execute("UPDATE objects SET sealed = NULL WHERE id = ?", (self.object_id,))
            db.commit()
        finally:
            db.close()


def stored_ids(root: Path, region: str) -> list[str]:
    """Objects whose ciphertext the region stores, and any file in its objects directory."""
    names: list[str] = []
    db_path = root / "regions" / region / "meta.db"
    if db_path.exists():
        with sqlite3.connect(db_path) as db:
            names += [r[0] for r in db.execute("SELECT id FROM objects WHERE sealed IS NOT NULL")]
    objects = root / "regions" / region / "objects"
    if objects.exists():
        names += [p.name for p in objects.rglob("*") if p.is_file()]
    return sorted(names)

"""A witness's durable state: its view of each log, and a record of every cosignature.

The one rule a witness must never break is to cosign two different trees for
the same log that are not consistent. The check of the old size against the
stored view and the update of the view happen in one SQLite transaction
(``BEGIN IMMEDIATE``, ``synchronous=FULL``), committed before the cosignature
leaves the process (tlog-witness, "add-checkpoint": the race it describes
cannot happen).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from overt.durable import open_database
from overt.errors import OvertError

SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT PRIMARY KEY,
    vkeys TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    root BLOB,
    checkpoint TEXT,
    updated INTEGER
);
CREATE TABLE IF NOT EXISTS cosigned (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    timestamp INTEGER NOT NULL,
    checkpoint TEXT NOT NULL
);
-- Defence in depth: one root per size and log, whatever the code above does.
CREATE UNIQUE INDEX IF NOT EXISTS cosigned_one_root_per_size ON cosigned (origin, size);
CREATE TABLE IF NOT EXISTS refused (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    time INTEGER NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    body TEXT NOT NULL
);
"""


class WitnessStoreError(OvertError):
    pass


@dataclass(frozen=True)
class LogView:
    origin: str
    vkeys: tuple[str, ...]
    size: int
    root: bytes | None
    checkpoint: str | None
    updated: int | None


class WitnessStore:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        try:
            self._db = open_database(path, SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise WitnessStoreError(f"{path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _view(self, row: tuple[object, ...] | None) -> LogView | None:
        if row is None:
            return None
        origin, vkeys, size, root, checkpoint, updated = row
        assert isinstance(origin, str) and isinstance(vkeys, str) and isinstance(size, int)
        return LogView(
            origin,
            tuple(vkeys.split("\n")),
            size,
            root if isinstance(root, bytes) else None,
            checkpoint if isinstance(checkpoint, str) else None,
            updated if isinstance(updated, int) else None,
        )

    def add_log(self, origin: str, vkeys: tuple[str, ...]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO logs (origin, vkeys) VALUES (?, ?) "
                "ON CONFLICT(origin) DO UPDATE SET vkeys = excluded.vkeys",
                (origin, "\n".join(vkeys)),
            )

    def log(self, origin: str) -> LogView | None:
        with self._lock:
            row = self._db.execute(
                "SELECT origin, vkeys, size, root, checkpoint, updated FROM logs WHERE origin = ?",
                (origin,),
            ).fetchone()
        return self._view(row)

    def logs(self) -> list[LogView]:
        with self._lock:
            rows = self._db.execute(
                "SELECT origin, vkeys, size, root, checkpoint, updated FROM logs ORDER BY origin"
            ).fetchall()
        return [v for v in (self._view(r) for r in rows) if v is not None]

    @contextmanager
    def exclusive(self, origin: str) -> Iterator[Callable[[int, bytes, int, str], None]]:
        """Hold the log's row for a check-then-update; yields `record(size, root, ts, note)`.

        Leaving the block normally commits; an exception rolls back.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:

                def record(size: int, root: bytes, timestamp: int, note: str) -> None:
                    self._db.execute(
                        "UPDATE logs SET size = ?, root = ?, checkpoint = ?, updated = ? "
                        "WHERE origin = ?",
                        (size, root, note, timestamp, origin),
                    )
                    self._db.execute(
                        "INSERT OR IGNORE INTO cosigned "
                        "(origin, size, root, timestamp, checkpoint) VALUES (?, ?, ?, ?, ?)",
                        (origin, size, root, timestamp, note),
                    )
                    (kept,) = self._db.execute(
                        "SELECT root FROM cosigned WHERE origin = ? AND size = ?", (origin, size)
                    ).fetchone()
                    if kept != root:
                        raise WitnessStoreError(
                            f"refusing to cosign a second root for {origin} at size {size}"
                        )

                yield record
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def view_for_update(self, origin: str) -> LogView | None:
        """Read the view inside `exclusive` (the lock is already held)."""
        row = self._db.execute(
            "SELECT origin, vkeys, size, root, checkpoint, updated FROM logs WHERE origin = ?",
            (origin,),
        ).fetchone()
        return self._view(row)

    def record_refusal(self, origin: str, status: int, reason: str, body: str) -> None:
        """Keep a refused, validly signed request: it may prove the log misbehaved."""
        with self._lock:
            self._db.execute(
                "INSERT INTO refused (origin, time, status, reason, body) VALUES (?, ?, ?, ?, ?)",
                (origin, int(time.time()), status, reason, body),
            )

    def history(self, origin: str, limit: int = 100) -> list[tuple[int, bytes, int]]:
        """The most recent cosignatures for a log: (size, root, timestamp)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT size, root, timestamp FROM cosigned WHERE origin = ? "
                "ORDER BY id DESC LIMIT ?",
                (origin, limit),
            ).fetchall()
        return [(int(r[0]), bytes(r[1]), int(r[2])) for r in rows]

    def refusals(self, limit: int = 100) -> list[tuple[str, int, int, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT origin, time, status, reason FROM refused ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [(str(r[0]), int(r[1]), int(r[2]), str(r[3])) for r in rows]

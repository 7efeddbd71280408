"""A monitor's memory, ``DIR/monitor.db`` (SQLite), so it resumes after a restart.

Per log: the last checkpoint it accepted (also serving as the client's
`CheckpointMemory`), how many entries it has read and checked, counts by entry
type, and every alert it raised.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from overt.crypto.note import split
from overt.durable import open_database
from overt.tlog.checkpoint import Checkpoint

SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    name TEXT PRIMARY KEY,
    origin TEXT,
    checkpoint TEXT,
    size INTEGER NOT NULL DEFAULT 0,
    entries INTEGER NOT NULL DEFAULT 0,
    last_check INTEGER,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS entry_types (
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (name, type)
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Alert:
    time: int
    log: str
    kind: str
    message: str


@dataclass(frozen=True)
class LogState:
    name: str
    origin: str | None
    checkpoint: str | None
    size: int
    entries: int
    last_check: int | None
    last_error: str | None


class MonitorState:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = open_database(path, SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def log(self, name: str) -> LogState:
        with self._lock:
            row = self._db.execute(
                "SELECT name, origin, checkpoint, size, entries, last_check, last_error "
                "FROM logs WHERE name = ?",
                (name,),
            ).fetchone()
        if row is None:
            return LogState(name, None, None, 0, 0, None, None)
        return LogState(*row)

    def memory_for(self, name: str) -> _Memory:
        return _Memory(self, name)

    def save_checkpoint(self, name: str, origin: str, checkpoint: str, size: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO logs (name, origin, checkpoint, size) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET origin = excluded.origin, "
                "checkpoint = excluded.checkpoint, size = excluded.size",
                (name, origin, checkpoint, size),
            )

    def record_entries(self, name: str, entries: int, types: dict[str, int]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO logs (name, entries) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET entries = excluded.entries",
                (name, entries),
            )
            for kind, count in types.items():
                self._db.execute(
                    "INSERT INTO entry_types (name, type, count) VALUES (?, ?, ?) "
                    "ON CONFLICT(name, type) DO UPDATE SET count = count + excluded.count",
                    (name, kind, count),
                )
            self._db.execute("COMMIT")

    def reset_entries(self, name: str) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("UPDATE logs SET entries = 0 WHERE name = ?", (name,))
            self._db.execute("DELETE FROM entry_types WHERE name = ?", (name,))
            self._db.execute("COMMIT")

    def record_check(self, name: str, error: str | None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO logs (name, last_check, last_error) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET last_check = excluded.last_check, "
                "last_error = excluded.last_error",
                (name, int(time.time()), error),
            )

    def add_alert(self, name: str, kind: str, message: str) -> Alert:
        alert = Alert(int(time.time()), name, kind, message)
        with self._lock:
            self._db.execute(
                "INSERT INTO alerts (time, name, kind, message) VALUES (?, ?, ?, ?)",
                (alert.time, name, kind, message),
            )
        return alert

    def alerts(self, limit: int = 100) -> list[Alert]:
        with self._lock:
            rows = self._db.execute(
                "SELECT time, name, kind, message FROM alerts ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [Alert(*r) for r in rows]

    def alert_counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, kind, COUNT(*) FROM alerts GROUP BY name, kind"
            ).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}

    def entry_types(self, name: str) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT type, count FROM entry_types WHERE name = ? ORDER BY type", (name,)
            ).fetchall()
        return {r[0]: r[1] for r in rows}


class _Memory:
    """The `CheckpointMemory` a monitored log's client uses."""

    def __init__(self, state: MonitorState, name: str) -> None:
        self._state = state
        self._name = name

    def load(self, identity: str) -> str | None:
        origin = identity.split("\n")[0]  # the origin, then the trusted keys
        current = self._state.log(self._name)
        return current.checkpoint if current.origin == origin else None

    def store(self, identity: str, signed_checkpoint: str) -> None:
        origin = identity.split("\n")[0]
        size = Checkpoint.parse(split(signed_checkpoint)[0]).size
        self._state.save_checkpoint(self._name, origin, signed_checkpoint, size)

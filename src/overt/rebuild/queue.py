"""The rebuild queue: follow the release log, rebuild every new release, survive restarts.

State lives in `state/queue.db` (SQLite, synced on every commit): how far the
log has been scanned, and one row per release found with its status in
rebuilderd's words (UNKWN while waiting, BUILDING, then GOOD, BAD or FAIL) and
the log index of its VSA once logged. Every step is recorded before the next
starts, so after a crash or kill:

* a scan resumes after the last entry it recorded;
* a release that was BUILDING is built again from scratch;
* a verdict signed but not yet logged is logged (the log keeps one copy of
  identical entries, so logging it twice is harmless).
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from overt.durable import open_database
from overt.errors import OvertError
from overt.log.submit import add_entries
from overt.rebuild.rebuilder import (
    VSA_FILE,
    NotAProvenance,
    Outcome,
    Rebuilder,
    RebuildError,
)

UNKNOWN = "UNKWN"
BUILDING = "BUILDING"
VERDICTS = ("GOOD", "BAD", "FAIL")
# Entries are classified in batches, each committed with the scan position.
SCAN_BATCH = 256

SCHEMA = """
CREATE TABLE IF NOT EXISTS scan (id INTEGER PRIMARY KEY CHECK (id = 0), size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS releases (
    idx INTEGER PRIMARY KEY,
    product TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    vsa_index INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated TEXT NOT NULL
);
"""

Step = Callable[[str], None]


class QueueBusy(OvertError):
    """Another `overt rebuild watch` already works on this rebuilder directory."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Row:
    index: int
    product: str
    version: str
    status: str
    reason: str
    vsa_index: int | None
    attempts: int
    updated: str

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.product,
            "version": self.version,
            "status": self.status,
            "reason": self.reason,
            "vsa_index": self.vsa_index,
            "attempts": self.attempts,
            "updated": self.updated,
        }


class RebuildQueue:
    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.db = open_database(state_dir / "queue.db", SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    def scanned(self) -> int:
        row = self.db.execute("SELECT size FROM scan WHERE id = 0").fetchone()
        return int(row[0]) if row else 0

    def record_scan(self, size: int, found: list[tuple[int, str, str]]) -> None:
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany(
                    "INSERT OR IGNORE INTO releases (idx, product, version, status, updated) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(i, p, v, UNKNOWN, _now()) for i, p, v in found],
                )
                self.db.execute(
                    "INSERT INTO scan (id, size) VALUES (0, ?) "
                    "ON CONFLICT (id) DO UPDATE SET size = excluded.size",
                    (size,),
                )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def reset_interrupted(self) -> int:
        """Put releases whose build was interrupted back in the queue."""
        with self._lock:
            cur = self.db.execute(
                "UPDATE releases SET status = ?, updated = ? WHERE status = ?",
                (UNKNOWN, _now(), BUILDING),
            )
            return cur.rowcount

    def pending(self) -> list[int]:
        rows = self.db.execute(
            "SELECT idx FROM releases WHERE status = ? ORDER BY idx", (UNKNOWN,)
        ).fetchall()
        return [int(r[0]) for r in rows]

    def unlogged(self) -> list[int]:
        rows = self.db.execute(
            "SELECT idx FROM releases WHERE status IN (?, ?, ?) AND vsa_index IS NULL ORDER BY idx",
            VERDICTS,
        ).fetchall()
        return [int(r[0]) for r in rows]

    def mark(self, index: int, status: str, reason: str = "", vsa_index: int | None = None) -> None:
        with self._lock:
            attempts = ", attempts = attempts + 1" if status == BUILDING else ""
            self.db.execute(
                f"UPDATE releases SET status = ?, reason = ?, vsa_index = ?, updated = ?{attempts} "
                "WHERE idx = ?",
                (status, reason, vsa_index, _now(), index),
            )

    def record_outcome(
        self, index: int, product: str, version: str, status: str, reason: str, vsa: int | None
    ) -> None:
        """Record a rebuild done outside the watcher (`overt rebuild entry`)."""
        with self._lock:
            self.db.execute(
                "INSERT INTO releases (idx, product, version, status, reason, vsa_index, "
                "attempts, updated) VALUES (?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT (idx) DO UPDATE "
                "SET status = excluded.status, reason = excluded.reason, "
                "vsa_index = excluded.vsa_index, attempts = attempts + 1, "
                "updated = excluded.updated",
                (index, product, version, status, reason, vsa, _now()),
            )

    def rows(self) -> list[Row]:
        try:
            found = self.db.execute(
                "SELECT idx, product, version, status, reason, vsa_index, attempts, updated "
                "FROM releases ORDER BY idx"
            ).fetchall()
        except sqlite3.DatabaseError:
            return []
        return [Row(*r) for r in found]

    def row(self, index: int) -> Row | None:
        if not 0 <= index < 2**63:  # beyond what SQLite stores: never a log index
            return None
        found = self.db.execute(
            "SELECT idx, product, version, status, reason, vsa_index, attempts, updated "
            "FROM releases WHERE idx = ?",
            (index,),
        ).fetchone()
        return Row(*found) if found else None


@dataclass
class Round:
    scanned: int = 0  # entries read from the log this round
    found: int = 0  # releases found among them
    rebuilt: list[Outcome] | None = None
    errors: list[str] | None = None


class Watcher:
    """`overt rebuild watch`: one per rebuilder directory, enforced by a file lock."""

    def __init__(self, rebuilder: Rebuilder) -> None:
        self.rebuilder = rebuilder
        state = rebuilder.root / "state"
        state.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(state / "watch.lock", "w")  # noqa: SIM115 (held for our lifetime)
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock_file.close()
            raise QueueBusy(
                f"another 'overt rebuild watch' is running on {rebuilder.root}"
            ) from exc
        self.queue = RebuildQueue(state)
        self.queue.reset_interrupted()

    def close(self) -> None:
        self.queue.close()
        self._lock_file.close()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scan(self, step: Step) -> tuple[int, int]:
        """Classify the log's new entries; return (entries read, releases found)."""
        client = self.rebuilder.client
        size = client.update().size
        start = self.queue.scanned()
        found: list[tuple[int, str, str]] = []
        total = 0
        position = start
        for index, entry in client.entries(start, size):
            try:
                provenance = self.rebuilder.read_provenance(entry)
            except NotAProvenance:
                pass
            else:
                found.append((index, provenance.recipe.name, provenance.recipe.version))
            position = index + 1
            if position % SCAN_BATCH == 0:
                self.queue.record_scan(position, found)
                total += len(found)
                found = []
        if position > start or found:
            self.queue.record_scan(position, found)
            total += len(found)
        if position > start:
            step(f"scanned log entries {start}..{position - 1}: {total} new release(s)")
        return position - start, total

    def log_verdicts(self, step: Step) -> None:
        """Log every verdict that was signed but not yet logged (after a crash)."""
        for index in self.queue.unlogged():
            vsa = self.rebuilder.results_dir(index) / VSA_FILE
            row = self.queue.row(index)
            if row is None or not vsa.is_file():
                self.queue.mark(index, UNKNOWN, "verdict lost before it was logged; rebuilding")
                continue
            added = add_entries(self.rebuilder.log, [vsa.read_bytes()], self.rebuilder.token)
            self.queue.mark(index, row.status, row.reason, added.indexes[0])
            step(f"logged the verdict on entry {index} at index {added.indexes[0]}")

    def run_once(self, step: Step = lambda _: None) -> Round:
        result = Round(rebuilt=[], errors=[])
        assert result.rebuilt is not None and result.errors is not None
        result.scanned, result.found = self.scan(step)
        self.log_verdicts(step)
        for index in self.queue.pending():
            self.queue.mark(index, BUILDING)
            try:
                entry = self.rebuilder.client.entry(index)
                outcome = self.rebuilder.rebuild(index, entry, step)
            except NotAProvenance as exc:
                self.queue.mark(index, "FAIL", str(exc))
                continue
            except (RebuildError, OvertError, OSError) as exc:
                # The rebuilder could not reach a verdict (its own disk, the log):
                # nothing is attested; the release is tried again next round.
                self.queue.mark(index, UNKNOWN, f"will retry: {exc}")
                result.errors.append(f"entry {index}: {exc}")
                continue
            self.queue.mark(index, outcome.status, outcome.reason)
            outcome = self.rebuilder.submit(outcome, step)
            self.queue.mark(index, outcome.status, outcome.reason, outcome.vsa_index)
            result.rebuilt.append(outcome)
            step(f"entry {index} {outcome.product} {outcome.version}: {outcome.status}")
        return result

    def run(self, interval_s: float, stop: threading.Event, step: Step = lambda _: None) -> None:
        """Rounds every `interval_s` seconds until `stop` is set."""
        while not stop.is_set():
            try:
                self.run_once(step)
            except OvertError as exc:
                step(f"this round failed, retrying in {interval_s:g} s: {exc}")
            stop.wait(interval_s)

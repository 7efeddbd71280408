"""The bulk path `Log.add`: indexes, deduplication, and recovery from a crash mid-commit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import drivers
from overt.crypto.keys import ed25519_verifier
from overt.log.config import LogConfig
from overt.log.fsck import verify_log
from overt.log.log import Log, init_log
from overt.log.remote import directory_fetcher
from overt.tlog.hashing import leaf_hash

# Each test runs on both storage drivers (tests/drivers.py).
pytestmark = pytest.mark.usefixtures("database")


def _log(tmp_path: Path) -> tuple[Path, str]:
    d = tmp_path / "log"
    return d, init_log(d, LogConfig(origin="bulk.example/log", database=drivers.DATABASE))


def test_add_publishes_and_deduplicates(tmp_path: Path) -> None:
    d, _ = _log(tmp_path)
    with Log(d) as log:
        indexes, cp = log.add([b"a", b"b", b"a", b"c"])
        assert indexes == [0, 1, 0, 2]
        assert cp.size == 3
        again, cp2 = log.add([b"c", b"b"])
        assert again == [2, 1]
        assert cp2 == cp  # nothing new: no new checkpoint
        more, cp3 = log.add([b"d", b"a", b"e"])
        assert more == [3, 0, 4]
        assert cp3.size == 5
        assert [log.entry(i) for i in range(5)] == [b"a", b"b", b"c", b"d", b"e"]
        assert log.lookup(leaf_hash(b"d")) == 3


def test_add_after_pending_entries_keeps_their_order(tmp_path: Path) -> None:
    d, _ = _log(tmp_path)
    with Log(d) as log:
        assert log.sequence([b"first", b"second"]) == [0, 1]
        indexes, cp = log.add([b"third", b"first"])
        assert indexes == [2, 0]
        assert cp.size == 3
        assert log.entry(2) == b"third"


# The moments a bulk add can die at: with SQLite, after the checkpoint is on
# disk but before the transaction commits; with PostgreSQL (which commits the
# reservation once the tiles are synced), before the checkpoint is written, or
# after it is written but before the database records it.
CRASHES = {
    "sqlite": {"before-commit": "log._store.commit_published = lambda size, root: os._exit(9)"},
    "postgresql": {
        "before-publishing": "log._pg.publish = lambda base, new, write: os._exit(9)",
        "before-recording": "log._pg.publish = lambda base, new, write: (write(), os._exit(9))",
    },
}


def test_crash_between_publishing_and_committing_is_repaired(tmp_path: Path) -> None:
    for moment, patch in CRASHES["postgresql" if drivers.postgres() else "sqlite"].items():
        _crash_and_repair(tmp_path / moment, moment, patch)


def _crash_and_repair(tmp_path: Path, moment: str, patch: str) -> None:
    d, vkey = _log(tmp_path)
    with Log(d) as log:
        log.add([b"before %d" % i for i in range(300)])
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from overt.log.log import Log
        log = Log(Path({str(d)!r}))
        {patch}
        log.add([b"crash %d" % i for i in range(500)])
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    with Log(d) as log:
        if moment == "before-publishing":
            assert log.checkpoint.size == 300  # synced and committed, not yet published
            assert log.integrate().size == 800
        assert log.checkpoint.size == 800  # published before the crash
        assert log.sequenced_size() == 800  # re-indexed from the tiles
        assert log.lookup(leaf_hash(b"crash 7")) == 307
        indexes, cp = log.add([b"crash 7", b"after"])
        assert indexes == [307, 800]
        assert cp.size == 801
    report = verify_log(directory_fetcher(d / "tiles"), ed25519_verifier(vkey))
    assert report.entries == 801


def test_entries_sequenced_while_add_runs_keep_their_index(tmp_path: Path, monkeypatch) -> None:
    """Another thread sequencing just before the bulk path reserves must not lose its entry."""
    import threading

    from overt.log import pg_store, sqlite_store

    store_class = pg_store.PostgresStore if drivers.postgres() else sqlite_store.SQLiteStore
    d, _ = _log(tmp_path)
    with Log(d) as log:
        log.add([b"a0", b"a1"])
        acked: list[int] = []
        original = store_class.reserve

        def reserve(self, hashes):  # type: ignore[no-untyped-def]
            t = threading.Thread(target=lambda: acked.append(log.sequence([b"concurrent"])[0]))
            t.start()
            t.join()
            return original(self, hashes)

        monkeypatch.setattr(store_class, "reserve", reserve)
        indexes, cp = log.add([b"bulk0", b"bulk1"])
        monkeypatch.setattr(store_class, "reserve", original)
        assert acked == [2]
        assert indexes == [3, 4]
        assert cp.size == 5
        assert [log.entry(i) for i in range(5)] == [b"a0", b"a1", b"concurrent", b"bulk0", b"bulk1"]
        assert log.integrate().size == 5

"""`overt rebuild watch`: following the release log, and surviving being killed at any step.

Each test gets its own release log holding, in order: a plain note, a
reproducible release, a release signed by a conveyor the rebuilder does not
trust, and a release that never builds the same twice. Crashes are simulated
by leaving the queue exactly as a killed watcher would: a row BUILDING, a
verdict signed but not logged, a verdict file lost.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from overt.conveyor.conveyor import Conveyor, init_conveyor
from overt.log.submit import add_entries
from overt.rebuild.queue import (
    BUILDING,
    SCAN_BATCH,
    UNKNOWN,
    QueueBusy,
    RebuildQueue,
    Watcher,
)
from overt.rebuild.rebuilder import BAD, GOOD, REPORT_TEXT, VSA_FILE, Rebuilder
from release_fixtures import BUILDER_ID, Stack, make_stack, recipe_toml, tiny_project

NOISY = ["mkdir -p out", "python -c 'import os; print(os.urandom(8).hex())' > out/noise.txt"]


@dataclass
class Queued:
    stack: Stack
    note: int
    steady: int
    untrusted: int
    noisy: int

    def rebuilder(self, root: Path) -> Rebuilder:
        return self.stack.new_rebuilder(root)


@pytest.fixture
def queued(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Queued:
    stack = make_stack(tmp_path / "stack", tmp_path_factory)
    note = stack.add(b"not a release\n")
    steady = stack.build(tiny_project(tmp_path / "steady", recipe_toml(name="steady")))
    init_conveyor(tmp_path / "other-conveyor", "other.example.com", BUILDER_ID)
    other = Conveyor(tmp_path / "other-conveyor", cache=stack.conveyor.cache)
    untrusted = other.build(
        tiny_project(tmp_path / "elsewhere", recipe_toml(name="elsewhere")), log=stack.log
    )
    noisy = stack.build(tiny_project(tmp_path / "noisy", recipe_toml(name="noisy", commands=NOISY)))
    assert untrusted.log_index is not None
    assert steady.log_index is not None and noisy.log_index is not None
    return Queued(stack, note, steady.log_index, untrusted.log_index, noisy.log_index)


def quiet(_: str) -> None:
    pass


def test_run_once_rebuilds_trusted_releases_and_logs_verdicts(
    queued: Queued, tmp_path: Path
) -> None:
    rebuilder = queued.rebuilder(tmp_path / "rb")
    size = queued.stack.size()
    messages: list[str] = []
    with Watcher(rebuilder) as watcher:
        done = watcher.run_once(messages.append)
        assert done.scanned == size
        assert done.found == 2
        assert done.errors == []
        assert done.rebuilt is not None
        assert {o.index: o.status for o in done.rebuilt} == {queued.steady: GOOD, queued.noisy: BAD}
        rows = {row.index: row for row in watcher.queue.rows()}
        # The note and the release of an untrusted conveyor are skipped.
        assert set(rows) == {queued.steady, queued.noisy}
        assert rows[queued.steady].product == "steady"
        assert rows[queued.noisy].status == BAD
        assert "not reproducible" in rows[queued.noisy].reason
        for index, row in rows.items():
            assert row.attempts == 1
            assert row.vsa_index is not None
            vsa = (rebuilder.results_dir(index) / VSA_FILE).read_bytes()
            assert queued.stack.entry(row.vsa_index) == vsa
        assert watcher.queue.scanned() == size
        assert any(f"{queued.steady} steady 1.0: GOOD" in m for m in messages)

        again = watcher.run_once(quiet)
        assert again.found == 0
        assert again.rebuilt == []
        assert again.scanned == 2  # the two verdicts it logged itself
        assert {row.index: row.attempts for row in watcher.queue.rows()} == {
            queued.steady: 1,
            queued.noisy: 1,
        }


def test_scan_position_survives_a_restart(queued: Queued, tmp_path: Path) -> None:
    rebuilder = queued.rebuilder(tmp_path / "rb")
    with Watcher(rebuilder) as watcher:
        watcher.run_once(quiet)
        scanned = watcher.queue.scanned()
    verdict = (rebuilder.results_dir(queued.steady) / VSA_FILE).read_bytes()

    restarted = Rebuilder(rebuilder.root, cache=rebuilder.cache)
    with Watcher(restarted) as watcher:
        assert watcher.queue.scanned() == scanned
        done = watcher.run_once(quiet)
        assert done.found == 0
        assert done.rebuilt == []
        later = queued.stack.build(tiny_project(tmp_path / "later", recipe_toml(name="later")))
        done = watcher.run_once(quiet)
        assert done.found == 1
        assert [o.index for o in done.rebuilt or []] == [later.log_index]
    # The earlier verdict was not redone.
    assert (rebuilder.results_dir(queued.steady) / VSA_FILE).read_bytes() == verdict


def test_release_left_building_is_rebuilt_after_a_restart(queued: Queued, tmp_path: Path) -> None:
    rebuilder = queued.rebuilder(tmp_path / "rb")
    watcher = Watcher(rebuilder)
    watcher.scan(quiet)
    watcher.queue.mark(queued.steady, BUILDING)
    results = rebuilder.results_dir(queued.steady)
    results.mkdir(parents=True)
    (results / REPORT_TEXT).write_text("half-written report of the killed build\n")
    watcher.close()  # killed while building

    queue = RebuildQueue(rebuilder.root / "state")
    row = queue.row(queued.steady)
    assert row is not None and row.status == BUILDING
    queue.close()

    with Watcher(Rebuilder(rebuilder.root, cache=rebuilder.cache)) as watcher:
        row = watcher.queue.row(queued.steady)
        assert row is not None and row.status == UNKNOWN
        done = watcher.run_once(quiet)
        assert queued.steady in [o.index for o in done.rebuilt or []]
        row = watcher.queue.row(queued.steady)
        assert row is not None
        assert row.status == GOOD
        assert row.attempts == 2
        assert row.vsa_index is not None
    assert not (results / REPORT_TEXT).exists()  # no stale report beside a GOOD verdict


def test_verdict_signed_but_not_logged_is_logged_exactly_once(
    queued: Queued, tmp_path: Path
) -> None:
    rebuilder = queued.rebuilder(tmp_path / "rb")
    stack = queued.stack
    with Watcher(rebuilder) as watcher:
        watcher.scan(quiet)
        outcome = rebuilder.rebuild(queued.steady, stack.entry(queued.steady))
        watcher.queue.mark(queued.steady, outcome.status, outcome.reason)  # killed here
    vsa = (rebuilder.results_dir(queued.steady) / VSA_FILE).read_bytes()
    assert vsa not in stack.entries()

    with Watcher(Rebuilder(rebuilder.root, cache=rebuilder.cache)) as watcher:
        done = watcher.run_once(quiet)
        # Logged as signed, not rebuilt again.
        assert queued.steady not in [o.index for o in done.rebuilt or []]
        row = watcher.queue.row(queued.steady)
        assert row is not None and row.status == GOOD and row.vsa_index is not None
        logged_at = row.vsa_index
        assert stack.entry(logged_at) == vsa
        assert (rebuilder.results_dir(queued.steady) / VSA_FILE).read_bytes() == vsa
        # Killed again after the log took it but before the queue recorded where.
        watcher.queue.mark(queued.steady, row.status, row.reason, None)
    size = stack.size()

    with Watcher(Rebuilder(rebuilder.root, cache=rebuilder.cache)) as watcher:
        watcher.run_once(quiet)
        row = watcher.queue.row(queued.steady)
        assert row is not None and row.vsa_index == logged_at
    assert stack.size() == size
    assert stack.entries().count(vsa) == 1


def test_verdict_lost_before_logging_is_rebuilt(queued: Queued, tmp_path: Path) -> None:
    rebuilder = queued.rebuilder(tmp_path / "rb")
    with Watcher(rebuilder) as watcher:
        watcher.run_once(quiet)
        row = watcher.queue.row(queued.steady)
        assert row is not None
        watcher.queue.mark(queued.steady, row.status, row.reason, None)
        (rebuilder.results_dir(queued.steady) / VSA_FILE).unlink()
        done = watcher.run_once(quiet)
        assert [o.index for o in done.rebuilt or []] == [queued.steady]
        row = watcher.queue.row(queued.steady)
        assert row is not None
        assert row.status == GOOD and row.vsa_index is not None and row.attempts == 2
        assert (rebuilder.results_dir(queued.steady) / VSA_FILE).is_file()


def test_one_watcher_per_rebuilder_directory(queued: Queued, tmp_path: Path) -> None:
    rebuilder = queued.rebuilder(tmp_path / "rb")
    with (
        Watcher(rebuilder),
        pytest.raises(QueueBusy, match="another 'overt rebuild watch' is running"),
    ):
        Watcher(Rebuilder(rebuilder.root, cache=rebuilder.cache))
    # Released when the first one stops.
    with Watcher(rebuilder) as watcher:
        assert watcher.queue.scanned() == 0


def test_release_the_rebuilder_cannot_attempt_is_retried_not_attested(
    queued: Queued, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed-path"
    recipe = recipe_toml(name="fixed", commands=["mkdir -p out", "pwd > out/pwd.txt"])
    recipe = recipe.replace("[artifacts]", f'path = "{fixed}"\n\n[artifacts]')
    release = queued.stack.build(tiny_project(tmp_path / "fixed", recipe))
    fixed.mkdir()  # something of the supervisor's is there
    rebuilder = queued.rebuilder(tmp_path / "rb")
    with Watcher(rebuilder) as watcher:
        done = watcher.run_once(quiet)
        assert done.errors is not None and len(done.errors) == 1
        assert f"entry {release.log_index}: build.path" in done.errors[0]
        row = watcher.queue.row(release.log_index or 0)
        assert row is not None
        assert row.status == UNKNOWN
        assert row.reason.startswith("will retry: ")
        assert row.vsa_index is None
        fixed.rmdir()
        done = watcher.run_once(quiet)
        row = watcher.queue.row(release.log_index or 0)
        assert row is not None and row.status == GOOD and row.vsa_index is not None


def test_source_outage_is_retried_not_attested(queued: Queued, tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "offline", recipe_toml(name="offline"), repo=False)
    release = queued.stack.build(project)
    project.rename(tmp_path / "elsewhere-for-now")
    rebuilder = queued.rebuilder(tmp_path / "rb")
    with Watcher(rebuilder) as watcher:
        done = watcher.run_once(quiet)
        assert done.errors is not None and len(done.errors) == 1
        assert "the source could not be fetched (will retry)" in done.errors[0]
        row = watcher.queue.row(release.log_index or 0)
        assert row is not None and row.status == UNKNOWN and row.vsa_index is None
        (tmp_path / "elsewhere-for-now").rename(project)
        done = watcher.run_once(quiet)
        assert done.errors == []
        row = watcher.queue.row(release.log_index or 0)
        assert row is not None and row.status == GOOD and row.vsa_index is not None


def test_run_follows_the_log_until_stopped(queued: Queued, tmp_path: Path) -> None:
    rebuilder = queued.rebuilder(tmp_path / "rb")
    stop = threading.Event()
    with Watcher(rebuilder) as watcher:
        thread = threading.Thread(target=watcher.run, args=(0.05, stop, quiet))
        thread.start()
        reader = RebuildQueue(rebuilder.root / "state")  # as `overt rebuild status` reads it
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                rows = reader.rows()
                if len(rows) == 2 and all(r.vsa_index is not None for r in rows):
                    break
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join(10)
        assert not thread.is_alive()
        assert {r.index: r.status for r in reader.rows()} == {
            queued.steady: GOOD,
            queued.noisy: BAD,
        }
        reader.close()


def test_scan_crosses_batches_of_unrelated_entries(queued: Queued, tmp_path: Path) -> None:
    stack = queued.stack
    add_entries(stack.log, [f"note {i}\n".encode() for i in range(SCAN_BATCH + 44)])
    late = stack.build(tiny_project(tmp_path / "late", recipe_toml(name="late")))
    rebuilder = queued.rebuilder(tmp_path / "rb")
    with Watcher(rebuilder) as watcher:
        done = watcher.run_once(quiet)
        assert done.scanned == stack.size() - 3  # less the three verdicts it logged
        assert done.found == 3
        row = watcher.queue.row(late.log_index or 0)
        assert row is not None and row.status == GOOD

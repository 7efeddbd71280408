"""Monitors: following logs, resuming, and raising every kind of alert.

Logs are real log directories; "served over HTTP" means a small static file
server over a tiles directory whose root the test can swap (to serve a fork
instead of the log). Witnesses run in-process on a real socket.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from overt.crypto.keyfile import read_private_key
from overt.crypto.keys import Ed25519Signer, Ed25519Verifier, ed25519_verifier
from overt.log.config import LogConfig, load_config
from overt.log.log import Log, init_log
from overt.monitor.config import MonitoredLog
from overt.monitor.monitor import CheckResult, Monitor, add_monitored_log, entry_type, init_monitor
from overt.tlog.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from overt.tlog.hashing import EMPTY_ROOT
from overt.tlog.witness import AddCheckpointRequest
from overt.web.monitor_api import create_monitor_app
from overt.web.server import BackgroundServer
from overt.web.witness_api import create_witness_app
from overt.witness.witness import Witness, init_witness

OVERT = [sys.executable, "-m", "overt.cli"]
ORIGIN = "example.com/overt/monitored"


# --- helpers ---------------------------------------------------------------


def make_log(root: Path, origin: str = ORIGIN) -> str:
    return init_log(root, LogConfig(origin=origin))


def twin_log(first: Path, second: Path) -> None:
    """A second log with the first one's key and origin (both still empty)."""
    make_log(second, load_config(first / "log.toml").origin)
    for rel in ("secrets/log.key", "log.vkey", "tiles/checkpoint"):
        shutil.copyfile(first / rel, second / rel)


def add(log_dir: Path, entries: list[bytes]) -> Checkpoint:
    with Log(log_dir) as log:
        _, cp = log.add(entries)
        return cp


def vkey_of(log_dir: Path) -> str:
    return (log_dir / "log.vkey").read_text().strip()


def new_monitor(root: Path, *logs: MonitoredLog) -> Path:
    init_monitor(root)
    for entry in logs:
        add_monitored_log(root, entry)
    return root


class StaticServer:
    """Serves a directory over HTTP; `root` can be changed while it runs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths: list[str] = []
        outer = self

        class Handler(SimpleHTTPRequestHandler):
            def translate_path(self, path: str) -> str:
                outer.paths.append(path)
                return str(outer.root / path.split("?")[0].lstrip("/"))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Webhook:
    """Records the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                data = self.rfile.read(length)
                outer.bodies.append(
                    {"content_type": self.headers.get("Content-Type"), **json.loads(data)}
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def static() -> Iterator[list[StaticServer]]:
    servers: list[StaticServer] = []
    yield servers
    for s in servers:
        s.close()


def serve_dir(servers: list[StaticServer], root: Path) -> StaticServer:
    server = StaticServer(root)
    servers.append(server)
    return server


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def check_one(root: Path, webhook: str | None = None) -> CheckResult:
    monitor = Monitor(root, webhook)
    try:
        (result,) = monitor.check_all()
        return result
    finally:
        monitor.close()


def kinds(result: CheckResult) -> list[str]:
    return [a.kind for a in result.alerts]


TYPED = [
    b'{"type": "release", "n": 1}',
    b'{"type": "release", "n": 2}',
    b'{"type": "vsa"}',
    b'{"type": "release", "n": 3}',
    b"\xff\x00 not json",
    b"[1, 2, 3]",
    b'{"type": 5}',
    b'{"no": "type"}',
]


def test_entry_type() -> None:
    assert entry_type(b'{"type": "release"}') == "release"
    assert entry_type(b"\xff") == "opaque"
    assert entry_type(b"[]") == "json"
    assert entry_type(b'{"type": ["x"]}') == "json"
    assert entry_type(b"[" * 100_000) == "opaque"  # deep nesting is not a crash
    assert len(entry_type(('{"type": "' + "x" * 500 + '"}').encode())) == 100


# --- following a log -------------------------------------------------------


def test_counts_entries_by_type_and_resumes(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    make_log(log_dir)
    add(log_dir, TYPED)
    root = new_monitor(tmp_path / "mon", MonitoredLog("rel", str(log_dir), vkey_of(log_dir)))
    monitor = Monitor(root)
    try:
        result = monitor.check(monitor.logs[0])
        assert (result.size, result.new_entries, result.alerts, result.error) == (8, 8, [], None)
        expected = {"release": 3, "vsa": 1, "opaque": 1, "json": 3}
        assert monitor.state.entry_types("rel") == expected
    finally:
        monitor.close()

    # Reopened: the state is on disk, nothing is counted twice.
    monitor = Monitor(root)
    try:
        assert monitor.state.log("rel").entries == 8
        result = monitor.check(monitor.logs[0])
        assert (result.size, result.new_entries, result.alerts) == (8, 0, [])
        assert monitor.state.entry_types("rel") == expected
        add(
            log_dir,
            [b'{"type": "bulk"}'] * 1 + [b'{"type": "bulk", "i": %d}' % i for i in range(299)],
        )
        result = monitor.check(monitor.logs[0])
        assert (result.size, result.new_entries, result.alerts) == (308, 300, [])
        assert monitor.state.entry_types("rel") == {**expected, "bulk": 300}
        status = monitor.status()
        (entry,) = status["logs"]
        assert entry["name"] == "rel" and entry["origin"] == ORIGIN
        assert entry["size"] == 308 and entry["entries_checked"] == 308
        assert entry["last_error"] is None and entry["last_check"]
        assert open_checkpoint(entry["checkpoint"], _verifier(log_dir)).checkpoint.size == 308
        assert status["alerts"] == []
    finally:
        monitor.close()


def _verifier(log_dir: Path) -> Ed25519Verifier:
    return ed25519_verifier(vkey_of(log_dir))


def test_follows_over_http_without_refetching_after_restart(
    tmp_path: Path, static: list[StaticServer]
) -> None:
    log_dir = tmp_path / "log"
    make_log(log_dir)
    add(log_dir, [b'{"type": "a", "i": %d}' % i for i in range(300)])
    server = serve_dir(static, log_dir / "tiles")
    root = new_monitor(tmp_path / "mon", MonitoredLog("web", server.url, vkey_of(log_dir)))
    result = check_one(root)
    assert (result.size, result.new_entries, result.alerts, result.error) == (300, 300, [], None)
    assert any("tile/entries/" in p for p in server.paths)

    server.paths.clear()
    result = check_one(root)  # a new Monitor: resumes from its database
    assert (result.size, result.new_entries) == (300, 0)
    assert not [p for p in server.paths if "tile/entries/" in p], server.paths

    add(log_dir, [b'{"type": "b", "i": %d}' % i for i in range(10)])
    server.paths.clear()
    result = check_one(root)
    assert (result.size, result.new_entries, result.alerts) == (310, 10, [])
    assert [p for p in server.paths if "tile/entries/" in p] == ["/tile/entries/001.p/54"]
    monitor = Monitor(root)
    try:
        assert monitor.state.entry_types("web") == {"a": 300, "b": 10}
    finally:
        monitor.close()


def test_unreachable_log_is_an_error_not_an_alert(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    make_log(log_dir)
    root = new_monitor(
        tmp_path / "mon", MonitoredLog("gone", "http://127.0.0.1:9/", vkey_of(log_dir))
    )
    result = check_one(root)
    assert result.alerts == [] and result.error


def test_replaced_log_is_counted_from_scratch(tmp_path: Path) -> None:
    """Regression (found by this test, since fixed in src): Monitor._check kept
    `entries` (and the per-type counts) from the log followed under the same name
    before. When monitor.toml is changed to follow another log (another origin
    and key) under that name, `_Memory.load` rightly forgets the old checkpoint,
    but `seen` stayed at the old log's count: if the new log is at least as
    large, its first `seen` entries were never read or checked, and the old
    log's types stayed counted.
    """
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    make_log(old_dir, "example.com/overt/old")
    make_log(new_dir, "example.com/overt/new")
    add(old_dir, [b'{"type": "old"}', b'{"type": "old", "n": 2}'])
    add(new_dir, [b'{"type": "new", "n": %d}' % i for i in range(5)])
    root = new_monitor(tmp_path / "mon", MonitoredLog("rel", str(old_dir), vkey_of(old_dir)))
    assert check_one(root).new_entries == 2
    (root / "monitor.toml").write_text(
        MonitoredLog("rel", str(new_dir), vkey_of(new_dir)).to_toml()
    )
    result = check_one(root)
    monitor = Monitor(root)
    try:
        types = monitor.state.entry_types("rel")
    finally:
        monitor.close()
    assert result.alerts == []
    assert (result.size, result.new_entries) == (5, 5)
    assert types == {"new": 5}


# --- alerts ----------------------------------------------------------------


def test_follow_once_cli_and_rollback(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    make_log(log_dir)
    add(log_dir, [b"one", b"two", b"three"])
    old_checkpoint = (log_dir / "tiles" / "checkpoint").read_bytes()
    add(log_dir, [b"four", b"five"])
    root = new_monitor(tmp_path / "mon", MonitoredLog("rel", str(log_dir), vkey_of(log_dir)))

    def follow() -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*OVERT, "monitor", "follow", str(root), "--once"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    proc = follow()
    assert proc.returncode == 0, proc.stderr
    assert "size 5" in proc.stdout

    # The log restores an older checkpoint (e.g. from a backup).
    (log_dir / "tiles" / "checkpoint").write_bytes(old_checkpoint)
    proc = follow()
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "rollback" in proc.stderr
    monitor = Monitor(root)
    try:
        assert [a.kind for a in monitor.state.alerts()] == ["rollback"]
        # The monitor still holds the larger checkpoint; it does not follow the log back.
        assert monitor.state.log("rel").size == 5
    finally:
        monitor.close()


def test_fork_served_instead_of_the_log(tmp_path: Path, static: list[StaticServer]) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    make_log(a_dir)
    twin_log(a_dir, b_dir)
    add(a_dir, [b"a %d" % i for i in range(10)])
    add(b_dir, [b"b %d" % i for i in range(10)])
    b_at_10 = snapshot(b_dir, tmp_path / "b10")
    add(b_dir, [b"b %d" % i for i in range(10, 20)])
    add(a_dir, [b"a %d" % i for i in range(10, 12)])
    a_at_12 = snapshot(a_dir, tmp_path / "a12")
    add(a_dir, [b"a %d" % i for i in range(12, 20)])
    a_at_20 = snapshot(a_dir, tmp_path / "a20")
    add(a_dir, [b"a %d" % i for i in range(20, 30)])

    server = serve_dir(static, a_at_12)
    root = new_monitor(tmp_path / "mon", MonitoredLog("rel", server.url, vkey_of(a_dir)))
    assert check_one(root).alerts == []

    server.root = b_dir / "tiles"  # a larger tree that does not extend what we saw
    result = check_one(root)
    assert kinds(result) == ["fork"]
    server.root = b_at_10  # a smaller one: goes backwards
    assert kinds(check_one(root)) == ["rollback"]
    server.root = a_dir / "tiles"  # the real log again: fine
    result = check_one(root)
    assert result.alerts == [] and result.size == 30

    # Another monitor was shown the fork at size 20; then the real log's size 20.
    server2 = serve_dir(static, b_dir / "tiles")
    root2 = new_monitor(tmp_path / "mon2", MonitoredLog("rel", server2.url, vkey_of(a_dir)))
    assert check_one(root2).alerts == []
    server2.root = a_at_20
    result = check_one(root2)
    assert kinds(result) == ["fork"]
    assert "two roots" in result.alerts[0].message


def snapshot(log_dir: Path, dest: Path) -> Path:
    """A copy of the log's tiles as published now."""
    shutil.copytree(log_dir / "tiles", dest)
    return dest


class WitnessServer:
    def __init__(self, root: Path, log_dir: Path) -> None:
        init_witness(root, "witness.example/mon")
        witness = Witness(root)
        try:
            witness.add_log(ORIGIN, [vkey_of(log_dir)])
        finally:
            witness.close()
        self.root = root
        self.server = BackgroundServer(create_witness_app(root), "127.0.0.1", 0)
        self.url = self.server.start()
        self.size = 0

    def cosign(self, tiles: Path, log_dir: Path) -> None:
        """Submit the checkpoint in `tiles` (proofs from `log_dir`, same branch)."""
        signed = (tiles / "checkpoint").read_text()
        size = open_checkpoint(signed, _verifier(log_dir)).checkpoint.size
        with Log(log_dir) as log:
            proof = log.consistency_proof(self.size, size) if 0 < self.size < size else []
        witness = Witness(self.root)
        try:
            witness.add_checkpoint(
                AddCheckpointRequest(self.size, tuple(proof), signed).format().encode()
            )
        finally:
            witness.close()
        self.size = size

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def witness_servers() -> Iterator[list[WitnessServer]]:
    servers: list[WitnessServer] = []
    yield servers
    for s in servers:
        s.stop()


def test_fork_seen_through_a_witness(
    tmp_path: Path, static: list[StaticServer], witness_servers: list[WitnessServer]
) -> None:
    """The log shows the monitor branch B while the witness cosigned branch A."""
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    make_log(a_dir)
    twin_log(a_dir, b_dir)
    add(a_dir, [b"a %d" % i for i in range(6)])
    a_at_6 = snapshot(a_dir, tmp_path / "a6")
    add(a_dir, [b"a %d" % i for i in range(6, 10)])
    add(b_dir, [b"b %d" % i for i in range(10)])
    witness = WitnessServer(tmp_path / "w", a_dir)
    witness_servers.append(witness)
    witness.cosign(a_at_6, a_dir)  # the witness saw A at size 6

    def monitor_of(name: str, tiles: Path) -> Path:
        server = serve_dir(static, tiles)
        entry = MonitoredLog("rel", server.url, vkey_of(a_dir), witnesses=(witness.url,))
        return new_monitor(tmp_path / name, entry)

    # Shown A at size 10: it extends what the witness cosigned. No alert.
    result = check_one(monitor_of("m-a", a_dir / "tiles"))
    assert (result.alerts, result.error) == ([], None)
    # Shown B at size 10: B does not extend the witness's A at size 6.
    result = check_one(monitor_of("m-b", b_dir / "tiles"))
    assert kinds(result) == ["fork"], result
    assert witness.url in result.alerts[0].message

    # The witness moves on to A at size 10; B at size 10 has another root.
    witness.cosign(a_dir / "tiles", a_dir)
    result = check_one(monitor_of("m-b2", b_dir / "tiles"))
    assert kinds(result) == ["fork"]
    assert "different root" in result.alerts[0].message
    # And the honest view of size 10 agrees with the witness.
    assert check_one(monitor_of("m-a2", a_dir / "tiles")).alerts == []
    # A witness ahead of the monitor's view is not, by itself, a problem.
    assert check_one(monitor_of("m-a3", a_at_6)).alerts == []


def test_witness_that_cosigned_the_empty_tree_is_no_fork(
    tmp_path: Path, static: list[StaticServer], witness_servers: list[WitnessServer]
) -> None:
    """Regression (found by this test, since fixed in src): for a witness
    checkpoint smaller than the monitor's, Monitor._compare_with_witness called
    verify_consistency(theirs.size, ...), which refuses old size 0 ("a
    consistency proof from the empty tree proves nothing"). A witness that
    cosigned the log's size-0 checkpoint (anyone may submit the log's public
    initial checkpoint with `old 0`) made every monitor comparing with it raise
    a false "fork" alert for an honest log.
    """
    log_dir = tmp_path / "log"
    make_log(log_dir)
    witness = WitnessServer(tmp_path / "w", log_dir)
    witness_servers.append(witness)
    witness.cosign(log_dir / "tiles", log_dir)  # the empty tree, as published at init
    add(log_dir, [b"x %d" % i for i in range(5)])
    server = serve_dir(static, log_dir / "tiles")
    entry = MonitoredLog("rel", server.url, vkey_of(log_dir), witnesses=(witness.url,))
    result = check_one(new_monitor(tmp_path / "mon", entry))
    assert result.alerts == [], [a.message for a in result.alerts]


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    log_dir = tmp_path_factory.mktemp("big") / "log"
    make_log(log_dir)
    add(log_dir, [b'{"type": "t", "i": %d}' % i for i in range(300)])
    return log_dir


@pytest.mark.parametrize(
    ("tile", "offset"),
    [
        ("tile/0/000", 32 * 7 + 3),  # a full level-0 tile (checked against its parent)
        ("tile/0/001.p/44", 32 * 40),  # the partial level-0 tile on the right edge
        ("tile/1/000.p/1", 5),  # the level-1 edge tile
        ("tile/entries/000", 2 + 5),  # inside the first entry of a full bundle
        ("tile/entries/001.p/44", 2 + 10),  # inside an entry of the partial bundle
    ],
)
def test_bad_tile(tmp_path: Path, big_log: Path, tile: str, offset: int) -> None:
    copy = snapshot(big_log, tmp_path / "tiles")
    _flip(copy / tile, offset)
    root = new_monitor(tmp_path / "mon", MonitoredLog("rel", str(copy), vkey_of(big_log)))
    result = check_one(root)
    assert kinds(result) == ["bad-tile"], (result.error, result.alerts)


def test_bad_signature(tmp_path: Path, big_log: Path) -> None:
    copy = snapshot(big_log, tmp_path / "tiles")
    honest = open_checkpoint((copy / "checkpoint").read_bytes(), _verifier(big_log)).checkpoint
    for signer in (Ed25519Signer.generate(ORIGIN), Ed25519Signer.generate("evil.example/log")):
        (copy / "checkpoint").write_text(sign_checkpoint(honest, [signer]))
        root = new_monitor(
            tmp_path / f"mon-{signer.key_id}", MonitoredLog("rel", str(copy), vkey_of(big_log))
        )
        result = check_one(root)
        assert kinds(result) == ["bad-signature"], (result.error, result.alerts)


def test_webhook_gets_every_alert(
    tmp_path: Path, big_log: Path, webhook: Webhook, static: list[StaticServer]
) -> None:
    vkey = vkey_of(big_log)
    signer = read_private_key(big_log / "secrets" / "log.key")
    rollback = snapshot(big_log, tmp_path / "rollback")
    badtile = snapshot(big_log, tmp_path / "badtile")
    _flip(badtile / "tile/0/000", 100)
    badsig = snapshot(big_log, tmp_path / "badsig")
    cp = open_checkpoint((badsig / "checkpoint").read_bytes(), _verifier(big_log)).checkpoint
    (badsig / "checkpoint").write_text(sign_checkpoint(cp, [Ed25519Signer.generate(ORIGIN)]))
    # The fork: same key and origin, other entries, same size.
    fork_dir = tmp_path / "fork"
    make_log(fork_dir)
    for rel in ("secrets/log.key", "log.vkey"):
        shutil.copyfile(big_log / rel, fork_dir / rel)
    empty = sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY_ROOT), [signer])
    (fork_dir / "tiles" / "checkpoint").write_text(empty)
    add(fork_dir, [b"fork %d" % i for i in range(300)])
    forked = serve_dir(static, big_log / "tiles")
    root = new_monitor(
        tmp_path / "mon",
        MonitoredLog("rollback", str(rollback), vkey),
        MonitoredLog("fork", forked.url, vkey),
        MonitoredLog("badtile", str(badtile), vkey),
        MonitoredLog("badsig", str(badsig), vkey),
    )
    monitor = Monitor(root, webhook.url)
    try:
        first = monitor.check_all()
        assert {r.log: kinds(r) for r in first} == {
            "rollback": [],
            "fork": [],
            "badtile": ["bad-tile"],
            "badsig": ["bad-signature"],
        }
        # Now misbehave: roll back to the empty tree, serve the fork.
        (rollback / "checkpoint").write_text(empty)
        forked.root = fork_dir / "tiles"
        second = monitor.check_all()
    finally:
        monitor.close()
    assert {r.log: kinds(r) for r in second} == {
        "rollback": ["rollback"],
        "fork": ["fork"],
        "badtile": ["bad-tile"],
        "badsig": ["bad-signature"],
    }
    # One webhook POST per alert, in order, as JSON.
    alerts = [a for r in first + second for a in r.alerts]
    assert len(webhook.bodies) == len(alerts) == 6
    for alert, body in zip(alerts, webhook.bodies, strict=True):
        assert body == {
            "content_type": "application/json",
            "log": alert.log,
            "kind": alert.kind,
            "message": alert.message,
            "time": alert.time,
        }


# --- HTTP face --------------------------------------------------------------

_SAMPLE = re.compile(r'^[a-z_]+(\{[a-z]+="[^"\n]*"(,[a-z]+="[^"\n]*")*\})? -?[0-9.e+]+$')


def test_monitor_app_metrics_and_status(tmp_path: Path, big_log: Path) -> None:
    copy = snapshot(big_log, tmp_path / "tiles")
    _flip(copy / "tile/entries/000", 9)
    root = new_monitor(
        tmp_path / "mon",
        MonitoredLog("good", str(big_log), vkey_of(big_log)),
        MonitoredLog("bad", str(copy), vkey_of(big_log)),
    )
    monitor = Monitor(root)
    try:
        monitor.check_all()
        with TestClient(create_monitor_app(monitor)) as client:
            resp = client.get("/metrics")
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/plain")
            assert "version=0.0.4" in resp.headers["content-type"]
            text = resp.text
            assert text.endswith("\n")
            samples = {}
            for line in text.splitlines():
                if line.startswith("#"):
                    assert re.match(r"^# (HELP|TYPE) [a-z_]+ .+$", line), line
                    continue
                assert _SAMPLE.match(line), line
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
            assert samples['overt_monitor_tree_size{log="good"}'] == 300
            assert samples['overt_monitor_entries_checked{log="good"}'] == 300
            assert samples['overt_monitor_entries_checked{log="bad"}'] == 0
            assert samples['overt_monitor_alerts_total{log="bad",kind="bad-tile"}'] == 1
            assert samples['overt_monitor_last_check_timestamp_seconds{log="good"}'] > 0
            types = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
            assert dict(types) == {
                "overt_monitor_tree_size": "gauge",
                "overt_monitor_entries_checked": "counter",
                "overt_monitor_last_check_timestamp_seconds": "gauge",
                "overt_monitor_alerts_total": "counter",
                "overt_monitor_entries_by_type": "counter",
            }
            assert samples['overt_monitor_entries_by_type{log="good",type="t"}'] == 300

            status = client.get("/status").json()
            by_name = {entry["name"]: entry for entry in status["logs"]}
            assert by_name["good"]["size"] == 300
            assert by_name["good"]["entry_types"] == {"t": 300}
            assert by_name["bad"]["entries_checked"] == 0
            (alert,) = status["alerts"]
            assert alert["log"] == "bad" and alert["kind"] == "bad-tile"
    finally:
        monitor.close()


# --- overt tlog compare ----------------------------------------------------


def test_tlog_compare_cli(tmp_path: Path) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    make_log(a_dir)
    twin_log(a_dir, b_dir)
    add(a_dir, [b"a %d" % i for i in range(5)])
    cp5 = tmp_path / "a5"
    cp5.write_bytes((a_dir / "tiles" / "checkpoint").read_bytes())
    add(a_dir, [b"a %d" % i for i in range(5, 20)])
    cp20 = tmp_path / "a20"
    cp20.write_bytes((a_dir / "tiles" / "checkpoint").read_bytes())
    again20 = tmp_path / "a20-again"
    again20.write_bytes(cp20.read_bytes())
    add(b_dir, [b"b %d" % i for i in range(20)])
    fork20 = tmp_path / "b20"
    fork20.write_bytes((b_dir / "tiles" / "checkpoint").read_bytes())
    key = vkey_of(a_dir)

    def compare(*args: str | Path) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*OVERT, "tlog", "compare", *map(str, args), "--log-key", key],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    proc = compare(cp20, again20)
    assert proc.returncode == 0, proc.stderr
    assert "identical" in proc.stdout
    proc = compare(cp5, cp20, "--tiles", a_dir)
    assert proc.returncode == 0, proc.stderr
    assert "consistent" in proc.stdout
    proc = compare(cp20, fork20)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "FORK" in proc.stderr
    proc = compare(cp5, fork20, "--tiles", a_dir)  # B at 20 is not in A's tree
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    proc = compare(cp5, cp20)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "--tiles" in proc.stderr


def test_entry_types_name_attestations_and_make_targeting_and_failures_visible() -> None:
    from overt.crypto.intoto import Statement, Subject
    from overt.crypto.keys import Ed25519Signer
    from overt.monitor.monitor import entry_type

    signer = Ed25519Signer.generate("vendor.example")
    subject = [Subject("bundle.tar.gz", {"sha256": "ab" * 32})]

    def envelope(ptype: str, predicate: dict[str, object]) -> bytes:
        return Statement(subject, ptype, predicate).sign([signer]).to_bytes()

    ruleset = "https://overt.dev/rules/ruleset/v1"
    vsa = "https://slsa.dev/verification_summary/v1"
    assert entry_type(envelope(ruleset, {"targeted": []})) == "ruleset"
    assert entry_type(envelope(ruleset, {"targeted": ["Only_Gov"]})) == "ruleset-targeted"
    assert entry_type(envelope(vsa, {"verificationResult": "FAILED"})) == "vsa-failed"
    assert entry_type(envelope("https://slsa.dev/provenance/v1", {})) == "provenance"
    assert entry_type(envelope("https://example.com/other", {})) == "in-toto"
    assert entry_type(b'{"payloadType": 1}') == "envelope"
    assert entry_type(b"\xff") == "opaque"

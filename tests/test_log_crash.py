"""Crash safety: kill -9 the log server at random moments while clients add.

After every restart: each acknowledged add is in the log at the index it was
acknowledged with, no entry appears twice, the published checkpoint never went
backwards, and at the end `overt log verify` recomputes the whole log.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import drivers
from log_server import free_port, start_log_server
from overt.crypto.keys import ed25519_verifier
from overt.log.config import LogConfig
from overt.log.log import init_log
from overt.log.remote import http_fetcher
from overt.tlog.checkpoint import open_checkpoint
from overt.tlog.client import LogClient

OVERT = [sys.executable, "-m", "overt.cli"]
ROUNDS = 20
ROUNDS_POSTGRES = 8  # fewer: tests/test_log_failover.py kills PostgreSQL front ends too
CLIENTS = 6

# Each test runs on both storage drivers (tests/drivers.py).
pytestmark = pytest.mark.usefixtures("database")


def test_kill_9_never_loses_acknowledged_entries(tmp_path: Path) -> None:
    rng = random.Random(1234)
    log_dir = tmp_path / "log"
    vkey = init_log(
        log_dir,
        LogConfig(
            origin="crash.example/log",
            integration_period_ms=40,
            sequence_linger_ms=2,
            sequence_batch=64,
            database=drivers.DATABASE,
        ),
    )
    rounds = ROUNDS_POSTGRES if drivers.postgres() else ROUNDS
    verifier = ed25519_verifier(vkey)
    token = (log_dir / "secrets" / "write-token").read_text().strip()
    acked: dict[bytes, int] = {}
    acked_lock = threading.Lock()
    sizes_seen: list[int] = []
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    for round_no in range(rounds):
        server = start_log_server(log_dir, port, ready="/checkpoint")
        stop = threading.Event()

        def client(worker: int, round_no: int = round_no, stop: threading.Event = stop) -> None:
            n = 0
            with httpx.Client(base_url=base, timeout=5) as http:
                while not stop.is_set():
                    entry = f"round {round_no} worker {worker} entry {n}".encode()
                    n += 1
                    try:
                        resp = http.post(
                            "/add",
                            content=entry,
                            params={"wait": "true"} if n % 5 == 0 else None,
                            headers={"Authorization": f"Bearer {token}"},
                        )
                    except httpx.TransportError:
                        continue  # the server died before acknowledging: not acked
                    if resp.status_code == 200:
                        with acked_lock:
                            acked[entry] = resp.json()["index"]
                    # The same entry again must get the same index.
                    if n % 7 == 0 and resp.status_code == 200:
                        try:
                            again = http.post(
                                "/add", content=entry, headers={"Authorization": f"Bearer {token}"}
                            )
                        except httpx.TransportError:
                            continue
                        if again.status_code == 200:
                            assert again.json()["index"] == resp.json()["index"]

        def watcher(stop: threading.Event = stop) -> None:
            with httpx.Client(base_url=base, timeout=2) as http:
                while not stop.is_set():
                    try:
                        resp = http.get("/checkpoint")
                    except httpx.TransportError:
                        continue
                    if resp.status_code == 200:
                        cp = open_checkpoint(resp.content, verifier).checkpoint
                        sizes_seen.append(cp.size)
                    time.sleep(0.01)

        threads = [threading.Thread(target=client, args=(w,)) for w in range(CLIENTS)]
        threads.append(threading.Thread(target=watcher))
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.1, 0.8))
        server.send_signal(signal.SIGKILL)
        server.wait()
        stop.set()
        for t in threads:
            t.join()

    # Restart once more and let it integrate everything that was sequenced.
    server = start_log_server(log_dir, port, ready="/checkpoint")
    try:
        client = LogClient(http_fetcher(base), log_key=verifier)
        want = max(acked.values()) + 1
        deadline = time.monotonic() + 30
        while client.update().size < want:
            assert time.monotonic() < deadline, "acknowledged entries were never integrated"
            time.sleep(0.05)
        logged = dict(client.entries())
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)

    assert len(acked) > rounds  # the test did add things
    for entry, index in acked.items():
        assert logged[index] == entry, f"acknowledged entry lost or moved: {entry!r} at {index}"
    assert len(set(logged.values())) == len(logged), "an entry was logged twice"
    assert sizes_seen == sorted(sizes_seen), "the published checkpoint went backwards"
    proc = subprocess.run(
        [*OVERT, "log", "verify", str(log_dir)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr

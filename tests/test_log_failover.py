"""Failover with PostgreSQL: two front ends share a log; the integrator dies, the other takes over.

Two `overt log serve` processes run on one log directory whose sequencing
state is in PostgreSQL. Clients add through both (single adds, some waiting
for a checkpoint, and batches). Several times, the front end holding the
integration lock is killed with SIGKILL in the middle of a large batch; the
other must take the lock and publish within seconds, and the killed one is
restarted (and follows). Throughout, a watcher follows the published
checkpoint with a verifying client: it must never go backwards nor fork. At
the end every acknowledged entry is in the log at the index it was
acknowledged with, no entry is logged twice, and `overt log verify` passes.
"""

from __future__ import annotations

import base64
import contextlib
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from log_server import free_port, start_log_server
from overt.crypto.keys import ed25519_verifier
from overt.errors import OvertError
from overt.log.config import LogConfig
from overt.log.log import init_log
from overt.log.remote import directory_fetcher, http_fetcher
from overt.tlog.client import LogClient

OVERT = [sys.executable, "-m", "overt.cli"]
KILLS = 3
CLIENTS = 4
TAKEOVER_LIMIT_S = 10.0  # the lock is retried every second; the rest is slack for a busy CI
BIG_BATCH = 5000


def _status(port: int) -> dict[str, Any] | None:
    try:
        resp = httpx.get(f"http://127.0.0.1:{port}/status", timeout=2)
    except httpx.TransportError:
        return None
    return resp.json() if resp.status_code == 200 else None


def _integrator(ports: list[int], alive: set[int], timeout: float) -> tuple[int, float]:
    """Which live front end integrates, and how long it took to find one."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for k in sorted(alive):
            status = _status(ports[k])
            if status is not None and status["integrating"]:
                return k, time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError(f"no front end took the integration lock within {timeout} s")


def test_killing_the_integrator_mid_batch_loses_nothing(tmp_path: Path, pg_database: str) -> None:
    rng = random.Random(4321)
    log_dir = tmp_path / "log"
    vkey = init_log(
        log_dir,
        LogConfig(
            origin="failover.example/log",
            integration_period_ms=100,
            sequence_linger_ms=2,
            sequence_batch=256,
            database=pg_database,
        ),
    )
    verifier = ed25519_verifier(vkey)
    token = (log_dir / "secrets" / "write-token").read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    ports = [free_port(), free_port()]
    procs = {k: start_log_server(log_dir, ports[k]) for k in (0, 1)}
    alive = {0, 1}
    acked: dict[bytes, int] = {}
    acked_lock = threading.Lock()
    failures: list[str] = []
    sizes_seen: list[int] = []
    stop = threading.Event()

    def ack(entries: list[bytes], indexes: list[int]) -> None:
        with acked_lock:
            for e, i in zip(entries, indexes, strict=True):
                if acked.setdefault(e, i) != i:
                    failures.append(f"{e!r} acknowledged at {acked[e]} and at {i}")

    def client(worker: int) -> None:
        n = 0
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=10) for p in ports]
        try:
            while not stop.is_set():
                n += 1
                http = clients[(worker + n) % 2]
                entry = f"worker {worker} entry {n}".encode()
                try:
                    if n % 10 == 0:
                        batch = [entry + b" batch %d" % i for i in range(50)]
                        resp = http.post(
                            "/add-batch",
                            json={"entries": [base64.b64encode(e).decode() for e in batch]},
                            headers=auth,
                        )
                        if resp.status_code == 200:
                            ack(batch, resp.json()["indexes"])
                        continue
                    wait = n % 4 == 0
                    resp = http.post(
                        "/add",
                        content=entry,
                        params={"wait": "true"} if wait else None,
                        headers=auth,
                    )
                except httpx.TransportError:
                    time.sleep(0.01)
                    continue  # that front end died before answering: not acknowledged
                if resp.status_code == 200:
                    body = resp.json()
                    ack([entry], [body["index"]])
                    if wait and (body.get("size") or 0) <= body["index"]:
                        failures.append(f"wait=true answered without a covering checkpoint: {body}")
                    # The same entry through the other front end keeps its index.
                    if n % 7 == 0:
                        try:
                            again = clients[(worker + n + 1) % 2].post(
                                "/add", content=entry, headers=auth
                            )
                        except httpx.TransportError:
                            continue
                        if again.status_code == 200 and again.json()["index"] != body["index"]:
                            failures.append(f"{entry!r} got {again.json()} the second time")
        finally:
            for c in clients:
                c.close()

    def watcher() -> None:
        follower = LogClient(directory_fetcher(log_dir / "tiles"), log_key=verifier)
        while not stop.is_set():
            try:
                sizes_seen.append(follower.update().size)
            except OvertError as exc:  # backwards, fork, bad signature, torn file...
                failures.append(f"published checkpoint refused: {exc}")
            time.sleep(0.02)

    threads = [threading.Thread(target=client, args=(w,)) for w in range(CLIENTS)]
    threads.append(threading.Thread(target=watcher))
    for t in threads:
        t.start()
    takeovers: list[float] = []
    try:
        for _ in range(KILLS):
            leader, _ = _integrator(ports, alive, TAKEOVER_LIMIT_S)
            time.sleep(rng.uniform(0.3, 0.8))
            # Mid-batch: a large batch is being sequenced and integrated when the kill lands.
            big = [b"big %d %d" % (len(takeovers), i) for i in range(BIG_BATCH)]
            big_answer: list[httpx.Response] = []

            def post_big(
                port: int = ports[leader],
                big: list[bytes] = big,
                out: list[httpx.Response] = big_answer,
            ) -> None:
                with contextlib.suppress(httpx.TransportError):  # killed: no answer
                    out.append(
                        httpx.post(
                            f"http://127.0.0.1:{port}/add-batch?wait=true",
                            json={"entries": [base64.b64encode(e).decode() for e in big]},
                            headers=auth,
                            timeout=30,
                        )
                    )

            poster = threading.Thread(target=post_big)
            poster.start()
            time.sleep(rng.uniform(0.05, 0.25))
            procs[leader].send_signal(signal.SIGKILL)
            procs[leader].wait()
            alive.discard(leader)
            poster.join()
            if big_answer and big_answer[0].status_code == 200:
                ack(big, big_answer[0].json()["indexes"])
            before = max(sizes_seen, default=0)
            successor, took = _integrator(ports, alive, TAKEOVER_LIMIT_S)
            assert successor != leader
            takeovers.append(took)
            # The successor publishes: the checkpoint moves on under load.
            deadline = time.monotonic() + TAKEOVER_LIMIT_S
            while max(sizes_seen, default=0) <= before:
                assert time.monotonic() < deadline, "no checkpoint published after the takeover"
                time.sleep(0.02)
            procs[leader] = start_log_server(log_dir, ports[leader])
            alive.add(leader)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    print(f"takeover after kill -9: {', '.join(f'{s:.2f} s' for s in takeovers)}")
    try:
        assert not failures, failures[:5]
        assert len(acked) > 100
        # Every acknowledged entry is published, through either front end.
        want = max(acked.values()) + 1
        for port in ports:
            reader = LogClient(http_fetcher(f"http://127.0.0.1:{port}"), log_key=verifier)
            deadline = time.monotonic() + 30
            while reader.update().size < want:
                assert time.monotonic() < deadline, "acknowledged entries were never published"
                time.sleep(0.05)
        logged = dict(reader.entries())
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGINT)
        for proc in procs.values():
            proc.wait(timeout=30)
    for entry, index in acked.items():
        assert logged.get(index) == entry, f"acknowledged entry lost or moved: {entry!r} at {index}"
    assert len(set(logged.values())) == len(logged), "an entry was logged twice"
    assert sizes_seen == sorted(sizes_seen), "the published checkpoint went backwards"
    proc = subprocess.run(
        [*OVERT, "log", "verify", str(log_dir)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_an_idle_follower_takes_over_within_seconds(
    tmp_path: Path, pg_database: str, stop: int
) -> None:
    """With no load at all, the follower still notices and takes the lock (about a second)."""
    log_dir = tmp_path / "log"
    init_log(log_dir, LogConfig(origin="idle.example/log", database=pg_database))
    ports = [free_port(), free_port()]
    procs = [start_log_server(log_dir, ports[0])]
    first, _ = _integrator(ports, {0}, TAKEOVER_LIMIT_S)
    procs.append(start_log_server(log_dir, ports[1]))
    try:
        assert first == 0
        assert _status(ports[1])["integrating"] is False  # type: ignore[index]
        procs[0].send_signal(stop)
        procs[0].wait(timeout=30)
        successor, took = _integrator(ports, {1}, TAKEOVER_LIMIT_S)
        assert successor == 1 and took < 5.0
        token = (log_dir / "secrets" / "write-token").read_text().strip()
        resp = httpx.post(
            f"http://127.0.0.1:{ports[1]}/add?wait=true",
            content=b"after the takeover",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert resp.status_code == 200 and resp.json()["size"] == 1, resp.text
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=30)

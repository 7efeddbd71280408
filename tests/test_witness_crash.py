"""Crash safety of the witness: kill -9 `overt witness serve` while logs submit checkpoints.

Several clients submit add-checkpoint requests for a growing log (learning the
witness's size from 409 answers, with consistency proofs from the log); one
more submits checkpoints of a fork signed with the same key. The test kills
the witness with SIGKILL at random moments and restarts it. Afterwards:

* the witness's record holds at most one root per size, only roots of the
  honest log, and never went backwards;
* every cosignature a client received verifies, is for a tree consistent with
  the final log, and was persisted before it was sent (it is in the record);
* no checkpoint of the fork was ever cosigned.
"""

from __future__ import annotations

import base64
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from overt.crypto.keys import Ed25519Signer
from overt.crypto.note import open_note
from overt.tlog.checkpoint import Checkpoint, sign_checkpoint
from overt.tlog.cosignature import CosignatureVerifier, cosignature_timestamp
from overt.tlog.merkle import MemoryTree, consistency_proof, verify_consistency
from overt.witness.store import WitnessStore
from overt.witness.witness import Witness, init_witness

OVERT = [sys.executable, "-m", "overt.cli"]
ORIGIN = "crash.example/witnessed"
KILLS = 10
CLIENTS = 3
LOG_SIZE = 2000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Branch:
    def __init__(self, signer: Ed25519Signer, seed: str) -> None:
        self.signer = signer
        self.tree = MemoryTree()
        self.tree.extend([f"{seed} {i}".encode() for i in range(LOG_SIZE)])
        self._signed: dict[int, str] = {}
        self._lock = threading.Lock()

    def signed(self, size: int) -> str:
        with self._lock:
            if size not in self._signed:
                cp = Checkpoint(ORIGIN, size, self.tree.root(size))
                self._signed[size] = sign_checkpoint(cp, [self.signer])
            return self._signed[size]

    def body(self, old: int, size: int) -> bytes:
        with self._lock:
            proof = consistency_proof(self.tree, old, size) if 0 < old < size else []
        lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
        return ("\n".join(lines) + "\n\n" + self.signed(size)).encode()


def _start(wdir: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [*OVERT, "witness", "serve", str(wdir), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=1) as http:
        while True:
            try:
                if http.get(f"http://127.0.0.1:{port}/status").status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"witness exited: {err}")
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("witness did not start")
            time.sleep(0.02)


def test_kill_9_never_breaks_the_witness_promise(tmp_path: Path) -> None:
    rng = random.Random(20240607)
    wdir = tmp_path / "witness"
    vkey = init_witness(wdir, "witness.example/crash")
    verifier = CosignatureVerifier(vkey)
    signer = Ed25519Signer.generate(ORIGIN)
    honest = Branch(signer, "honest")
    fork = Branch(signer, "fork")
    witness = Witness(wdir)
    try:
        witness.add_log(ORIGIN, [str(signer.verifier_key())])
        # Seed: the witness knows the honest log before the fork shows up,
        # so the fork can never be consistent with what it saw.
        witness.add_checkpoint(honest.body(0, 1))
    finally:
        witness.close()

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_size = [1]  # the honest log grows while the test runs
    received: list[tuple[int, str, str]] = []  # (size, submitted checkpoint, 200 answer)
    fork_cosigned: list[int] = []
    unexpected: list[str] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def note(status: int) -> None:
        with lock:
            statuses[status] = statuses.get(status, 0) + 1

    def grower() -> None:
        local = random.Random(7)
        while not stop.is_set() and log_size[0] < LOG_SIZE:
            log_size[0] = min(LOG_SIZE, log_size[0] + local.randint(1, 8))
            time.sleep(0.02)

    def client(worker: int) -> None:
        local = random.Random(worker)
        old = 0
        with httpx.Client(base_url=base, timeout=3) as http:
            while not stop.is_set():
                size = log_size[0]
                if local.random() < 0.1:
                    old = 0  # like a log that restarted and forgot
                if old > size:
                    unexpected.append(f"witness size {old} beyond the log's {size}")
                    return
                body = honest.body(old, size)
                try:
                    resp = http.post("/add-checkpoint", content=body)
                except httpx.TransportError:
                    time.sleep(0.02)
                    continue
                note(resp.status_code)
                if resp.status_code == 200:
                    with lock:
                        received.append((size, honest.signed(size), resp.text))
                    old = size
                elif resp.status_code == 409:
                    old = int(resp.text)
                else:
                    unexpected.append(f"honest {old}->{size}: {resp.status_code} {resp.text}")
                time.sleep(0.02)

    def attacker() -> None:
        local = random.Random(99)
        old = 0
        with httpx.Client(base_url=base, timeout=3) as http:
            while not stop.is_set():
                # The witness's own size (a different root there) or beyond it.
                size = old if local.random() < 0.5 else local.randint(max(old, 1), LOG_SIZE)
                try:
                    resp = http.post("/add-checkpoint", content=fork.body(old, max(size, 1)))
                except httpx.TransportError:
                    time.sleep(0.02)
                    continue
                note(resp.status_code)
                if resp.status_code == 200:
                    fork_cosigned.append(size)
                elif resp.status_code == 409:
                    old = int(resp.text)
                elif resp.status_code not in (400, 422):
                    unexpected.append(f"fork {old}->{size}: {resp.status_code} {resp.text}")
                time.sleep(0.02)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    threads += [threading.Thread(target=attacker), threading.Thread(target=grower)]
    for t in threads:
        t.start()
    kills = 0
    try:
        for _ in range(KILLS):
            server = _start(wdir, port)
            time.sleep(rng.uniform(0.05, 0.35))
            server.send_signal(signal.SIGKILL)
            server.wait()
            if server.stderr:
                server.stderr.close()
            kills += 1
    finally:
        stop.set()
        for t in threads:
            t.join()

    assert kills >= 10
    assert not unexpected, unexpected[:5]
    assert not fork_cosigned, f"the witness cosigned the fork at sizes {fork_cosigned}"
    assert len(received) > KILLS, f"too few cosignatures to mean anything: {statuses}"
    assert statuses.get(409, 0) > 0 and statuses.get(422, 0) > 0, statuses
    print(f"{kills} kills, answers by status: {statuses}")

    # The witness's durable record.
    db = sqlite3.connect(wdir / "witness.db")
    try:
        rows = db.execute(
            "SELECT size, root FROM cosigned WHERE origin = ? ORDER BY id", (ORIGIN,)
        ).fetchall()
        per_size = db.execute(
            "SELECT size, COUNT(DISTINCT root) FROM cosigned WHERE origin = ? GROUP BY size "
            "HAVING COUNT(DISTINCT root) > 1",
            (ORIGIN,),
        ).fetchall()
    finally:
        db.close()
    assert per_size == [], f"two roots for one size: {per_size}"
    sizes = [int(size) for size, _ in rows]
    assert sizes == sorted(sizes) and len(sizes) == len(set(sizes)), "the witness went backwards"
    for size, root in rows:
        assert bytes(root) == honest.tree.root(int(size)), f"size {size} is not the honest root"
    store = WitnessStore(wdir / "witness.db")
    try:
        view = store.log(ORIGIN)
    finally:
        store.close()
    assert view is not None
    assert view.size == sizes[-1] and view.root == honest.tree.root(view.size)

    final = honest.tree.size
    final_root = honest.tree.root()
    recorded = set(sizes)
    for size, signed, answer in received:
        text = signed[: signed.rindex("\n\n") + 1]
        note_ = open_note(text + "\n" + answer, [verifier])
        assert cosignature_timestamp(note_.verified[0].signature) > 0
        cp = Checkpoint.parse(note_.text)
        assert cp.size == size
        # Persisted before it was sent: a kill -9 right after cannot undo it.
        assert size in recorded, f"cosigned size {size} is not in the witness's record"
        assert size <= view.size
        if 0 < size < final:
            proof = consistency_proof(honest.tree, size, final)
            verify_consistency(size, final, cp.root_hash, final_root, proof)
        else:
            assert cp.root_hash == honest.tree.root(size)

"""A log that publishes a checkpoint only once a quorum of real witnesses cosigned it.

The witnesses are `overt witness serve` subprocesses on free ports; the log
runs in-process (`Log.integrate`) or as an `overt log serve` subprocess when a
restart must be a new process.
"""

from __future__ import annotations

import base64
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

import drivers
from overt.crypto.keys import ed25519_verifier
from overt.errors import VerificationError
from overt.log.config import LogConfig, load_config
from overt.log.log import Log, LogError, init_log
from overt.tlog.checkpoint import open_checkpoint
from overt.tlog.hashing import leaf_hash
from overt.tlog.policy import Policy, VerifiedCheckpoint
from overt.tlog.witness import origin_hash
from overt.witness.witness import Witness, init_witness

OVERT = [sys.executable, "-m", "overt.cli"]
POLICY_FILE = "witnesses.tlog-policy"

# Each test runs on both storage drivers (tests/drivers.py).
pytestmark = pytest.mark.usefixtures("database")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"{what} exited: {err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{what} did not start")
        time.sleep(0.03)


@dataclass
class WitnessProc:
    name: str  # the name in the policy
    dir: Path
    vkey: str
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        assert self.proc is None
        self.proc = subprocess.Popen(
            [*OVERT, "witness", "serve", str(self.dir), "--listen", f"127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait_ready(self) -> None:
        assert self.proc is not None
        wait_http(f"{self.url}/status", self.proc, f"witness {self.name}")

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None

    def size_of(self, origin: str) -> int:
        doc = httpx.get(f"{self.url}/status", timeout=5).json()
        sizes = [entry["size"] for entry in doc["logs"] if entry["origin"] == origin]
        assert sizes, doc
        return int(sizes[0])

    def latest(self, origin: str) -> httpx.Response:
        return httpx.get(f"{self.url}/{origin_hash(origin)}/checkpoint", timeout=5)


@dataclass
class Witnesses:
    all: list[WitnessProc] = field(default_factory=list)

    def __getitem__(self, name: str) -> WitnessProc:
        return next(w for w in self.all if w.name == name)

    def start(self, *names: str) -> None:
        chosen = [self[n] for n in names] if names else self.all
        for w in chosen:
            w.spawn()
        for w in chosen:
            w.wait_ready()

    def stop_all(self) -> None:
        for w in self.all:
            w.stop()


@pytest.fixture
def witnesses(tmp_path: Path) -> Iterator[Witnesses]:
    ws = Witnesses()
    for i in (1, 2, 3):
        wdir = tmp_path / f"witness{i}"
        vkey = init_witness(wdir, f"witness.example/w{i}")
        ws.all.append(WitnessProc(f"w{i}", wdir, vkey, free_port()))
    try:
        yield ws
    finally:
        ws.stop_all()


def trust_log(ws: Witnesses, origin: str, log_vkey: str) -> None:
    for w in ws.all:
        witness = Witness(w.dir)
        try:
            witness.add_log(origin, [log_vkey])
        finally:
            witness.close()


def policy_text(log_vkey: str, ws: list[WitnessProc], quorum_lines: str) -> str:
    lines = [f"log {log_vkey}"]
    lines += [f"witness {w.name} {w.vkey} {w.url}" for w in ws]
    return "\n".join(lines) + "\n" + quorum_lines


def make_witnessed_log(root: Path, origin: str, **settings: int) -> str:
    """A log whose config names DIR/witnesses.tlog-policy (to be written after init)."""
    return init_log(
        root,
        LogConfig(
            origin=origin,
            witness_policy=POLICY_FILE,
            database=drivers.DATABASE,
            **settings,  # type: ignore[arg-type]
        ),
    )


def published(log_dir: Path, policy: Policy) -> VerifiedCheckpoint:
    """The checkpoint on disk, as a customer with the policy would accept it."""
    return policy.verify_checkpoint((log_dir / "tiles" / "checkpoint").read_bytes())


# --- in-process log --------------------------------------------------------

ORIGIN = "example.com/overt/witnessed-log"


def test_publishes_only_once_the_quorum_cosigned(tmp_path: Path, witnesses: Witnesses) -> None:
    log_dir = tmp_path / "log"
    # Quorum: w1 and w2 both; w3 is asked too but is outside the quorum.
    vkey = make_witnessed_log(log_dir, ORIGIN, witness_timeout_ms=1000)
    text = policy_text(vkey, witnesses.all, "group core all w1 w2\nquorum core\n")
    (log_dir / POLICY_FILE).write_text(text)
    policy = Policy.parse(text)
    trust_log(witnesses, ORIGIN, vkey)
    witnesses.start()
    n = 0

    def add(count: int, log: Log) -> list[int]:
        nonlocal n
        indexes, _ = log.add([f"entry {n + i}".encode() for i in range(count)])
        n += count
        return indexes

    with Log(log_dir) as log:
        # 1. Everyone up: published, cosigned by all three.
        add(10, log)
        assert log.checkpoint.size == 10
        v = published(log_dir, policy)
        assert v.checkpoint.size == 10
        assert set(v.cosigners) == {"w1", "w2", "w3"}
        assert all(ts > 0 for ts in v.cosigners.values())
        assert log.witness_errors == {}
        assert log.signed_checkpoint() == (log_dir / "tiles" / "checkpoint").read_bytes()
        for w in witnesses.all:
            resp = w.latest(ORIGIN)
            assert resp.status_code == 200
            opened = open_checkpoint(resp.text, ed25519_verifier(vkey))
            assert opened.checkpoint == v.checkpoint

        # 2. w3 (outside the quorum) down: publishing goes on without it.
        witnesses["w3"].stop()
        add(5, log)
        assert log.checkpoint.size == 15
        v = published(log_dir, policy)
        assert v.checkpoint.size == 15 and set(v.cosigners) == {"w1", "w2"}
        assert set(log.witness_errors) == {"w3"}

        # 2b. w3 hangs (accepts connections, never answers): publication is
        # delayed by at most the witness timeout, not blocked.
        with socket.socket() as hang:
            hang.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            hang.bind(("127.0.0.1", witnesses["w3"].port))
            hang.listen(16)
            started = time.monotonic()
            add(1, log)
            took = time.monotonic() - started
        assert log.checkpoint.size == 16
        assert 0.9 <= took < 4, f"a hanging witness delayed publication by {took:.1f}s"
        assert published(log_dir, policy).checkpoint.size == 16

        # 3. w2 down too: the quorum is unreachable. Adds are still sequenced
        # and acknowledged; the public checkpoint stays where it was.
        witnesses["w2"].stop()
        before = (log_dir / "tiles" / "checkpoint").read_bytes()
        indexes = add(4, log)
        assert indexes == [16, 17, 18, 19]
        assert log.sequenced_size() == 20
        assert log.checkpoint.size == 16
        assert log.integrate().size == 16  # a retry does not publish either
        assert (log_dir / "tiles" / "checkpoint").read_bytes() == before
        assert "w2" in log.witness_errors
        assert log.entry(18) == b"entry 18"  # readable while pending
        assert log.lookup(leaf_hash(b"entry 18")) == 18
        # w1 saw size 20 (it answered), but that alone is not the quorum.
        assert witnesses["w1"].size_of(ORIGIN) == 20
        # What w1 cosigned is not acceptable to a customer on its own.
        only_w1 = witnesses["w1"].latest(ORIGIN).text
        assert open_checkpoint(only_w1, ed25519_verifier(vkey)).checkpoint.size == 20
        with pytest.raises(VerificationError, match="quorum"):
            policy.verify_checkpoint(only_w1)

        # 4. w2 back: the next integration catches up to everything sequenced.
        witnesses["w2"].start()
        assert log.integrate().size == 20
        v = published(log_dir, policy)
        assert v.checkpoint.size == 20 and {"w1", "w2"} <= set(v.cosigners)
        assert witnesses["w2"].size_of(ORIGIN) == 20

        # 5. w3 back after missing several checkpoints: brought up to date with
        # a consistency proof from the size it last cosigned.
        witnesses["w3"].start()
        add(3, log)
        v = published(log_dir, policy)
        assert v.checkpoint.size == 23 and set(v.cosigners) == {"w1", "w2", "w3"}
        assert log.witness_errors == {}
        for w in witnesses.all:
            assert w.size_of(ORIGIN) == 23


def test_an_idle_log_has_its_checkpoint_cosigned_again(
    tmp_path: Path, witnesses: Witnesses
) -> None:
    """Clients that refuse old cosignatures (freeze protection) keep accepting an idle log."""
    log_dir = tmp_path / "log"
    vkey = make_witnessed_log(log_dir, ORIGIN, witness_timeout_ms=1000, witness_refresh_ms=1000)
    text = policy_text(vkey, witnesses.all, "group core all w1 w2\nquorum core\n")
    (log_dir / POLICY_FILE).write_text(text)
    policy = Policy.parse(text)
    trust_log(witnesses, ORIGIN, vkey)
    witnesses.start()
    with Log(log_dir) as log:
        log.add([b"only entry"])
        first = published(log_dir, policy)
        log.integrate()  # nothing new and cosigned just now: nothing happens
        assert published(log_dir, policy).cosigners == first.cosigners
        time.sleep(2.1)  # cosignature timestamps have a resolution of a second
        log.integrate()  # idle longer than witness_refresh_ms: cosigned again
        again = published(log_dir, policy)
    assert again.checkpoint == first.checkpoint
    assert set(again.cosigners) == {"w1", "w2", "w3"}
    assert all(again.cosigners[w] > first.cosigners[w] for w in again.cosigners)


def test_log_refuses_to_open_without_its_policy_file(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    make_witnessed_log(log_dir, ORIGIN)
    with pytest.raises(LogError, match="policy"):
        Log(log_dir)


# --- the log as a process: restart, 409 resync --------------------------------

RESTART_ORIGIN = "example.com/overt/restarted-log"


class LogServer:
    def __init__(self, log_dir: Path) -> None:
        self.dir = log_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = (log_dir / "secrets" / "write-token").read_text().strip()
        self.vkey = (log_dir / "log.vkey").read_text().strip()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*OVERT, "log", "serve", str(self.dir), "--listen", f"127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_http(f"{self.url}/checkpoint", self.proc, "log server")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None

    def add(self, entries: list[bytes]) -> list[int]:
        resp = httpx.post(
            f"{self.url}/add-batch",
            json={"entries": [base64.b64encode(e).decode() for e in entries]},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        indexes: list[int] = resp.json()["indexes"]
        return indexes

    def checkpoint(self) -> bytes:
        resp = httpx.get(f"{self.url}/checkpoint", timeout=5)
        assert resp.status_code == 200
        return resp.content

    def wait_published(self, size: int, policy: Policy, timeout: float = 20) -> VerifiedCheckpoint:
        deadline = time.monotonic() + timeout
        log_key = ed25519_verifier(self.vkey)
        while True:
            signed = self.checkpoint()
            current = open_checkpoint(signed, log_key).checkpoint.size
            if current >= size:
                # Whatever the log publishes must satisfy the witness policy.
                return policy.verify_checkpoint(signed)
            assert time.monotonic() < deadline, f"checkpoint stuck at {current}, want {size}"
            time.sleep(0.05)


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*OVERT, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_restarted_log_resyncs_with_witnesses_through_409(
    tmp_path: Path, witnesses: Witnesses
) -> None:
    log_dir = tmp_path / "log"
    vkey = init_log(
        log_dir,
        LogConfig(origin=RESTART_ORIGIN, integration_period_ms=50, database=drivers.DATABASE),
    )
    ws = [witnesses["w1"], witnesses["w2"]]
    text = policy_text(vkey, ws, "group both all w1 w2\nquorum both\n")
    policy_path = tmp_path / "policy.txt"
    policy_path.write_text(text)
    proc = run("log", "set-witnesses", log_dir, policy_path)
    assert proc.returncode == 0, proc.stderr
    assert load_config(log_dir / "log.toml").witness_policy == POLICY_FILE
    assert (log_dir / POLICY_FILE).read_text() == text
    policy = Policy.parse(text)
    trust_log(witnesses, RESTART_ORIGIN, vkey)
    witnesses.start("w1", "w2")

    server = LogServer(log_dir)
    server.start()
    try:
        assert server.add([f"first {i}".encode() for i in range(40)]) == list(range(40))
        v = server.wait_published(40, policy)
        assert v.checkpoint.size == 40 and set(v.cosigners) == {"w1", "w2"}

        # w2 goes away; adds are acknowledged but the checkpoint stays at 40.
        witnesses["w2"].stop()
        assert server.add([f"second {i}".encode() for i in range(30)]) == list(range(40, 70))
        deadline = time.monotonic() + 10
        while witnesses["w1"].size_of(RESTART_ORIGIN) < 70:
            assert time.monotonic() < deadline, "w1 was never asked to cosign size 70"
            time.sleep(0.05)
        time.sleep(0.3)  # several integration periods
        assert policy.verify_checkpoint(server.checkpoint()).checkpoint.size == 40

        # The log crashes. The new process knows nothing of the witnesses'
        # sizes: w1 is at 70 (cosigned, never published), w2 at 40.
        server.kill()
        server.start()
        assert policy.verify_checkpoint(server.checkpoint()).checkpoint.size == 40
        # More adds while w2 is still down: w1 (at 70) is asked from its size.
        assert server.add([f"third {i}".encode() for i in range(15)]) == list(range(70, 85))
        deadline = time.monotonic() + 10
        while witnesses["w1"].size_of(RESTART_ORIGIN) < 85:
            assert time.monotonic() < deadline, "w1 was never brought from 70 to 85"
            time.sleep(0.05)
        assert policy.verify_checkpoint(server.checkpoint()).checkpoint.size == 40
        # w2 (at 40) comes back: the log learns its size from a 409 and publishes.
        witnesses["w2"].start()
        v = server.wait_published(85, policy)
        assert v.checkpoint.size == 85 and set(v.cosigners) == {"w1", "w2"}
        assert server.add([b"fourth"]) == [85]
        v = server.wait_published(86, policy)
        assert v.checkpoint.size == 86
        assert witnesses["w1"].size_of(RESTART_ORIGIN) == 86
        assert witnesses["w2"].size_of(RESTART_ORIGIN) == 86

        # Restart again with both witnesses ahead of size 0 (the log's guess).
        server.kill()
        server.start()
        assert server.add([b"fifth"]) == [86]
        v = server.wait_published(87, policy)
        assert v.checkpoint.size == 87
    finally:
        server.kill()
    proc = run("log", "verify", log_dir)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_set_witnesses_refuses_bad_policies(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    vkey = init_log(
        log_dir, LogConfig(origin="example.com/overt/set-witnesses", database=drivers.DATABASE)
    )
    other_vkey = init_log(
        tmp_path / "other", LogConfig(origin="example.com/overt/other", database=drivers.DATABASE)
    )
    w1 = init_witness(tmp_path / "w1", "witness.example/w1")
    w2 = init_witness(tmp_path / "w2", "witness.example/w2")
    config_before = (log_dir / "log.toml").read_bytes()
    cases = {
        "does not list the log": (
            f"log {other_vkey}\nwitness w1 {w1} http://127.0.0.1:1\nquorum w1\n",
            "does not list",
        ),
        "witness without URL": (
            f"log {vkey}\nwitness w1 {w1} http://127.0.0.1:1\nwitness w2 {w2}\n"
            "group g any w1 w2\nquorum g\n",
            "without a URL",
        ),
        "no witness": (f"log {vkey}\nquorum none\n", "no witness"),
        "not a policy": ("this is not a policy\n", "unknown keyword"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.policy"
        path.write_text(text)
        proc = run("log", "set-witnesses", log_dir, path)
        assert proc.returncode == 2, (name, proc.stdout, proc.stderr)
        assert message in " ".join(proc.stderr.split()), (name, proc.stderr)
        assert (log_dir / "log.toml").read_bytes() == config_before, name
        assert not (log_dir / POLICY_FILE).exists(), name

    # A good policy is accepted, but not while the log is open elsewhere.
    good = tmp_path / "good.policy"
    good.write_text(f"log {vkey}\nwitness w1 {w1} http://127.0.0.1:1\nquorum w1\n")
    with Log(log_dir):
        proc = run("log", "set-witnesses", log_dir, good)
        assert proc.returncode == 2, proc.stdout
        assert (log_dir / "log.toml").read_bytes() == config_before
    proc = run("log", "set-witnesses", log_dir, good)
    assert proc.returncode == 0, proc.stderr
    assert load_config(log_dir / "log.toml").witness_policy == POLICY_FILE
    proc = run("log", "set-witnesses", log_dir, "none")
    assert proc.returncode == 0, proc.stderr
    assert load_config(log_dir / "log.toml").witness_policy == ""


def test_set_witnesses_on_an_open_log_changes_nothing(tmp_path: Path) -> None:
    """Refused because the log is in use: neither the policy file nor the config may change."""
    from overt.crypto.keys import SIG_COSIGNATURE_V1, Ed25519Signer
    from overt.log.config import LogConfig
    from overt.log.log import Log, LogError, init_log, set_witness_policy

    log_dir = tmp_path / "log"
    vkey = init_log(log_dir, LogConfig(origin="example.com/open", database=drivers.DATABASE))
    witness = Ed25519Signer.generate("w.example/1", SIG_COSIGNATURE_V1).verifier_key()
    policy = f"log {vkey}\nwitness w1 {witness} http://127.0.0.1:9\nquorum w1\n".encode()
    config_before = (log_dir / "log.toml").read_bytes()
    with Log(log_dir), pytest.raises(LogError, match="in use"):
        set_witness_policy(log_dir, policy)
    assert not (log_dir / "witnesses.tlog-policy").exists()
    assert (log_dir / "log.toml").read_bytes() == config_before

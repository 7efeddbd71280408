"""Witness benchmark: tlog-witness add-checkpoint over HTTP, and log publication with witnesses.

Measures, durable throughout (the witness commits its view with SQLite
synchronous=FULL before it answers, as tlog-witness requires):

  1. add-checkpoint throughput of `overt witness serve` (a subprocess) on
     loopback. Every request is a 1,000-entry consistency step: `old 1000(i-1)`,
     the RFC 6962 consistency proof to 1000·i and the log-signed checkpoint of
     size 1000·i. The steps are cut from one tree of 1,000·K entries of 200
     random bytes (overt.tlog.merkle.MemoryTree) and signed beforehand, untimed.
     Requests for one log are sequential by nature (each old size is the
     previous checkpoint's size), so they go in order over one keep-alive
     connection -> cosignatures/s, latency p50/p99. Then several logs at once,
     one connection and one thread each -> aggregate cosignatures/s. A sample of
     the answers is verified with CosignatureVerifier (and a tampered one must
     fail), and the witness's final view of every log must be the last size sent;
  2. peers: the reference Go witness implementations are not installable here,
     so overt is compared with raw cost floors measured in the same run, right
     after phase 1: an empty FastAPI POST handler served by the same uvicorn
     stack (uvicorn.run, as `overt witness serve`) driven by the same client
     with the same requests, and an in-process `Witness.add_checkpoint(body)`
     loop (no HTTP) on the same requests;
  3. log publication latency: a log whose tlog-policy lists 2 witnesses (both
     `overt witness serve` subprocesses), quorum all; in-process `Log.add` of one
     entry (sequencing, tiles, checkpoint signed, cosigned by both witnesses,
     published) repeated N times -> p50/p99; the same on a log without witnesses,
     for the witnessing overhead.

Diagnostics (for the figures above, not targets): fdatasync latency on the work
file system (a short probe before every durable run too: on a shared VM it
varies by 10x from minute to minute, and every cosignature waits for one), the
in-process rate with SQLite synchronous=OFF (not durable: what the CPU alone
allows), a cProfile of in-process add_checkpoint, and the server's CPU per
request.

Targets (2-core machine, full size): add-checkpoint >= 1,000 cosignatures/s;
publication with 2 witnesses p50 <= 50 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import os
import pstats
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from common import (
    console,
    fmt_rate,
    fmt_ratio,
    print_table,
    summarize_ns,
    verdict,
    write_results,
)
from overt.crypto.keys import Ed25519Signer
from overt.crypto.note import split
from overt.errors import OvertError
from overt.log.config import LogConfig
from overt.log.log import Log, init_log
from overt.tlog.checkpoint import Checkpoint, sign_checkpoint
from overt.tlog.cosignature import CosignatureVerifier, cosignature_timestamp
from overt.tlog.merkle import MemoryTree, consistency_proof
from overt.tlog.policy import Policy
from overt.tlog.witness import AddCheckpointRequest
from overt.witness.witness import Witness, init_witness

ENTRY_SIZE = 200
STEP = 1_000  # entries between consecutive checkpoints
HOST = "127.0.0.1"
ORIGIN_BASE = "bench.overt.example/witnessed"
PUB_ORIGIN = "bench.overt.example/published-log"
POLICY_FILE = "witnesses.tlog-policy"
TARGET_COSIG_RATE = 1_000  # cosignatures/s, add-checkpoint over HTTP
TARGET_PUBLISH_P50_MS = 50.0  # Log.add of one entry -> cosigned checkpoint published

THIS_FILE = Path(__file__).resolve()
OVERT = [sys.executable, "-m", "overt.cli"]

PEERS_NOTE = (
    "peers: the reference Go witness implementations are not installable here, so the "
    "peers are raw cost floors measured in this run - (a) in-process "
    "Witness.add_checkpoint(body) on the same requests (no HTTP; same SQLite store, "
    "fsync per cosignature) and (b) an empty FastAPI POST handler (reads the body, returns "
    "a fixed cosignature-sized line) served by the same uvicorn stack (uvicorn.run, "
    "uvloop + httptools, as `overt witness serve`), driven by the same client."
)


@dataclass(frozen=True)
class Config:
    steps: int  # sequential chain: requests on one log, per round
    rounds: int  # overt, HTTP floor and in-process floor measured in turn, this many times
    warmup_steps: int
    parallel_logs: tuple[int, ...]
    parallel_steps: int  # requests per log in the parallel runs
    verify_every: int
    profile_calls: int  # in-process cProfile pass
    server_profile_calls: int  # requests to the witness server run under cProfile
    nosync_calls: int
    fsync_samples: int
    probe_samples: int  # fdatasync probe before each durable run
    adds: int  # phase 2, per log
    add_warmup: int
    seed: int
    workdir: Path | None
    quick: bool


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(prog="bench_witness", description="Witness benchmark")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument(
        "--steps", type=int, help="1,000-entry steps on the sequential log (default 1,000)"
    )
    parser.add_argument(
        "--parallel-logs",
        help="comma-separated numbers of logs driven at once (default 4,8; quick 4)",
    )
    parser.add_argument(
        "--parallel-steps", type=int, help="steps per log in the parallel runs (default 500)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="rounds of overt / HTTP floor / in-process floor, interleaved (default 3; quick 1)",
    )
    parser.add_argument(
        "--adds", type=int, help="Log.add([one entry]) calls per publication run (default 500)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="where to make the temporary directories")
    args = parser.parse_args(list(argv))
    quick = args.quick
    steps = args.steps or (150 if quick else 1_000)
    parallel_logs = (
        tuple(int(n) for n in args.parallel_logs.split(","))
        if args.parallel_logs
        else ((4,) if quick else (4, 8))
    )
    parallel_steps = args.parallel_steps or (60 if quick else 500)
    adds = args.adds or (60 if quick else 500)
    rounds = args.rounds or (1 if quick else 3)
    if (
        steps < 2
        or parallel_steps < 2
        or adds < 1
        or rounds < 1
        or any(n < 1 for n in parallel_logs)
    ):
        parser.error("need --steps, --parallel-steps >= 2 and --adds, --rounds, logs >= 1")
    return Config(
        steps=steps,
        rounds=rounds,
        warmup_steps=20 if quick else 100,
        parallel_logs=parallel_logs,
        parallel_steps=parallel_steps,
        verify_every=10 if quick else 25,
        profile_calls=min(steps, 100 if quick else 300),
        server_profile_calls=min(steps, 100 if quick else 500),
        nosync_calls=min(steps, 500),
        fsync_samples=50 if quick else 300,
        probe_samples=30 if quick else 100,
        adds=adds,
        add_warmup=5 if quick else 10,
        seed=args.seed,
        workdir=args.workdir,
        quick=quick,
    )


# --- helpers -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid`."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def fs_type(path: Path) -> str:
    """File system type of the mount holding `path` (fsync cost depends on it)."""
    best, kind = "", "?"
    target = str(path.resolve())
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            mount = parts[1]
            if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) > len(
                best
            ):
                best, kind = mount, parts[2]
    return kind


class OtherLoad:
    """Cores used by processes other than this benchmark (and the given pids) meanwhile."""

    def __init__(self, *pids: int) -> None:
        self._pids = pids
        self._t0 = time.perf_counter()
        self._sys0 = self._system_busy_s()
        self._own0 = self._own_s()

    @staticmethod
    def _system_busy_s() -> float:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def _own_s(self) -> float:
        total = self_cpu_s()
        for pid in self._pids:
            with contextlib.suppress(OSError):  # the process may have exited
                total += proc_cpu_s(pid)
        return total

    def stop(self) -> float:
        wall = time.perf_counter() - self._t0
        others = (self._system_busy_s() - self._sys0) - (self._own_s() - self._own0)
        return round(max(0.0, others) / wall, 2)


def ms(summary: dict[str, float], key: str) -> float:
    return summary[key] / 1000


def fmt_ms(value_ms: float) -> str:
    return f"{value_ms:,.1f} ms"


def fmt_p50_p99(summary: dict[str, float]) -> str:
    return f"{ms(summary, 'median_us'):,.2f} / {ms(summary, 'p99_us'):,.2f} ms"


# --- a minimal HTTP/1.1 keep-alive client --------------------------------------------


def encode_post(port: int, path: str, body: bytes) -> bytes:
    """A complete POST request, encoded before the clock starts."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


class HttpConn:
    """One keep-alive connection; requests pre-encoded, answers framed by Content-Length.

    A few tens of µs of Python per request, so the latencies are the server's.
    Overt's witness and the empty FastAPI floor are driven by this same client.
    """

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""

    def close(self) -> None:
        self.sock.close()

    def _fill(self, buf: bytes) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return buf + chunk

    def roundtrip(self, raw: bytes) -> tuple[int, bytes]:
        self.sock.sendall(raw)
        buf = self._buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf = self._fill(buf)
        lines = buf[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None:
            raise ConnectionError(f"answer without Content-Length: {lines[0]}")
        start = end + 4
        while len(buf) - start < length:
            buf = self._fill(buf)
        self._buf = buf[start + length :]
        return status, buf[start : start + length]


@dataclass
class ChainResult:
    latencies_ns: list[int] = field(default_factory=list)
    status: Counter[int] = field(default_factory=Counter)
    kept: dict[int, bytes] = field(default_factory=dict)  # step index -> answer body
    t_start: float = 0.0
    t_end: float = 0.0
    error: str | None = None


def run_chain(
    port: int,
    requests: Sequence[bytes],
    keep: set[int],
    barrier: threading.Barrier | None = None,
) -> ChainResult:
    """POST `requests` in order over one keep-alive connection."""
    out = ChainResult()
    clock = time.perf_counter_ns
    try:
        conn = HttpConn(port)
    except OSError as exc:
        if barrier is not None:
            barrier.abort()  # release the others: this run is void
        out.error = f"connect: {exc}"
        return out
    try:
        if barrier is not None:
            barrier.wait(timeout=120)
        out.t_start = time.perf_counter()
        for i, raw in enumerate(requests):
            t0 = clock()
            status, body = conn.roundtrip(raw)
            out.latencies_ns.append(clock() - t0)
            out.status[status] += 1
            if i in keep or status != 200:
                out.kept[i] = body
        out.t_end = time.perf_counter()
    except (OSError, ValueError, threading.BrokenBarrierError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"
        out.t_end = time.perf_counter()
    finally:
        conn.close()
    return out


def run_parallel(
    port: int, chains: Sequence[Sequence[bytes]], keep: set[int]
) -> tuple[list[ChainResult], float]:
    """One thread and one connection per chain, released together; return results, wall s."""
    barrier = threading.Barrier(len(chains))
    results: list[ChainResult | None] = [None] * len(chains)

    def work(j: int) -> None:
        results[j] = run_chain(port, chains[j], keep, barrier)

    threads = [threading.Thread(target=work, args=(j,)) for j in range(len(chains))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [r for r in results if r is not None]
    started = [r for r in done if r.t_start] or done
    wall = max(r.t_end for r in started) - min(r.t_start for r in started)
    return done, wall


# --- servers -------------------------------------------------------------------


class Server:
    """A server subprocess on a free port, stopped with SIGINT (a clean shutdown)."""

    def __init__(self, args: Sequence[str], logfile: Path, port: int) -> None:
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.logfile = logfile
        self._log = open(logfile, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(list(args), stdout=self._log, stderr=subprocess.STDOUT)

    @classmethod
    def witness(cls, directory: Path, logfile: Path) -> Server:
        port = free_port()
        cmd = [*OVERT, "witness", "serve", str(directory), "--listen", f"{HOST}:{port}"]
        return cls(cmd, logfile, port)

    @classmethod
    def floor(cls, logfile: Path) -> Server:
        port = free_port()
        cmd = [sys.executable, str(THIS_FILE), "--child", "floor-server", "--port", str(port)]
        return cls(cmd, logfile, port)

    @classmethod
    def profiled_witness(cls, directory: Path, out: Path, logfile: Path) -> Server:
        port = free_port()
        cmd = [sys.executable, str(THIS_FILE), "--child", "profiled-witness"]
        cmd += ["--port", str(port), "--dir", str(directory), "--out", str(out)]
        return cls(cmd, logfile, port)

    def wait_ready(self, timeout: float = 60.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}): {self.output()}")
            try:
                if httpx.get(f"{self.url}/status", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready after {timeout:g} s: {self.output()}")

    def status(self) -> dict[str, Any]:
        import httpx

        doc: dict[str, Any] = httpx.get(f"{self.url}/status", timeout=10).json()
        return doc

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid)

    def output(self) -> str:
        return self.logfile.read_text(errors="replace")[-3000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


# A cosignature-sized answer for the floor server: one note signature line.
FLOOR_ANSWER = "\u2014 bench.overt.example/floor " + "A" * 100 + "=\n"


def child_floor_server(port: int) -> int:
    """The HTTP floor: an empty FastAPI POST handler on uvicorn.run, like `overt witness serve`."""
    import uvicorn

    app = FastAPI(title="empty POST handler (HTTP floor)")

    @app.post("/add-checkpoint")
    async def add_checkpoint(request: Request) -> Response:
        body = bytearray()  # read the body the way the witness does, then answer
        async for chunk in request.stream():
            body += chunk
        return PlainTextResponse(FLOOR_ANSWER)

    @app.get("/status")
    async def status() -> JSONResponse:
        return JSONResponse({"floor": True})

    uvicorn.run(app, host=HOST, port=port, log_level="warning")
    return 0


class ProfileFromFirstPost:
    """ASGI wrapper: start cProfile at the first POST, so start-up is not in the profile."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.profiler = cProfile.Profile()
        self.started = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.started and scope["type"] == "http" and scope["method"] == "POST":
            self.started = True
            self.profiler.enable()
        await self.app(scope, receive, send)


def child_profiled_witness(directory: Path, port: int, out: Path) -> int:
    """The witness app of `overt witness serve`, on the same uvicorn.run, under cProfile."""
    import uvicorn

    from overt.web.witness_api import create_witness_app

    wrapped = ProfileFromFirstPost(create_witness_app(directory))
    uvicorn.run(wrapped, host=HOST, port=port, log_level="warning")
    wrapped.profiler.disable()
    wrapped.profiler.dump_stats(out)
    return 0


def child_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_witness --child")
    parser.add_argument("kind", choices=("floor-server", "profiled-witness"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--out", type=Path)
    a = parser.parse_args(list(argv))
    if a.kind == "profiled-witness":
        return child_profiled_witness(a.dir, a.port, a.out)
    return child_floor_server(a.port)


# --- preparing the requests ----------------------------------------------------------


@dataclass
class Chain:
    """One log's add-checkpoint requests, steps 1..n of 1,000 entries each."""

    origin: str
    signer: Ed25519Signer
    texts: list[str]  # checkpoint note text per step (what the cosignature covers)
    bodies: list[bytes]  # add-checkpoint request bodies

    @property
    def vkey(self) -> str:
        return str(self.signer.verifier_key())

    @property
    def final_size(self) -> int:
        return STEP * len(self.bodies)


@dataclass
class Steps:
    roots: list[bytes]  # root at size 1000·i, i = 1..K
    proofs: list[tuple[bytes, ...]]  # consistency proof 1000(i-1) -> 1000·i (empty for i = 1)


def prepare_steps(count: int, seed: int) -> tuple[Steps, float]:
    """One tree of 1,000·count random 200-byte entries; roots and proofs per step."""
    t0 = time.perf_counter()
    rng = random.Random(f"witness:{seed}")
    tree = MemoryTree()
    for _ in range(count):
        tree.extend([rng.randbytes(ENTRY_SIZE) for _ in range(STEP)])
    roots, proofs = [], []
    for i in range(1, count + 1):
        roots.append(tree.root(STEP * i))
        proofs.append(tuple(consistency_proof(tree, STEP * (i - 1), STEP * i)) if i > 1 else ())
    del tree
    gc.collect()
    return Steps(roots, proofs), time.perf_counter() - t0


def make_chain(origin: str, steps: Steps, count: int) -> Chain:
    signer = Ed25519Signer.generate(origin)
    texts, bodies = [], []
    for i in range(1, count + 1):
        checkpoint = Checkpoint(origin, STEP * i, steps.roots[i - 1])
        texts.append(checkpoint.text())
        note = sign_checkpoint(checkpoint, [signer])
        request = AddCheckpointRequest(STEP * (i - 1), steps.proofs[i - 1], note)
        bodies.append(request.format().encode())
    return Chain(origin, signer, texts, bodies)


def new_witness(directory: Path, chains: Sequence[Chain]) -> str:
    """A fresh witness directory trusting every chain's log; return its vkey."""
    vkey = init_witness(directory, "bench.overt.example/witness")
    witness = Witness(directory)
    try:
        for c in chains:
            witness.add_log(c.origin, [c.vkey])
    finally:
        witness.close()
    return vkey


def sample_indexes(n: int, every: int) -> set[int]:
    return {0, n - 1, *range(every - 1, n, every)}


def check_cosignatures(
    verifier: CosignatureVerifier, chain: Chain, answers: dict[int, bytes]
) -> dict[str, Any]:
    """Each sampled answer must hold one valid, timestamped cosignature by the witness."""
    checked = bad = 0
    now = time.time()
    first_failure: str | None = None
    tamper_rejected = None
    for i, answer in sorted(answers.items()):
        text = chain.texts[i]
        checked += 1
        try:
            _, sigs = split(text + "\n" + answer.decode("utf-8"))
            mine = [s for s in sigs if (s.name, s.key_id) == (verifier.name, verifier.key_id)]
            ok = (
                len(mine) == 1
                and 0 < cosignature_timestamp(mine[0].signature) <= now + 5
                and verifier.verify(text.encode(), mine[0].signature)
            )
        except (OvertError, UnicodeDecodeError) as exc:
            ok, mine = False, []
            first_failure = first_failure or f"step {i + 1}: {exc}"
        if not ok:
            bad += 1
            first_failure = first_failure or f"step {i + 1}: cosignature does not verify"
        elif tamper_rejected is None:
            sig = mine[0].signature
            tampered = sig[:-1] + bytes([sig[-1] ^ 1])
            tamper_rejected = not verifier.verify(text.encode(), tampered)
    return {
        "checked": checked,
        "failures": bad,
        "first_failure": first_failure,
        "tamper_rejected": bool(tamper_rejected),
        "ok": checked > 0 and bad == 0 and bool(tamper_rejected),
    }



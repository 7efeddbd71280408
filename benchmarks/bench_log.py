"""Log service benchmark: bulk adds, proofs from tiles, and the HTTP API under load.

Measures, on the embedded (SQLite + files) driver, durable throughout:

  1. bulk sequencing + integration of N entries of 200 random bytes through the
     Python API (`Log.add(chunk)`, the bulk path: sequencing, tiles and checkpoint
     in one durable step), for each chunk size tried -> entries/s, and the peak RSS
     of that phase. It runs in a child process (this file with --child bulk-overt) that
     makes its entries lazily, one chunk at a time with os.urandom, so the
     memory figure is the log's and not a list of N entries. The same entries'
     worth of pymerkle SqliteTree.append_entries runs the same way, for a ratio;
  2. in-process inclusion proofs from tiles (`Log.inclusion_proof`) for random
     entries of that log: cold (fresh Log, empty tile cache) and warm (every
     tile cached), median and p99 µs; a sample is verified against the
     checkpoint root with the entries read back from the bundles;
  3. GET /proof/inclusion?index=<random> against `overt log serve` on that log,
     from wrk (or a Python httpx load generator) -> requests/s, p50/p99;
  4. POST /add of unique 200-byte entries from concurrent connections against
     `overt log serve` on a fresh log -> acknowledged adds/s, p50/p99, non-200
     counts; afterwards the published checkpoint must cover every acknowledged
     entry and `overt log verify` must pass.

Targets (2-core machine, full size): bulk >= 150,000 entries/s and < 300 MB
peak RSS; proof median <= 100 µs; HTTP proofs >= 2,000/s; HTTP adds >= 3,000/s
with p99 < integration period + 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    HOST,
    RESULT_MARK,
    WRK_LUA_REPORT,
    ChildServer,
    OtherLoad,
    children_cpu_s,
    console,
    finish,
    fmt_rate,
    fmt_ratio,
    fmt_us,
    free_port,
    fs_type,
    print_table,
    proc_cpu_s,
    result_line,
    run_child,
    summarize_ns,
    verdict,
    write_results,
)
from overt.log.config import LogConfig
from overt.log.log import Log, LogPaths, init_log

ENTRY_SIZE = 200
ORIGIN = "bench.overt.example/log"
TARGET_BULK_RATE = 150_000  # entries/s, sequence + integrate, 1,000,000 entries
TARGET_BULK_RSS_MB = 300.0  # peak RSS of the bulk phase
TARGET_PROOF_US = 100.0  # median, in-process inclusion proof from tiles
TARGET_HTTP_PROOF_RPS = 2_000  # GET /proof/inclusion
TARGET_HTTP_ADD_RPS = 3_000  # acknowledged POST /add
ADD_P99_SLACK_MS = 100  # p99 of an add must stay under integration period + this

THIS_FILE = Path(__file__).resolve()

# --- wrk scripts ------------------------------------------------------------
# Both count responses by status in response() and print one JSON line from
# done(); latencies from wrk are in µs. Threads get an id in setup() so bodies
# and random streams differ per thread.

WRK_COMMON = (
    r"""
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
"""
    + WRK_LUA_REPORT
)

WRK_PROOF = (
    WRK_COMMON
    + r"""
function init(args)
  counts = {}
  size = tonumber(args[1])
  math.randomseed(tonumber(args[2]) * 1000 + id)
end
function request()
  return wrk.format("GET", "/proof/inclusion?index=" .. math.random(0, size - 1))
end
"""
)

WRK_ADD = (
    WRK_COMMON
    + r"""
function init(args)
  counts = {}
  local f = assert(io.open(args[1], "r"))
  local token = f:read("*l")
  f:close()
  nonce = args[2]
  math.randomseed(os.time() * 1000 + id)
  headers = {["Authorization"] = "Bearer " .. token,
             ["Content-Type"] = "application/octet-stream"}
  pad = string.rep("x", 200)
  counter = 0
end
function request()
  -- unique: run nonce + thread id + counter; random digits make entries differ more
  counter = counter + 1
  local head = string.format("%s-t%d-%d-%08x-", nonce, id, counter, math.random(0, 2147483647))
  return wrk.format("POST", "/add", headers, head .. string.sub(pad, 1, 200 - #head))
end
"""
)


@dataclass(frozen=True)
class Config:
    entries: int
    chunks: tuple[int, ...]
    proofs: int
    verify_sample: int
    proof_seconds: float
    proof_warmup_seconds: float
    proof_connections: int
    add_seconds: float
    add_connections: int
    loadgen: str  # "wrk" or "python"
    threads: int
    seed: int
    workdir: Path | None
    skip_pymerkle: bool
    quick: bool


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(prog="bench_log", description="Log service benchmark")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--entries", type=int, help="bulk log size (default 1,000,000)")
    parser.add_argument(
        "--chunks",
        help="comma-separated chunk sizes to try for the bulk phase "
        "(default 50000,100000; quick 5000,10000)",
    )
    parser.add_argument("--proofs", type=int, help="in-process proofs per pass (default 10,000)")
    parser.add_argument("--proof-seconds", type=float, help="HTTP proof load (default 15)")
    parser.add_argument("--proof-connections", type=int, default=32)
    parser.add_argument("--add-seconds", type=float, help="HTTP add load (default 30)")
    parser.add_argument("--add-connections", type=int, default=64)
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="HTTP load generator; auto: wrk if on PATH, else Python (httpx)",
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="where to make the temporary logs")
    parser.add_argument("--skip-pymerkle", action="store_true")
    args = parser.parse_args(list(argv))
    quick = args.quick
    entries = args.entries or (20_000 if quick else 1_000_000)
    chunks = (
        tuple(int(c) for c in args.chunks.split(","))
        if args.chunks
        else ((5_000, 10_000) if quick else (50_000, 100_000))
    )
    if entries < 2 or any(c < 1 for c in chunks):
        parser.error("need --entries >= 2 and chunk sizes >= 1")
    loadgen = args.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if shutil.which("wrk") else "python"
    elif loadgen == "wrk" and not shutil.which("wrk"):
        parser.error("--loadgen wrk: wrk is not on PATH (apt-get install wrk)")
    return Config(
        entries=entries,
        chunks=chunks,
        proofs=args.proofs or (1_000 if quick else 10_000),
        verify_sample=200 if quick else 1_000,
        proof_seconds=args.proof_seconds or (3.0 if quick else 15.0),
        proof_warmup_seconds=1.0 if quick else 2.0,
        proof_connections=args.proof_connections,
        add_seconds=args.add_seconds or (5.0 if quick else 30.0),
        add_connections=args.add_connections,
        loadgen=loadgen,
        threads=args.threads,
        seed=args.seed,
        workdir=args.workdir,
        skip_pymerkle=args.skip_pymerkle,
        quick=quick,
    )


# --- helpers -----------------------------------------------------------------


def rss_mb() -> float:
    """Current resident set size of this process, from /proc (MB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def dir_usage(root: Path) -> dict[str, float]:
    files = total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            files += 1
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return {"files": files, "mb": total / 2**20}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- child processes -----------------------------------------------------------


def child_bulk_overt(directory: Path, entries: int, chunk: int) -> dict[str, Any]:
    """Init a log, then sequence + integrate `entries` random entries, chunk by chunk."""
    t_init = time.perf_counter()
    init_log(directory, LogConfig(origin=ORIGIN))
    log = Log(directory)
    init_s = time.perf_counter() - t_init
    gc.collect()
    baseline = rss_mb()
    baseline_peak = maxrss_mb()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    seq_s = int_s = 0.0
    wall0 = time.perf_counter()
    done = 0
    while done < entries:
        n = min(chunk, entries - done)
        batch = [os.urandom(ENTRY_SIZE) for _ in range(n)]  # untimed
        # Log.add is the bulk API: sequencing, tiles and the checkpoint in one
        # durable step (see Log.add); the split below is no longer meaningful.
        t0 = time.perf_counter()
        log.add(batch)
        t1 = time.perf_counter()
        seq_s += t1 - t0
        done += n
        del batch
    wall = time.perf_counter() - wall0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    size = log.checkpoint.size
    sequenced = log.sequenced_size()
    root = log.checkpoint.root_hash.hex()
    log.close()
    peak = maxrss_mb()
    timed = seq_s + int_s
    return {
        "entries": entries,
        "chunk": chunk,
        "checkpoint_size": size,
        "sequenced": sequenced,
        "root": root,
        "init_seconds": init_s,
        "sequence_seconds": seq_s,
        "integrate_seconds": int_s,
        "seconds": timed,
        "entries_per_s": entries / timed,
        "wall_seconds_with_generation": wall,
        "entries_per_s_with_generation": entries / wall,
        "rss_baseline_mb": baseline,
        "maxrss_before_work_mb": baseline_peak,
        "maxrss_peak_mb": peak,
        "maxrss_growth_mb": peak - baseline,
        "cpu_user_seconds": ru1.ru_utime - ru0.ru_utime,  # includes generating the entries
        "cpu_system_seconds": ru1.ru_stime - ru0.ru_stime,
        "disk": dir_usage(directory),
    }


def child_bulk_pymerkle(db: Path, entries: int, chunk: int) -> dict[str, Any]:
    """pymerkle SqliteTree: append_entries per chunk (one transaction each)."""
    import importlib.metadata

    import pymerkle  # type: ignore[import-untyped]

    tree = pymerkle.SqliteTree(str(db), algorithm="sha256")
    pragmas = {
        p: tree.con.execute(f"PRAGMA {p}").fetchone() for p in ("journal_mode", "synchronous")
    }
    gc.collect()
    baseline = rss_mb()
    baseline_peak = maxrss_mb()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    timed = 0.0
    wall0 = time.perf_counter()
    done = 0
    while done < entries:
        n = min(chunk, entries - done)
        batch = [os.urandom(ENTRY_SIZE) for _ in range(n)]  # untimed
        t0 = time.perf_counter()
        tree.append_entries(batch, chunksize=n)
        timed += time.perf_counter() - t0
        done += n
        del batch
    wall = time.perf_counter() - wall0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    size = tree.get_size()
    tree.close()
    peak = maxrss_mb()
    return {
        "version": importlib.metadata.version("pymerkle"),
        "entries": entries,
        "chunk": chunk,
        "size": size,
        "sqlite_pragmas": pragmas,
        "seconds": timed,
        "entries_per_s": entries / timed,
        "wall_seconds_with_generation": wall,
        "rss_baseline_mb": baseline,
        "maxrss_before_work_mb": baseline_peak,
        "maxrss_peak_mb": peak,
        "maxrss_growth_mb": peak - baseline,
        "cpu_user_seconds": ru1.ru_utime - ru0.ru_utime,
        "cpu_system_seconds": ru1.ru_stime - ru0.ru_stime,
        "disk_mb": db.stat().st_size / 2**20,
    }


def child_loadgen(
    mode: str, url: str, seconds: float, conns: int, size: int, token_file: str, nonce: str
) -> dict[str, Any]:
    """The Python fallback load generator: httpx.AsyncClient, `conns` workers."""
    import httpx

    async def run() -> dict[str, Any]:
        limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
        headers = {}
        if mode == "add":
            token = Path(token_file).read_text().strip()
            headers = {"Authorization": f"Bearer {token}"}
        latencies: list[int] = []
        status: dict[str, int] = {}
        errors = 0
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:
            deadline = time.monotonic() + seconds

            async def worker(wid: int) -> None:
                nonlocal errors
                rng = random.Random(f"{nonce}:{wid}")
                counter = 0
                while time.monotonic() < deadline:
                    t0 = time.perf_counter_ns()
                    try:
                        if mode == "add":
                            counter += 1
                            head = f"{nonce}-w{wid}-{counter}-".encode()
                            body = head + rng.randbytes(ENTRY_SIZE - len(head))
                            resp = await client.post("/add", content=body, headers=headers)
                        else:
                            resp = await client.get(
                                "/proof/inclusion", params={"index": rng.randrange(size)}
                            )
                    except httpx.HTTPError:
                        errors += 1
                        continue
                    latencies.append(time.perf_counter_ns() - t0)
                    key = str(resp.status_code)
                    status[key] = status.get(key, 0) + 1

            t0 = time.perf_counter()
            await asyncio.gather(*(worker(w) for w in range(conns)))
            elapsed = time.perf_counter() - t0
        lat = summarize_ns(latencies) if latencies else None
        ordered = sorted(latencies)
        return {
            "requests": len(latencies),
            "duration_us": elapsed * 1e6,
            "errors": {"exceptions": errors},
            "latency_us": None
            if lat is None
            else {
                "p50": lat["median_us"],
                "p90": ordered[max(0, -(-90 * len(ordered) // 100) - 1)] / 1000,
                "p99": lat["p99_us"],
                "max": ordered[-1] / 1000,
                "mean": lat["mean_us"],
            },
            "status": status,
        }

    return asyncio.run(run())


def child_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_log --child")
    parser.add_argument("kind", choices=("bulk-overt", "bulk-pymerkle", "loadgen"))
    parser.add_argument("--path", type=Path)
    parser.add_argument("--entries", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=0)
    parser.add_argument("--mode", choices=("proof", "add"))
    parser.add_argument("--url")
    parser.add_argument("--seconds", type=float, default=0)
    parser.add_argument("--conns", type=int, default=0)
    parser.add_argument("--token-file", default="")
    parser.add_argument("--nonce", default="")
    a = parser.parse_args(list(argv))
    if a.kind == "bulk-overt":
        result = child_bulk_overt(a.path, a.entries, a.chunk)
    elif a.kind == "bulk-pymerkle":
        result = child_bulk_pymerkle(a.path, a.entries, a.chunk)
    else:
        result = child_loadgen(a.mode, a.url, a.seconds, a.conns, a.entries, a.token_file, a.nonce)
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


# --- phase 1: bulk -------------------------------------------------------------


def bench_bulk(cfg: Config, work: Path) -> tuple[Path, dict[str, Any]]:
    """Every chunk size on a fresh log; keep the fastest log for the next phases."""
    runs: list[dict[str, Any]] = []
    dirs: dict[int, Path] = {}
    for chunk in cfg.chunks:
        d = work / f"bulk-{chunk}"
        load = loadavg()
        console.print(f"  overt: {cfg.entries:,} entries, chunks of {chunk:,} (load {load})...")
        watch = OtherLoad()
        r = run_child(
            THIS_FILE,
            ["bulk-overt", "--path", str(d), "--entries", str(cfg.entries), "--chunk", str(chunk)],
            timeout=1800,
        )
        r["other_processes_cores"] = watch.stop()
        r["loadavg_before"] = load
        console.print(
            f"    {r['entries_per_s']:,.0f}/s (sequence {r['sequence_seconds']:.1f} s, "
            f"integrate {r['integrate_seconds']:.1f} s), peak RSS {r['maxrss_peak_mb']:.0f} MB"
        )
        runs.append(r)
        dirs[chunk] = d
    best = max(runs, key=lambda r: r["entries_per_s"])
    for chunk, d in dirs.items():
        if chunk != best["chunk"]:
            shutil.rmtree(d, ignore_errors=True)
    pm = None
    if not cfg.skip_pymerkle:
        console.print(
            f"  pymerkle SqliteTree: {cfg.entries:,} entries, chunks of {best['chunk']:,}..."
        )
        db = work / "pymerkle.db"
        load = loadavg()
        watch = OtherLoad()
        pm = run_child(
            THIS_FILE,
            [
                "bulk-pymerkle",
                "--path",
                str(db),
                "--entries",
                str(cfg.entries),
                "--chunk",
                str(best["chunk"]),
            ],
            timeout=1800,
        )
        pm["loadavg_before"] = load
        pm["other_processes_cores"] = watch.stop()
        console.print(f"    {pm['entries_per_s']:,.0f}/s, peak RSS {pm['maxrss_peak_mb']:.0f} MB")
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    ok = all(r["checkpoint_size"] == cfg.entries == r["sequenced"] for r in runs)
    return dirs[best["chunk"]], {
        "runs": runs,
        "best_chunk": best["chunk"],
        "best": best,
        "pymerkle": pm,
        "sizes_ok": ok,
    }


# --- phase 2: in-process proofs -----------------------------------------------------


def bench_proofs(cfg: Config, directory: Path) -> dict[str, Any]:
    from overt.errors import VerificationError
    from overt.tlog.hashing import leaf_hash
    from overt.tlog.merkle import verify_inclusion
    from overt.tlog.tiles import TILE_WIDTH

    clock = time.perf_counter_ns
    watch = OtherLoad()
    with Log(directory) as log:  # fresh Log: empty tile cache (OS page cache is warm)
        size, root = log.checkpoint.size, log.checkpoint.root_hash
        rng = random.Random(f"proofs:{cfg.seed}")
        cold_idx = [rng.randrange(size) for _ in range(cfg.proofs)]
        warm_idx = [rng.randrange(size) for _ in range(cfg.proofs)]

        gc.collect()
        seen: set[int] = set()
        cold_all: list[int] = []
        cold_miss: list[int] = []  # first proof touching its level-0 tile
        cold_hit: list[int] = []
        for i in cold_idx:
            t0 = clock()
            log.inclusion_proof(i)
            dt = clock() - t0
            cold_all.append(dt)
            tile = i // TILE_WIDTH
            (cold_hit if tile in seen else cold_miss).append(dt)
            seen.add(tile)

        # Untimed: bring every tile into the cache (1M entries: 3,924 tiles < 4,096).
        for t in range(-(-size // TILE_WIDTH)):
            log.inclusion_proof(t * TILE_WIDTH)
        gc.collect()
        warm: list[int] = []
        proofs: dict[int, list[bytes]] = {}
        for i in warm_idx:
            t0 = clock()
            p = log.inclusion_proof(i)
            warm.append(clock() - t0)
            proofs[i] = p

        # Verify a sample against the checkpoint root, with entries from the bundles.
        checked = bad = 0
        for i in warm_idx[: cfg.verify_sample]:
            try:
                verify_inclusion(leaf_hash(log.entry(i)), i, size, proofs[i], root)
            except VerificationError:
                bad += 1
            checked += 1
        i = warm_idx[0]
        tampered = list(proofs[i])
        tampered[0] = bytes([tampered[0][0] ^ 1]) + tampered[0][1:]
        try:
            verify_inclusion(leaf_hash(log.entry(i)), i, size, tampered, root)
            tamper_rejected = False
        except VerificationError:
            tamper_rejected = True
    return {
        "size": size,
        "proofs": cfg.proofs,
        "other_processes_cores": watch.stop(),
        "cold": summarize_ns(cold_all),
        "cold_first_touch_of_level0_tile": summarize_ns(cold_miss) if cold_miss else None,
        "cold_level0_tile_cached": summarize_ns(cold_hit) if cold_hit else None,
        "warm": summarize_ns(warm),
        "verified": checked,
        "verify_failures": bad,
        "tamper_rejected": tamper_rejected,
        "ok": bad == 0 and tamper_rejected,
    }


# --- HTTP phases -------------------------------------------------------------------


class Server(ChildServer):
    """`overt log serve DIR` in a subprocess, stopped with SIGINT (a clean shutdown)."""

    poll_interval = 0.1

    def __init__(self, directory: Path, logfile: Path) -> None:
        port = free_port()
        cmd = [sys.executable, "-m", "overt.cli", "log", "serve", str(directory)]
        super().__init__([*cmd, "--listen", f"{HOST}:{port}"], logfile, port)


def drive(
    cfg: Config,
    mode: str,
    url: str,
    seconds: float,
    conns: int,
    work: Path,
    *,
    size: int = 0,
    token_file: Path | None = None,
) -> dict[str, Any]:
    """Run the load generator once; return its counts and latencies (µs)."""
    nonce = f"{os.getpid():x}{time.time_ns() & 0xFFFFFF:06x}"
    if cfg.loadgen == "wrk":
        script = work / f"{mode}.lua"
        script.write_text(WRK_PROOF if mode == "proof" else WRK_ADD)
        extra = [str(size), str(cfg.seed)] if mode == "proof" else [str(token_file), nonce]
        cmd = [
            "wrk",
            f"-t{min(cfg.threads, conns)}",
            f"-c{conns}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
            "--",
            *extra,
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr[-2000:]}")
        result = result_line(proc.stdout, "wrk")
        result["generator"] = f"wrk {' '.join(cmd[1:4])} + Lua script"
        return result
    result = run_child(
        THIS_FILE,
        [
            "loadgen",
            "--mode",
            mode,
            "--url",
            url,
            "--seconds",
            str(seconds),
            "--conns",
            str(conns),
            "--entries",
            str(size),
            "--token-file",
            str(token_file or ""),
            "--nonce",
            nonce,
        ],
        timeout=seconds + 120,
    )
    result["generator"] = f"python httpx.AsyncClient, {conns} workers, one process"
    return result


def measured(
    cfg: Config, mode: str, server: Server, seconds: float, conns: int, work: Path, **kw: Any
) -> dict[str, Any]:
    """drive() plus the CPU the server and the generator used during it."""
    load = loadavg()
    watch = OtherLoad(server.proc.pid)
    srv0, gen0, t0 = proc_cpu_s(server.proc.pid), children_cpu_s(), time.perf_counter()
    r = drive(cfg, mode, server.url, seconds, conns, work, **kw)
    wall = time.perf_counter() - t0
    r["other_processes_cores"] = watch.stop()
    r["server_cpu_cores"] = (proc_cpu_s(server.proc.pid) - srv0) / wall
    r["generator_cpu_cores"] = (children_cpu_s() - gen0) / wall
    r["loadavg_before"] = load
    r["seconds"] = r["duration_us"] / 1e6
    r["ok_responses"] = int(r["status"].get("200", 0))
    r["ok_per_s"] = r["ok_responses"] / r["seconds"]
    r["requests_per_s"] = r["requests"] / r["seconds"]
    r["non_200"] = {k: v for k, v in r["status"].items() if k != "200"}
    cpu_s = r["server_cpu_cores"] * wall
    r["server_cpu_us_per_request"] = cpu_s / r["requests"] * 1e6 if r["requests"] else None
    return r


def bench_http_proofs(cfg: Config, directory: Path, work: Path) -> dict[str, Any]:
    server = Server(directory, work / "serve-proofs.log")
    try:
        server.wait_ready()
        size = int(server.status()["size"])
        if cfg.proof_warmup_seconds:
            drive(
                cfg,
                "proof",
                server.url,
                cfg.proof_warmup_seconds,
                cfg.proof_connections,
                work,
                size=size,
            )
        r = measured(
            cfg, "proof", server, cfg.proof_seconds, cfg.proof_connections, work, size=size
        )
        r["size"] = size
        r["warmup_seconds"] = cfg.proof_warmup_seconds
        # One response checked end to end: the proof must verify against the checkpoint.
        r["sample_ok"] = _check_http_proof(server.url, directory, size)
    finally:
        r_stop = server.stop()
    r["server_exit"] = r_stop
    return r


def _check_http_proof(url: str, directory: Path, size: int) -> bool:
    """A few answers checked end to end against the signed checkpoint the server serves."""
    import base64

    import httpx

    from overt.crypto.keys import ed25519_verifier
    from overt.errors import OvertError
    from overt.tlog.checkpoint import open_checkpoint
    from overt.tlog.merkle import verify_inclusion

    verifier = ed25519_verifier(LogPaths(directory).vkey.read_text().strip())
    checkpoint = open_checkpoint(httpx.get(f"{url}/checkpoint", timeout=10).content, verifier)
    root = checkpoint.checkpoint.root_hash
    if checkpoint.checkpoint.size != size:
        return False
    rng = random.Random(7)
    for _ in range(20):
        i = rng.randrange(size)
        doc = httpx.get(f"{url}/proof/inclusion", params={"index": i}, timeout=10).json()
        try:
            verify_inclusion(
                base64.b64decode(doc["leaf_hash"]),
                i,
                size,
                [base64.b64decode(h) for h in doc["proof"]],
                root,
            )
        except OvertError:
            return False
    return True


def settled_status(server: Server, config: LogConfig, slack_s: float) -> dict[str, Any]:
    """GET /status until the checkpoint covers every sequenced add (or a deadline passes)."""
    deadline = time.monotonic() + config.integration_period_ms / 1000 * 4 + slack_s
    st = server.status()
    while st["size"] < st["sequenced"] and time.monotonic() < deadline:
        time.sleep(0.1)
        st = server.status()
    return st


def after_shutdown_checks(
    directory: Path, status_after: dict[str, Any], acked: int
) -> dict[str, Any]:
    """With the servers stopped: the checkpoint covers every acknowledged and sequenced add,
    and `overt log verify` passes."""
    with Log(directory) as log:
        final_size, final_seq = log.checkpoint.size, log.sequenced_size()
    t0 = time.perf_counter()
    verify = subprocess.run(
        [sys.executable, "-m", "overt.cli", "log", "verify", str(directory)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    checks = {
        "after_shutdown": {"checkpoint_size": final_size, "sequenced": final_seq},
        "checkpoint_covers_acknowledged": status_after["size"] >= acked and final_size >= acked,
        "checkpoint_covers_sequenced": final_size == final_seq,
        "verify_rc": verify.returncode,
        "verify_output": (verify.stdout + verify.stderr).strip()[-500:],
        "verify_seconds": time.perf_counter() - t0,
    }
    checks["ok"] = (
        checks["checkpoint_covers_acknowledged"]
        and checks["checkpoint_covers_sequenced"]
        and verify.returncode == 0
    )
    return checks


def bench_http_adds(cfg: Config, work: Path) -> dict[str, Any]:
    directory = work / "adds"
    config = LogConfig(origin=ORIGIN)
    init_log(directory, config)
    paths = LogPaths(directory)
    server = Server(directory, work / "serve-adds.log")
    checks: dict[str, Any] = {}
    try:
        server.wait_ready()
        r = measured(
            cfg, "add", server, cfg.add_seconds, cfg.add_connections, work, token_file=paths.token
        )
        # Every acknowledged add must be sequenced, and the next checkpoint must cover it.
        checks["status_after"] = settled_status(server, config, slack_s=5)
    finally:
        exit_code = server.stop()
    acked = r["ok_responses"]
    st = checks["status_after"]
    after = after_shutdown_checks(directory, st, acked)
    checks.update(
        {
            "server_exit": exit_code,
            "acknowledged": acked,
            "sequenced_at_end": st["sequenced"],
            "checkpoint_size_at_end": st["size"],
            "in_flight_when_load_stopped": st["sequenced"] - acked,
            "refused_by_pool": st["refused"],
            **after,
        }
    )
    r["integration_period_ms"] = config.integration_period_ms
    r["p99_target_ms"] = config.integration_period_ms + ADD_P99_SLACK_MS
    r["checks"] = checks
    shutil.rmtree(directory, ignore_errors=True)
    return r


# --- report --------------------------------------------------------------------------


def fmt_ms(us: float) -> str:
    return f"{us / 1000:,.1f} ms"


def report(
    cfg: Config, bulk: dict[str, Any], pr: dict[str, Any], hp: dict[str, Any], ha: dict[str, Any]
) -> dict[str, Any]:
    """Print the table and notes; return ratios and target verdicts for the JSON."""
    best, pm = bulk["best"], bulk["pymerkle"]
    targets: dict[str, dict[str, Any]] = {}
    rows: list[list[str]] = []

    def row(label: str, value: str, theirs: str = "", ratio: str = "") -> None:
        rows.append([label, value, theirs, ratio, "", ""])

    def judged(
        label: str,
        value: str,
        name: str,
        got: float,
        goal: float,
        ok: bool,
        how: str,
        theirs: str = "",
        ratio: str = "",
    ) -> None:
        targets[name] = {"target": goal, "value": got, "pass": ok}
        rows.append([label, value, theirs, ratio, how, verdict(ok)])

    bulk_ratio = best["entries_per_s"] / pm["entries_per_s"] if pm else None
    for r in bulk["runs"]:
        label = f"bulk Log.add, chunk {r['chunk']:,}"
        if r is not best:
            row(label, fmt_rate(r["entries_per_s"]))
            continue
        rate = r["entries_per_s"]
        judged(
            label + (" (best)" if len(bulk["runs"]) > 1 else ""),
            fmt_rate(rate),
            "bulk_entries_per_s",
            rate,
            TARGET_BULK_RATE,
            rate >= TARGET_BULK_RATE,
            f"≥ {TARGET_BULK_RATE:,}/s",
            fmt_rate(pm["entries_per_s"]) if pm else "",
            fmt_ratio(bulk_ratio),
        )
    row("  best: time in Log.add", f"{best['sequence_seconds']:.1f} s")
    peak = best["maxrss_peak_mb"]
    judged(
        "bulk peak RSS (child's ru_maxrss)",
        f"{peak:,.0f} MB",
        "bulk_peak_rss_mb",
        peak,
        TARGET_BULK_RSS_MB,
        peak < TARGET_BULK_RSS_MB,
        f"< {TARGET_BULK_RSS_MB:g} MB",
        f"{pm['maxrss_peak_mb']:,.0f} MB" if pm else "",
    )
    row(
        "  RSS before the work / growth",
        f"{best['rss_baseline_mb']:,.0f} / +{best['maxrss_growth_mb']:,.0f} MB",
        f"{pm['rss_baseline_mb']:,.0f} / +{pm['maxrss_growth_mb']:,.0f} MB" if pm else "",
    )
    for key in ("cold", "warm"):
        s = pr[key]
        judged(
            f"proof in-process, {key}: median",
            fmt_us(s["median_us"]),
            f"proof_{key}_median_us",
            s["median_us"],
            TARGET_PROOF_US,
            s["median_us"] <= TARGET_PROOF_US,
            f"≤ {TARGET_PROOF_US:g} µs",
        )
        row(f"  {key}: p99", fmt_us(s["p99_us"]))
    s = pr["cold_first_touch_of_level0_tile"]
    if s:
        row(
            f"  cold, new level-0 tile (n={s['count']:,}): med/p99",
            f"{s['median_us']:,.0f} / {s['p99_us']:,.0f} µs",
        )
    judged(
        f"GET /proof/inclusion, {cfg.proof_connections} conns",
        fmt_rate(hp["ok_per_s"]),
        "http_proof_per_s",
        hp["ok_per_s"],
        TARGET_HTTP_PROOF_RPS,
        hp["ok_per_s"] >= TARGET_HTTP_PROOF_RPS,
        f"≥ {TARGET_HTTP_PROOF_RPS:,}/s",
    )
    lat = hp["latency_us"]
    row("  latency p50 / p99", f"{lat['p50'] / 1000:,.1f} / {lat['p99'] / 1000:,.1f} ms")
    row("  non-200 responses", _fmt_counts(hp))
    judged(
        f"POST /add acknowledged, {cfg.add_connections} conns",
        fmt_rate(ha["ok_per_s"]),
        "http_add_per_s",
        ha["ok_per_s"],
        TARGET_HTTP_ADD_RPS,
        ha["ok_per_s"] >= TARGET_HTTP_ADD_RPS,
        f"≥ {TARGET_HTTP_ADD_RPS:,}/s",
    )
    lat = ha["latency_us"]
    row("  latency p50", fmt_ms(lat["p50"]))
    p99_ms, goal_ms = lat["p99"] / 1000, ha["p99_target_ms"]
    judged(
        "  latency p99",
        fmt_ms(lat["p99"]),
        "http_add_p99_ms",
        p99_ms,
        goal_ms,
        p99_ms < goal_ms,
        f"< {goal_ms:,} ms",
    )
    row("  non-200 responses", _fmt_counts(ha))
    print_table(
        "Log service: embedded driver (SQLite + tiles), durable",
        [
            "measure",
            f"overt\nn={cfg.entries:,}",
            "pymerkle\nSqliteTree",
            "ratio",
            "target",
            "overt",
        ],
        rows,
    )

    c = ha["checks"]
    notes = [
        "ratio: overt / pymerkle entries/s (> 1: overt is faster). pymerkle (same entry count, "
        f"chunk {best['chunk']:,}, one transaction per chunk, journal "
        f"{pm['sqlite_pragmas']['journal_mode'] if pm else '?'}) makes no tiles, no "
        "checkpoint and no dedup index; overt writes tiles + bundles, syncfs, signs and "
        "publishes a checkpoint per chunk.",
        f"bulk: entries of {ENTRY_SIZE} random bytes made lazily per chunk with os.urandom in a "
        "child process (untimed, so RSS reflects the log, not N entries held in memory); "
        "timed = Log.add() per chunk (sequencing, tiles, sync, signed checkpoint). "
        "With generation: "
        f"{best['entries_per_s_with_generation']:,.0f}/s in "
        f"{best['wall_seconds_with_generation']:.1f} s (child CPU: user "
        f"{best['cpu_user_seconds']:.1f} s, system {best['cpu_system_seconds']:.1f} s). "
        "Log on disk: "
        f"{best['disk']['mb']:,.0f} MB in {best['disk']['files']:,} files.",
        f"proofs: {pr['proofs']:,} random indexes per pass; cold = fresh Log (empty tile cache; "
        "the OS page cache is warm), warm = every tile cached. Verified "
        f"{pr['verified']:,} proofs against the checkpoint root"
        + ("; a tampered proof was rejected." if pr["tamper_rejected"] else "; TAMPER ACCEPTED!"),
        f"HTTP load: {hp['generator']}. CPU used, in cores (machine: {os.cpu_count()}, shared): "
        f"server {hp['server_cpu_cores']:.2f} / generator {hp['generator_cpu_cores']:.2f} "
        f"during proofs, {ha['server_cpu_cores']:.2f} / {ha['generator_cpu_cores']:.2f} "
        "during adds; server CPU per request "
        f"{_fmt_opt(hp['server_cpu_us_per_request'])} µs (proofs) / "
        f"{_fmt_opt(ha['server_cpu_us_per_request'])} µs (adds). Proof load measured after "
        f"a {hp['warmup_seconds']:g} s warm-up.",
        "other processes on the machine used, in cores: bulk "
        + ", ".join(f"{r['other_processes_cores']:.2f}" for r in bulk["runs"])
        + (f", pymerkle {pm['other_processes_cores']:.2f}" if pm else "")
        + f"; in-process proofs {pr['other_processes_cores']:.2f}; HTTP proofs "
        f"{hp['other_processes_cores']:.2f}; HTTP adds {ha['other_processes_cores']:.2f}"
        " (well above 0: the machine was shared and the figures are noisy).",
        f"adds: {c['acknowledged']:,} acknowledged (HTTP 200), {c['sequenced_at_end']:,} "
        f"sequenced ({c['in_flight_when_load_stopped']:,} in flight when the load stopped), "
        f"checkpoint {c['after_shutdown']['checkpoint_size']:,} after shutdown: "
        + (
            "covers every acknowledged entry"
            if c["checkpoint_covers_acknowledged"] and c["checkpoint_covers_sequenced"]
            else "DOES NOT cover every acknowledged entry"
        )
        + f"; overt log verify: {'OK' if c['verify_rc'] == 0 else 'FAILED'}.",
    ]
    if cfg.quick:
        notes.append(
            "[yellow]--quick: small sizes, figures are a smoke test only; "
            "targets apply to 1,000,000 entries and the full durations.[/]"
        )
    for note in notes:
        console.print(note)
    return {"ratios": {"bulk_overt_over_pymerkle": bulk_ratio}, "targets": targets}


def _fmt_opt(x: float | None) -> str:
    return "?" if x is None else f"{x:,.0f}"


def _fmt_counts(r: dict[str, Any]) -> str:
    parts = [f"{k}: {v:,}" for k, v in sorted(r["non_200"].items())]
    parts += [f"{k} errors: {v:,}" for k, v in r["errors"].items() if v and k != "status"]
    return ", ".join(parts) or "none"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv or [])
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    cfg = parse_args(argv)
    console.print(
        f"bench_log: {cfg.entries:,} entries, chunks {', '.join(f'{c:,}' for c in cfg.chunks)}; "
        f"HTTP load from {cfg.loadgen}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-log-", dir=cfg.workdir) as tmp:
        work = Path(tmp)
        console.print(f"work directory {work} ({fs_type(work)})")
        console.print("1. bulk sequence + integrate (child processes)...")
        log_dir, bulk = bench_bulk(cfg, work)
        console.print("2. in-process inclusion proofs...")
        t0 = time.perf_counter()
        pr = bench_proofs(cfg, log_dir)
        console.print(
            f"    cold {pr['cold']['median_us']:.1f} µs, warm {pr['warm']['median_us']:.1f} µs "
            f"median ({time.perf_counter() - t0:.1f} s)"
        )
        console.print(
            f"3. HTTP GET /proof/inclusion, {cfg.proof_connections} connections, "
            f"{cfg.proof_seconds:g} s (+{cfg.proof_warmup_seconds:g} s warm-up)..."
        )
        hp = bench_http_proofs(cfg, log_dir, work)
        console.print(f"    {hp['ok_per_s']:,.0f}/s")
        shutil.rmtree(log_dir, ignore_errors=True)
        console.print(
            f"4. HTTP POST /add, {cfg.add_connections} connections, {cfg.add_seconds:g} s..."
        )
        ha = bench_http_adds(cfg, work)
        console.print(f"    {ha['ok_per_s']:,.0f}/s acknowledged")
        fstype = fs_type(work)
    verdicts = report(cfg, bulk, pr, hp, ha)
    ok = bulk["sizes_ok"] and pr["ok"] and hp["sample_ok"] and ha["checks"]["ok"]
    path = write_results(
        "log",
        {
            "config": {
                "entries": cfg.entries,
                "entry_size": ENTRY_SIZE,
                "chunks": list(cfg.chunks),
                "proofs": cfg.proofs,
                "proof_seconds": cfg.proof_seconds,
                "proof_warmup_seconds": cfg.proof_warmup_seconds,
                "proof_connections": cfg.proof_connections,
                "add_seconds": cfg.add_seconds,
                "add_connections": cfg.add_connections,
                "loadgen": cfg.loadgen,
                "wrk_threads": cfg.threads,
                "seed": cfg.seed,
                "filesystem": fstype,
                "driver": "sqlite (embedded), synchronous=FULL, tiles synced by syncfs",
            },
            "bulk": bulk,
            "proofs": pr,
            "http_proofs": hp,
            "http_adds": ha,
            **verdicts,
            "correctness_ok": ok,
        },
        quick=cfg.quick,
    )
    return finish(path, ok)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

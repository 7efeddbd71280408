"""Scale-out benchmark: several front ends on PostgreSQL against one on SQLite.

Measures, durable throughout (SQLite synchronous=FULL; PostgreSQL with the
server's own settings, fsync and synchronous_commit on), in a throwaway
database made for the run and dropped after it:

  1. POST /add of unique 200-byte entries under the same load generator: two
     wrk processes (1 thread, C/2 connections each) for the same duration,
     a) both against one `overt log serve` on SQLite (the embedded driver),
     b) one against each of two `overt log serve` front ends sharing a log on
        PostgreSQL (one of them also integrates).
     -> acknowledged adds/s, latency p50/p99 per generator, non-200 counts, CPU
     of the servers, PostgreSQL and the generators. Afterwards the published
     checkpoint must cover every sequenced (so every acknowledged) entry, and
     `overt log verify` must pass.
  2. bulk sequencing + integration of N entries (default 1,000,000) through the
     Python API (`Log.add(chunk)`, the bulk path) on PostgreSQL, in a child
     process making its 200-byte entries lazily per chunk -> entries/s, peak
     RSS; the same on SQLite for comparison.

Targets (2-core machine, full size): PostgreSQL HTTP adds >= 3,000/s with two
front ends; PostgreSQL bulk >= 100,000 entries/s.

    python benchmarks/bench_scale.py [--quick] [--postgres postgresql://...]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_log import (
    WRK_ADD,
    Server,
    after_shutdown_checks,
    dir_usage,
    maxrss_mb,
    rss_mb,
    settled_status,
)
from common import (
    RESULT_MARK,
    OtherLoad,
    console,
    finish,
    fmt_rate,
    fmt_ratio,
    fs_type,
    print_table,
    proc_cpu_s,
    result_line,
    run_child,
    verdict,
    write_results,
)
from overt.log.config import LogConfig
from overt.log.log import Log, LogPaths, init_log

ENTRY_SIZE = 200
ORIGIN = "bench.overt.example/scale"
TARGET_PG_ADD_RPS = 3_000  # acknowledged POST /add, two front ends on PostgreSQL
TARGET_PG_BULK_RATE = 100_000  # entries/s, Log.add bulk path, 1,000,000 entries
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

THIS_FILE = Path(__file__).resolve()


@dataclass(frozen=True)
class Config:
    entries: int
    chunk: int
    add_seconds: float
    add_connections: int
    postgres: str
    workdir: Path | None
    skip_sqlite_bulk: bool
    quick: bool


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(prog="bench_scale", description="Scale-out benchmark")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--entries", type=int, help="bulk log size (default 1,000,000)")
    parser.add_argument("--chunk", type=int, help="bulk chunk size (default 100,000)")
    parser.add_argument("--add-seconds", type=float, help="HTTP add load (default 30)")
    parser.add_argument(
        "--add-connections", type=int, default=64, help="connections in all (split in two)"
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("OVERT_BENCH_POSTGRES", ADMIN_DSN),
        help="a PostgreSQL server to make the throwaway database in (default %(default)s)",
    )
    parser.add_argument("--workdir", type=Path, help="where to make the temporary logs")
    parser.add_argument("--skip-sqlite-bulk", action="store_true")
    args = parser.parse_args(list(argv))
    if not shutil.which("wrk"):
        parser.error("wrk is not on PATH (apt-get install wrk)")
    quick = args.quick
    return Config(
        entries=args.entries or (50_000 if quick else 1_000_000),
        chunk=args.chunk or (10_000 if quick else 100_000),
        add_seconds=args.add_seconds or (5.0 if quick else 30.0),
        add_connections=max(2, args.add_connections),
        postgres=args.postgres,
        workdir=args.workdir,
        skip_sqlite_bulk=args.skip_sqlite_bulk,
        quick=quick,
    )


# --- the throwaway database ----------------------------------------------------------


class Database:
    """A fresh database on the server, dropped (with its connections) at the end."""

    def __init__(self, admin_dsn: str) -> None:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        self._admin = psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10)
        self.name = f"overt_bench_{secrets.token_hex(4)}"
        self._admin.execute(f'CREATE DATABASE "{self.name}"')
        p = conninfo_to_dict(admin_dsn)
        self.dsn = (
            f"postgresql://{p.get('user', 'postgres')}@{p.get('host', '127.0.0.1')}"
            f":{p.get('port', 5432)}/{self.name}"
        )

    def settings(self) -> dict[str, str]:
        names = (
            "server_version",
            "shared_buffers",
            "synchronous_commit",
            "fsync",
            "wal_level",
            "max_wal_size",
            "checkpoint_timeout",
        )
        return {n: str(self._admin.execute(f"SHOW {n}").fetchone()[0]) for n in names}  # type: ignore[index]

    def backend_pids(self) -> list[int]:
        rows = self._admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.name,)
        ).fetchall()
        return [int(r[0]) for r in rows]

    def drop(self) -> None:
        self._admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self._admin.close()


def postgres_cpu_s() -> float:
    """CPU seconds used so far by the PostgreSQL server: the postmaster, its live
    children (backends, WAL writer...) and the children that have exited."""

    def stat(pid: str) -> list[str]:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()

    procs: dict[str, list[str]] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() not in ("postgres", "postmaster"):
                    continue
            procs[pid] = stat(pid)
        except OSError:
            continue
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for fields in procs.values():
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if fields[1] not in procs:  # the postmaster: add its exited children's time
            total += int(fields[13]) + int(fields[14])
    return total / tick


# --- HTTP adds ---------------------------------------------------------------------


def wrk(
    url: str, conns: int, seconds: float, script: Path, token: Path, nonce: str
) -> dict[str, Any]:
    cmd = [
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
        "--",
        str(token),
        nonce,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result = result_line(proc.stdout, "wrk")
    result["generator"] = f"wrk {' '.join(cmd[1:4])} + Lua script"
    result["url"] = url
    return result


def bench_http_adds(
    cfg: Config, work: Path, name: str, database: str, front_ends: int
) -> dict[str, Any]:
    directory = work / name
    config = LogConfig(origin=f"{ORIGIN}/{name}", database=database)
    init_log(directory, config)
    paths = LogPaths(directory)
    script = work / "add.lua"
    script.write_text(WRK_ADD)
    servers = [Server(directory, work / f"serve-{name}-{i}.log") for i in range(front_ends)]
    checks: dict[str, Any] = {}
    try:
        for s in servers:
            s.wait_ready()
        # With PostgreSQL one front end takes the integration lock on its first round.
        deadline = time.monotonic() + 10
        while not any(s.status()["integrating"] for s in servers):
            if time.monotonic() > deadline:
                raise RuntimeError("no front end took the integration lock")
            time.sleep(0.1)
        targets = [servers[i % front_ends] for i in range(2)]
        conns = cfg.add_connections // 2
        watch = OtherLoad(*(s.proc.pid for s in servers), count_children=True)
        srv0 = [proc_cpu_s(s.proc.pid) for s in servers]
        pg0 = postgres_cpu_s()
        t0 = time.perf_counter()
        results: list[dict[str, Any]] = [{}, {}]

        def run(k: int) -> None:
            nonce = f"{name}{k}{os.getpid():x}{time.time_ns() & 0xFFFFFF:06x}"
            results[k] = wrk(targets[k].url, conns, cfg.add_seconds, script, paths.token, nonce)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        other = watch.stop()
        server_cores = [
            (proc_cpu_s(s.proc.pid) - c0) / wall for s, c0 in zip(servers, srv0, strict=True)
        ]
        pg_cores = (postgres_cpu_s() - pg0) / wall
        # Every acknowledged add is sequenced; the next checkpoint must cover it.
        checks["status_after"] = settled_status(servers[0], config, slack_s=10)
        checks["integrating"] = [s.status()["integrating"] for s in servers]
    finally:
        exits = [s.stop() for s in servers]
    ok = sum(int(r["status"].get("200", 0)) for r in results)
    seconds = max(r["duration_us"] for r in results) / 1e6
    requests = sum(r["requests"] for r in results)
    non_200: dict[str, int] = {}
    for r in results:
        for k, v in r["status"].items():
            if k != "200":
                non_200[k] = non_200.get(k, 0) + v
    st = checks["status_after"]
    after = after_shutdown_checks(directory, st, ok)
    checks.update(
        {
            "server_exits": exits,
            "acknowledged": ok,
            "sequenced_at_end": st["sequenced"],
            "checkpoint_size_at_end": st["size"],
            **after,
            "ok": after["ok"] and all(e == 0 for e in exits),
        }
    )
    shutil.rmtree(directory, ignore_errors=True)
    return {
        "driver": config.driver,
        "front_ends": front_ends,
        "generators": results,
        "seconds": seconds,
        "requests": requests,
        "ok_responses": ok,
        "ok_per_s": ok / seconds,
        "non_200": non_200,
        "latency_p50_ms": [r["latency_us"]["p50"] / 1000 for r in results],
        "latency_p99_ms": [r["latency_us"]["p99"] / 1000 for r in results],
        "server_cpu_cores": server_cores,
        "postgres_cpu_cores": pg_cores if database else None,
        "other_processes_cores": other,
        "integration_period_ms": config.integration_period_ms,
        "checks": checks,
    }


# --- bulk ------------------------------------------------------------------------------


def child_bulk(directory: Path, database: str, entries: int, chunk: int) -> dict[str, Any]:
    """Init a log, then Log.add `entries` random entries chunk by chunk (the bulk path)."""
    init_log(directory, LogConfig(origin=ORIGIN, database=database))
    log = Log(directory)
    gc.collect()
    baseline, baseline_peak = rss_mb(), maxrss_mb()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    timed = 0.0
    wall0 = time.perf_counter()
    done = 0
    while done < entries:
        n = min(chunk, entries - done)
        batch = [os.urandom(ENTRY_SIZE) for _ in range(n)]  # untimed
        t0 = time.perf_counter()
        indexes, cp = log.add(batch)
        timed += time.perf_counter() - t0
        if cp.size != done + n or indexes[-1] != done + n - 1:
            raise RuntimeError(f"bulk add of {n} at {done} published size {cp.size}")
        done += n
        del batch
    wall = time.perf_counter() - wall0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    size, sequenced = log.checkpoint.size, log.sequenced_size()
    log.close()
    return {
        "driver": "postgresql" if database else "sqlite",
        "entries": entries,
        "chunk": chunk,
        "checkpoint_size": size,
        "sequenced": sequenced,
        "seconds": timed,
        "entries_per_s": entries / timed,
        "wall_seconds_with_generation": wall,
        "maxrss_peak_mb": maxrss_mb(),
        "rss_baseline_mb": baseline,
        "maxrss_before_work_mb": baseline_peak,
        "cpu_user_seconds": ru1.ru_utime - ru0.ru_utime,
        "cpu_system_seconds": ru1.ru_stime - ru0.ru_stime,
        "disk": dir_usage(directory),
    }


def bench_bulk(cfg: Config, work: Path, name: str, database: str) -> dict[str, Any]:
    directory = work / f"bulk-{name}"
    pg0 = postgres_cpu_s()
    t0 = time.perf_counter()
    r = run_child(
        THIS_FILE,
        ["bulk", str(directory), database or "-", str(cfg.entries), str(cfg.chunk)],
        timeout=3600,
    )
    wall = time.perf_counter() - t0
    if database:
        r["postgres_cpu_cores"] = (postgres_cpu_s() - pg0) / wall
    shutil.rmtree(directory, ignore_errors=True)
    return r


def child_main(argv: Sequence[str]) -> int:
    if argv[0] == "bulk":
        directory, database, entries, chunk = argv[1:5]
        result = child_bulk(
            Path(directory), "" if database == "-" else database, int(entries), int(chunk)
        )
    else:
        raise SystemExit(f"unknown child {argv[0]}")
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


# --- report ------------------------------------------------------------------------------


def report(
    cfg: Config, sq: dict[str, Any], pg: dict[str, Any], bulk: dict[str, Any]
) -> dict[str, Any]:
    targets: dict[str, dict[str, Any]] = {}
    rows: list[list[str]] = []

    def row(
        label: str, a: str, b: str = "", ratio: str = "", how: str = "", ok: bool | None = None
    ) -> None:
        rows.append([label, a, b, ratio, how, verdict(ok)])

    ratio = pg["ok_per_s"] / sq["ok_per_s"] if sq["ok_per_s"] else None
    ok = pg["ok_per_s"] >= TARGET_PG_ADD_RPS
    targets["pg_http_add_per_s"] = {
        "target": TARGET_PG_ADD_RPS,
        "value": pg["ok_per_s"],
        "pass": ok,
    }
    row(
        f"POST /add acknowledged, {cfg.add_connections} conns",
        fmt_rate(sq["ok_per_s"]),
        fmt_rate(pg["ok_per_s"]),
        fmt_ratio(ratio),
        f"PG ≥ {TARGET_PG_ADD_RPS:,}/s",
        ok,
    )
    row(
        "  latency p50 per generator",
        " / ".join(f"{v:,.1f}" for v in sq["latency_p50_ms"]) + " ms",
        " / ".join(f"{v:,.1f}" for v in pg["latency_p50_ms"]) + " ms",
    )
    row(
        "  latency p99 per generator",
        " / ".join(f"{v:,.1f}" for v in sq["latency_p99_ms"]) + " ms",
        " / ".join(f"{v:,.1f}" for v in pg["latency_p99_ms"]) + " ms",
    )
    row(
        "  non-200 responses",
        ", ".join(f"{k}: {v:,}" for k, v in sq["non_200"].items()) or "none",
        ", ".join(f"{k}: {v:,}" for k, v in pg["non_200"].items()) or "none",
    )
    row(
        "  CPU: front ends (cores)",
        " + ".join(f"{c:.2f}" for c in sq["server_cpu_cores"]),
        " + ".join(f"{c:.2f}" for c in pg["server_cpu_cores"]),
    )
    row("  CPU: PostgreSQL (cores)", "", f"{pg['postgres_cpu_cores']:.2f}")
    row("  checkpoint covers all, verify passes", str(sq["checks"]["ok"]), str(pg["checks"]["ok"]))
    pgb = bulk["postgresql"]
    ok = pgb["entries_per_s"] >= TARGET_PG_BULK_RATE
    targets["pg_bulk_entries_per_s"] = {
        "target": TARGET_PG_BULK_RATE,
        "value": pgb["entries_per_s"],
        "pass": ok,
    }
    sqb = bulk.get("sqlite")
    row(
        f"bulk Log.add {cfg.entries:,}, chunk {cfg.chunk:,}",
        fmt_rate(sqb["entries_per_s"]) if sqb else "(skipped)",
        fmt_rate(pgb["entries_per_s"]),
        fmt_ratio(pgb["entries_per_s"] / sqb["entries_per_s"]) if sqb else "",
        f"PG ≥ {TARGET_PG_BULK_RATE:,}/s",
        ok,
    )
    row(
        "  peak RSS of the child",
        f"{sqb['maxrss_peak_mb']:,.0f} MB" if sqb else "",
        f"{pgb['maxrss_peak_mb']:,.0f} MB",
    )
    row("  CPU: PostgreSQL during the bulk (cores)", "", f"{pgb['postgres_cpu_cores']:.2f}")
    print_table(
        "Scale-out: 1 front end on SQLite vs 2 front ends on PostgreSQL, durable",
        ["measure", "SQLite\n1 front end", "PostgreSQL\n2 front ends", "ratio", "target", ""],
        rows,
    )
    for note in (
        "Load: the same two wrk processes (1 thread, "
        f"{cfg.add_connections // 2} connections each, {cfg.add_seconds:g} s, unique 200-byte "
        "entries, POST /add without wait) for both: both at the one SQLite front end, or one per "
        "PostgreSQL front end. ratio: PostgreSQL / SQLite.",
        f"Machine: {os.cpu_count()} cores, shared by the front ends, PostgreSQL and wrk; other "
        f"processes used {sq['other_processes_cores']:.2f} / {pg['other_processes_cores']:.2f} "
        "cores during the two runs.",
        "bulk: entries made lazily per chunk with os.urandom in a child process (untimed); "
        "timed = Log.add() per chunk: dedup + index reservation, tiles, syncfs, signed checkpoint.",
    ):
        console.print(f"  {note}")
    return {"targets": targets, "ratios": {"http_add_pg_over_sqlite": ratio}}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv or [])
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    cfg = parse_args(argv)
    db = Database(cfg.postgres)
    console.print(f"bench_scale: throwaway database {db.name}; bulk of {cfg.entries:,} entries")
    try:
        settings = db.settings()
        with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=cfg.workdir) as tmp:
            work = Path(tmp)
            fstype = fs_type(work)
            console.print(f"work directory {work} ({fstype})")
            console.print(f"1a. HTTP adds, 1 front end on SQLite, {cfg.add_seconds:g} s...")
            sq = bench_http_adds(cfg, work, "sqlite", "", 1)
            console.print(f"    {sq['ok_per_s']:,.0f}/s acknowledged")
            console.print(f"1b. HTTP adds, 2 front ends on PostgreSQL, {cfg.add_seconds:g} s...")
            pg = bench_http_adds(cfg, work, "postgresql", db.dsn, 2)
            console.print(f"    {pg['ok_per_s']:,.0f}/s acknowledged")
            bulk: dict[str, Any] = {}
            console.print(f"2a. bulk Log.add of {cfg.entries:,} on PostgreSQL...")
            bulk["postgresql"] = bench_bulk(cfg, work, "postgresql", db.dsn)
            console.print(f"    {bulk['postgresql']['entries_per_s']:,.0f}/s")
            if not cfg.skip_sqlite_bulk:
                console.print(f"2b. bulk Log.add of {cfg.entries:,} on SQLite...")
                bulk["sqlite"] = bench_bulk(cfg, work, "sqlite", "")
                console.print(f"    {bulk['sqlite']['entries_per_s']:,.0f}/s")
    finally:
        db.drop()
    verdicts = report(cfg, sq, pg, bulk)
    ok = (
        sq["checks"]["ok"]
        and pg["checks"]["ok"]
        and all(b["checkpoint_size"] == b["sequenced"] == cfg.entries for b in bulk.values())
    )
    path = write_results(
        "scale",
        {
            "config": {
                "entries": cfg.entries,
                "chunk": cfg.chunk,
                "entry_size": ENTRY_SIZE,
                "add_seconds": cfg.add_seconds,
                "add_connections": cfg.add_connections,
                "loadgen": "2 x wrk -t1, half the connections each",
                "filesystem": fstype,
                "postgres": settings,
            },
            "http_adds": {"sqlite": sq, "postgresql": pg},
            "bulk": bulk,
            **verdicts,
            "correctness_ok": ok,
        },
        quick=cfg.quick,
    )
    return finish(path, ok)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

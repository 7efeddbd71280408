"""Vault benchmark: bulk ingestion and individually logged staff reads, with cost floors.

Measures, durable throughout (SQLite WAL synchronous=FULL, object files synced
by syncfs before their metadata commits), on a vault with a residency policy of
2 regions (ch-zurich for the EU, US, CA and AU; ru-moscow for RU) and customers
spread over 8 countries (DE RU US FR CA IT AU NL, 3 customers each):

  1. ingestion of N telemetry records of 1 KB (random bytes) through the Python
     API, `Vault.ingest(customer, country, "telemetry", records)` in batches (each
     batch: one customer, one signed batch access event in its region's access
     log, a fresh AES-256-GCM data key per record wrapped by the region's KEK,
     one ciphertext file per record, metadata + journal in SQLite), then
     `vault.publish()` so the access logs' checkpoints cover every event; timed
     end to end (records made with os.urandom per batch, untimed) -> records/s,
     per-batch p50/p99, for each batch size tried (--batches). The same through
     HTTP POST /ingest (`overt vault serve` subprocess, the ingest token, base64
     records in JSON, bodies encoded beforehand by a client child process, 2
     connections; 30,000 records by default) for comparison;
  2. individual staff reads, each with its own access event durably sequenced
     before the data is decrypted: in-process `Vault.read(id, actor,
     justification, ticket)` of random ids of the vault from phase 1 -> reads/s,
     p50/p99; then GET /objects/<id> against `overt vault serve` on that vault
     (actor token from `overt vault add-actor`, X-Overt-Justification /
     X-Overt-Ticket headers) from wrk with a Lua script picking random ids (or a
     Python httpx load generator), 16 connections -> requests/s, p50/p99;
  3. peers, measured in the same run: the encryption-only floor (AES-256-GCM seal
     of each 1 KB record under a fresh key + wrap of that key under a KEK, with
     `cryptography`, nothing stored) and the raw file-write floor (1 KB files
     written the way the store writes them: temp name + rename into
     objects/<id[:2]>/, one syncfs per batch, no crypto, no metadata, no log),
     run interleaved with the vault batch by batch (the disk of a shared VM
     varies severalfold from minute to minute); for reads, a read floor (read
     the file + unwrap + decrypt) and a durable-append floor (one SQLite WAL
     synchronous=FULL row commit: what logging an event durably costs at least).

Diagnostics (not targets): other ciphertext layouts on the first 20,000 records,
interleaved the same way (create without temp + rename; one pack file per
batch; SQLite blobs), and a cProfile of in-process ingestion and reads, grouped
by cost. Correctness: objects, keys and events counted per region, contents
read back against digests, refusals, and every read journalled with its event.

Targets (2-core machine, full size): ingestion >= 10,000 records/s end to end;
staff reads >= 500/s with p99 <= the access logs' integration period + 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import ctypes
import ctypes.util
import gc
import hashlib
import json
import os
import pstats
import random
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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
    free_port,
    fs_type,
    pad,
    print_table,
    result_line,
    run_child,
    summarize_ns,
    verdict,
    write_results,
)
from overt.log.config import load_config
from overt.log.log import LogPaths
from overt.vault.vault import AccessRefused, Vault, init_vault

RECORD_SIZE = 1024
SEALED_SIZE = 12 + RECORD_SIZE + 16  # nonce || ciphertext || tag, as the store writes it
EVENT_SIZE = 800  # about the size of a signed access event (DSSE envelope)
ORIGIN = "bench.overt.example/vault"
CATEGORY = "telemetry"
ACTOR = "bench-analyst"
JUSTIFICATION = "THREAT_ANALYSIS"
TICKET = "BENCH-1"
TARGET_INGEST_RATE = 10_000  # records/s, end to end, in-process
TARGET_READ_RATE = 500  # reads/s, each with its own access event
READ_P99_SLACK_MS = 100  # read p99 must stay <= integration period + this

COUNTRIES = ("DE", "RU", "US", "FR", "CA", "IT", "AU", "NL")  # RU early: short runs reach it
CUSTOMERS_PER_COUNTRY = 3
REGION_OF = {c: ("ru-moscow" if c == "RU" else "ch-zurich") for c in COUNTRIES}
REGIONS = ("ch-zurich", "ru-moscow")
RESIDENCY = """\
[regions.ch-zurich]
description = "Zurich, Switzerland (supervised)"

[regions.ru-moscow]
description = "Moscow, Russia"

[countries]
EU = "ch-zurich"
US = "ch-zurich"
CA = "ch-zurich"
AU = "ch-zurich"
RU = "ru-moscow"

[categories.telemetry]
description = "threat statistics sent by products"
retention_days = 90
"""

OVERT = [sys.executable, "-m", "overt.cli"]
THIS_FILE = Path(__file__).resolve()

PEERS_NOTE = (
    "peers (no comparable vault is installable here, so they are cost floors measured in "
    "this run on the same records and disk): encryption-only floor = per 1 KB record a fresh "
    "256-bit key, AES-256-GCM seal with `cryptography` (12-byte nonce, short AAD) and a wrap of "
    "the key under a KEK, nothing stored; raw file-write floor = the sealed-size (1,052 "
    "bytes) file per record written the way the store writes it (temp name, write, close, "
    "rename into objects/<id[:2]>/, one syncfs per batch), no crypto, no metadata, no log; "
    "seal + write = the two per-record costs added. Reads: read floor = open + read that "
    "file + unwrap a key + decrypt 1 KB; durable append = one SQLite WAL synchronous=FULL "
    "insert + commit of an 800-byte row (what durably logging one event costs at least)."
)

# --- wrk script -----------------------------------------------------------------
# Counts responses by status in response() and prints one JSON line from done();
# latencies from wrk are in µs. Threads get an id in setup() so random streams differ.

WRK_READ = (
    r"""
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  counts = {}
  local f = assert(io.open(args[1], "r"))
  local token = f:read("*l")
  f:close()
  ids = {}
  for line in io.lines(args[2]) do ids[#ids + 1] = line end
  math.randomseed(tonumber(args[3]) * 1000 + id)
  headers = {["Authorization"] = "Bearer " .. token,
             ["X-Overt-Justification"] = args[4],
             ["X-Overt-Ticket"] = args[5]}
end
function request()
  return wrk.format("GET", "/objects/" .. ids[math.random(1, #ids)], headers)
end
"""
    + WRK_LUA_REPORT
)


@dataclass(frozen=True)
class Config:
    records: int
    batches: tuple[int, ...]  # batch sizes tried in-process; the first one's vault is read
    http_ingest_records: int
    http_ingest_batch: int
    http_ingest_conns: int
    reads: int  # in-process Vault.read calls
    read_seconds: float
    read_warmup_seconds: float
    read_connections: int
    append_samples: int  # durable-append floor
    alternatives: int  # records written in the other layouts (0: none)
    profile_batches: int  # 0: no cProfile pass
    profile_reads: int
    loadgen: str  # "wrk" or "python"
    threads: int
    seed: int
    workdir: Path | None
    quick: bool


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(prog="bench_vault", description="Vault benchmark")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--records", type=int, help="records to ingest (default 100,000)")
    parser.add_argument(
        "--batches",
        help="comma-separated batch sizes for in-process ingestion, each on a fresh vault; the "
        "first one's vault is used for the reads (default 1000; quick 500)",
    )
    parser.add_argument(
        "--http-records",
        type=int,
        help="records ingested over HTTP (default 30,000; quick 2,000)",
    )
    parser.add_argument("--http-ingest-conns", type=int, default=2)
    parser.add_argument("--reads", type=int, help="in-process reads (default 3,000)")
    parser.add_argument("--read-seconds", type=float, help="HTTP read load (default 10)")
    parser.add_argument("--read-connections", type=int, default=16)
    parser.add_argument(
        "--no-alternatives", action="store_true", help="skip the other-layout diagnostics"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile pass")
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="HTTP read load generator; auto: wrk if on PATH, else Python (httpx)",
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="where to make the temporary vaults")
    args = parser.parse_args(list(argv))
    quick = args.quick
    records = args.records or (5_000 if quick else 100_000)
    batches = (
        tuple(int(b) for b in args.batches.split(","))
        if args.batches
        else ((500,) if quick else (1_000,))
    )
    if records < 1 or any(not 1 <= b <= 10_000 for b in batches):
        parser.error("need --records >= 1 and batch sizes from 1 to 10,000 (Vault.MAX_BATCH)")
    loadgen = args.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if shutil.which("wrk") else "python"
    elif loadgen == "wrk" and not shutil.which("wrk"):
        parser.error("--loadgen wrk: wrk is not on PATH (apt-get install wrk)")
    return Config(
        records=records,
        batches=batches,
        http_ingest_records=args.http_records or (2_000 if quick else min(records, 30_000)),
        http_ingest_batch=batches[0],
        http_ingest_conns=args.http_ingest_conns,
        reads=args.reads or (300 if quick else 3_000),
        read_seconds=args.read_seconds or (1.5 if quick else 10.0),
        read_warmup_seconds=0.5 if quick else 2.0,
        read_connections=args.read_connections,
        append_samples=200 if quick else 1_000,
        alternatives=0 if args.no_alternatives else min(records, 20_000),
        profile_batches=0 if args.no_profile else (2 if quick else 10),
        profile_reads=0 if args.no_profile else (100 if quick else 500),
        loadgen=loadgen,
        threads=args.threads,
        seed=args.seed,
        workdir=args.workdir,
        quick=quick,
    )


# --- helpers -----------------------------------------------------------------


def customers(per_country: int = CUSTOMERS_PER_COUNTRY) -> list[tuple[str, str]]:
    """(customer id, country), interleaved so that consecutive batches change country."""
    return [
        (f"customer-{country.lower()}-{k}", country)
        for k in range(per_country)
        for country in COUNTRIES
    ]


def batch_sizes(total: int, batch: int) -> list[int]:
    return [min(batch, total - start) for start in range(0, total, batch)]


_libc: ctypes.CDLL | None = None


def syncfs(path: str) -> None:
    """Linux syncfs on the file system holding `path` (as overt.durable.sync_filesystem)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


CLEANUP_SECONDS = [0.0]  # time spent deleting the work trees (100,000s of files), untimed


def remove_tree(path: Path) -> None:
    """Delete a work tree with rm -rf (faster than shutil.rmtree on 100,000 files).

    Then syncfs, so that the file system's writeback of the deletion is over
    before the next timed phase (otherwise it slows that phase's file creation).
    """
    t0 = time.perf_counter()
    if path.exists():
        subprocess.run(["rm", "-rf", "--", str(path)], check=False)
        syncfs(str(path.parent))
    CLEANUP_SECONDS[0] += time.perf_counter() - t0


def count_rows(db: Path, table: str) -> int:
    if not db.exists():  # a region that got no data has no store yet
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        con.close()


def dir_usage(root: Path) -> dict[str, float]:
    files = total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            files += 1
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return {"files": files, "mb": round(total / 2**20, 1)}


def journal_mark(vault_dir: Path) -> dict[str, int]:
    """Per region, the last sequence number of the store's operation journal."""
    out = {}
    for region in REGIONS:
        db = vault_dir / "regions" / region / "meta.db"
        if not db.exists():
            out[region] = 0
            continue
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            out[region] = int(
                con.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()[0]
            )
        finally:
            con.close()
    return out


def journalled_reads(
    vault_dir: Path, since: dict[str, int], first_event: dict[str, int] | None = None
) -> dict[str, int]:
    """Reads the stores journalled after `since`, and the distinct access events they cite.

    Several reads citing one event are reads the access log holds only once.
    With `first_event` (per region, the access log's size before), counts the
    distinct events from there on, and the reads that cite an older event.
    """
    rows = distinct = older = 0
    first = first_event or dict.fromkeys(REGIONS, 0)
    for region in REGIONS:
        db = vault_dir / "regions" / region / "meta.db"
        if not db.exists():
            continue
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            n, d, o = con.execute(
                "SELECT COUNT(*), COUNT(DISTINCT CASE WHEN event >= ?1 THEN event END), "
                "COALESCE(SUM(event < ?1), 0) FROM journal WHERE op = 'read' AND seq > ?2",
                (first[region], since[region]),
            ).fetchone()
        finally:
            con.close()
        rows += int(n)
        distinct += int(d)
        older += int(o)
    return {
        "reads": rows,
        "distinct_events": distinct,
        "citing_an_older_event": older,
        "sharing_an_event": rows - distinct,
    }


def published_sizes(vault_dir: Path) -> dict[str, int]:
    """The size line of each region's public checkpoint file."""
    sizes = {}
    for region in REGIONS:
        lines = LogPaths(vault_dir / "logs" / region).checkpoint.read_text().splitlines()
        sizes[region] = int(lines[1])
    return sizes


def new_vault(directory: Path) -> None:
    init_vault(directory, RESIDENCY, ORIGIN)


def add_actor(directory: Path) -> str:
    """`overt vault add-actor`: allow the benchmark's analyst; returns the API token."""
    proc = subprocess.run(
        [
            *OVERT,
            "vault",
            "add-actor",
            str(directory),
            "--name",
            ACTOR,
            "--role",
            "threat analyst",
            "--employer",
            "Bench Security AG",
            "--location",
            "CH",
            "--justification",
            JUSTIFICATION,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"overt vault add-actor failed: {proc.stderr[-2000:]}")
    return proc.stdout.strip().splitlines()[-1].strip()


def integration_period_ms(vault_dir: Path) -> int:
    periods = {
        load_config(vault_dir / "logs" / r / "log.toml").integration_period_ms for r in REGIONS
    }
    return max(periods)


def latency_summary(samples_ns: Sequence[int]) -> dict[str, float]:
    s = summarize_ns(samples_ns)
    ordered = sorted(samples_ns)
    s["max_us"] = ordered[-1] / 1000
    return s


def fmt_ms(us: float) -> str:
    return f"{us / 1000:,.2f} ms" if us < 10_000 else f"{us / 1000:,.0f} ms"


def fmt_p50_p99(s: dict[str, float]) -> str:
    return f"{s['median_us'] / 1000:,.2f} / {s['p99_us'] / 1000:,.2f} ms"


# --- layouts: the raw file-write floor and other ways to store ciphertexts -----------


class Layout:
    """A way of storing a batch's ciphertexts durably, timed batch by batch.

    Runs interleaved with the vault's batches (one vault batch, then one batch
    of each layout, on the same ids), so that the floors see the same disk as
    overt: on a shared VM, file creation and syncfs vary severalfold from
    minute to minute.
    """

    def __init__(self, key: str, description: str, path: Path, limit: int | None = None) -> None:
        self.key = key
        self.limit = limit  # records to write at most (None: every batch)
        self.description = description
        self.path = path
        self.data = os.urandom(SEALED_SIZE)  # a sealed record's size; content is irrelevant
        self.lat: list[int] = []
        self.sizes: list[int] = []
        self.cpu_ns = 0
        self.records = 0
        self.batches = 0
        self._db: sqlite3.Connection | None = None
        if key == "sqlite_blobs":
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("CREATE TABLE sealed (id TEXT PRIMARY KEY, data BLOB NOT NULL)")
        else:
            path.mkdir(parents=True)

    def write(self, names: Sequence[str]) -> None:
        if self.limit is not None and self.records >= self.limit:
            return
        c0, t0 = time.process_time_ns(), time.perf_counter_ns()
        getattr(self, "_" + self.key)(names)
        self.lat.append(time.perf_counter_ns() - t0)
        self.sizes.append(len(names))
        self.cpu_ns += time.process_time_ns() - c0
        self.records += len(names)
        self.batches += 1

    def _files(self, names: Sequence[str], direct: bool) -> None:
        root, data, pid = str(self.path), self.data, os.getpid()
        for name in names:
            folder = f"{root}/{name[:2]}"
            path = f"{folder}/{name}"
            target = path if direct else f"{folder}/.{name}.{pid}.tmp"
            flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if direct else os.O_TRUNC)
            try:
                fd = os.open(target, flags, 0o644)
            except FileNotFoundError:
                os.makedirs(folder, exist_ok=True)
                fd = os.open(target, flags, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            if not direct:
                os.replace(target, path)
        syncfs(root)

    def _rename_files(self, names: Sequence[str]) -> None:
        self._files(names, direct=False)

    def _direct_files(self, names: Sequence[str]) -> None:
        self._files(names, direct=True)

    def _pack_file_per_batch(self, names: Sequence[str]) -> None:
        index = {}  # what metadata rows would hold: id -> (pack, offset, length)
        pack = f"pack-{self.batches:06d}"
        for i, name in enumerate(names):
            index[name] = (pack, i * SEALED_SIZE, SEALED_SIZE)
        fd = os.open(self.path / pack, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, self.data * len(names))
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(str(self.path))

    def _sqlite_blobs(self, names: Sequence[str]) -> None:
        assert self._db is not None
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany(
            "INSERT INTO sealed (id, data) VALUES (?, ?)", [(n, self.data) for n in names]
        )
        self._db.execute("COMMIT")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def remove(self) -> None:
        self.close()
        if self.key == "sqlite_blobs":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        else:
            remove_tree(self.path)

    def result(self, first: int | None = None) -> dict[str, Any]:
        """Rates over every batch written, or over the batches holding the first records."""
        k = len(self.lat)
        if first is not None:
            k, covered = 0, 0
            while k < len(self.sizes) and covered < first:
                covered += self.sizes[k]
                k += 1
        records, timed = sum(self.sizes[:k]), sum(self.lat[:k])
        out = {
            "layout": self.description,
            "records": records,
            "records_per_s": records / (timed / 1e9),
            "us_per_record": timed / 1e3 / records,
            "batch_latency": latency_summary(self.lat[:k]),
        }
        if k == len(self.lat):
            out["cpu_us_per_record"] = self.cpu_ns / 1e3 / records
        return out


FLOOR_LAYOUT = (
    "rename_files",
    "raw file-write floor: one file per record, temp name + rename into objects/<id[:2]>/ "
    "(as the store), one syncfs per batch",
)
ALTERNATIVE_LAYOUTS = (
    (
        "direct_files",
        "one file per record created under its final name (O_EXCL), no temp + rename, "
        "one syncfs per batch",
    ),
    (
        "pack_file_per_batch",
        "one pack file per batch (id -> offset in metadata), fsync file + directory",
    ),
    (
        "sqlite_blobs",
        "SQLite BLOB per record (WAL, synchronous=FULL), one transaction per batch",
    ),
)


# --- phase 1: in-process ingestion --------------------------------------------------


def bench_ingest(
    cfg: Config, directory: Path, batch: int, layouts: Sequence[Layout]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ingest cfg.records records in batches into a fresh vault; publish; check.

    After each vault batch, each layout (the raw file-write floor, the other
    layouts) writes a batch of the same ids, timed on its own. Returns the
    measurement and, for the read phases, the ids (with their region) and
    SHA-256 digests of a sample of the records.
    """
    clock = time.perf_counter_ns
    new_vault(directory)
    people = customers(CUSTOMERS_PER_COUNTRY)
    rng = random.Random(f"ingest:{cfg.seed}:{batch}")
    sizes = batch_sizes(cfg.records, batch)
    ids: list[str] = []
    regions: list[str] = []
    digests: dict[str, str] = {}
    expected_events: Counter[str] = Counter()
    expected_objects: Counter[str] = Counter()
    misrouted = 0
    lat: list[int] = []
    cpu_ns = 0
    watch = OtherLoad()
    t_open = clock()
    vault = Vault(directory)
    open_ns = clock() - t_open
    gc.collect()
    try:
        for b, n in enumerate(sizes):
            customer, country = people[b % len(people)]
            records = [os.urandom(RECORD_SIZE) for _ in range(n)]  # untimed
            c0, t0 = time.process_time_ns(), clock()
            stored = vault.ingest(customer, country, CATEGORY, records)
            lat.append(clock() - t0)
            cpu_ns += time.process_time_ns() - c0
            region = REGION_OF[country]
            expected_events[region] += 1
            expected_objects[region] += n
            misrouted += sum(1 for s in stored if s.region != region)
            ids.extend(s.id for s in stored)
            regions.extend(s.region for s in stored)
            for j in rng.sample(range(n), min(n, 5)):
                digests[stored[j].id] = hashlib.sha256(records[j]).hexdigest()
            del records
            for layout in layouts:
                layout.write([s.id for s in stored])
        c0, t0 = time.process_time_ns(), clock()
        vault.publish()
        publish_ns = clock() - t0
        cpu_ns += time.process_time_ns() - c0
        state = {
            r: {
                "sequenced": vault.log(r).sequenced_size(),
                "published": vault.log(r).checkpoint.size,
            }
            for r in REGIONS
        }
    finally:
        t0 = clock()
        vault.close()
        close_ns = clock() - t0
    ingest_s = sum(lat) / 1e9
    e2e_s = ingest_s + publish_ns / 1e9
    objects = {r: count_rows(directory / "regions" / r / "meta.db", "objects") for r in REGIONS}
    keys = {r: count_rows(directory / "keyring" / r / "keys.db", "keys") for r in REGIONS}
    checks = {
        "misrouted": misrouted,
        "objects": objects,
        "wrapped_keys": keys,
        "expected_objects": dict(expected_objects),
        "access_logs": state,
        "expected_events": dict(expected_events),
        "objects_ok": all(objects[r] == keys[r] == expected_objects.get(r, 0) for r in REGIONS),
        "events_ok": all(
            state[r]["sequenced"] == state[r]["published"] == expected_events.get(r, 0)
            for r in REGIONS
        ),
    }
    checks["ok"] = misrouted == 0 and checks["objects_ok"] and checks["events_ok"]
    result = {
        "records": cfg.records,
        "batch": batch,
        "batches": len(sizes),
        "record_size": RECORD_SIZE,
        "customers": len(people),
        "records_per_s": cfg.records / e2e_s,
        "records_per_s_without_publish": cfg.records / ingest_s,
        "seconds": e2e_s,
        "ingest_seconds": ingest_s,
        "publish_ms": publish_ns / 1e6,
        "open_ms": open_ns / 1e6,
        "close_ms": close_ns / 1e6,
        "cpu_us_per_record": cpu_ns / 1e3 / cfg.records,
        "cpu_share_of_wall": cpu_ns / 1e9 / e2e_s,
        "batch_latency": latency_summary(lat),
        "other_processes_cores": watch.stop(),
        "disk": dir_usage(directory),
        "checks": checks,
    }
    return result, {"ids": ids, "regions": regions, "digests": digests}


# --- phase 1b: peers for ingestion ------------------------------------------------------


def bench_encrypt_floor(cfg: Config, batch: int) -> dict[str, Any]:
    """Fresh key, seal 1 KB, wrap the key under a KEK: per record, nothing stored."""
    clock = time.perf_counter_ns
    kek = AESGCM(AESGCM.generate_key(bit_length=256))
    timed = 0
    cpu = 0
    for n in batch_sizes(cfg.records, batch):
        records = [os.urandom(RECORD_SIZE) for _ in range(n)]  # untimed
        names = [secrets.token_hex(12).encode() for _ in range(n)]
        c0, t0 = time.process_time_ns(), clock()
        for name, record in zip(names, records, strict=True):
            key = AESGCM.generate_key(bit_length=256)
            nonce = os.urandom(12)
            sealed = nonce + AESGCM(key).encrypt(nonce, record, name)
            wrap_nonce = os.urandom(12)
            wrapped = wrap_nonce + kek.encrypt(wrap_nonce, key, name)
        timed += clock() - t0
        cpu += time.process_time_ns() - c0
    assert len(sealed) == SEALED_SIZE and len(wrapped) == 12 + 32 + 16
    return {
        "records": cfg.records,
        "records_per_s": cfg.records / (timed / 1e9),
        "us_per_record": timed / 1e3 / cfg.records,
        "cpu_us_per_record": cpu / 1e3 / cfg.records,
    }


# --- phase 2: HTTP ingestion -------------------------------------------------------------


class Server(ChildServer):
    """`overt vault serve DIR` in a subprocess, stopped with SIGINT (a clean shutdown)."""

    stop_timeout = 120.0

    def __init__(self, directory: Path, logfile: Path) -> None:
        port = free_port()
        cmd = [*OVERT, "vault", "serve", str(directory), "--listen", f"{HOST}:{port}"]
        super().__init__(cmd, logfile, port)

    def log_sizes(self) -> dict[str, int]:
        """Events sequenced per region (GET /status)."""
        return {r: int(v["access_log_size"]) for r, v in self.status()["regions"].items()}


def child_ingest_client(
    url: str, token_file: str, records: int, batch: int, conns: int
) -> dict[str, Any]:
    """POST /ingest of `records` records in bodies of `batch`, from `conns` connections.

    The bodies (JSON, base64 records) are made before the clock starts.
    """
    import httpx

    people = customers()
    bodies: list[tuple[str, bytes]] = []
    encode_t0 = time.perf_counter()
    for b, n in enumerate(batch_sizes(records, batch)):
        customer, country = people[b % len(people)]
        doc = {
            "customer": customer,
            "country": country,
            "category": CATEGORY,
            "records": [base64.b64encode(os.urandom(RECORD_SIZE)).decode() for _ in range(n)],
        }
        bodies.append((country, json.dumps(doc).encode()))
    encode_s = time.perf_counter() - encode_t0
    token = Path(token_file).read_text().strip()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def run() -> dict[str, Any]:
        queue = list(reversed(range(len(bodies))))
        lat: list[int] = []
        status: Counter[str] = Counter()
        acked = 0
        misrouted = 0
        errors = 0
        limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300.0) as client:

            async def worker() -> None:
                nonlocal acked, misrouted, errors
                while queue:
                    i = queue.pop()
                    country, body = bodies[i]
                    t0 = time.perf_counter_ns()
                    try:
                        resp = await client.post("/ingest", content=body, headers=headers)
                    except httpx.HTTPError:
                        errors += 1
                        continue
                    lat.append(time.perf_counter_ns() - t0)
                    status[str(resp.status_code)] += 1
                    if resp.status_code == 200:
                        doc = resp.json()
                        acked += len(doc["ids"])
                        misrouted += doc["region"] != REGION_OF[country]

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(conns)))
            elapsed = time.perf_counter() - t0
        return {
            "requests": len(bodies),
            "seconds": elapsed,
            "acknowledged": acked,
            "misrouted": misrouted,
            "exceptions": errors,
            "status": dict(status),
            "request_latency": latency_summary(lat) if lat else None,
        }

    result = asyncio.run(run())
    result["encode_seconds"] = encode_s
    result["body_bytes"] = len(bodies[0][1])
    return result


def bench_http_ingest(cfg: Config, work: Path) -> dict[str, Any]:
    directory = work / "vault-http"
    new_vault(directory)
    server = Server(directory, work / "serve-ingest.log")
    try:
        server.wait_ready()
        watch = OtherLoad(server.proc.pid)
        srv0, gen0, t0 = server.cpu_s(), children_cpu_s(), time.perf_counter()
        r = run_child(
            THIS_FILE,
            [
                "ingest-client",
                "--url",
                server.url,
                "--token-file",
                str(directory / "secrets" / "ingest-token"),
                "--records",
                str(cfg.http_ingest_records),
                "--batch",
                str(cfg.http_ingest_batch),
                "--conns",
                str(cfg.http_ingest_conns),
            ],
            timeout=1800,
        )
        wall = time.perf_counter() - t0
        server_cpu = server.cpu_s() - srv0
        r["other_processes_cores"] = watch.stop()
        r["client_cpu_seconds_incl_encoding"] = children_cpu_s() - gen0
        r["server_cpu_us_per_record"] = server_cpu / max(1, r["acknowledged"]) * 1e6
        r["server_cpu_cores"] = server_cpu / max(1e-9, wall - r["encode_seconds"])
        r["sequenced_before_shutdown"] = server.log_sizes()
    finally:
        r_stop = server.stop()
    r["server_exit"] = r_stop
    r["server_start_seconds"] = server.start_seconds
    r["server_stop_seconds"] = server.stop_seconds
    r["records_per_s"] = r["acknowledged"] / r["seconds"]
    r["batch"] = cfg.http_ingest_batch
    r["connections"] = cfg.http_ingest_conns
    expected_events: Counter[str] = Counter()
    people = customers(CUSTOMERS_PER_COUNTRY)
    for b, _ in enumerate(batch_sizes(cfg.http_ingest_records, cfg.http_ingest_batch)):
        expected_events[REGION_OF[people[b % len(people)][1]]] += 1
    objects = {r_: count_rows(directory / "regions" / r_ / "meta.db", "objects") for r_ in REGIONS}
    published = published_sizes(directory)
    r["checks"] = {
        "objects": objects,
        "published_after_shutdown": published,
        "expected_events": dict(expected_events),
    }
    r["checks"]["ok"] = (
        r["acknowledged"] == cfg.http_ingest_records == sum(objects.values())
        and r["misrouted"] == 0
        and all(
            r["sequenced_before_shutdown"][x] == published[x] == expected_events.get(x, 0)
            for x in REGIONS
        )
    )
    remove_tree(directory)
    return r


# --- phase 3: in-process reads ---------------------------------------------------------


def bench_reads(
    cfg: Config, directory: Path, data: dict[str, Any], profiler: cProfile.Profile | None
) -> dict[str, Any]:
    clock = time.perf_counter_ns
    ids: list[str] = data["ids"]
    digests: dict[str, str] = data["digests"]
    rng = random.Random(f"reads:{cfg.seed}")
    picks = [rng.randrange(len(ids)) for _ in range(cfg.reads)]
    before = published_sizes(directory)
    mark = journal_mark(directory)
    watch = OtherLoad()
    vault = Vault(directory)
    try:
        sequenced0 = {r: vault.log(r).sequenced_size() for r in REGIONS}
        lat: list[int] = []
        bad = checked = 0
        cpu0 = time.process_time_ns()
        gc.collect()
        wall0 = clock()
        for p in picks:
            object_id = ids[p]
            t0 = clock()
            plain = vault.read(object_id, ACTOR, JUSTIFICATION, TICKET)
            lat.append(clock() - t0)
            want = digests.get(object_id)
            if want is not None:
                checked += 1
                bad += hashlib.sha256(plain).hexdigest() != want
            elif len(plain) != RECORD_SIZE:
                bad += 1
        wall_ns = clock() - wall0
        cpu_ns = time.process_time_ns() - cpu0
        # Untimed: every sampled digest read back, and one refusal.
        for object_id, want in list(digests.items())[:20]:
            checked += 1
            bad += (
                hashlib.sha256(vault.read(object_id, ACTOR, JUSTIFICATION, TICKET)).hexdigest()
                != want
            )
        extra = 20
        try:
            vault.read(ids[0], ACTOR, "LEGAL_REQUEST", TICKET)
            refused = False
        except AccessRefused:  # the actor may not use LEGAL_REQUEST
            refused = True
        extra += 1
        prof = None
        if profiler is not None and cfg.profile_reads:
            prof_picks = [ids[rng.randrange(len(ids))] for _ in range(cfg.profile_reads)]
            profiler.enable()
            for object_id in prof_picks:
                vault.read(object_id, ACTOR, JUSTIFICATION, TICKET)
            profiler.disable()
            prof = profile_summary(pstats.Stats(profiler), cfg.profile_reads, "read")
            extra += cfg.profile_reads
        t0 = clock()
        vault.publish()
        publish_ms = (clock() - t0) / 1e6
        sequenced1 = {r: vault.log(r).sequenced_size() for r in REGIONS}
        published1 = {r: vault.log(r).checkpoint.size for r in REGIONS}
    finally:
        vault.close()
    events = sum(sequenced1.values()) - sum(sequenced0.values())
    journal = journalled_reads(directory, mark, sequenced0)
    period = integration_period_ms(directory)
    return {
        "reads": cfg.reads,
        "reads_per_s": cfg.reads / (wall_ns / 1e9),
        "latency": latency_summary(lat),
        "cpu_us_per_read": cpu_ns / 1e3 / cfg.reads,
        "cpu_share_of_wall": cpu_ns / wall_ns,
        "other_processes_cores": watch.stop(),
        "integration_period_ms": period,
        "p99_target_ms": period + READ_P99_SLACK_MS,
        "publish_ms_after": publish_ms,
        "profile": prof,
        "checks": {
            "digests_checked": checked,
            "content_mismatches": bad,
            "refusal_of_unlisted_justification": refused,
            "reads_done": cfg.reads + extra,
            "reads_journalled": journal["reads"],
            "events_logged": events,
            # the refusal is logged, not journalled
            "events_expected": journal["distinct_events"] + 1,
            # identical events (same object, actor, justification, ticket and second) are
            # one log entry: the log deduplicates, and an event has no nonce
            "reads_sharing_an_event": journal["sharing_an_event"],
            "published_before": before,
            "published_after": published1,
            "ok": bad == 0
            and refused
            and journal["reads"] == cfg.reads + extra - 1
            and events == journal["distinct_events"] + 1
            and published1 == sequenced1,
        },
    }


def bench_read_peers(cfg: Config, root: Path, names: list[str], work: Path) -> dict[str, Any]:
    """Read floor (file + unwrap + decrypt) and the durable-append floor."""
    clock = time.perf_counter_ns
    kek = AESGCM(AESGCM.generate_key(bit_length=256))
    key = AESGCM.generate_key(bit_length=256)
    aad = b"object-id|region"
    nonce, wrap_nonce = os.urandom(12), os.urandom(12)
    sealed = nonce + AESGCM(key).encrypt(nonce, os.urandom(RECORD_SIZE), aad)
    wrapped = wrap_nonce + kek.encrypt(wrap_nonce, key, aad)
    rng = random.Random(f"read-floor:{cfg.seed}")
    picks = [names[rng.randrange(len(names))] for _ in range(cfg.reads)]
    lat: list[int] = []
    for name in picks:
        t0 = clock()
        with open(f"{root}/{name[:2]}/{name}", "rb") as f:
            blob = f.read()
        k = kek.decrypt(wrapped[:12], wrapped[12:], aad)
        plain = AESGCM(k).decrypt(sealed[:12], sealed[12:], aad)
        lat.append(clock() - t0)
    assert len(blob) == SEALED_SIZE and len(plain) == RECORD_SIZE
    read = latency_summary(lat)
    read["reads_per_s"] = 1e6 / read["mean_us"]

    path = work / "append-floor.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE events (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL)")
    lat = []
    try:
        for _ in range(cfg.append_samples):
            row = os.urandom(EVENT_SIZE)
            t0 = clock()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO events (entry) VALUES (?)", (row,))
            db.execute("COMMIT")
            lat.append(clock() - t0)
    finally:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    append = latency_summary(lat)
    append["per_s"] = 1e6 / append["mean_us"]
    both = read["mean_us"] + append["mean_us"]
    return {
        "read": read,
        "durable_append": append,
        "read_plus_one_append": {"us_per_read": both, "reads_per_s": 1e6 / both},
    }


# --- phase 4: HTTP reads ---------------------------------------------------------------


def child_read_loadgen(
    url: str, seconds: float, conns: int, ids_file: str, token_file: str, seed: int
) -> dict[str, Any]:
    """The Python fallback load generator: httpx.AsyncClient, `conns` workers."""
    import httpx

    ids = Path(ids_file).read_text().split()
    token = Path(token_file).read_text().strip()
    headers = {
        "Authorization": f"Bearer {token}",
        "X-Overt-Justification": JUSTIFICATION,
        "X-Overt-Ticket": TICKET,
    }

    async def run() -> dict[str, Any]:
        limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
        latencies: list[int] = []
        status: Counter[str] = Counter()
        errors = 0
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:
            deadline = time.monotonic() + seconds

            async def worker(wid: int) -> None:
                nonlocal errors
                rng = random.Random(f"{seed}:{wid}")
                while time.monotonic() < deadline:
                    t0 = time.perf_counter_ns()
                    try:
                        resp = await client.get(f"/objects/{rng.choice(ids)}", headers=headers)
                    except httpx.HTTPError:
                        errors += 1
                        continue
                    latencies.append(time.perf_counter_ns() - t0)
                    status[str(resp.status_code)] += 1

            t0 = time.perf_counter()
            await asyncio.gather(*(worker(w) for w in range(conns)))
            elapsed = time.perf_counter() - t0
        lat = summarize_ns(latencies) if latencies else None
        return {
            "requests": len(latencies),
            "duration_us": elapsed * 1e6,
            "errors": {"exceptions": errors},
            "latency_us": None
            if lat is None
            else {"p50": lat["median_us"], "p99": lat["p99_us"], "mean": lat["mean_us"]},
            "status": dict(status),
        }

    return asyncio.run(run())


def drive_reads(
    cfg: Config, url: str, seconds: float, work: Path, ids_file: Path, token_file: Path, seed: int
) -> dict[str, Any]:
    if cfg.loadgen == "wrk":
        script = work / "read.lua"
        script.write_text(WRK_READ)
        cmd = [
            "wrk",
            f"-t{min(cfg.threads, cfg.read_connections)}",
            f"-c{cfg.read_connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
            "--",
            str(token_file),
            str(ids_file),
            str(seed),
            JUSTIFICATION,
            TICKET,
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr[-2000:]}")
        result = result_line(proc.stdout, "wrk")
        result["generator"] = f"wrk {' '.join(cmd[1:4])} + Lua script (random ids)"
        return result
    result = run_child(
        THIS_FILE,
        [
            "read-loadgen",
            "--url",
            url,
            "--seconds",
            str(seconds),
            "--conns",
            str(cfg.read_connections),
            "--ids-file",
            str(ids_file),
            "--token-file",
            str(token_file),
            "--seed",
            str(seed),
        ],
        timeout=seconds + 120,
    )
    result["generator"] = f"python httpx.AsyncClient, {cfg.read_connections} workers"
    return result


def bench_http_reads(
    cfg: Config, directory: Path, data: dict[str, Any], token: str, work: Path
) -> dict[str, Any]:
    import httpx

    ids_file = work / "ids.txt"
    ids_file.write_text("\n".join(data["ids"]) + "\n")
    token_file = work / "actor-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    server = Server(directory, work / "serve-reads.log")
    checks: dict[str, Any] = {}
    try:
        server.wait_ready()
        if cfg.read_warmup_seconds:
            # Another seed: the measured run must not repeat the warm-up's ids.
            drive_reads(
                cfg, server.url, cfg.read_warmup_seconds, work, ids_file, token_file, cfg.seed + 1
            )
        sizes0 = server.log_sizes()
        published0 = published_sizes(directory)
        mark0 = journal_mark(directory)
        watch = OtherLoad(server.proc.pid)
        srv0, gen0, t0 = server.cpu_s(), children_cpu_s(), time.perf_counter()
        r = drive_reads(cfg, server.url, cfg.read_seconds, work, ids_file, token_file, cfg.seed)
        wall = time.perf_counter() - t0
        r["other_processes_cores"] = watch.stop()
        r["server_cpu_cores"] = (server.cpu_s() - srv0) / wall
        r["generator_cpu_cores"] = (children_cpu_s() - gen0) / wall
        time.sleep(0.2)  # let requests in flight when the load stopped finish
        sizes1 = server.log_sizes()
        published1 = published_sizes(directory)
        journal = journalled_reads(directory, mark0, sizes0)
        # Untimed checks: sampled contents, and the gate's refusals.
        headers = {
            "Authorization": f"Bearer {token}",
            "X-Overt-Justification": JUSTIFICATION,
            "X-Overt-Ticket": TICKET,
        }
        bad = 0
        sample = list(data["digests"].items())[:20]
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for object_id, want in sample:
                resp = client.get(f"/objects/{object_id}", headers=headers)
                bad += resp.status_code != 200 or hashlib.sha256(resp.content).hexdigest() != want
            no_ticket = client.get(
                f"/objects/{sample[0][0]}",
                headers={k: v for k, v in headers.items() if k != "X-Overt-Ticket"},
            ).status_code
            no_token = client.get(
                f"/objects/{sample[0][0]}",
                headers={k: v for k, v in headers.items() if k != "Authorization"},
            ).status_code
    finally:
        exit_code = server.stop()
    r["seconds"] = r["duration_us"] / 1e6
    r["ok_responses"] = int(r["status"].get("200", 0))
    r["ok_per_s"] = r["ok_responses"] / r["seconds"]
    r["requests_per_s"] = r["requests"] / r["seconds"]
    r["non_200"] = {k: v for k, v in r["status"].items() if k != "200"}
    r["server_cpu_us_per_request"] = (
        r["server_cpu_cores"] * wall / r["requests"] * 1e6 if r["requests"] else None
    )
    period = integration_period_ms(directory)
    r["integration_period_ms"] = period
    r["p99_target_ms"] = period + READ_P99_SLACK_MS
    r["warmup_seconds"] = cfg.read_warmup_seconds
    events = sum(sizes1.values()) - sum(sizes0.values())
    final = published_sizes(directory)
    checks.update(
        {
            "events_logged_during_load": events,
            "reads_journalled_during_load": journal["reads"],
            "reads_sharing_an_event": journal["sharing_an_event"],
            # wrk stops counting at its deadline; requests then in flight still complete.
            "reads_minus_responses": journal["reads"] - r["requests"],
            "published_during_load": {x: published1[x] - published0[x] for x in REGIONS},
            "published_after_shutdown": final,
            "sample_mismatches": bad,
            "missing_ticket_status": no_ticket,
            "missing_token_status": no_token,
            "server_exit": exit_code,
        }
    )
    checks["ok"] = (
        bad == 0
        and no_ticket == 403
        and no_token == 401
        and 0 <= journal["reads"] - r["requests"] <= cfg.read_connections
        and events == journal["distinct_events"]
        and not r["non_200"]
        and sum(final.values()) >= sum(sizes1.values())
    )
    r["checks"] = checks
    r["server_start_seconds"] = server.start_seconds
    r["server_stop_seconds"] = server.stop_seconds
    return r


# --- diagnostics: cProfile --------------------------------------------------------------

PROFILE_GROUPS = (
    ("object files: open, write, read, rename, close, mkdir", "files"),
    ("syncfs / fsync of object files", "sync"),
    ("SQLite (metadata, journal, keys, access log)", "sqlite"),
    ("AES-GCM, key generation, random", "crypto"),
    ("Ed25519 signing", "sign"),
    ("json (AAD, events)", "json"),
    ("pathlib", "pathlib"),
    ("Merkle root of the batch", "merkle"),
    ("overt Python code (own time)", "overt"),
    ("other", "other"),
)


def _group(filename: str, func: str) -> str:
    if "sqlite3" in func:
        return "sqlite"
    if func in ("<built-in method posix.fsync>", "<built-in method posix.fdatasync>") or (
        "sync_filesystem" in func or "fsync_dir" in func
    ):
        return "sync"
    if func in (
        "<built-in method posix.open>",
        "<built-in method posix.write>",
        "<built-in method posix.close>",
        "<built-in method posix.replace>",
        "<built-in method posix.unlink>",
        "<built-in method posix.mkdir>",
        "<built-in method posix.stat>",
        "<built-in method io.open>",
        "<method 'read' of '_io.BufferedReader' objects>",
    ):
        return "files"
    if "AESGCM" in func or "generate_key" in func or "urandom" in func:
        return "crypto"
    if "Ed25519PrivateKey" in func:
        return "sign"
    if "/json/" in filename:
        return "json"
    if filename.endswith("pathlib.py"):
        return "pathlib"
    if "/overt/tlog/" in filename or "sha256" in func:
        return "merkle"
    if "/overt/" in filename:
        return "overt"
    return "other"


def profile_summary(stats: pstats.Stats, units: int, unit: str) -> dict[str, Any]:
    """Own time by group and the top functions, per `unit` (record or read)."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    groups: Counter[str] = Counter()
    rows = []
    for (filename, line, func), (_, ncalls, tottime, _, _) in raw.items():
        groups[_group(filename, func)] += tottime
        where = func if filename == "~" else f"{Path(filename).name}:{line}({func})"
        rows.append((tottime, ncalls, where))
    rows.sort(reverse=True)
    per = f"us_per_{unit}"
    return {
        unit + "s": units,
        "own_time_s": round(total, 4),
        per: round(total / units * 1e6, 2),
        "groups": {
            label: {
                "share": round(groups[key] / total, 3),
                per: round(groups[key] / units * 1e6, 2),
            }
            for label, key in PROFILE_GROUPS
            if total
        },
        "top_by_own_time": [
            {
                "function": where,
                "calls": ncalls,
                "share": round(tt / total, 3) if total else None,
                per: round(tt / units * 1e6, 2),
            }
            for tt, ncalls, where in rows[:15]
        ],
    }


def profile_ingest(cfg: Config, work: Path, batch: int) -> dict[str, Any]:
    """cProfile of in-process Vault.ingest and the final publish, on a fresh vault.

    One batch per region first, unprofiled (stores opened, object folders made).
    """
    directory = work / "vault-profile"
    new_vault(directory)
    people = customers(CUSTOMERS_PER_COUNTRY)
    profiler = cProfile.Profile()
    vault = Vault(directory)
    n = 0
    try:
        # Untimed warm-up: both regions' stores opened, their object folders made.
        for customer, country in people[:2]:
            vault.ingest(
                customer, country, CATEGORY, [os.urandom(RECORD_SIZE) for _ in range(batch)]
            )
        for b in range(cfg.profile_batches):
            customer, country = people[b % len(people)]
            records = [os.urandom(RECORD_SIZE) for _ in range(batch)]
            profiler.enable()
            vault.ingest(customer, country, CATEGORY, records)
            profiler.disable()
            n += batch
        profiler.enable()
        vault.publish()
        profiler.disable()
    finally:
        vault.close()
    remove_tree(directory)
    return profile_summary(pstats.Stats(profiler), n, "record")


# --- report ------------------------------------------------------------------------------


def report(
    cfg: Config,
    ingest: list[dict[str, Any]],
    encrypt: dict[str, Any],
    alternatives: dict[str, Any] | None,
    http_ingest: dict[str, Any],
    reads: dict[str, Any],
    read_peers: dict[str, Any],
    http_reads: dict[str, Any],
    profile: dict[str, Any] | None,
) -> dict[str, Any]:
    """Print the tables and notes; return ratios and target verdicts for the JSON."""
    targets: dict[str, dict[str, Any]] = {}
    ratios: dict[str, float] = {}

    rows: list[list[str]] = []
    for r in ingest:
        rate = r["records_per_s"]
        floor = r["peer_seal_and_write"]["records_per_s"]
        ratio = rate / floor
        name = f"ingest_batch_{r['batch']}_records_per_s"
        ratios[f"ingest_batch_{r['batch']}_over_seal_and_write_floor"] = ratio
        ok = rate >= TARGET_INGEST_RATE
        targets[name] = {"target": TARGET_INGEST_RATE, "value": rate, "pass": ok}
        rows.append(
            [
                f"Vault.ingest, batch {r['batch']:,}, end to end incl. publish",
                fmt_rate(rate),
                fmt_rate(floor) + " (seal + write)",
                fmt_ratio(ratio),
                f"≥ {TARGET_INGEST_RATE:,}/s",
                verdict(ok),
            ]
        )
        rows.append(["  without the final publish", fmt_rate(r["records_per_s_without_publish"])])
        rows.append(
            [
                f"  per batch p50 / p99 ({r['batches']:,} batches)",
                fmt_p50_p99(r["batch_latency"]),
                fmt_p50_p99(r["peer_write"]["batch_latency"]) + " (write)",
            ]
        )
        rows.append(
            [
                "  per record: wall / CPU",
                f"{1e6 / rate:,.1f} / {r['cpu_us_per_record']:,.1f} µs",
                f"{r['peer_seal_and_write']['us_per_record']:,.1f} / "
                f"{encrypt['cpu_us_per_record'] + r['peer_write']['cpu_us_per_record']:,.1f} µs",
            ]
        )
        rows.append(
            [
                "  final publish of the access logs",
                f"{r['publish_ms']:,.1f} ms ({sum(r['checks']['expected_events'].values())} "
                "events)",
            ]
        )
        rows.append(
            [
                "  peer alone: raw file-write floor",
                "",
                fmt_rate(r["peer_write"]["records_per_s"]),
            ]
        )
    h = http_ingest
    base = ingest[0]["records_per_s"]
    ratios["http_ingest_over_inprocess"] = h["records_per_s"] / base
    rows.append(
        [
            f"POST /ingest, batch {h['batch']:,}, {h['connections']} conns "
            f"(n={h['acknowledged']:,})",
            fmt_rate(h["records_per_s"]),
            fmt_rate(base) + " (in-process)",
            fmt_ratio(ratios["http_ingest_over_inprocess"]),
            "(comparison)",
        ]
    )
    if h["request_latency"]:
        rows.append(["  per request p50 / p99", fmt_p50_p99(h["request_latency"])])
    rows.append(
        [
            "  server CPU per record / cores",
            f"{h['server_cpu_us_per_record']:,.1f} µs / {h['server_cpu_cores']:.2f}",
        ]
    )
    rows.append(
        [
            "peer alone: encryption-only floor (seal + wrap)",
            "",
            fmt_rate(encrypt["records_per_s"]),
        ]
    )
    print_table(
        f"Vault ingestion: {cfg.records:,} telemetry records of 1 KB, 2 regions, durable",
        ["measure", "overt", "floor (peer)", "ratio\novert/floor", "target", "overt"],
        pad(rows),
        caption="floor of an ingestion row: the encryption-only floor's and that run's raw "
        "file-write floor's per-record costs added (the write floor ran interleaved, batch by "
        "batch, with the vault)",
    )

    rp = read_peers["read_plus_one_append"]["reads_per_s"]
    rows = []

    def read_rows(
        label: str, key: str, rate: float, p50_us: float, p99_us: float, goal: int
    ) -> None:
        ok_rate = rate >= TARGET_READ_RATE
        p99_ms = p99_us / 1000
        ok_p99 = p99_ms <= goal
        targets[f"{key}_per_s"] = {"target": TARGET_READ_RATE, "value": rate, "pass": ok_rate}
        targets[f"{key}_p99_ms"] = {"target": goal, "value": p99_ms, "pass": ok_p99}
        ratios[f"{key}_over_read_floor"] = rate / rp
        rows.append(
            [
                label,
                fmt_rate(rate),
                fmt_rate(rp) + " (read + 1 append)",
                fmt_ratio(rate / rp),
                f"≥ {TARGET_READ_RATE:,}/s",
                verdict(ok_rate),
            ]
        )
        rows.append(["  latency p50", fmt_ms(p50_us)])
        rows.append(["  latency p99", fmt_ms(p99_us), "", "", f"≤ {goal:,} ms", verdict(ok_p99)])

    read_rows(
        f"Vault.read in-process, sequential (n={reads['reads']:,})",
        "inprocess_read",
        reads["reads_per_s"],
        reads["latency"]["median_us"],
        reads["latency"]["p99_us"],
        reads["p99_target_ms"],
    )
    rows.append(
        [
            "  per read: CPU",
            f"{reads['cpu_us_per_read']:,.0f} µs ({reads['cpu_share_of_wall']:.0%} of wall)",
        ]
    )
    hr = http_reads
    lat = hr["latency_us"]
    read_rows(
        f"GET /objects/<id>, {cfg.read_connections} conns, {hr['seconds']:.0f} s",
        "http_read",
        hr["ok_per_s"],
        lat["p50"],
        lat["p99"],
        hr["p99_target_ms"],
    )
    parts = [f"{k}: {v:,}" for k, v in sorted(hr["non_200"].items())]
    parts += [f"{k} errors: {v:,}" for k, v in hr["errors"].items() if v and k != "status"]
    rows.append(["  non-200 responses", ", ".join(parts) or "none"])
    if hr["server_cpu_us_per_request"] is not None:
        rows.append(
            [
                "  server CPU per request / cores",
                f"{hr['server_cpu_us_per_request']:,.0f} µs / {hr['server_cpu_cores']:.2f}",
            ]
        )
    rows.append(
        [
            "peer: read floor (file + unwrap + decrypt)",
            "",
            f"{fmt_rate(read_peers['read']['reads_per_s'])}, "
            f"{read_peers['read']['median_us']:,.0f} µs p50",
        ]
    )
    rows.append(
        [
            "peer: durable append (SQLite WAL FULL commit)",
            "",
            f"{fmt_rate(read_peers['durable_append']['per_s'])}, "
            f"{fmt_p50_p99(read_peers['durable_append'])}",
        ]
    )
    print_table(
        "Staff reads: one access event durably sequenced per read, then decrypt",
        ["measure", "overt", "floor (peer)", "ratio\novert/floor", "target", "overt"],
        pad(rows),
        caption=f"p99 target: the access logs' integration period "
        f"({reads['integration_period_ms']} ms) + {READ_P99_SLACK_MS} ms",
    )

    diag_rows: list[list[str]] = []
    if alternatives:
        w = alternatives["rename_files"]
        diag_rows.append(
            [
                f"ciphertext layouts, first {w['records']:,} records, batch "
                f"{ingest[0]['batch']:,}: as the store (raw floor)",
                fmt_rate(w["records_per_s"]),
                f"{w['us_per_record']:,.1f} µs",
            ]
        )
        for label, key in (
            ("  create final name (O_EXCL), no temp + rename", "direct_files"),
            ("  one pack file per batch", "pack_file_per_batch"),
            ("  SQLite BLOBs, a transaction per batch", "sqlite_blobs"),
        ):
            a = alternatives[key]
            diag_rows.append([label, fmt_rate(a["records_per_s"]), f"{a['us_per_record']:,.1f} µs"])
    for title, prof, unit in (
        ("cProfile, Vault.ingest", profile, "record"),
        ("cProfile, Vault.read", reads.get("profile"), "read"),
    ):
        if not prof:
            continue
        per = f"us_per_{unit}"
        diag_rows.append([f"{title}: own time per {unit}", "", f"{prof[per]:,.1f} µs"])
        for label, g in prof["groups"].items():
            if g["share"] >= 0.01:
                diag_rows.append([f"  {label}", f"{g['share']:.0%}", f"{g[per]:,.1f} µs"])
    if diag_rows:
        print_table(
            "Diagnostics: where the time goes (not targets)",
            ["measure", "rate / share", "per record"],
            diag_rows,
            caption="cProfile slows Python code more than system calls; shares are indicative",
        )

    r0 = ingest[0]
    others = [r["other_processes_cores"] for r in ingest]
    others += [h["other_processes_cores"], reads["other_processes_cores"]]
    others.append(hr["other_processes_cores"])
    c = hr["checks"]
    rc = reads["checks"]
    shared = rc["reads_sharing_an_event"] + c["reads_sharing_an_event"]
    notes = [
        PEERS_NOTE,
        f"ingestion: {cfg.records:,} records of {RECORD_SIZE} random bytes, made per batch "
        "with os.urandom (untimed), one customer per batch, customers in "
        f"{', '.join(COUNTRIES)} ({CUSTOMERS_PER_COUNTRY} each); timed = Vault.ingest "
        "per batch + one vault.publish() at the end. Every run checked: objects and wrapped "
        "keys per region = records routed there, no record outside its region, one batch "
        "event per batch, all published: "
        + ", ".join(
            f"batch {r['batch']:,} {'OK' if r['checks']['ok'] else 'FAILED'}" for r in ingest
        )
        + f". Vault on disk after batch {r0['batch']:,}: {r0['disk']['mb']:,.0f} MB in "
        f"{r0['disk']['files']:,} files.",
        f"HTTP ingestion: bodies of {h['batch']:,} base64 records ({h['body_bytes'] / 2**20:.1f} "
        f"MB of JSON) encoded by the client child before timing; "
        f"{h['acknowledged']:,} records acknowledged, "
        + (
            "all stored in their region, one event per batch, all published after shutdown."
            if h["checks"]["ok"]
            else "CHECK FAILED (see JSON)."
        ),
        f"reads: random ids over both regions of the batch-{r0['batch']:,} vault, the same "
        f"actor ({ACTOR}, {JUSTIFICATION}, ticket {TICKET}); in-process: one Vault, "
        f"sequential; {rc['digests_checked']} contents checked against the "
        f"ingested records; {rc['reads_done']:,} reads (incl. untimed checks and the "
        f"profile) journalled {rc['reads_journalled']:,}, {rc['events_logged']:,} events "
        "logged (one refusal included) "
        + ("(OK)" if rc["ok"] else "(CHECK FAILED)")
        + f". HTTP: {hr['generator']}, after a {hr['warmup_seconds']:g} s warm-up; "
        f"{c['reads_journalled_during_load']:,} reads journalled for {hr['requests']:,} "
        f"responses (+{c['reads_minus_responses']} in flight at the end), "
        f"{c['events_logged_during_load']:,} events logged; missing ticket -> "
        f"{c['missing_ticket_status']}, missing token -> {c['missing_token_status']}; "
        "access-log checkpoints published by the server during the load: "
        + ", ".join(f"{k} +{v:,}" for k, v in c["published_during_load"].items())
        + (
            " entries."
            if any(c["published_during_load"].values())
            else " (none: the server publishes its access logs only at shutdown)."
        ),
        f"machine: {os.cpu_count()} cores, shared: other processes used "
        + ", ".join(f"{x:.2f}" for x in others)
        + " cores during the runs"
        + (" (well above 0: the figures are noisy)." if max(others) > 0.25 else "."),
    ]
    if shared:
        notes.append(
            f"[yellow]{shared:,} reads ({rc['reads_sharing_an_event']:,} in-process, "
            f"{c['reads_sharing_an_event']:,} over HTTP) have no access event of their own: "
            "a read identical to an earlier one (same object, actor, justification, ticket, "
            "within the same second) yields byte-identical signed events, which the access log "
            "deduplicates to the earlier index (the store journals both reads with that "
            "index).[/]"
        )
    if cfg.quick:
        notes.append(
            "[yellow]--quick: small sizes, figures are a smoke test only; targets apply to "
            "100,000 records and the full durations.[/]"
        )
    for note in notes:
        console.print(note)
    return {"ratios": ratios, "targets": targets}


# --- main ------------------------------------------------------------------------------


def child_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_vault --child")
    parser.add_argument("kind", choices=("ingest-client", "read-loadgen"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--records", type=int, default=0)
    parser.add_argument("--batch", type=int, default=0)
    parser.add_argument("--conns", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=0)
    parser.add_argument("--ids-file", default="")
    parser.add_argument("--seed", type=int, default=1)
    a = parser.parse_args(list(argv))
    if a.kind == "ingest-client":
        result = child_ingest_client(a.url, a.token_file, a.records, a.batch, a.conns)
    else:
        result = child_read_loadgen(a.url, a.seconds, a.conns, a.ids_file, a.token_file, a.seed)
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv or [])
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    cfg = parse_args(argv)
    console.print(
        f"bench_vault: {cfg.records:,} records of {RECORD_SIZE} bytes, batches "
        f"{', '.join(f'{b:,}' for b in cfg.batches)}; {cfg.reads:,} in-process reads; "
        f"HTTP reads from {cfg.loadgen}"
    )
    started = time.perf_counter()
    phases: dict[str, float] = {}
    mark = [started]

    def phase(name: str) -> None:
        now = time.perf_counter()
        phases[name] = round(now - mark[0], 1)
        mark[0] = now
        console.print(f"    [dim]({phases[name]:.1f} s)[/]")

    CLEANUP_SECONDS[0] = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-vault-", dir=cfg.workdir) as tmp:
        work = Path(tmp)
        fstype = fs_type(work)
        console.print(f"work directory {work} ({fstype})")
        console.print(
            "1. in-process ingestion (Vault.ingest per batch, then publish), each vault batch "
            "followed by the same batch in the raw file-write floor"
            + (" and the other layouts" if cfg.alternatives else "")
            + "..."
        )
        ingest: list[dict[str, Any]] = []
        read_vault = work / f"vault-{cfg.batches[0]}"
        floor_dir = work / f"floor-{cfg.batches[0]}"
        data: dict[str, Any] = {}
        alternatives: dict[str, Any] | None = None
        for i, batch in enumerate(cfg.batches):
            directory = work / f"vault-{batch}-{i}" if i else read_vault
            layouts = [Layout(FLOOR_LAYOUT[0], FLOOR_LAYOUT[1], work / f"floor-{batch}-{i}")]
            if i == 0:
                layouts[0] = Layout(FLOOR_LAYOUT[0], FLOOR_LAYOUT[1], floor_dir)
                if cfg.alternatives:
                    layouts += [
                        Layout(key, text, work / f"alt-{key}" / "store", cfg.alternatives)
                        for key, text in ALTERNATIVE_LAYOUTS
                    ]
            try:
                r, d = bench_ingest(cfg, directory, batch, layouts)
            finally:
                for layout in layouts:
                    layout.close()
            r["peer_write"] = layouts[0].result()
            console.print(
                f"    batch {batch:,}: {r['records_per_s']:,.0f} records/s "
                f"({r['seconds']:.1f} s, publish {r['publish_ms']:,.0f} ms); raw file-write "
                f"floor {r['peer_write']['records_per_s']:,.0f}/s"
                + ("" if r["checks"]["ok"] else " [bold red]CHECK FAILED[/]")
            )
            if i == 0:
                data = d
                if cfg.alternatives:
                    alternatives = {lay.key: lay.result() for lay in layouts[1:]}
                    # The store's way, on the same first records (the same minutes of disk).
                    alternatives["rename_files"] = layouts[0].result(cfg.alternatives)
                    console.print(
                        "    other layouts: "
                        + ", ".join(
                            f"{k} {v['records_per_s']:,.0f}/s"
                            for k, v in alternatives.items()
                            if k != "rename_files"
                        )
                    )
                for layout in layouts[1:]:
                    layout.remove()
            else:
                remove_tree(directory)
                layouts[0].remove()
            ingest.append(r)
        console.print("   peer: encryption-only floor...")
        encrypt = bench_encrypt_floor(cfg, cfg.batches[0])
        console.print(f"    {encrypt['records_per_s']:,.0f} records/s")
        for r in ingest:
            per = encrypt["us_per_record"] + r["peer_write"]["us_per_record"]
            r["peer_seal_and_write"] = {"us_per_record": per, "records_per_s": 1e6 / per}
        phase("ingest_and_floors")
        console.print(
            f"2. HTTP POST /ingest, {cfg.http_ingest_records:,} records in batches of "
            f"{cfg.http_ingest_batch:,}, {cfg.http_ingest_conns} connections..."
        )
        http_ingest = bench_http_ingest(cfg, work)
        console.print(f"    {http_ingest['records_per_s']:,.0f} records/s")
        phase("http_ingest")
        console.print(f"3. in-process reads (Vault.read x {cfg.reads:,}) and read floors...")
        token = add_actor(read_vault)
        profiler = cProfile.Profile() if cfg.profile_reads else None
        reads = bench_reads(cfg, read_vault, data, profiler)
        console.print(f"    {reads['reads_per_s']:,.0f}/s, p50/p99 {fmt_p50_p99(reads['latency'])}")
        read_peers = bench_read_peers(cfg, floor_dir, data["ids"], work)
        remove_tree(floor_dir)
        phase("reads_and_floors")
        console.print(
            f"4. HTTP GET /objects/<id>, {cfg.read_connections} connections, "
            f"{cfg.read_seconds:g} s (+{cfg.read_warmup_seconds:g} s warm-up)..."
        )
        http_reads = bench_http_reads(cfg, read_vault, data, token, work)
        lat = http_reads["latency_us"]
        console.print(
            f"    {http_reads['ok_per_s']:,.0f}/s, p50/p99 {lat['p50'] / 1000:,.1f} / "
            f"{lat['p99'] / 1000:,.1f} ms"
        )
        remove_tree(read_vault)
        phase("http_reads")
        profile = None
        if cfg.profile_batches:
            console.print(f"5. cProfile of Vault.ingest ({cfg.profile_batches} batches)...")
            profile = profile_ingest(cfg, work, cfg.batches[0])
    phase("profile_and_cleanup")
    verdicts = report(
        cfg, ingest, encrypt, alternatives, http_ingest, reads, read_peers, http_reads, profile
    )
    ok = bool(
        all(r["checks"]["ok"] for r in ingest)
        and http_ingest["checks"]["ok"]
        and reads["checks"]["ok"]
        and http_reads["checks"]["ok"]
    )
    path = write_results(
        "vault",
        {
            "config": {
                "records": cfg.records,
                "record_size": RECORD_SIZE,
                "batches": list(cfg.batches),
                "customers": len(customers(CUSTOMERS_PER_COUNTRY)),
                "countries": list(COUNTRIES),
                "regions": {c: REGION_OF[c] for c in COUNTRIES},
                "http_ingest_records": cfg.http_ingest_records,
                "http_ingest_batch": cfg.http_ingest_batch,
                "http_ingest_connections": cfg.http_ingest_conns,
                "reads": cfg.reads,
                "read_seconds": cfg.read_seconds,
                "read_warmup_seconds": cfg.read_warmup_seconds,
                "read_connections": cfg.read_connections,
                "loadgen": cfg.loadgen,
                "wrk_threads": cfg.threads,
                "seed": cfg.seed,
                "filesystem": fstype,
                "durability": "SQLite WAL synchronous=FULL (store, keyring, access logs); "
                "object files synced by syncfs per batch before their metadata commits",
                "timer": "time.perf_counter_ns per batch / read; records made untimed",
            },
            "ingest": ingest,
            "http_ingest": http_ingest,
            "reads": reads,
            "http_reads": http_reads,
            "peers": {
                "description": PEERS_NOTE,
                "encrypt": encrypt,
                "write": {str(r["batch"]): r["peer_write"] for r in ingest},
                "reads": read_peers,
            },
            "diagnostics": {"layouts": alternatives, "ingest_profile": profile},
            **verdicts,
            "correctness_ok": ok,
            "phase_seconds": phases,
            "of_which_deleting_work_trees_seconds": round(CLEANUP_SECONDS[0], 1),
            "wall_seconds": time.perf_counter() - started,
        },
        quick=cfg.quick,
    )
    return finish(path, ok, started)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

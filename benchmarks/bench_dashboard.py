"""Dashboard benchmark: overview and entry pages over a 1,000,000-entry log.

Builds a release log with `Log.add` (the bulk path) in a temporary deployment
directory, serves it with `create_app` in process, and times each page request
end to end through the ASGI app (server time: no network). The pages must read
only the checkpoint and the tiles they need, so the target holds at any size:

  overview `/` and `/dashboard/log/releases/entry/<i>` (random i): p99 < 200 ms.

Usage: python benchmarks/bench_dashboard.py [--quick] [--entries N] [--requests N]
Results: benchmarks/results/dashboard.json (dashboard-quick.json with --quick).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from fastapi.testclient import TestClient

from common import finish, fmt_us, print_table, summarize_ns, verdict, write_results
from overt.log.config import LogConfig
from overt.log.log import Log, init_log
from overt.web.app import create_app

ORIGIN = "bench.overt.example/releases"
ENTRY_SIZE = 200
CHUNK = 10_000
TARGET_MS = 200.0


def build(root: Path, entries: int) -> float:
    log_dir = root / "logs" / "releases"
    init_log(log_dir, LogConfig(origin=ORIGIN))
    t0 = time.perf_counter()
    with Log(log_dir) as log:
        done = 0
        while done < entries:
            n = min(CHUNK, entries - done)
            log.add([os.urandom(ENTRY_SIZE) for _ in range(n)])
            done += n
        assert log.checkpoint.size == entries
    return time.perf_counter() - t0


def timed(client: TestClient, urls: Sequence[str], expect: str) -> list[int]:
    samples = []
    for url in urls:
        t0 = time.perf_counter_ns()
        resp = client.get(url)
        samples.append(time.perf_counter_ns() - t0)
        if resp.status_code != 200 or expect not in resp.text:
            raise SystemExit(f"{url}: HTTP {resp.status_code}")
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 entries, fewer requests")
    parser.add_argument("--entries", type=int, help="log size (default 1,000,000)")
    parser.add_argument("--requests", type=int, help="requests per page kind (default 200)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="where to make the temporary deployment")
    args = parser.parse_args(argv)
    entries = args.entries or (20_000 if args.quick else 1_000_000)
    requests = args.requests or (50 if args.quick else 200)
    rng = random.Random(args.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        build_s = build(root, entries)
        client = TestClient(create_app(root))
        client.get("/")  # imports and template compilation, once
        overview = summarize_ns(timed(client, ["/"] * requests, "Latest checkpoint"))
        indexes = [rng.randrange(entries) for _ in range(requests)]
        entry = summarize_ns(
            timed(
                client,
                [f"/dashboard/log/releases/entry/{i}" for i in indexes],
                "inclusion proof verified",
            )
        )
        last = summarize_ns(
            timed(client, [f"/dashboard/log/releases/entry/{entries - 1}"] * 10, "Entry")
        )
    pages = {"overview": overview, "entry_random": entry, "entry_last": last}
    ok = all(p["p99_us"] / 1000 < TARGET_MS for p in pages.values())
    print_table(
        f"Dashboard pages over a {entries:,}-entry log (server time, in process)",
        ["page", "requests", "median", "p99", "target p99", ""],
        [
            [
                name,
                str(int(p["count"])),
                fmt_us(p["median_us"]),
                fmt_us(p["p99_us"]),
                f"{TARGET_MS:.0f} ms",
                verdict(p["p99_us"] / 1000 < TARGET_MS),
            ]
            for name, p in pages.items()
        ],
        caption=f"log built with Log.add in {build_s:.1f} s",
    )
    path = write_results(
        "dashboard",
        {
            "entries": entries,
            "build_s": build_s,
            "target_p99_ms": TARGET_MS,
            "pages": pages,
            "ok": ok,
        },
        quick=args.quick,
    )
    return finish(path, ok, started)


if __name__ == "__main__":
    sys.exit(main())

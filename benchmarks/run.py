"""Run the benchmarks: every benchmarks/bench_*.py module's main(argv), in name order.

    .venv/bin/python benchmarks/run.py [--quick] [--only NAME ...] [--list] [EXTRA ...]

--quick asks each benchmark for small sizes (a smoke test of a few seconds).
Unrecognised arguments are passed on to every selected benchmark, so use
benchmark-specific ones together with --only. A benchmark's main(argv) returns
an exit status; this script exits non-zero if any benchmark failed or raised.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PREFIX = "bench_"


def discover() -> list[str]:
    """Benchmark names ("tree" for bench_tree.py), sorted."""
    return sorted(p.stem.removeprefix(PREFIX) for p in BENCH_DIR.glob(f"{PREFIX}*.py"))


def _normalise(name: str) -> str:
    return name.removesuffix(".py").removeprefix(PREFIX)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="run only NAME (repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for smoke testing")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args, extra = parser.parse_known_args(argv)

    names = discover()
    if args.list:
        print("\n".join(names))
        return 0
    if args.only:
        wanted = [_normalise(n) for n in args.only]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; have {', '.join(names)}")
        names = [n for n in names if n in wanted]

    # Benchmarks import `common` as a sibling module.
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    passthrough = (["--quick"] if args.quick else []) + extra

    failed: list[str] = []
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        start = time.perf_counter()
        try:
            status = importlib.import_module(PREFIX + name).main(list(passthrough))
        except SystemExit as exc:  # a benchmark's argparse: --help, or a bad argument
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:
            traceback.print_exc()
            status = 1
        outcome = "ok" if status == 0 else "FAILED"
        print(f"=== {name}: {outcome} in {time.perf_counter() - start:.1f} s")
        if status != 0:
            failed.append(name)

    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

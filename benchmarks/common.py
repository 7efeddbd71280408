"""Helpers shared by the benchmarks: timing summaries, machine info, results and tables."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"

# Piped output (make bench | tee) would otherwise be squeezed into 80 columns.
console = Console(width=None if sys.stdout.isatty() else 120)


def summarize_ns(samples_ns: Sequence[int]) -> dict[str, float]:
    """Median, p99 (nearest rank), mean and min of per-operation timings, in µs."""
    if not samples_ns:
        raise ValueError("no samples")
    ordered = sorted(samples_ns)
    p99_rank = max(1, -(-99 * len(ordered) // 100))  # ceil(0.99 * n), 1-based
    return {
        "median_us": statistics.median(ordered) / 1000,
        "p99_us": ordered[p99_rank - 1] / 1000,
        "mean_us": statistics.fmean(ordered) / 1000,
        "min_us": ordered[0] / 1000,
        "count": len(ordered),
    }


def git_commit() -> str | None:
    """The checked-out commit, read from .git directly (no git binary needed)."""
    for root in (BENCH_DIR, *BENCH_DIR.parents):
        git = root / ".git"
        if git.is_file():  # worktree or submodule: "gitdir: <path>"
            text = git.read_text().strip()
            if not text.startswith("gitdir:"):
                return None
            git = (root / text.removeprefix("gitdir:").strip()).resolve()
        if not git.is_dir():
            continue
        try:
            head = (git / "HEAD").read_text().strip()
            if not head.startswith("ref:"):
                return head  # detached HEAD
            ref = head.removeprefix("ref:").strip()
            # Linked worktrees keep refs in the common dir.
            common = git
            if (git / "commondir").is_file():
                common = (git / (git / "commondir").read_text().strip()).resolve()
            for base in (git, common):
                if (base / ref).is_file():
                    return (base / ref).read_text().strip()
            packed = common / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    parts = line.split()
                    if len(parts) == 2 and parts[1] == ref:
                        return parts[0]
        except OSError:
            return None
        return None  # a branch with no commits yet
    return None


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model() or platform.processor() or None,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
    }


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def write_results(name: str, data: dict[str, Any], *, quick: bool = False) -> Path:
    """Write results/<name>.json atomically (temp file + rename), with machine info.

    Quick (smoke-test) runs go to <name>-quick.json so they never overwrite
    the figures of a full run.
    """
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}{'-quick' if quick else ''}.json"
    payload = {"benchmark": name, "quick": quick, "machine": machine_info(), **data}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # *.tmp is git-ignored
    try:
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    caption: str | None = None,
) -> None:
    """Print a table; the first column is left-aligned, the rest right-aligned."""
    table = Table(title=title, caption=caption, caption_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def verdict(ok: bool | None) -> str:
    """Rich markup for a pass/fail cell (None: no target)."""
    if ok is None:
        return ""
    return "[bold green]PASS[/]" if ok else "[bold red]FAIL[/]"


def fmt_rate(per_second: float) -> str:
    return f"{per_second:,.0f}/s"


def fmt_us(us: float) -> str:
    return f"{us:,.1f} µs"


def fmt_ratio(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:,.1f}×"

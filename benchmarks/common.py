"""Helpers shared by the benchmarks: timing summaries, machine info, results and tables."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
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


def nearest_rank(ordered: Sequence[int], pct: int) -> int:
    """The pct-th percentile (nearest rank) of samples sorted ascending."""
    if not ordered:
        raise ValueError("no samples")
    return ordered[max(1, -(-pct * len(ordered) // 100)) - 1]  # ceil(pct/100 * n), 1-based


def summarize_ns(samples_ns: Sequence[int]) -> dict[str, float]:
    """Median, p99 (nearest rank), mean and min of per-operation timings, in µs."""
    if not samples_ns:
        raise ValueError("no samples")
    ordered = sorted(samples_ns)
    return {
        "median_us": statistics.median(ordered) / 1000,
        "p99_us": nearest_rank(ordered, 99) / 1000,
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


# --- processes, ports and machine load, shared by the service benchmarks -----

HOST = "127.0.0.1"
# A child process prints its result as the last line starting with this mark.
RESULT_MARK = "BENCH_JSON "


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


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def fs_type(path: Path) -> str:
    """File system type of the mount holding `path` (durability and fsync cost depend on it)."""
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
    """CPU used by processes other than this benchmark's, between start and stop.

    System-wide busy time (/proc/stat) minus this process, the given pids (a
    server) and, with `count_children`, its waited-for children. The load
    average would count the benchmark's own children too.
    """

    def __init__(self, *pids: int, count_children: bool = True) -> None:
        self._pids = pids
        self._count_children = count_children
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
        total = self_cpu_s() + (children_cpu_s() if self._count_children else 0.0)
        for pid in self._pids:
            with contextlib.suppress(OSError):  # the process may have exited
                total += proc_cpu_s(pid)
        return total

    def stop(self) -> float:
        """Cores used by other processes on average since start."""
        wall = time.perf_counter() - self._t0
        others = (self._system_busy_s() - self._sys0) - (self._own_s() - self._own0)
        return round(max(0.0, others) / wall, 2)


def run_child(script: Path, args: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run `script` with --child ARGS; return the JSON it prints last."""
    proc = subprocess.run(
        [sys.executable, str(script), "--child", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return result_line(proc.stdout, f"child {args[0]}")


def result_line(stdout: str, what: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line.removeprefix(RESULT_MARK))
            return result
    raise RuntimeError(f"{what} printed no result:\n{stdout[-3000:]}")


class ChildServer:
    """A server in a child process on `port`, its output in `logfile`, stopped with SIGINT.

    SIGINT asks for a clean shutdown; a server still running `stop_timeout`
    seconds later is killed. Subclasses set how it is started and checked.
    """

    ready_path = "/status"  # GET this until it answers 200
    poll_interval = 0.05  # seconds between readiness checks
    stop_timeout = 60.0  # seconds to wait for a clean shutdown before killing

    def __init__(self, cmd: Sequence[str], logfile: Path, port: int) -> None:
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.logfile = logfile
        self._log = open(logfile, "wb")  # noqa: SIM115 - closed in stop()
        self.start_seconds = self.stop_seconds = 0.0
        self.proc = subprocess.Popen(list(cmd), stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until GET ready_path answers 200; start_seconds is how long that took."""
        import httpx

        t0 = time.monotonic()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}): {self.output()}")
            try:
                if httpx.get(f"{self.url}{self.ready_path}", timeout=2).status_code == 200:
                    self.start_seconds = time.monotonic() - t0
                    return
            except httpx.HTTPError:
                pass
            time.sleep(self.poll_interval)
        raise RuntimeError(f"server not ready after {timeout:g} s: {self.output()}")

    def status(self) -> dict[str, Any]:
        """The server's GET /status document."""
        import httpx

        doc: dict[str, Any] = httpx.get(f"{self.url}/status", timeout=10).json()
        return doc

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid)

    def output(self) -> str:
        """The tail of the server's output, for error messages."""
        return self.logfile.read_text(errors="replace")[-3000:]

    def stop(self) -> int:
        """Stop the server (SIGINT, then kill); its exit status. stop_seconds is how long."""
        t0 = time.perf_counter()
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self._log.close()
            return self.proc.returncode
        finally:
            self.stop_seconds = time.perf_counter() - t0


def finish(path: Path, ok: bool, started: float | None = None) -> int:
    """Say where the results were written (and, given `started`, the wall time); exit status."""
    took = "" if started is None else f" ({time.perf_counter() - started:.0f} s)"
    console.print(f"results written to {path}{took}")
    if not ok:
        console.print("[bold white on red] CORRECTNESS CHECK FAILED: see the JSON. [/]")
    return 0 if ok else 1


def pad(rows: Sequence[Sequence[str]], width: int = 6) -> list[list[str]]:
    return [[*r, *([""] * (width - len(r)))] for r in rows]


# Appended to each wrk Lua script: count statuses per thread and print one
# RESULT_MARK line of JSON (requests, errors, latency percentiles, statuses).
WRK_LUA_REPORT = r"""function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end
function done(summary, latency, requests)
  local merged = {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("counts")) do
      merged[status] = (merged[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(merged) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d, "mean": %.1f}, ' ..
    '"status": {%s}}\n',
    "BENCH_JSON ", summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean, table.concat(parts, ", ")))
end
"""

"""Build conveyor benchmark: its overhead over running the raw build command directly.

Example (1), examples/hello-product (`python -m build --no-isolation --outdir dist .`
with a hash-locked build-requirements.txt), is copied into a temporary git
repository and committed with fixed dates. Then:

  0. the first conveyor build, which installs the locked build dependencies into
     the toolchain cache (a venv keyed by the lock hash): reported separately, as
     "first build incl. dependency installation";
  1. peer, "raw": the recipe's command run the way a developer would, in a fresh
     copy of the committed source (`git archive HEAD | tar -x`, untimed but
     reported), with the cached venv's bin first on PATH and the developer's
     environment otherwise; only the command is timed;
  2. overt: `Conveyor(root, cache=shared).build(project)` in-process, cache warm,
     one fresh conveyor directory per build (a release name+version is built once
     per directory), sharing the warmed cache; without a log, and with a local
     release log (init_log) the provenance is added to;
  3. overt CLI: `python -m overt.cli conveyor build PROJECT --conveyor DIR` as a
     subprocess (interpreter start and imports included), the conveyor's
     cache/toolchains a symlink to the shared cache.

After one untimed warm-up round, R rounds run every variant once, the order
rotating each round. Per variant: median and p90 wall time, CPU per build; per
conveyor build, a breakdown from the `step` callback's timestamps. The overhead
is the conveyor median minus the raw median; target < 2 s (the dependency
installation is excluded: it is cached by lock hash). Every conveyor build must
give the same artifacts (same names and SHA-256), and the logged builds must be
in the log.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    OtherLoad,
    children_cpu_s,
    console,
    finish,
    fs_type,
    nearest_rank,
    print_table,
    self_cpu_s,
    summarize_ns,
    verdict,
    write_results,
)
from overt.conveyor.conveyor import Conveyor, init_conveyor
from overt.conveyor.toolchain import COMPLETE_MARKER
from overt.log.config import LogConfig
from overt.log.log import Log, init_log

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "examples" / "hello-product"
TARGET_OVERHEAD_S = 2.0  # conveyor median - raw median, toolchain cached
COMMIT_DATE = "2024-01-01T00:00:00+00:00"
BUILDER_ID = "urn:overt:bench:conveyor"
LOG_ORIGIN = "bench.overt.example/releases"

# (phase, the prefix of the `step` message that starts it); "setup" runs from the
# call to the first message (Conveyor(), recipe, staging and build directories).
PHASES = (
    ("export", "exporting the source"),
    ("toolchain", "toolchain:"),
    ("commands", "build command "),
    ("collect", "collecting artifacts"),
    ("sign", "signing the provenance"),
    ("log", "adding the provenance"),
)
PHASE_LABELS = {
    "setup": "setup: Conveyor(), recipe, build directory",
    "export": "export: git export + tree digest",
    "toolchain": "toolchain: cache check (python version probe)",
    "commands": "build commands",
    "collect": "collect: artifact digests, copy, provenance",
    "sign": "sign + write release, fsync, clean up",
    "log": "add provenance to the release log",
}

VARIANTS = ("raw", "overt", "overt_log", "cli")
VARIANT_LABELS = {
    "raw": "raw command (peer)",
    "overt": "Conveyor.build, no log",
    "overt_log": "Conveyor.build + local release log",
    "cli": "overt conveyor build (CLI subprocess)",
}
PEER_NOTE = (
    "peer (raw): the recipe's command, `{command}`, run with /bin/sh in a fresh "
    "`git archive HEAD | tar -x` copy of the committed project, the cached toolchain venv's "
    "bin first on PATH (VIRTUAL_ENV set, PYTHON* variables removed), otherwise the "
    "benchmark's own environment; output to a file. Only the command is timed."
)


@dataclass(frozen=True)
class Config:
    rounds: int
    quick: bool
    cli: bool
    workdir: Path | None


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(prog="bench_conveyor", description="Build conveyor benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke test)")
    parser.add_argument("--rounds", type=int, help="timed rounds of every variant (default 10)")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI subprocess variant")
    parser.add_argument("--workdir", type=Path, help="where to make the temporary directories")
    args = parser.parse_args(list(argv))
    rounds = args.rounds or (3 if args.quick else 10)
    if rounds < 1:
        parser.error("--rounds must be >= 1")
    return Config(rounds=rounds, quick=args.quick, cli=not args.no_cli, workdir=args.workdir)


# --- setup -----------------------------------------------------------------------------


def git(args: Sequence[str], cwd: Path, **env: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@overt.example", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {args[0]} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def make_repo(dest: Path) -> str:
    """Copy the example into a new git repository at `dest`; return the commit id."""
    shutil.copytree(
        EXAMPLE, dest, ignore=shutil.ignore_patterns("dist", "build", "__pycache__", "*.egg-info")
    )
    git(["init", "--quiet", "--initial-branch=main"], dest)
    git(["add", "--all"], dest)
    dates = {"GIT_AUTHOR_DATE": COMMIT_DATE, "GIT_COMMITTER_DATE": COMMIT_DATE}
    git(["-c", "commit.gpgsign=false", "commit", "--quiet", "-m", "hello-product"], dest, **dates)
    return git(["rev-parse", "HEAD"], dest)


def cached_venv(cache: Path) -> Path:
    """The one toolchain venv the first build left in the cache."""
    found = [p.parent for p in cache.glob(f"*/{COMPLETE_MARKER}")]
    if len(found) != 1:
        raise RuntimeError(f"expected one complete toolchain venv in {cache}, found {found}")
    return found[0]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- one build of each kind ---------------------------------------------------------


@dataclass
class Sample:
    wall_s: float
    cpu_s: float
    phases: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> sha256
    extra: dict[str, Any] = field(default_factory=dict)


class Bench:
    def __init__(self, work: Path, project: Path, command: str) -> None:
        self.work = work
        self.project = project
        self.command = command
        self.cache = work / "toolchains"
        self.log_dir = work / "release-log"
        self.counter = 0
        self.logged: list[int] = []

    def _fresh(self, kind: str) -> Path:
        self.counter += 1
        return self.work / f"{kind}-{self.counter:03d}"

    def _new_conveyor(self) -> Path:
        root = self._fresh("conveyor")
        init_conveyor(root, "bench.overt.example", BUILDER_ID)
        return root

    def conveyor(self, log: bool) -> Sample:
        root = self._new_conveyor()
        marks: list[tuple[float, str]] = []

        def step(message: str) -> None:
            marks.append((time.perf_counter(), message))

        gc.collect()
        cpu0 = self_cpu_s() + children_cpu_s()
        t0 = time.perf_counter()
        release = Conveyor(root, cache=self.cache).build(
            self.project, log=str(self.log_dir) if log else None, step=step
        )
        t1 = time.perf_counter()
        cpu = self_cpu_s() + children_cpu_s() - cpu0
        if release.uncommitted:
            raise RuntimeError("the benchmark repository has uncommitted changes")
        if log:
            assert release.log_index is not None
            self.logged.append(release.log_index)
        shutil.rmtree(root)
        return Sample(
            t1 - t0,
            cpu,
            phases(t0, t1, marks),
            {a.name: a.sha256 for a in release.artifacts},
        )

    def raw(self, venv: Path) -> Sample:
        dest = self._fresh("raw")
        dest.mkdir()
        t0 = time.perf_counter()
        subprocess.run(
            f"git archive --format=tar HEAD | tar -x -f - -C {dest}",
            shell=True,
            cwd=self.project,
            check=True,
        )
        export_s = time.perf_counter() - t0
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
        env["VIRTUAL_ENV"] = str(venv)
        with open(dest.parent / f"{dest.name}.log", "wb") as out:
            gc.collect()
            cpu0 = children_cpu_s()
            t0 = time.perf_counter()
            done = subprocess.run(
                self.command,
                shell=True,
                cwd=dest,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
            t1 = time.perf_counter()
            cpu = children_cpu_s() - cpu0
        if done.returncode != 0:
            raise RuntimeError(f"raw build failed ({done.returncode}); see {dest}.log")
        artifacts = {p.name: sha256_of(p) for p in sorted((dest / "dist").iterdir())}
        shutil.rmtree(dest)
        return Sample(t1 - t0, cpu, artifacts=artifacts, extra={"git_archive_s": export_s})

    def cli(self) -> Sample:
        root = self._new_conveyor()
        (root / "cache").mkdir()
        (root / "cache" / "toolchains").symlink_to(self.cache, target_is_directory=True)
        argv = [sys.executable, "-m", "overt.cli", "conveyor", "build", str(self.project)]
        gc.collect()
        cpu0 = children_cpu_s()
        t0 = time.perf_counter()
        done = subprocess.run(
            [*argv, "--conveyor", str(root)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        t1 = time.perf_counter()
        cpu = children_cpu_s() - cpu0
        if done.returncode != 0:
            raise RuntimeError(f"overt conveyor build failed ({done.returncode}):\n{done.stderr}")
        release = json.loads(next((root / "releases").glob("*/*/release.json")).read_text())
        shutil.rmtree(root)
        # What the CLI pays before it builds: interpreter start and the CLI's imports.
        t2 = time.perf_counter()
        subprocess.run([*argv[:5], "--help"], capture_output=True, check=True)
        startup = time.perf_counter() - t2
        return Sample(
            t1 - t0, cpu, artifacts=dict(release["artifacts"]), extra={"startup_s": startup}
        )


def phases(t0: float, t1: float, marks: list[tuple[float, str]]) -> dict[str, float]:
    """Seconds spent in each phase, from the `step` messages' timestamps."""
    starts: list[tuple[float, str]] = []
    for name, prefix in PHASES:
        hit = next((t for t, message in marks if message.startswith(prefix)), None)
        if hit is not None:
            starts.append((hit, name))
    starts.sort()
    found = {"setup": (starts[0][0] if starts else t1) - t0}
    for i, (start, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else t1
        found[name] = end - start
    return found


# --- summaries and report ------------------------------------------------------------


def summarize_s(samples: Sequence[float]) -> dict[str, Any]:
    """summarize_ns of wall seconds, plus p90 and max (nearest rank), and the samples."""
    ns = sorted(round(s * 1e9) for s in samples)
    out: dict[str, Any] = summarize_ns(ns)
    out["p90_us"] = nearest_rank(ns, 90) / 1000
    out["max_us"] = ns[-1] / 1000
    out["samples_s"] = [round(s, 6) for s in samples]
    return out


def sec(summary: dict[str, Any], key: str = "median_us") -> float:
    return float(summary[key]) / 1e6


def fmt_s(seconds: float) -> str:
    return f"{seconds:,.3f} s"


def variant_summary(samples: list[Sample]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "wall": summarize_s([s.wall_s for s in samples]),
        "cpu_s_median": statistics.median(s.cpu_s for s in samples),
    }
    names = sorted({name for s in samples for name in s.phases})
    if names:
        out["phases_median_s"] = {
            n: statistics.median(s.phases.get(n, 0.0) for s in samples) for n in names
        }
    extras = sorted({k for s in samples for k in s.extra})
    for key in extras:
        out[f"{key}_median"] = statistics.median(s.extra[key] for s in samples if key in s.extra)
    return out


def report(
    cfg: Config, command: str, first: Sample, results: dict[str, dict[str, Any]], others: float
) -> dict[str, Any]:
    raw = results["raw"]
    raw_median = sec(raw["wall"])
    targets: dict[str, dict[str, Any]] = {}
    overheads: dict[str, float] = {}
    rows: list[list[str]] = []
    for name in VARIANTS:
        if name not in results:
            continue
        r = results[name]
        median = sec(r["wall"])
        cells = [
            VARIANT_LABELS[name],
            fmt_s(median),
            fmt_s(sec(r["wall"], "p90_us")),
            fmt_s(sec(r["wall"], "min_us")),
            f"{r['cpu_s_median']:,.3f} s",
        ]
        if name == "raw":
            rows.append([*cells, "", "", ""])
            continue
        overhead = median - raw_median
        ok = overhead < TARGET_OVERHEAD_S
        overheads[name] = overhead
        targets[f"{name}_overhead_s"] = {"target": TARGET_OVERHEAD_S, "value": overhead, "pass": ok}
        rows.append([*cells, f"{overhead:+,.3f} s", f"< {TARGET_OVERHEAD_S:g} s", verdict(ok)])
    print_table(
        "Conveyor overhead over the raw build command, example (1) hello-product, toolchain cached",
        ["build", "median", "p90", "min", "CPU\nmedian", "overhead\n(median)", "target", "overt"],
        rows,
        caption=f"{cfg.rounds} timed round(s), variants rotating; "
        f"first build incl. dependency installation: {fmt_s(first.wall_s)} "
        f"(toolchain phase {fmt_s(first.phases.get('toolchain', 0.0))})",
    )

    phase_rows: list[list[str]] = []
    logged = results["overt_log"]["phases_median_s"]
    plain = results["overt"]["phases_median_s"]
    for name in ("setup", *(n for n, _ in PHASES)):
        if name not in logged and name not in plain:
            continue
        phase_rows.append(
            [
                PHASE_LABELS[name],
                fmt_s(plain[name]) if name in plain else "",
                fmt_s(logged[name]) if name in logged else "",
                fmt_s(first.phases[name]) if name in first.phases else "",
            ]
        )
    phase_rows.append(
        [
            "raw command (peer), for the 'build commands' row",
            fmt_s(raw_median),
            "",
            "",
        ]
    )
    phase_rows.append(
        [
            "raw: git archive | tar -x of the source (not in its time)",
            fmt_s(raw["git_archive_s_median"]),
            "",
            "",
        ]
    )
    if "cli" in results:
        phase_rows.append(
            [
                "CLI: interpreter start + imports (`... conveyor build --help`)",
                fmt_s(results["cli"]["startup_s_median"]),
                "",
                "",
            ]
        )
    print_table(
        "Where a conveyor build's time goes (median per phase, from the step callback)",
        ["phase", "no log", "with log", "first build"],
        phase_rows,
    )
    notes = [
        PEER_NOTE.format(command=command),
        "overt: in-process, a fresh conveyor directory per build (init untimed), one shared "
        "toolchain cache warmed by the first build; the CLI variant adds interpreter start and "
        "imports. CPU: this process and its waited-for children.",
        f"Machine: {os.cpu_count()} cores; other processes used {others:.2f} cores during the "
        "timed rounds" + (" (well above 0: the figures are noisy)." if others > 0.25 else "."),
    ]
    if cfg.quick:
        notes.append("[yellow]--quick: few rounds, figures are a smoke test only.[/]")
    for note in notes:
        console.print(note)
    return {"overhead_s": overheads, "targets": targets}


# --- main ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv or [])
    recipe = tomllib.loads((EXAMPLE / "overt.toml").read_text())
    commands = recipe["build"]["commands"]
    if len(commands) != 1:
        console.print(f"[bold red]expected one build command in {EXAMPLE}, got {commands}[/]")
        return 1
    command = str(commands[0])
    variants = [v for v in VARIANTS if cfg.cli or v != "cli"]
    console.print(
        f"bench_conveyor: {EXAMPLE.relative_to(REPO_ROOT)}, {cfg.rounds} round(s) of "
        f"{', '.join(variants)}"
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-conveyor-", dir=cfg.workdir) as tmp:
        work = Path(tmp)
        fstype = fs_type(work)
        console.print(f"work directory {work} ({fstype})")
        project = work / "hello-product"
        commit = make_repo(project)
        bench = Bench(work, project, command)
        init_log(bench.log_dir, LogConfig(origin=LOG_ORIGIN))

        console.print("0. first conveyor build, installing the locked build dependencies...")
        first = bench.conveyor(log=False)
        venv = cached_venv(bench.cache)
        console.print(
            f"   {fmt_s(first.wall_s)} (toolchain {fmt_s(first.phases['toolchain'])}); "
            f"venv {venv.name}"
        )

        run: dict[str, Callable[[], Sample]] = {
            "raw": lambda: bench.raw(venv),
            "overt": lambda: bench.conveyor(log=False),
            "overt_log": lambda: bench.conveyor(log=True),
            "cli": bench.cli,
        }
        console.print("   warm-up round (untimed)...")
        warm = {v: run[v]() for v in variants}
        samples: dict[str, list[Sample]] = {v: [] for v in variants}
        console.print(f"1-3. {cfg.rounds} timed round(s)...")
        load = OtherLoad()
        for r in range(cfg.rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for v in order:
                samples[v].append(run[v]())
            console.print(
                f"   round {r + 1}: "
                + ", ".join(f"{v} {samples[v][-1].wall_s:.3f} s" for v in variants)
            )
        others = load.stop()

        # Correctness: every conveyor build gives the same artifacts; the logged
        # builds are in the log; the raw build makes the same files.
        built = [
            first.artifacts,
            *(s.artifacts for v in variants if v != "raw" for s in samples[v]),
        ]
        built += [warm[v].artifacts for v in variants if v != "raw"]
        reproducible = all(a == first.artifacts for a in built)
        raw_names = all(set(s.artifacts) == set(first.artifacts) for s in samples["raw"])
        raw_same = [s.artifacts == first.artifacts for s in samples["raw"]]
        with Log(bench.log_dir) as log:
            log_size = log.checkpoint.size
        log_ok = bench.logged == list(range(len(bench.logged))) and log_size == len(bench.logged)

    results: dict[str, Any] = {v: variant_summary(samples[v]) for v in variants}
    verdicts = report(cfg, command, first, results, others)
    ok = reproducible and raw_names and log_ok
    path = write_results(
        "conveyor",
        {
            "config": {
                "example": str(EXAMPLE.relative_to(REPO_ROOT)),
                "command": command,
                "rounds": cfg.rounds,
                "variants": variants,
                "filesystem": fstype,
                "commit": commit,
                "commit_date": COMMIT_DATE,
                "toolchain_venv": venv.name,
                "timer": "time.perf_counter around the build (raw: the command's subprocess.run)",
                "order": "one untimed warm-up round, then rounds with the variant order rotating",
            },
            "peer": {"description": PEER_NOTE.format(command=command), **results["raw"]},
            "first_build_incl_dependency_installation": {
                "wall_s": first.wall_s,
                "cpu_s": first.cpu_s,
                "phases_s": first.phases,
            },
            "overt": {v: results[v] for v in variants if v != "raw"},
            **verdicts,
            "artifacts": first.artifacts,
            "reproducible_across_conveyor_builds": reproducible,
            "raw_same_artifact_names": raw_names,
            "raw_artifacts_identical_to_conveyor": raw_same,
            "release_log": {"entries": log_size, "indexes_ok": log_ok},
            "other_processes_cores": others,
            "correctness_ok": ok,
            "wall_seconds": time.perf_counter() - started,
        },
        quick=cfg.quick,
    )
    console.print(
        f"artifacts identical in all {len(built)} conveyor builds: {reproducible}; raw builds "
        f"byte-identical to them: {sum(raw_same)}/{len(raw_same)}; release log {log_size} "
        f"entries, indexes {'OK' if log_ok else 'WRONG'}"
    )
    return finish(path, ok, started)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

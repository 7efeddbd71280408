"""Rule audit benchmark: lint + compile of 10,000 rules, and a diff of two 10,000-rule sets.

The rule set is generated from the public signature-base (../shared/rules-corpus, read in
place): its files are copied again and again, every rule of a copy renamed with a suffix
(and references to it inside the file), until there are at least N rules (10,000; 1,000
with --quick). Real rules, in their real mix of text, hex and regex strings, without
making up synthetic ones.

Timed, R rounds each, variants rotating:
  1. overt: `audit_paths([dir], compile=True)`: every file parsed and linted in this
     process while a child process compiles them with yara-x (the time limit watchdog
     included); target <= 20 s.
  2. its parts, one at a time: parsing alone (`parse_file`), linting without compiling
     (parse + lint), compiling alone (`compile_files`, child process).
  3. peers on the same files: yara-x in-process (`yara_x.Compiler`, one namespace per
     file, `add_source` + `build`), and plyara parsing (`Plyara().parse_string` per
     file; once, it is slow). overt's compile check stops before `build()`: yara-x
     reports every error from `add_source`, and linking the scanner (`build`) is only
     needed to scan (scan.py does it).
  4. diff: a second set made from the first by changing 0.5% of the rules (a condition
     clause appended), removing 0.25% and adding 0.25%; `diff_rules(old, new)` with text
     diffs and findings before/after; target <= 2 s. Peer: GNU `diff -ru` of the two
     directories (text only, no parsing, no audit).

Correctness: the diff must report exactly the injected changes; the generated set must
compile without errors and have no high finding (it is made of real malware rules).
"""

from __future__ import annotations

import argparse
import gc
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plyara  # type: ignore[import-untyped]
import yara_x

from common import OtherLoad, console, finish, print_table, verdict, write_results
from overt.rules.compile import EXTERNALS, compile_files
from overt.rules.diff import diff_rules
from overt.rules.lints import audit_paths, lint_paths
from overt.rules.parse import collect_rule_files, parse_file, split_source

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS = REPO_ROOT.parent / "shared" / "rules-corpus" / "signature-base"
TARGET_LINT_S = 20.0
TARGET_DIFF_S = 2.0
CHANGED, REMOVED, ADDED = 0.005, 0.0025, 0.0025


@dataclass(frozen=True)
class Config:
    rules: int
    rounds: int
    quick: bool
    plyara: bool
    workdir: str | None


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=None, help="rules to generate (10,000)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (3)")
    parser.add_argument("--quick", action="store_true", help="1,000 rules, one round")
    parser.add_argument("--no-plyara", action="store_true", help="skip the (slow) plyara peer")
    parser.add_argument("--workdir", default=None, help="where to generate the rule sets")
    args = parser.parse_args(argv)
    return Config(
        rules=args.rules or (1000 if args.quick else 10_000),
        rounds=args.rounds or (1 if args.quick else 3),
        quick=args.quick,
        plyara=not args.no_plyara,
        workdir=args.workdir,
    )


# --- generating the rule sets --------------------------------------------------------


def generate(target: int, out: Path) -> int:
    """Copies of the corpus files with renamed rules, until `target` rules; returns the count."""
    out.mkdir(parents=True)
    files = sorted(CORPUS.glob("*.yar"))
    sources = [(f.stem, f.read_text(encoding="utf-8")) for f in files]
    names = [[r.name for r in split_source(text, stem).rules] for stem, text in sources]
    total = 0
    copy = 0
    while total < target:
        for (stem, text), rule_names in zip(sources, names, strict=True):
            if total >= target:
                break
            if rule_names:
                pattern = re.compile(r"\b(" + "|".join(map(re.escape, rule_names)) + r")\b")
                text = pattern.sub(rf"\g<1>_c{copy}", text)
            (out / f"c{copy:02d}_{stem}.yar").write_text(text, encoding="utf-8")
            total += len(rule_names)
        copy += 1
    return total


@dataclass
class Injected:
    changed: set[str]
    removed: set[str]
    added: set[str]


def mutate(old: Path, new: Path, count: int) -> Injected:
    """The second set: some rules changed, some removed, some added (standalone rules only)."""
    shutil.copytree(old, new)
    files = sorted(new.glob("*.yar"))
    want = {
        "changed": max(1, round(count * CHANGED)),
        "removed": max(1, round(count * REMOVED)),
        "added": max(1, round(count * ADDED)),
    }
    done = Injected(set(), set(), set())
    step = max(1, len(files) // (sum(want.values()) + 1))
    kinds = [k for k, n in want.items() for _ in range(n)]
    for kind, path in zip(kinds, files[::step], strict=False):
        text = path.read_text(encoding="utf-8")
        split = split_source(text, path.name)
        standalone = [
            r
            for r in split.rules
            if "private" not in r.flags
            and "global" not in r.flags
            and len(re.findall(rf"\b{re.escape(r.name)}\b", text)) == 1
        ]
        if not standalone:
            continue
        rule = standalone[len(standalone) // 2]
        start = text.index(rule.raw)
        end = start + len(rule.raw)
        if kind == "changed":
            body = rule.raw[:-1].rstrip() + "\n      and filesize < 50MB\n}"
            text = text[:start] + body + text[end:]
            done.changed.add(rule.name)
        elif kind == "removed":
            text = text[:start] + text[end:]
            done.removed.add(rule.name)
        else:
            fresh = rule.raw.replace(rule.name, rule.name + "_new", 1)
            text = text + "\n" + fresh + "\n"
            done.added.add(rule.name + "_new")
        path.write_text(text, encoding="utf-8")
    return done


# --- the variants ----------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def yara_x_peer(files: list[Path]) -> int:
    compiler = yara_x.Compiler()
    for name in EXTERNALS:
        compiler.define_global(name, "")
    for i, path in enumerate(files):
        compiler.new_namespace(f"file{i}")
        compiler.add_source(path.read_text(encoding="utf-8"), origin=str(path))
    compiler.build()
    return len(compiler.errors())


def plyara_peer(files: list[Path]) -> int:
    count = 0
    for path in files:
        count += len(plyara.Plyara().parse_string(path.read_text(encoding="utf-8")))
    return count


def parse_only(files: list[Path]) -> int:
    return sum(len(parse_file(path)[0]) for path in files)


def gnu_diff(old: Path, new: Path) -> int:
    done = subprocess.run(["diff", "-ru", str(old), str(new)], capture_output=True, check=False)
    if done.returncode not in (0, 1):
        raise RuntimeError(done.stderr.decode())
    return done.stdout.count(b"\n")


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv or [])
    if not CORPUS.is_dir():
        console.print(f"[bold red]the public rule corpus is missing: {CORPUS}[/]")
        return 1
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-rules-", dir=cfg.workdir) as tmp:
        work = Path(tmp)
        old, new = work / "old", work / "new"
        count = generate(cfg.rules, old)
        files = collect_rule_files([old])
        injected = mutate(old, new, count)
        size = sum(p.stat().st_size for p in files)
        console.print(
            f"bench_rules: {count:,} rules in {len(files)} files ({size / 1e6:.1f} MB) from "
            f"{CORPUS.name}; {cfg.rounds} round(s)"
        )

        variants: dict[str, Callable[[], Any]] = {
            "overt_lint_compile": lambda: audit_paths([old], compile=True),
            "overt_parse": lambda: parse_only(files),
            "overt_lint_no_compile": lambda: lint_paths([old], compile=False),
            "overt_compile": lambda: compile_files(files),
            "peer_yara_x_compile": lambda: yara_x_peer(files),
            "overt_diff": lambda: diff_rules([old], [new]),
            "peer_gnu_diff": lambda: gnu_diff(old, new),
        }
        console.print("   warm-up (untimed)...")
        results: dict[str, Any] = {name: fn() for name, fn in variants.items()}
        samples: dict[str, list[float]] = {name: [] for name in variants}
        load = OtherLoad()
        names = list(variants)
        for r in range(cfg.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                seconds, results[name] = timed(variants[name])
                samples[name].append(seconds)
            console.print(
                f"   round {r + 1}: " + ", ".join(f"{n} {samples[n][-1]:.2f} s" for n in names)
            )
        others = load.stop()
        plyara_s: float | None = None
        plyara_rules = None
        if cfg.plyara:
            console.print("   plyara (once)...")
            plyara_s, plyara_rules = timed(lambda: plyara_peer(files))

    audit = results["overt_lint_compile"]
    findings = audit.findings
    high = {(f.file, f.rule) for f in findings if f.severity == "high"}
    errors = [f for f in findings if f.severity == "error"]
    changes = results["overt_diff"]
    got = {
        kind: {c.name for c in changes if c.status == kind}
        for kind in ("changed", "removed", "added")
    }
    diff_ok = (
        got["changed"] == injected.changed
        and got["removed"] == injected.removed
        and got["added"] == injected.added
    )
    lint_s = median(samples["overt_lint_compile"])
    diff_s = median(samples["overt_diff"])
    lint_ok = lint_s <= TARGET_LINT_S
    diff_fast = diff_s <= TARGET_DIFF_S
    ok = diff_ok and not errors and not high and audit.rules == count

    rows = []
    labels = {
        "overt_lint_compile": "overt: parse + lint + compile (child, in parallel)",
        "overt_parse": "overt: parse only",
        "overt_lint_no_compile": "overt: parse + lint, no compile",
        "overt_compile": "overt: compile only (child process, watchdog)",
        "peer_yara_x_compile": "peer: yara_x.Compiler in-process",
    }
    for name, label in labels.items():
        s = median(samples[name])
        target = f"<= {TARGET_LINT_S:g} s" if name == "overt_lint_compile" else ""
        rows.append(
            [
                label,
                f"{s:,.2f} s",
                f"{min(samples[name]):,.2f} s",
                f"{count / s:,.0f}/s",
                target,
                verdict(lint_ok) if name == "overt_lint_compile" else "",
            ]
        )
    if plyara_s is not None:
        rows.append(
            [
                "peer: plyara parse (once)",
                f"{plyara_s:,.2f} s",
                "",
                f"{count / plyara_s:,.0f}/s",
                "",
                "",
            ]
        )
    print_table(
        f"Lint and compile {count:,} rules ({len(files)} files)",
        ["variant", "median", "min", "rules/s", "target", "overt"],
        rows,
        caption=f"{cfg.rounds} round(s); other processes used {others:.2f} cores meanwhile",
    )
    print_table(
        f"Diff of two {count:,}-rule sets ({len(changes)} changes)",
        ["variant", "median", "min", "target", "overt"],
        [
            [
                "overt: diff_rules (text diffs + findings before/after)",
                f"{diff_s:,.2f} s",
                f"{min(samples['overt_diff']):,.2f} s",
                f"<= {TARGET_DIFF_S:g} s",
                verdict(diff_fast),
            ],
            [
                "peer: GNU diff -ru (text only)",
                f"{median(samples['peer_gnu_diff']):,.2f} s",
                f"{min(samples['peer_gnu_diff']):,.2f} s",
                "",
                "",
            ],
        ],
    )
    path = write_results(
        "rules",
        {
            "config": {
                "rules": count,
                "files": len(files),
                "bytes": size,
                "rounds": cfg.rounds,
                "source": "signature-base files copied with renamed rules",
                "diff_mutation": {"changed": CHANGED, "removed": REMOVED, "added": ADDED},
                "timer": "time.perf_counter around each call, gc.collect() before",
            },
            "seconds": {name: samples[name] for name in names},
            "median_s": {name: median(samples[name]) for name in names},
            "plyara_s": plyara_s,
            "plyara_rules": plyara_rules,
            "targets": {
                "lint_compile_s": {"target": TARGET_LINT_S, "value": lint_s, "pass": lint_ok},
                "diff_s": {"target": TARGET_DIFF_S, "value": diff_s, "pass": diff_fast},
            },
            "findings": {
                "total": len(findings),
                "by_severity": {
                    s: sum(1 for f in findings if f.severity == s)
                    for s in ("error", "high", "medium", "low")
                },
                "rules_with_high": len(high),
            },
            "diff": {
                "changes": len(changes),
                "injected": {
                    "changed": len(injected.changed),
                    "removed": len(injected.removed),
                    "added": len(injected.added),
                },
                "reported_exactly": diff_ok,
            },
            "other_processes_cores": others,
            "correctness_ok": ok,
            "wall_seconds": time.perf_counter() - started,
        },
        quick=cfg.quick,
    )
    console.print(
        f"diff reported exactly the injected changes: {diff_ok}; compile errors: {len(errors)}; "
        f"rules with a high finding: {len(high)}"
    )
    return finish(path, ok, started)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Merkle tree benchmark: overt.tlog.merkle.MemoryTree against pymerkle's InmemoryTree.

Measures, for each implementation:
  * building a tree of N entries of 200 random bytes (entries made up front,
    appended in batches) -> entries/s;
  * generating and verifying inclusion proofs for random leaves -> µs per op;
  * generating and verifying consistency proofs from a random old size to the
    full size (old roots computed outside the timed section) -> µs per op;
and the raw limit, hashlib.sha256 calls/s, which bounds how fast any pure
Python tree can be built. Both trees must agree on every root and proof
checked, or the comparison is void and the benchmark fails loudly.

pymerkle settings: InmemoryTree("sha256") with security on (its default),
which hashes leaves as SHA-256(0x00 || entry) and nodes as
SHA-256(0x01 || left || right) - the RFC 9162 (ex RFC 6962) scheme overt uses.
Its indices count from one, so leaf i here is pymerkle index i + 1.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.metadata
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pymerkle  # type: ignore[import-untyped]

from common import (
    console,
    fmt_rate,
    fmt_ratio,
    fmt_us,
    print_table,
    summarize_ns,
    verdict,
    write_results,
)
from overt.errors import VerificationError
from overt.tlog.merkle import (
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

ENTRY_SIZE = 200
TARGET_BUILD_RATE = 400_000  # entries/s, at 1,000,000 entries
TARGET_PROOF_US = 50.0  # median gen+verify, inclusion and consistency alike

# pymerkle configured to match RFC 9162: sha256, 0x00 leaf / 0x01 node prefixes.
PYMERKLE_SETTINGS: dict[str, Any] = {
    "algorithm": "sha256",
    "disable_security": False,  # keep the 0x00/0x01 domain-separation prefixes
    "disable_optimizations": False,  # its iterative (not naive recursive) paths
    "disable_cache": False,  # default; InmemoryTree reads subtree roots off its nodes anyway
}


@dataclass(frozen=True)
class Config:
    entries: int
    proofs: int
    pymerkle_proofs: int
    batch: int
    seed: int
    hash_calls: int
    pymerkle_budget_s: float
    quick: bool


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(prog="bench_tree", description="Merkle tree benchmark")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--entries", type=int, help="tree size (default 1,000,000)")
    parser.add_argument("--proofs", type=int, help="proofs of each kind (default 10,000)")
    parser.add_argument("--pymerkle-proofs", type=int, help="default: same as --proofs")
    parser.add_argument("--batch", type=int, default=10_000, help="entries per extend call")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--pymerkle-budget",
        type=float,
        default=180.0,
        help="seconds pymerkle may spend building; past that it stops at a smaller size",
    )
    args = parser.parse_args(list(argv))
    entries = args.entries or (20_000 if args.quick else 1_000_000)
    proofs = args.proofs or (1_000 if args.quick else 10_000)
    if entries < 2 or proofs < 1 or args.batch < 1:
        parser.error("need --entries >= 2, --proofs >= 1 and --batch >= 1")
    return Config(
        entries=entries,
        proofs=proofs,
        pymerkle_proofs=args.pymerkle_proofs or proofs,
        batch=args.batch,
        seed=args.seed,
        hash_calls=200_000 if args.quick else 2_000_000,
        pymerkle_budget_s=args.pymerkle_budget,
        quick=args.quick,
    )


def make_entries(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)  # seeded, so runs build the same trees
    return [rng.randbytes(ENTRY_SIZE) for _ in range(n)]


def draws(size: int, count: int, seed: int) -> tuple[list[int], list[int]]:
    """Random leaf indices in [0, size) and old sizes in [1, size), reproducibly.

    Seeded by size too, so both implementations get the same challenges when
    they are measured at the same size.
    """
    rng = random.Random(f"{seed}:{size}")
    return (
        [rng.randrange(size) for _ in range(count)],
        [rng.randrange(1, size) for _ in range(count)],
    )


# --- the raw limit ---------------------------------------------------------


def sha256_rate(input_size: int, calls: int, repeats: int = 3) -> float:
    """Best-of-`repeats` hashlib.sha256(x).digest() calls per second on `input_size` bytes."""
    x = random.Random(0).randbytes(input_size)  # content does not affect SHA-256 speed
    sha = hashlib.sha256
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            sha(x).digest()
        best = min(best, time.perf_counter() - t0)
    return calls / best


def hash_limits(calls: int) -> dict[str, float]:
    r65 = sha256_rate(65, calls)  # a node: 0x01 || left || right
    r201 = sha256_rate(1 + ENTRY_SIZE, calls)  # a leaf: 0x00 || 200-byte entry
    return {
        "sha256_65B_per_s": r65,
        "sha256_201B_per_s": r201,
        # A tree of n leaves has n leaf hashes and n - 1 node hashes: ~2 per entry.
        "build_bound_2x65B_entries_per_s": r65 / 2,
        "build_bound_leaf_plus_node_entries_per_s": 1 / (1 / r201 + 1 / r65),
    }


# --- timing loops ----------------------------------------------------------


def time_build(
    batches: Sequence[Sequence[bytes]],
    add: Callable[[Sequence[bytes]], object],
    budget_s: float = float("inf"),
) -> tuple[int, float]:
    """Feed batches to `add` until done or over budget; return (entries added, seconds)."""
    gc.collect()  # start from a clean heap, so earlier garbage is not billed here
    added, elapsed = 0, 0.0
    for batch in batches:
        t0 = time.perf_counter()
        add(batch)
        elapsed += time.perf_counter() - t0
        added += len(batch)
        if elapsed > budget_s:
            break
    return added, elapsed


def time_pairs(
    challenges: Sequence[Any],
    gen: Callable[[Any], Any],
    verify: Callable[[Any, Any], object],
    warmup: int = 100,
) -> dict[str, dict[str, float]]:
    """Time gen(c) and verify(c, proof) separately for each challenge c."""
    for c in challenges[:warmup]:  # untimed: warm caches and specialise bytecode
        verify(c, gen(c))
    gc.collect()
    clock = time.perf_counter_ns
    g: list[int] = []
    v: list[int] = []
    for c in challenges:
        t0 = clock()
        proof = gen(c)
        t1 = clock()
        verify(c, proof)
        t2 = clock()
        g.append(t1 - t0)
        v.append(t2 - t1)
    return {
        "gen_verify": summarize_ns([a + b for a, b in zip(g, v, strict=True)]),
        "gen": summarize_ns(g),
        "verify": summarize_ns(v),
    }


# --- overt -----------------------------------------------------------------


def bench_overt(
    batches: Sequence[Sequence[bytes]], cfg: Config
) -> tuple[MemoryTree, dict[str, Any]]:
    tree = MemoryTree()
    added, seconds = time_build(batches, tree.extend)
    n = tree.size
    assert n == added
    indices, olds = draws(n, cfg.proofs, cfg.seed)
    root = tree.root()

    # Leaf hashes and old roots are fetched outside the timed section: a
    # verifier has them already, and the cost is not the proof's.
    incl = [(i, tree.leaf_hash(i)) for i in indices]
    cons = [(m, tree.root(m)) for m in olds]
    inclusion = time_pairs(
        incl,
        lambda c: inclusion_proof(tree, c[0], n),
        lambda c, p: verify_inclusion(c[1], c[0], n, p, root),
    )
    consistency = time_pairs(
        cons,
        lambda c: consistency_proof(tree, c[0], n),
        lambda c, p: verify_consistency(c[0], n, c[1], root, p),
    )
    return tree, {
        "size": n,
        "proofs": cfg.proofs,
        "build": {"entries": n, "seconds": seconds, "entries_per_s": n / seconds},
        "inclusion": inclusion,
        "consistency": consistency,
    }


# --- pymerkle --------------------------------------------------------------


def bench_pymerkle(batches: Sequence[Sequence[bytes]], cfg: Config) -> tuple[Any, dict[str, Any]]:
    tree = pymerkle.InmemoryTree(**PYMERKLE_SETTINGS)
    # append_entries is its bulk API (a loop over append_entry for this backend).
    added, seconds = time_build(batches, tree.append_entries, cfg.pymerkle_budget_s)
    n = tree.get_size()
    assert n == added
    wanted = sum(len(b) for b in batches)
    truncated = n < wanted
    indices, olds = draws(n, cfg.pymerkle_proofs, cfg.seed)
    root = tree.get_root()
    algo = PYMERKLE_SETTINGS["algorithm"]

    incl = [(i + 1, tree.get_leaf(i + 1)) for i in indices]  # pymerkle counts from one
    cons = [(m, tree.get_root(m)) for m in olds]
    inclusion = time_pairs(
        incl,
        lambda c: tree.prove_inclusion(c[0], n),
        lambda c, p: pymerkle.verify_inclusion(
            c[1], root, p, index=c[0], size=n, algorithm=algo, security=True
        ),
    )
    consistency = time_pairs(
        cons,
        lambda c: tree.prove_consistency(c[0], n),
        lambda c, p: pymerkle.verify_consistency(
            c[1], root, p, prior_size=c[0], later_size=n, algorithm=algo, security=True
        ),
    )
    return tree, {
        "version": importlib.metadata.version("pymerkle"),
        "settings": {"class": "InmemoryTree", **PYMERKLE_SETTINGS},
        "size": n,
        "requested_size": wanted,
        "truncated": truncated,
        "truncated_reason": (
            f"build stopped after the {cfg.pymerkle_budget_s:g} s budget" if truncated else None
        ),
        "proofs": cfg.pymerkle_proofs,
        "build": {"entries": n, "seconds": seconds, "entries_per_s": n / seconds},
        "inclusion": inclusion,
        "consistency": consistency,
    }


# --- correctness -----------------------------------------------------------


def check_correctness(ours: MemoryTree, theirs: Any, seed: int) -> dict[str, Any]:
    """Untimed cross-checks at pymerkle's size, so the comparison is apples to apples."""
    n = theirs.get_size()
    rng = random.Random(f"check:{seed}")
    errors: list[str] = []
    checks = 0

    def expect(ok: bool, what: str) -> None:
        nonlocal checks
        checks += 1
        if not ok and len(errors) < 20:
            errors.append(what)

    expect(ours.root(n) == theirs.get_root(), f"roots differ at size {n}")
    for m in [1, 2, 3, n - 1, *(rng.randrange(1, n) for _ in range(30))]:
        if 1 <= m <= n:
            expect(ours.root(m) == theirs.get_root(m), f"roots differ at size {m}")
    for i in [0, n - 1, *(rng.randrange(n) for _ in range(200))]:
        p = theirs.prove_inclusion(i + 1, n)
        # pymerkle's path starts with the leaf hash itself; the rest is RFC 9162's PATH.
        expect(p.path[0] == ours.leaf_hash(i), f"leaf hash {i} differs")
        expect(p.path[1:] == inclusion_proof(ours, i, n), f"inclusion proof {i}@{n} differs")

    # Both verifiers must reject a tampered proof, or the timings measure a no-op.
    root, i, m = ours.root(n), n // 3, max(1, n // 3)
    bad = inclusion_proof(ours, i, n)
    bad[0] = bytes([bad[0][0] ^ 1]) + bad[0][1:]
    expect(
        _raises(lambda: verify_inclusion(ours.leaf_hash(i), i, n, bad, root)),
        "overt accepted a tampered inclusion proof",
    )
    bad = consistency_proof(ours, m, n)
    bad[-1] = bytes([bad[-1][0] ^ 1]) + bad[-1][1:]
    expect(
        _raises(lambda: verify_consistency(m, n, ours.root(m), root, bad)),
        "overt accepted a tampered consistency proof",
    )
    pbad = theirs.prove_inclusion(i + 1, n)
    pbad.path[-1] = bytes([pbad.path[-1][0] ^ 1]) + pbad.path[-1][1:]
    expect(
        _raises(lambda: pymerkle.verify_inclusion(pbad.path[0], root, pbad)),
        "pymerkle accepted a tampered inclusion proof",
    )
    return {"ok": not errors, "size": n, "checks": checks, "errors": errors}


def _raises(fn: Callable[[], object]) -> bool:
    try:
        fn()
    except (VerificationError, pymerkle.InvalidProof):
        return True
    return False


# --- report ----------------------------------------------------------------


def report(
    cfg: Config,
    limits: dict[str, float],
    ov: dict[str, Any],
    pm: dict[str, Any],
    correctness: dict[str, Any],
) -> dict[str, Any]:
    """Print the tables; return ratios and target verdicts for the JSON."""
    build_ratio = ov["build"]["entries_per_s"] / pm["build"]["entries_per_s"]
    ratios: dict[str, float] = {"build_overt_over_pymerkle": build_ratio}
    targets = {
        "build_entries_per_s": {
            "target": TARGET_BUILD_RATE,
            "value": ov["build"]["entries_per_s"],
            "pass": ov["build"]["entries_per_s"] >= TARGET_BUILD_RATE,
        },
    }
    rows = [
        [
            "build (entries/s)",
            fmt_rate(ov["build"]["entries_per_s"]),
            fmt_rate(pm["build"]["entries_per_s"]),
            fmt_ratio(build_ratio),
            f"≥ {TARGET_BUILD_RATE:,}/s",
            verdict(targets["build_entries_per_s"]["pass"]),
        ]
    ]
    for kind in ("inclusion", "consistency"):
        for part, stat, label in (
            ("gen_verify", "median_us", "gen+verify median"),
            ("gen_verify", "p99_us", "gen+verify p99"),
            ("gen", "median_us", "gen median"),
            ("verify", "median_us", "verify median"),
        ):
            o, p = ov[kind][part][stat], pm[kind][part][stat]
            ratios[f"{kind}_{part}_{stat}_pymerkle_over_overt"] = p / o
            target = ok = None
            if (part, stat) == ("gen_verify", "median_us"):
                ok = o <= TARGET_PROOF_US
                targets[f"{kind}_gen_verify_median_us"] = {
                    "target": TARGET_PROOF_US,
                    "value": o,
                    "pass": ok,
                }
                target = f"≤ {TARGET_PROOF_US:g} µs"
            rows.append(
                [
                    f"{kind} {label}",
                    fmt_us(o),
                    fmt_us(p),
                    fmt_ratio(p / o),
                    target or "",
                    verdict(ok),
                ]
            )

    notes = [
        "ratio: build = overt / pymerkle; times = pymerkle / overt (> 1: overt is faster).",
        f"pymerkle {pm['version']}: InmemoryTree('sha256'), security on "
        "(leaf 0x00 / node 0x01 prefixes, as RFC 9162).",
        f"entries of {ENTRY_SIZE} random bytes, added in batches of {cfg.batch:,}; "
        "random leaves / old sizes; leaf hashes and old roots fetched untimed.",
    ]
    if pm["truncated"]:
        notes.append(
            f"[bold yellow]pymerkle measured at {pm['size']:,} entries, not {ov['size']:,}: "
            f"{pm['truncated_reason']}.[/]"
        )
    if cfg.quick:
        notes.append(
            "[yellow]--quick: small sizes, figures are a smoke test only; "
            "targets apply to 1,000,000 entries.[/]"
        )
    if correctness["ok"]:
        notes.append(
            f"[green]correctness: {correctness['checks']} cross-checks at size "
            f"{correctness['size']:,} agree (roots, inclusion paths, tamper "
            "rejection).[/]"
        )
    print_table(
        "Merkle tree: overt vs pymerkle",
        [
            "measure",
            f"overt\nn={ov['size']:,}\n{ov['proofs']:,} proofs",
            f"pymerkle\nn={pm['size']:,}\n{pm['proofs']:,} proofs",
            "ratio",
            "target",
            "overt",
        ],
        rows,
    )
    for note in notes:
        console.print(note)

    build = ov["build"]["entries_per_s"]
    b2 = limits["build_bound_2x65B_entries_per_s"]
    bm = limits["build_bound_leaf_plus_node_entries_per_s"]
    print_table(
        "The raw limit: hashlib.sha256, one thread",
        ["measure", "rate", "overt build as share"],
        [
            ["sha256(65 bytes).digest()  (a node)", fmt_rate(limits["sha256_65B_per_s"]), ""],
            [
                f"sha256({1 + ENTRY_SIZE} bytes).digest()  (a leaf)",
                fmt_rate(limits["sha256_201B_per_s"]),
                "",
            ],
            ["build bound: 2 × 65-byte hashes per entry", fmt_rate(b2), f"{build / b2:.0%}"],
            [
                f"build bound: 1 leaf ({1 + ENTRY_SIZE} B) + 1 node (65 B) hash per entry",
                fmt_rate(bm),
                f"{build / bm:.0%}",
            ],
        ],
    )
    if not correctness["ok"]:
        console.print(
            "[bold white on red] CORRECTNESS MISMATCH: overt and pymerkle disagree; the "
            "comparison above is NOT apples to apples. [/]"
        )
        for e in correctness["errors"]:
            console.print(f"[red]  - {e}[/]")
    return {"ratios": ratios, "targets": targets}


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv or [])
    # pymerkle 6.x has get_state and no index/size keywords on verify_*; pyproject allows >= 6.1.
    if not hasattr(pymerkle.InmemoryTree, "get_root"):
        console.print(
            f"[bold red]bench_tree needs pymerkle >= 7.0 (get_root, verify_* with "
            f"index/size keywords); found {importlib.metadata.version('pymerkle')}.[/]"
        )
        return 1
    console.print(f"hashlib.sha256 limit ({cfg.hash_calls:,} calls, best of 3)...")
    limits = hash_limits(cfg.hash_calls)

    console.print(
        f"generating {cfg.entries:,} entries of {ENTRY_SIZE} random bytes "
        f"(seed {cfg.seed}, untimed)..."
    )
    entries = make_entries(cfg.entries, cfg.seed)
    batches = [entries[i : i + cfg.batch] for i in range(0, len(entries), cfg.batch)]

    console.print("overt: build, inclusion and consistency proofs...")
    t0 = time.perf_counter()
    ours, ov = bench_overt(batches, cfg)
    console.print(f"  done in {time.perf_counter() - t0:.1f} s")

    console.print(f"pymerkle: build (budget {cfg.pymerkle_budget_s:g} s), proofs...")
    t0 = time.perf_counter()
    theirs, pm = bench_pymerkle(batches, cfg)
    console.print(f"  done in {time.perf_counter() - t0:.1f} s")

    console.print("cross-checking overt against pymerkle (untimed)...")
    correctness = check_correctness(ours, theirs, cfg.seed)
    verdicts = report(cfg, limits, ov, pm, correctness)

    path = write_results(
        "tree",
        {
            "config": {
                "entries": cfg.entries,
                "entry_size": ENTRY_SIZE,
                "batch": cfg.batch,
                "proofs": cfg.proofs,
                "pymerkle_proofs": cfg.pymerkle_proofs,
                "seed": cfg.seed,
                "hash_calls": cfg.hash_calls,
                "pymerkle_budget_s": cfg.pymerkle_budget_s,
                "timer": "time.perf_counter_ns per operation; gc enabled, collected "
                "before each timed section",
            },
            "hash_limit": limits,
            "overt": ov,
            "pymerkle": pm,
            **verdicts,
            "correctness": correctness,
        },
        quick=cfg.quick,
    )
    console.print(f"results written to {path}")
    return 0 if correctness["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

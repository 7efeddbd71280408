"""Relocation benchmark: 100,000 objects of 1 KB moved from ru-moscow to ch-zurich, provably.

Setup (untimed, but reported): a vault whose residency policy version 1 keeps the data
of customers in AU in ru-moscow (EU, US in ch-zurich; RU in ru-moscow); N telemetry
records of 1 KB (os.urandom) ingested for 4 AU customers with `Vault.ingest` in batches
of 1,000, plus 2% as many for customers in DE and RU that stay where they are; access
logs published. Then `set_policy` makes version 2 (AU in ch-zurich), logged in both
regions.

Timed, end to end, for each batch size (--batches, default 1,000), on a fresh copy of
that vault: `Relocator(vault, batch).run()` (plan; per batch: the batch and its two
signed relocate events written to the relocation journal, both events durably logged,
one in each region's access log, before anything is touched; the source's reads
journalled; each object decrypted under its data key, sealed under a fresh one wrapped
by ch-zurich's KEK, stored with its journal row; every copy read back from the store,
decrypted and compared; a shred event logged in ru-moscow; the old records marked
erased, their ciphertexts dropped, their data keys deleted with SQLite secure_delete),
then `vault.publish()` so the checkpoints cover every event -> objects/s, per-batch
p50/p99 (time between progress reports). Durable throughout: SQLite WAL
synchronous=FULL (stores, access logs, relocation journal), the keyrings in rollback
journal mode with secure_delete.

Also measured: the dry run (`plan` under version 2), the supervisor's audit and the
relocation report for AU after the move (informational), and two floors in the same
run on the same records: the crypto floor (per record: unwrap + decrypt, fresh key +
seal + wrap, decrypt again to verify; `cryptography`, nothing stored) and the vault's
own ingestion rate measured during setup (a relocation does strictly more per object:
it reads, writes, verifies and shreds).

Correctness: every AU object readable in ch-zurich only, with its original digest
(sampled); no record in ru-moscow with a data key or ciphertext; one relocate event
per batch in each region and one shred event per batch, counts summing to N; the
audit passes; the report verifies.

Target (2-core machine, full size): >= 5,000 objects/s including re-encryption and
logging.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from common import (
    OtherLoad,
    console,
    fmt_rate,
    fs_type,
    print_table,
    summarize_ns,
    verdict,
    write_results,
)
from overt.vault.audit import audit
from overt.vault.envelope import key_aad, object_aad
from overt.vault.events import open_entry
from overt.vault.policy_history import set_policy
from overt.vault.relocate import Progress, Relocator, plan
from overt.vault.report import relocation_report
from overt.vault.vault import Vault, init_vault

RECORD_SIZE = 1024
INGEST_BATCH = 1000
TARGET_RATE = 5_000  # objects/s, end to end
ORIGIN = "bench.overt.example/relocate"
ZRH, MOW = "ch-zurich", "ru-moscow"
AU_CUSTOMERS = ("sydney-bank", "perth-mine", "melbourne-uni", "brisbane-port")
STAYING = (("berlin-hospital", "DE", ZRH), ("moscow-shop", "RU", MOW))

POLICY_V1 = """\
[regions.ch-zurich]
description = "Zurich, Switzerland (supervised)"
[regions.ru-moscow]
description = "Moscow, Russia"

[countries]
EU = "ch-zurich"
US = "ch-zurich"
AU = "ru-moscow"
RU = "ru-moscow"

[categories.telemetry]
description = "threat statistics sent by products"
retention_days = 90
"""
POLICY_V2 = POLICY_V1.replace('AU = "ru-moscow"', 'AU = "ch-zurich"')


@dataclass(frozen=True)
class Config:
    objects: int
    batches: tuple[int, ...]
    audit: bool
    seed: int
    workdir: Path | None
    quick: bool


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(prog="bench_relocate", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--objects", type=int, help="AU objects to move (default 100,000)")
    parser.add_argument(
        "--batches", help="comma-separated relocation batch sizes (default 1000)", default=""
    )
    parser.add_argument("--no-audit", action="store_true", help="skip the audit and report")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="where to make the temporary vaults")
    a = parser.parse_args(list(argv))
    objects = a.objects or (5_000 if a.quick else 100_000)
    batches = tuple(int(b) for b in a.batches.split(",") if b) or (1000,)
    return Config(objects, batches, not a.no_audit, a.seed, a.workdir, a.quick)


def build_vault(root: Path, objects: int, rng: random.Random) -> tuple[dict[str, Any], list[str]]:
    """The vault under policy version 1, filled; returns setup figures and a sample of
    AU ids with their digests stored alongside (id -> sha256)."""
    init_vault(root, POLICY_V1, ORIGIN)
    sample: dict[str, str] = {}
    ingest_ns = 0
    count = 0
    with Vault(root) as vault:
        batches = -(-objects // INGEST_BATCH)
        for n in range(batches):
            size = min(INGEST_BATCH, objects - n * INGEST_BATCH)
            records = [os.urandom(RECORD_SIZE) for _ in range(size)]
            t0 = time.perf_counter_ns()
            stored = vault.ingest(AU_CUSTOMERS[n % len(AU_CUSTOMERS)], "AU", "telemetry", records)
            ingest_ns += time.perf_counter_ns() - t0
            count += size
            for s, r in zip(stored[:5], records[:5], strict=False):
                sample[s.id] = hashlib.sha256(r).hexdigest()
        staying = max(1, objects // 50)
        for customer, country, _ in STAYING:
            for start in range(0, staying, INGEST_BATCH):
                records = [
                    os.urandom(RECORD_SIZE) for _ in range(min(INGEST_BATCH, staying - start))
                ]
                vault.ingest(customer, country, "telemetry", records)
        t0 = time.perf_counter()
        vault.publish()
        publish_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        change = set_policy(vault, POLICY_V2)
        set_policy_s = time.perf_counter() - t0
    assert change.changed and change.version == 2
    figures = {
        "ingest_objects_per_s": count / (ingest_ns / 1e9),
        "publish_s": publish_s,
        "set_policy_s": set_policy_s,
        "staying_objects": staying * len(STAYING),
    }
    ids = sorted(sample)
    rng.shuffle(ids)
    (root.parent / "sample.txt").write_text(
        "\n".join(f"{i} {sample[i]}" for i in ids) + "\n", encoding="utf-8"
    )
    return figures, ids


def crypto_floor(count: int) -> float:
    """Objects/s of the relocation's crypto alone: unwrap + decrypt, fresh key + seal + wrap,
    decrypt again (verify), on 1 KB records with the vault's associated data."""
    kek_old, kek_new = AESGCM(os.urandom(32)), AESGCM(os.urandom(32))
    items = []
    for i in range(count):
        object_id = f"{i:024x}"
        key = AESGCM.generate_key(bit_length=256)
        n1, n2 = os.urandom(12), os.urandom(12)
        aad = object_aad(object_id, MOW, "sydney-bank", "telemetry")
        items.append(
            (
                object_id,
                n1 + kek_old.encrypt(n1, key, key_aad(object_id, MOW)),
                n2 + AESGCM(key).encrypt(n2, os.urandom(RECORD_SIZE), aad),
            )
        )
    t0 = time.perf_counter()
    for object_id, wrapped, sealed in items:
        key = kek_old.decrypt(wrapped[:12], wrapped[12:], key_aad(object_id, MOW))
        plain = AESGCM(key).decrypt(
            sealed[:12], sealed[12:], object_aad(object_id, MOW, "sydney-bank", "telemetry")
        )
        new = AESGCM.generate_key(bit_length=256)
        n1, n2 = os.urandom(12), os.urandom(12)
        aad = object_aad(object_id, ZRH, "sydney-bank", "telemetry")
        resealed = n2 + AESGCM(new).encrypt(n2, plain, aad)
        rewrapped = n1 + kek_new.encrypt(n1, new, key_aad(object_id, ZRH))
        back = kek_new.decrypt(rewrapped[:12], rewrapped[12:], key_aad(object_id, ZRH))
        assert AESGCM(back).decrypt(resealed[:12], resealed[12:], aad) == plain
    return count / (time.perf_counter() - t0)


def relocate(root: Path, batch: int, total: int) -> dict[str, Any]:
    stamps: list[int] = []

    def progress(p: Progress) -> None:
        stamps.append(time.perf_counter_ns())

    with Vault(root) as vault:
        t0 = time.perf_counter()
        dry = plan(vault)
        plan_s = time.perf_counter() - t0
        assert dry.objects == total, (dry.objects, total)
        load = OtherLoad()
        start = time.perf_counter_ns()
        result = Relocator(vault, batch, progress=progress).run()
        run_ns = time.perf_counter_ns() - start
        t0 = time.perf_counter_ns()
        vault.publish()
        publish_ns = time.perf_counter_ns() - t0
        others = load.stop()
    seconds = (run_ns + publish_ns) / 1e9
    gaps = [b - a for a, b in zip([start, *stamps], stamps, strict=False)]
    return {
        "batch": batch,
        "objects": result.moved,
        "batches": result.batches,
        "objects_per_s": result.moved / seconds,
        "objects_per_s_without_publish": result.moved / (run_ns / 1e9),
        "seconds": seconds,
        "publish_ms": publish_ns / 1e6,
        "dry_run_s": plan_s,
        "batch_latency": summarize_ns(gaps) | {"max_us": max(gaps) / 1000},
        "other_processes_cores": others,
    }


def check(root: Path, sample: list[str], total: int, run_audit: bool) -> dict[str, Any]:
    digests = dict(
        line.split() for line in (root.parent / "sample.txt").read_text().splitlines() if line
    )
    out: dict[str, Any] = {}
    with Vault(root) as vault:
        zrh, mow = vault.store(ZRH), vault.store(MOW)
        au_live = {o.id for o in zrh.objects() if o.country == "AU" and not o.erased}
        old = [o for o in mow.objects() if o.country == "AU"]
        out["au_in_zurich"] = len(au_live)
        out["au_readable_in_moscow"] = sum(1 for o in old if not o.erased)
        ids = [o.id for o in old]
        out["moscow_keys_left"] = sum(
            len(mow.data_keys(ids[i : i + 1000])) for i in range(0, len(ids), 1000)
        )
        out["moscow_ciphertexts_left"] = sum(
            1 for v in mow.fetch(ids[:5000]).values() if v[1] is not None
        )
        found = zrh.fetch(sample[:200])
        plain = zrh.decrypt_many(found)
        out["sample_digests_ok"] = all(
            hashlib.sha256(plain[i]).hexdigest() == digests[i] for i in sample[:200]
        )
        counts: dict[str, int] = {}
        moved = 0
        for region in (ZRH, MOW):
            log = vault.log(region)
            for index in range(log.sequenced_size()):
                kind, doc = open_entry(log.entry(index), vault.verifier)
                if kind == "access" and doc["action"] in ("relocate", "shred"):
                    key = f"{region} {doc['action']}"
                    counts[key] = counts.get(key, 0) + 1
                    if doc["action"] == "shred":
                        moved += doc["batch"]["count"]
        out["events"] = counts
        out["shredded_in_events"] = moved
        if run_audit:
            t0 = time.perf_counter()
            report = audit(vault)
            out["audit_s"] = time.perf_counter() - t0
            out["audit_ok"] = report.ok
            out["audit_discrepancies"] = report.discrepancies[:5]
            t0 = time.perf_counter()
            doc = relocation_report(vault, country="AU")
            out["report_s"] = time.perf_counter() - t0
            out["report_verified"] = doc["verified"]
    out["ok"] = (
        out["au_in_zurich"] == total
        and out["au_readable_in_moscow"] == 0
        and out["moscow_keys_left"] == 0
        and out["moscow_ciphertexts_left"] == 0
        and out["sample_digests_ok"]
        and out["shredded_in_events"] == total
        and counts.get(f"{MOW} relocate")
        == counts.get(f"{ZRH} relocate")
        == counts.get(f"{MOW} shred")
        and (not run_audit or (out["audit_ok"] and out["report_verified"]))
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(list(argv or []))
    rng = random.Random(cfg.seed)
    console.print(
        f"bench_relocate: {cfg.objects:,} objects of {RECORD_SIZE} bytes from {MOW} to {ZRH}, "
        f"batches {', '.join(f'{b:,}' for b in cfg.batches)}"
    )
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-relocate-", dir=cfg.workdir) as tmp:
        work = Path(tmp)
        fstype = fs_type(work)
        console.print(f"work directory {work} ({fstype})")
        console.print("1. setup: vault under policy version 1, ingestion, policy version 2...")
        base = work / "base" / "vault"
        setup, sample = build_vault(base, cfg.objects, rng)
        console.print(
            f"    ingestion {fmt_rate(setup['ingest_objects_per_s'])}; set_policy "
            f"{setup['set_policy_s'] * 1000:.0f} ms"
        )
        console.print("2. crypto floor...")
        floor = crypto_floor(min(cfg.objects, 20_000))
        console.print(f"    {fmt_rate(floor)}")
        for n, batch in enumerate(cfg.batches):
            console.print(f"3.{n + 1} relocation, batch {batch:,}...")
            run_dir = work / f"run-{batch}"
            shutil.copytree(base.parent, run_dir)
            root = run_dir / "vault"
            figures = relocate(root, batch, cfg.objects)
            console.print(
                f"    {fmt_rate(figures['objects_per_s'])} ({figures['seconds']:.2f} s, "
                f"{figures['batches']} batches); checking..."
            )
            figures["checks"] = check(root, sample, cfg.objects, cfg.audit)
            runs.append(figures)
            shutil.rmtree(run_dir)
    first = runs[0]
    target_ok = first["objects_per_s"] >= TARGET_RATE and first["checks"]["ok"]
    rows = [
        [
            f"relocate, batch {r['batch']:,}",
            f"{r['objects']:,}",
            fmt_rate(r["objects_per_s"]),
            f"{r['batch_latency']['median_us'] / 1000:.1f} ms",
            f"{r['batch_latency']['p99_us'] / 1000:.1f} ms",
            verdict(r["objects_per_s"] >= TARGET_RATE and r["checks"]["ok"])
            if not cfg.quick
            else "",
        ]
        for r in runs
    ]
    rows.append(["peer: crypto floor (no storage, no log)", "", fmt_rate(floor), "", "", ""])
    rows.append(
        [
            "peer: this vault's ingestion (write only)",
            f"{cfg.objects:,}",
            fmt_rate(setup["ingest_objects_per_s"]),
            "",
            "",
            "",
        ]
    )
    print_table(
        f"Relocation of {cfg.objects:,} objects of 1 KB, {MOW} -> {ZRH} (target >= "
        f"{TARGET_RATE:,}/s)",
        ["what", "objects", "rate", "batch p50", "batch p99", "target"],
        rows,
    )
    c = first["checks"]
    console.print(
        f"checks: {c['au_in_zurich']:,} AU objects readable in {ZRH}, "
        f"{c['au_readable_in_moscow']} readable in {MOW}, {c['moscow_keys_left']} data keys "
        f"left in {MOW}; events {c['events']}; "
        + (
            f"audit {'OK' if c['audit_ok'] else 'FAILED'} in {c['audit_s']:.1f} s, report "
            f"{'verified' if c['report_verified'] else 'NOT verified'} in {c['report_s']:.1f} s"
            if cfg.audit
            else "audit skipped"
        )
    )
    console.print(
        f"dry run (plan) {first['dry_run_s'] * 1000:.0f} ms; publish after the run "
        f"{first['publish_ms']:.0f} ms; other processes used {first['other_processes_cores']} "
        "cores during the run"
    )
    if cfg.quick:
        console.print(
            "[yellow]--quick: small sizes, figures are a smoke test only; the target applies "
            "to 100,000 objects.[/]"
        )
    path = write_results(
        "relocate",
        {
            "config": {
                "objects": cfg.objects,
                "record_size": RECORD_SIZE,
                "batches": list(cfg.batches),
                "au_customers": len(AU_CUSTOMERS),
                "staying_objects": setup["staying_objects"],
                "filesystem": fstype,
                "durability": "SQLite WAL synchronous=FULL (stores, access logs, relocation "
                "journal); keyrings in rollback-journal mode with secure_delete",
                "seed": cfg.seed,
            },
            "setup": setup,
            "crypto_floor_objects_per_s": floor,
            "relocate": runs,
            "targets": {"objects_per_s": TARGET_RATE, "ok": target_ok},
            "seconds": round(time.perf_counter() - started, 1),
        },
        quick=cfg.quick,
    )
    console.print(f"results written to {path}")
    if not first["checks"]["ok"]:
        console.print("[bold red]correctness checks failed[/]")
        return 1
    return 0 if target_ok or cfg.quick else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

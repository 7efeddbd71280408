"""Demo step: Australia's customer data moves from Moscow to Zurich, provably.

Runs after the vault step (build.py), while the demo's witnesses are serving:
the vault's initial policy keeps customers in AU in ru-moscow. The vendor
announces the move: a dry run shows what would move; the new policy version is
logged in both regions' access logs before it takes effect; a write of
sydney-bank's data to Moscow is then refused, and logged there too; the
relocation moves the data in batches (each batch logged in both regions,
re-encrypted, verified, and the old copies' keys destroyed, logged again); the
supervisor's audit reconciles; a backup of an old ciphertext no longer
decrypts; and sydney-bank's relocation report proves every batch against the
witnessed checkpoints.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from overt.durable import atomic_write
from overt.errors import VerificationError
from overt.tlog.policy import Policy
from overt.vault.audit import audit
from overt.vault.envelope import DecryptionError
from overt.vault.policy_history import set_policy
from overt.vault.relocate import Progress, Relocator, plan
from overt.vault.report import relocation_report
from overt.vault.residency import ResidencyPolicy
from overt.vault.vault import AccessRefused, Vault

OLD, NEW = "ru-moscow", "ch-zurich"
CUSTOMER = "sydney-bank"
BATCH = 8  # small, so the demo shows several batches


def run_relocation(root: Path, say: Callable[[str, str], None]) -> None:
    vault_dir = root / "vault"
    out_dir = root / "relocation"
    with Vault(vault_dir) as vault:
        if vault.policy.region_for("AU") != OLD:
            raise VerificationError(
                "demo: the relocation step needs a vault whose initial residency policy "
                f'routes AU to {OLD} (AU = "{OLD}" in RESIDENCY, demo/build.py)'
            )
        mine = [o for o in vault.store(OLD).objects() if o.customer == CUSTOMER]
        if not mine:
            raise VerificationError(f"demo: {CUSTOMER} has no data in {OLD} to move")
        say(
            "relocation",
            f"policy version {vault.policy_version} keeps the data of customers in AU in "
            f"{OLD}: {CUSTOMER} has {len(mine)} objects there",
        )
        # What an old backup of the Moscow store would hold for one of them.
        backup = mine[0], vault.store(OLD).sealed(mine[0].id)

        text = (vault_dir / "residency.toml").read_text(encoding="utf-8")
        new_text, changed = re.subn(
            rf'^AU\s*=\s*"{OLD}"', f'AU = "{NEW}"', text, count=1, flags=re.MULTILINE
        )
        if not changed:
            raise VerificationError("demo: cannot find the AU line in the residency policy")
        policy_file = out_dir / "residency-v2.toml"
        atomic_write(policy_file, new_text.encode("utf-8"))
        dry = plan(vault, ResidencyPolicy.parse(new_text), vault.policy_version + 1)
        routes = ", ".join(
            f"{r['objects']} objects of {r['customers']} customers in {r['country']} "
            f"{r['from']} -> {r['to']}"
            for r in dry.routes(BATCH)
        )
        say(
            "relocation",
            f"the vendor announces the move; dry run ('overt vault relocate --dry-run "
            f"--policy {policy_file.relative_to(root)}'): {routes}, {dry.batches(BATCH)} "
            "batches; nothing changed",
        )

        change = set_policy(vault, new_text)
        where = ", ".join(f"{r} #{i}" for r, i in sorted(change.logged.items()))
        say(
            "relocation",
            f"policy version {change.version} (AU: {OLD} -> {NEW}) logged in both access "
            f"logs ({where}) before it took effect"
            + ("; version 1 was logged first" if change.initial_logged else ""),
        )
        try:
            vault.ingest(CUSTOMER, "AU", "telemetry", [b'{"late": true}'], region=OLD)
        except AccessRefused as exc:
            say("relocation", f"a new write of {CUSTOMER}'s data to {OLD} is refused: {exc}")
        else:
            raise VerificationError("demo self-check failed: a write to the old region landed")

        def progress(p: Progress) -> None:
            say(
                "relocation",
                f"batch {p.batch}: {p.objects} objects of {p.country} {p.src} -> {p.dst}: "
                f"relocate events logged in both regions, re-encrypted under {p.dst}'s key, "
                f"verified, old keys destroyed (shred event logged) [{p.done}/{p.total}]",
            )

        result = Relocator(vault, BATCH, progress=progress).run()
        vault.publish()
        report = audit(vault)
        if not report.ok:
            raise VerificationError(f"demo self-check failed: vault audit: {report.discrepancies}")
        say(
            "relocation",
            f"relocation run {result.run}: {result.moved} objects in {result.batches} batches; "
            f"audit: {report.relocated} objects relocated and shredded, every write checked "
            "against the policy version in force when it was logged",
        )
        obj, sealed = backup
        try:
            vault.store(OLD).decrypt(obj, sealed)
        except DecryptionError as exc:
            say("relocation", f"an old backup of object {obj.id} from {OLD} is useless: {exc}")
        else:
            raise VerificationError("demo self-check failed: an old copy still decrypts")

        trust = Policy.parse((root / "customer" / "access-logs.tlog-policy").read_bytes())
        evidence = relocation_report(vault, customer=CUSTOMER, trust=trust)
    if not evidence["verified"] or not evidence["witnessed"]:
        raise VerificationError(
            f"demo self-check failed: the relocation report: {evidence['problems']}"
        )
    report_file = out_dir / f"{CUSTOMER}-report.json"
    atomic_write(report_file, json.dumps(evidence, indent=2).encode())
    counts = evidence["regions"]
    cosigners = sorted({c for cp in evidence["checkpoints"].values() for c in cp["cosigners"]})
    say(
        "customer",
        f"{CUSTOMER}'s relocation report ({report_file.relative_to(root)}): "
        f"{len(evidence['batches'])} batches, each with its relocate and shred events proven "
        f"in the access logs cosigned by {', '.join(cosigners)}; {OLD}: "
        f"{counts[OLD]['before']} objects before, {counts[OLD]['after']} after; {NEW}: "
        f"{counts[NEW]['before']} before, {counts[NEW]['after']} after",
    )

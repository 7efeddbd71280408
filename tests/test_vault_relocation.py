"""Relocation: moving customers' data to another jurisdiction, provably.

The residency policy sends Australia's data from ru-moscow to ch-zurich
(version 2). `overt vault relocate` is killed with SIGKILL at random moments
and at every critical point of a batch, several times, and resumed; then every
Australian object must be readable in exactly ch-zurich (through the gate, with
its original content), undecryptable in ru-moscow (even from a backup of its
old ciphertexts), every move and every shredding must be in both access logs,
covering exactly the objects moved, and the supervisor's audit must pass.

Also: policy versions are logged and the audit checks each write against the
version in force at that point of the log; a write for a relocated country into
the old region is refused and logged there; dry runs change nothing; the
relocation report proves the move to a customer and for a whole country.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import drivers
from overt.cli.main import app
from overt.errors import OvertError
from overt.vault import policy_history
from overt.vault.actors import ActorEntry
from overt.vault.audit import audit
from overt.vault.envelope import DecryptionError
from overt.vault.events import AccessEvent, Actor, batch_root, open_entry, pseudonym
from overt.vault.policy_history import PolicyError, PolicyHistory, set_policy
from overt.vault.relocate import RelocationError, Relocator, relocation_batches, unfinished_run
from overt.vault.report import relocation_report
from overt.vault.store import NewObject
from overt.vault.vault import AccessRefused, Vault, init_vault
from vault_fixtures import MOW, REGIONS, ZRH

OVERT = [sys.executable, "-m", "overt.cli"]

POLICY_V1 = (
    REGIONS
    + """
[countries]
EU = "ch-zurich"
US = "ch-zurich"
AU = "ru-moscow"
RU = "ru-moscow"

[categories.telemetry]
retention_days = 90
[categories.sample]
retention_days = 365
"""
)
POLICY_V2 = POLICY_V1.replace('AU = "ru-moscow"', 'AU = "ch-zurich"')

# customer -> (country, telemetry objects, samples)
CUSTOMERS = {
    "sydney-bank": ("AU", 1100, 12),
    "perth-mine": ("AU", 800, 0),
    "melbourne-uni": ("AU", 500, 3),
    "berlin-hospital": ("DE", 300, 2),
    "moscow-shop": ("RU", 200, 0),
}
AU_OBJECTS = sum(t + s for c, t, s in CUSTOMERS.values() if c == "AU")

pytestmark = pytest.mark.usefixtures("database")


# --- helpers ------------------------------------------------------------------------------


def make_vault(tmp_path: Path, scale: float = 1.0) -> tuple[Path, dict[str, str]]:
    """A vault under policy version 1 (AU in ru-moscow) with the customers' data;
    returns the root and each object's content digest."""
    root = tmp_path / "vault"
    init_vault(root, POLICY_V1, "test.example/reloc", drivers.DATABASE)
    text = (root / "actors.toml").read_text()
    for name, justs in (("dana", ("THREAT_ANALYSIS",)), ("dpo", ("DATA_ERASURE",))):
        text += "\n" + ActorEntry(Actor(name, "staff", "Acme", "CH"), justs, "").to_toml()
    (root / "actors.toml").write_text(text)
    digests: dict[str, str] = {}
    rng = random.Random(5)
    with Vault(root) as vault:
        for customer, (country, telemetry, samples) in CUSTOMERS.items():
            for category, count in (("telemetry", int(telemetry * scale)), ("sample", samples)):
                for start in range(0, count, 400):
                    contents = [
                        f"{customer} {category} {n} ".encode() * rng.randint(1, 12)
                        for n in range(start, min(count, start + 400))
                    ]
                    for stored, content in zip(
                        vault.ingest(customer, country, category, contents), contents, strict=True
                    ):
                        digests[stored.id] = hashlib.sha256(content).hexdigest()
    return root, digests


def cli(*args: str | Path) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"overt {args} crashed: {result.exception!r}") from result.exception
    return result


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def policy_file(tmp_path: Path, text: str, name: str = "residency-v2.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def au_ids(vault: Vault) -> set[str]:
    return {
        o.id for r in vault.policy.regions for o in vault.store(r).objects() if o.country == "AU"
    }


def readable(vault: Vault, digests: dict[str, str]) -> dict[str, list[str]]:
    """Object id -> regions where it decrypts to its original content."""
    found: dict[str, list[str]] = defaultdict(list)
    ids = sorted(digests)
    for region in vault.policy.regions:
        store = vault.store(region)
        held = {i: v for i, v in store.fetch(ids).items() if not v[0].erased}
        keys = store.data_keys(list(held))
        live = {i: held[i] for i in held if i in keys and held[i][1] is not None}
        for object_id, content in store.decrypt_many(live).items():
            assert hashlib.sha256(content).hexdigest() == digests[object_id]
            found[object_id].append(region)
    return found


def entries(vault: Vault, region: str) -> list[tuple[int, str, dict[str, Any]]]:
    log = vault.log(region)
    return [(i, *open_entry(log.entry(i), vault.verifier)) for i in range(log.sequenced_size())]


# Discrepancies an interrupted relocation may show, and nothing else.
INTERRUPTED = (
    re.compile(r"belongs in ch-zurich under policy version 2 \(relocation pending"),
    re.compile(r"is readable in ch-zurich and ru-moscow: an unfinished relocation"),
)


def check_interrupted(root: Path, digests: dict[str, str]) -> int:
    """After a kill: nothing lost, nothing garbled, nothing outside the gate."""
    with Vault(root) as vault:
        where = readable(vault, digests)
        lost = sorted(set(digests) - set(where))
        assert not lost, f"{len(lost)} objects are readable nowhere, e.g. {lost[:3]}"
        report = audit(vault)
        odd = [d for d in report.discrepancies if not any(p.search(d) for p in INTERRUPTED)]
        assert not odd, odd
        return sum(1 for regions in where.values() if regions == [ZRH])


KILL_DRIVER = r"""
import os, signal, sys, threading
from pathlib import Path
from overt.vault.pg_meta import PostgresMeta
from overt.vault.relocate import RelocationJournal, Relocator
from overt.vault.store import RegionStore, SQLiteMeta
from overt.vault.vault import Vault

root, point, nth, batch = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
calls = [0]
lock = threading.Lock()

def hook(cls, name, when):
    original = getattr(cls, name)
    def wrapper(*args, **kwargs):
        with lock:  # the relocation appends to two logs at once, from two threads
            calls[0] += 1
            mine = calls[0]
        if when == "before" and mine == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if when == "after" and mine == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    setattr(cls, name, wrapper)

meta = PostgresMeta if (root / "vault.toml").exists() else SQLiteMeta
if point == "between-events":     # source's relocate event logged, destination's not
    hook(Vault, "append_signed", "before")
elif point == "events-logged":    # both logged, nothing copied
    hook(Vault, "append_signed", "after")
elif point == "keys-copied":      # destination's data keys committed, records not
    hook(meta, "add_objects", "before")
elif point == "copied":           # copies stored, not verified: readable in both regions
    hook(RegionStore, "put_copies", "after")
elif point == "records-shredded": # source records erased, data keys not yet destroyed
    hook(meta, "shred", "after")
elif point == "shredded":         # keys destroyed, the journal not yet told
    hook(RegionStore, "shred", "after")
elif point == "journal":          # at any write of the relocation journal
    hook(RelocationJournal, "add", "after")
    hook(RelocationJournal, "save", "after")
else:
    raise SystemExit(f"unknown point {point}")
vault = Vault(root)
print("ready", flush=True)
Relocator(vault, batch).run()
print("completed", flush=True)
"""


def kill_at(root: Path, point: str, nth: int, batch: int) -> bool:
    """Run the relocation with a SIGKILL at the nth call of `point`; False if it completed."""
    proc = subprocess.run(
        [sys.executable, "-c", KILL_DRIVER, str(root), point, str(nth), str(batch)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode == 0:
        assert "completed" in proc.stdout
        return False
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)
    return True


def kill_cli_at_random(root: Path, rng: random.Random, batch: int) -> bool:
    """Run `overt vault relocate` and SIGKILL it a random moment into its batches."""
    proc = subprocess.Popen(
        [*OVERT, "vault", "relocate", str(root), "--batch", str(batch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    wait_for = rng.randint(0, 3)
    seen = 0
    try:
        while seen < wait_for:
            line = proc.stderr.readline()
            if not line:
                break
            if line.startswith("batch "):
                seen += 1
        time.sleep(rng.uniform(0, 0.08))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    finally:
        rest = proc.communicate(timeout=120)[1]
    assert "Traceback" not in rest, rest
    if proc.returncode == 0:
        return False
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, rest)
    return True


# --- the relocation under fire --------------------------------------------------------------


def test_relocation_killed_at_random_points_resumes_and_moves_everything_provably(
    tmp_path: Path,
) -> None:
    rng = random.Random(11)
    batch = 25
    root, digests = make_vault(tmp_path)
    with Vault(root) as vault:
        australian = au_ids(vault)
        others = {
            o.id: r
            for r in vault.policy.regions
            for o in vault.store(r).objects()
            if o.country != "AU"
        }
        assert len(australian) == AU_OBJECTS and len(digests) > 2900
        assert {o.id for o in vault.store(MOW).objects() if o.country == "AU"} == australian
        # A backup of the old region's ciphertexts, taken before the move.
        backup = {
            i: (obj, sealed)
            for i, (obj, sealed) in vault.store(MOW).fetch(sorted(australian)).items()
        }
    result = cli("vault", "policy", "set", root, policy_file(tmp_path, POLICY_V2))
    assert result.exit_code == 0, result.stderr
    assert "policy version 2 logged" in flat(result.stdout)
    assert f"{AU_OBJECTS} objects" in flat(result.stdout)

    kills = 0
    progress = [check_interrupted(root, digests)]
    # Random moments of the real command, then every critical point of a batch.
    schedule: list[tuple[str, int]] = [("cli", 0)] * 3
    points = ["between-events", "events-logged", "keys-copied", "copied"]
    points += ["records-shredded", "shredded", "journal", "journal"]
    rng.shuffle(points)
    for point in points:
        per_batch = 3 if point in ("between-events", "events-logged") else 1
        per_batch = 2 if point == "journal" else per_batch
        schedule.append((point, per_batch * rng.randint(0, 4) + (2 if per_batch == 3 else 1)))
    schedule.append(("cli", 0))
    for point, nth in schedule:
        if point == "cli":
            killed = kill_cli_at_random(root, rng, batch)
        else:
            killed = kill_at(root, point, nth, batch)
        assert killed, f"the relocation completed before the kill at {point}"
        kills += 1
        moved = check_interrupted(root, digests)
        assert moved >= progress[-1], "objects moved back"
        progress.append(moved)
    assert kills >= 10
    assert progress[0] < progress[-1] < len(digests), progress

    # Resume to the end, with the real command; a second run has nothing to do.
    proc = subprocess.run(
        [*OVERT, "vault", "relocate", str(root), "--batch", str(batch)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "(resumed)" in proc.stderr or "batch" in proc.stderr
    assert "complete (policy version 2)" in flat(proc.stdout)
    again = cli("vault", "relocate", root)
    assert again.exit_code == 0 and "nothing to relocate" in again.stdout

    with Vault(root) as vault:
        # Every object readable in exactly one region, Australian ones in Zurich only.
        where = readable(vault, digests)
        assert set(where) == set(digests)
        for object_id in australian:
            assert where[object_id] == [ZRH], (object_id, where[object_id])
            old = vault.store(MOW).object(object_id)
            assert old is not None and old.erased, "the old record is kept, marked erased"
            assert vault.store(MOW).data_key(object_id) is None
            assert vault.store(MOW).sealed(object_id) is None
        for object_id, region in others.items():
            assert where[object_id] == [region]
        # The backup of the old ciphertexts decrypts no more: its keys are destroyed.
        for object_id in sorted(australian)[:200]:
            obj, sealed = backup[object_id]
            with pytest.raises(DecryptionError, match="data key is gone"):
                vault.store(MOW).decrypt(obj, sealed)
        # Reads go through the gate in the new region.
        sample = sorted(australian)[7]
        content = vault.read(sample, "dana", "THREAT_ANALYSIS", "INC-77")
        assert hashlib.sha256(content).hexdigest() == digests[sample]

        # Every move and every shredding is in the logs, covering exactly the objects.
        mow = {i: doc for i, kind, doc in entries(vault, MOW) if kind == "access"}
        zrh = {i: doc for i, kind, doc in entries(vault, ZRH) if kind == "access"}
        outs = {i: d for i, d in mow.items() if d["action"] == "relocate"}
        ins = {i: d for i, d in zrh.items() if d["action"] == "relocate"}
        shreds = {i: d for i, d in mow.items() if d["action"] == "shred"}
        batches = relocation_batches(root)
        assert all(b.state == "done" for b in batches)
        assert len(outs) == len(ins) == len(shreds) == len(batches) >= AU_OBJECTS // batch
        moved_by: dict[int, set[str]] = defaultdict(set)
        for _, _, op, object_id, event in vault.store(MOW).journal():
            if op == "relocate":
                moved_by[event].add(object_id)
        shredded_by: dict[int, set[str]] = defaultdict(set)
        for _, _, op, object_id, event in vault.store(MOW).journal():
            if op == "shred":
                shredded_by[event].add(object_id)
        arrived: dict[int, set[str]] = defaultdict(set)
        for obj in vault.store(ZRH).objects():
            if obj.country == "AU":
                arrived[obj.write_event].add(obj.id)
        assert set(arrived) == set(ins)
        covered: list[str] = []
        for b in batches:
            out, into, shred = outs[b.out_index], ins[b.in_index], shreds[b.shred_index]
            assert out["relocation"]["to"] == ZRH and out["relocation"]["policy"] == 2
            assert out["relocation"]["country"] == "AU"
            assert out["batch"] == into["batch"] == shred["batch"]
            assert out["batch"] == {"count": len(b.ids), "root": batch_root(b.ids)}
            assert moved_by[b.out_index] == set(b.ids) == arrived[b.in_index]
            assert shredded_by[b.shred_index] == set(b.ids)
            assert shred["relocation"]["out_event"] == b.out_index
            assert shred["relocation"]["in_event"] == b.in_index
            assert b.shred_index > b.out_index
            covered.extend(b.ids)
        assert sorted(covered) == sorted(australian), "each object moved in exactly one batch"
        assert sum(d["batch"]["count"] for d in shreds.values()) == AU_OBJECTS
        report = audit(vault)
        assert report.ok, report.discrepancies
        assert report.relocated == AU_OBJECTS

    result = cli("vault", "audit", root)
    assert result.exit_code == 0, result.stderr
    assert f"{AU_OBJECTS} objects relocated" in flat(result.stdout)
    result = cli("vault", "report", "relocation", root, "--country", "AU", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["verified"] and not doc["problems"]
    assert doc["regions"][MOW] == {
        "before": AU_OBJECTS,
        "after": 0,
        "moved_out": AU_OBJECTS,
        "moved_in": 0,
        "shredded": AU_OBJECTS,
    }
    assert doc["regions"][ZRH]["before"] == 0 and doc["regions"][ZRH]["after"] == AU_OBJECTS
    assert all(b["complete"] and b["contents_verified"] for b in doc["batches"])
    assert sum(b["moved"] for b in doc["batches"]) == AU_OBJECTS
    assert [s["version"] for s in doc["policy_statements"] if s["region"] == MOW] == [1, 2]


# --- the policy, versioned and logged -----------------------------------------------------


def test_policy_versions_are_logged_in_every_region_before_they_are_in_force(
    tmp_path: Path,
) -> None:
    root, _ = make_vault(tmp_path, scale=0.02)
    with Vault(root) as vault:
        sizes = {r: vault.log(r).sequenced_size() for r in vault.policy.regions}
        change = set_policy(vault, POLICY_V2)
        assert change.changed and change.version == 2 and change.initial_logged
        assert change.changes == [{"country": "AU", "from": MOW, "to": ZRH}]
        assert vault.policy.region_for("AU") == ZRH and vault.policy_version == 2
        for region in (ZRH, MOW):
            found = [(i, d) for i, kind, d in entries(vault, region) if kind == "policy"]
            assert [d["version"] for _, d in found] == [1, 2]
            assert [i for i, _ in found] == [sizes[region], sizes[region] + 1]
            v1, v2 = (d for _, d in found)
            assert v1["countries"]["AU"] == MOW and v2["countries"]["AU"] == ZRH
            assert v2["previous"] == {"version": 1, "sha256": v1["sha256"]}
            assert v2["changes"] == [{"country": "AU", "from": MOW, "to": ZRH}]
            assert v2["sha256"] == hashlib.sha256(POLICY_V2.encode()).hexdigest()
        # Setting the same text again changes nothing.
        assert not set_policy(vault, POLICY_V2).changed
    assert (root / "residency.toml").read_text() == POLICY_V2
    assert (root / "policies" / "2.toml").read_text() == POLICY_V2
    result = cli("vault", "policy", "history", root)
    assert result.exit_code == 0, result.stderr
    text = flat(result.stdout)
    assert "version 1 (earlier)" in text and "version 2 (in force)" in text
    assert "AU: ru-moscow -> ch-zurich" in text
    # The customer's access history is unaffected by the statements.
    result = cli("access", "history", root, "--customer", "sydney-bank", "--json")
    assert result.exit_code == 0, result.stderr
    assert {e["action"] for e in json.loads(result.stdout)} == {"write"}


def test_policy_set_refuses_to_drop_a_region_or_strand_data_or_interrupt_a_run(
    tmp_path: Path,
) -> None:
    root, _ = make_vault(tmp_path, scale=0.02)
    no_moscow = POLICY_V2.replace('[regions.ru-moscow]\ndescription = "Moscow, Russia"\n', "")
    no_moscow = no_moscow.replace('RU = "ru-moscow"\n', "")
    no_russia = POLICY_V2.replace('RU = "ru-moscow"\n', "")
    with Vault(root) as vault:
        with pytest.raises(PolicyError, match="drops region"):
            set_policy(vault, no_moscow)
        with pytest.raises(PolicyError, match="no region to stored data"):
            set_policy(vault, no_russia)
        assert vault.policy_version == 1
    result = cli("vault", "policy", "set", root, policy_file(tmp_path, no_moscow, "bad.toml"))
    assert result.exit_code == 2 and "drops region" in flat(result.stderr)
    with Vault(root) as vault:
        set_policy(vault, POLICY_V2)
    assert kill_at(root, "copied", 1, 5)
    assert unfinished_run(root) is not None
    with Vault(root) as vault, pytest.raises(PolicyError, match="is unfinished"):
        set_policy(vault, POLICY_V1)


def test_a_write_for_a_relocated_country_into_the_old_region_is_refused_and_logged(
    tmp_path: Path,
) -> None:
    root, _ = make_vault(tmp_path, scale=0.02)
    result = cli("vault", "policy", "set", root, policy_file(tmp_path, POLICY_V2))
    assert result.exit_code == 0, result.stderr
    with Vault(root) as vault:
        before = {r: len(vault.store(r).objects()) for r in vault.policy.regions}
        mow_size = vault.log(MOW).sequenced_size()
        with pytest.raises(AccessRefused, match="must stay in ch-zurich; refusing to store it in"):
            vault.ingest("sydney-bank", "AU", "telemetry", [b"new data"], region=MOW)
        assert {r: len(vault.store(r).objects()) for r in vault.policy.regions} == before
        # Logged in the old region, where it was attempted, and where the data belongs.
        refused = [d for i, kind, d in entries(vault, MOW) if i >= mow_size and kind == "access"]
        assert [(d["action"], d["outcome"]) for d in refused] == [("write", "refused")]
        assert "policy version 2 moved it out of ru-moscow" in refused[0]["reason"]
        alias = pseudonym(vault.customers.key("sydney-bank"), "sydney-bank")
        assert refused[0]["customer"] == alias
        (home,) = [
            d
            for _, kind, d in entries(vault, ZRH)
            if kind == "access" and d["outcome"] == "refused"
        ]
        assert home["reason"] == refused[0]["reason"]
        # Without insisting on a region, new Australian data goes to Zurich.
        (stored,) = vault.ingest("sydney-bank", "AU", "telemetry", [b"new data"])
        assert stored.region == ZRH
    src = tmp_path / "data.bin"
    src.write_bytes(b"more")
    args = ["--customer", "perth-mine", "--country", "AU", "--category", "sample"]
    result = cli("vault", "put", root, src, *args, "--region", MOW)
    assert result.exit_code == 1
    assert "refusing to store it in ru-moscow" in flat(result.stderr)
    # A German customer's refusal is logged only where German data belongs (as before).
    with Vault(root) as vault:
        mow_size = vault.log(MOW).sequenced_size()
        with pytest.raises(AccessRefused):
            vault.ingest("berlin-hospital", "DE", "telemetry", [b"x"], region=MOW)
        assert vault.log(MOW).sequenced_size() == mow_size
    assert cli("vault", "relocate", root).exit_code == 0
    result = cli("vault", "audit", root)
    assert result.exit_code == 0, result.stderr


def test_a_writer_holding_the_old_policy_follows_the_change(tmp_path: Path) -> None:
    """A process that read version 1 must not write Australian data to Moscow once
    version 2 is set, nor while the change is under way (interrupted)."""
    root, _ = make_vault(tmp_path, scale=0.02)
    stale = Vault(root)  # reads the policy now; opens the logs only when it writes
    try:
        assert stale.policy.region_for("AU") == MOW
        # A change interrupted after its statement was saved, before it was logged.
        with Vault(root) as other, pytest.MonkeyPatch.context() as mp:
            mp.setattr(policy_history, "_complete", _raise)
            with pytest.raises(OvertError, match="interrupted"):
                set_policy(other, POLICY_V2)
        assert PolicyHistory(root).pending_version() == 2
        with pytest.raises(AccessRefused, match="the residency policy is changing"):
            stale.ingest("sydney-bank", "AU", "telemetry", [b"during the change"])
        (kept,) = stale.ingest("berlin-hospital", "DE", "telemetry", [b"unaffected"])
        assert kept.region == ZRH
    finally:
        stale.close()
    with Vault(root) as vault:
        assert vault.pending_change() == 2
        with pytest.raises(RelocationError, match="policy change is under way"):
            Relocator(vault).run()
        # Setting it again finishes the interrupted change.
        change = set_policy(vault, POLICY_V2)
        assert vault.pending_change() is None and vault.policy_version == 2
        assert not change.changed
        (stored,) = vault.ingest("sydney-bank", "AU", "telemetry", [b"after"])
        assert stored.region == ZRH
        for region in (ZRH, MOW):
            versions = [d["version"] for _, k, d in entries(vault, region) if k == "policy"]
            assert versions == [1, 2]
        Relocator(vault).run()
        report = audit(vault)
        assert report.ok, report.discrepancies


def _raise(*args: object) -> None:
    raise OvertError("interrupted")


def test_the_audit_checks_each_write_against_the_policy_in_force_then(tmp_path: Path) -> None:
    root, _ = make_vault(tmp_path, scale=0.02)
    with Vault(root) as vault:
        set_policy(vault, POLICY_V2)
        Relocator(vault).run()
        assert audit(vault).ok
        # The vendor writes an Australian object to Moscow behind the policy's back,
        # under a write event it logged after version 2.
        alias = pseudonym(vault.customers.key("sydney-bank"), "sydney-bank")
        object_id = "feedfacefeedfacefeedface"
        event = AccessEvent(
            MOW,
            "write",
            Actor("overt-ingest", "automated ingestion", "vendor", "in-region"),
            "SYSTEM_OPERATION",
            "ingest",
            alias,
            "telemetry",
            batch={"count": 1, "root": batch_root([object_id])},
        )
        index = vault.append_signed(MOW, vault.sign_event(event))
        vault.store(MOW).put(
            [NewObject(object_id, "sydney-bank", "AU", "telemetry", b"smuggled")], index
        )
        report = audit(vault)
        text = " | ".join(report.discrepancies)
        assert re.search(
            rf"ru-moscow: object {object_id} of a customer in AU was written here \(event "
            rf"{index}\) while policy version 2 \(logged at index \d+\) put AU in ch-zurich",
            text,
        ), text
        assert f"object {object_id} of a customer in AU belongs in ch-zurich" in text
    # A policy changed by hand is not in force: writes are refused, the audit says why.
    (root / "residency.toml").write_text(POLICY_V1)
    with Vault(root) as vault, pytest.raises(AccessRefused, match="changed by hand"):
        vault.ingest("berlin-hospital", "DE", "telemetry", [b"x"])
    (root / "policies" / "2.toml").write_text(POLICY_V1)
    with Vault(root) as vault:
        text = " | ".join(audit(vault).discrepancies)
        assert "policy version 2 as logged (index" in text and "is not policies/2.toml" in text


# --- dry run, erasure mid-move, the way back, reports -------------------------------------


def test_dry_run_reports_what_would_move_and_changes_nothing(tmp_path: Path) -> None:
    root, _ = make_vault(tmp_path, scale=0.1)
    with Vault(root) as vault:
        sizes = {r: vault.log(r).sequenced_size() for r in vault.policy.regions}
        au = len(au_ids(vault))
    new = policy_file(tmp_path, POLICY_V2)
    result = cli("vault", "relocate", root, "--policy", new, "--dry-run", "--batch", "50", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["dry_run"] and doc["policy"] == 2 and doc["objects"] == au
    (route,) = doc["routes"]
    assert route["from"] == MOW and route["to"] == ZRH and route["country"] == "AU"
    assert route["customers"] == 3 and route["batches"] == doc["batches"] >= au // 50
    result = cli("vault", "relocate", root, "--policy", new, "--dry-run")
    assert f"{au} objects" in flat(result.stdout) and "AU: ru-moscow -> ch-zurich" in result.stdout
    # Under the policy in force nothing would move.
    result = cli("vault", "relocate", root, "--dry-run", "--json")
    assert json.loads(result.stdout)["objects"] == 0
    assert (root / "residency.toml").read_text() == POLICY_V1
    assert not (root / "policies" / "2.toml").exists()
    with Vault(root) as vault:
        assert {r: vault.log(r).sequenced_size() for r in vault.policy.regions} == sizes
    # --policy without --dry-run sets the policy and relocates in one go.
    result = cli("vault", "relocate", root, "--policy", new, "--batch", "50")
    assert result.exit_code == 0, result.stderr
    assert f"{au} objects moved" in flat(result.stdout)


def test_erasing_during_an_interrupted_relocation_erases_every_copy(tmp_path: Path) -> None:
    root, digests = make_vault(tmp_path, scale=0.05)
    with Vault(root) as vault:
        set_policy(vault, POLICY_V2)
    assert kill_at(root, "copied", 1, 20)  # the first batch is in both regions
    with Vault(root) as vault:
        where = readable(vault, digests)
        doubled = sorted(i for i, regions in where.items() if len(regions) == 2)
        assert 0 < len(doubled) <= 20
        vault.erase(doubled[0], "dpo", "DATA_ERASURE", "GDPR-9")
        assert doubled[0] not in readable(vault, digests)
        result = Relocator(vault, 20).run()
        assert result.resumed_batches == 1 and result.skipped == 0
        report = audit(vault)
        assert report.ok, report.discrepancies
        assert doubled[0] not in readable(vault, digests)
    # An object erased after its batch was logged, before it was copied, is skipped.
    root2 = tmp_path / "second"
    root2.mkdir()
    root2, digests2 = make_vault(root2, scale=0.05)
    with Vault(root2) as vault:
        set_policy(vault, POLICY_V2)
    assert kill_at(root2, "events-logged", 2, 20)
    (batch,) = relocation_batches(root2)
    assert batch.state == "planned"  # killed before the journal heard of the events
    with Vault(root2) as vault:
        vault.erase(batch.ids[-1], "dpo", "DATA_ERASURE", "GDPR-10")
        result = Relocator(vault, 20).run()
        assert result.skipped == 1
        report = audit(vault)
        assert report.ok, report.discrepancies
        assert batch.ids[-1] not in readable(vault, digests2)
    result = cli("vault", "report", "relocation", root2, "--country", "AU", "--json")
    assert result.exit_code == 0, result.stderr
    first = json.loads(result.stdout)["batches"][0]
    assert first["skipped"] == 1 and first["complete"]


def test_an_object_cannot_move_back_into_the_region_that_keeps_its_shredded_record(
    tmp_path: Path,
) -> None:
    root, _ = make_vault(tmp_path, scale=0.02)
    with Vault(root) as vault:
        set_policy(vault, POLICY_V2)
        Relocator(vault).run()
        set_policy(vault, POLICY_V1.replace("[categories.sample]", "# v3\n[categories.sample]"))
        sizes = {r: vault.log(r).sequenced_size() for r in vault.policy.regions}
        with pytest.raises(RelocationError, match="cannot return to a region"):
            Relocator(vault).run()
        assert {r: vault.log(r).sequenced_size() for r in vault.policy.regions} == sizes
        assert unfinished_run(root) is None  # nothing started: the policy can be changed
    result = cli("vault", "relocate", root, "--dry-run")
    assert "relocate would refuse" in flat(result.stderr)


def test_the_customer_sees_the_move_in_its_report_and_history(tmp_path: Path) -> None:
    root, _ = make_vault(tmp_path, scale=0.1)
    result = cli("vault", "relocate", root, "--policy", policy_file(tmp_path, POLICY_V2))
    assert result.exit_code == 0, result.stderr
    with Vault(root) as vault:
        key = vault.customers.key("perth-mine").hex()
        mine = sorted(o.id for o in vault.store(ZRH).objects() if o.customer == "perth-mine")
        report = relocation_report(vault, customer="perth-mine")
    assert report["verified"], report["problems"]
    assert sorted(i for b in report["batches"] for i in b["objects"]) == mine
    assert report["regions"][MOW]["before"] == len(mine)
    assert report["regions"][MOW]["after"] == 0
    # The customer's own key, and nothing of other customers.
    result = cli("vault", "report", "relocation", root, "--customer", "perth-mine", "--key", key)
    assert result.exit_code == 0, result.stderr
    text = flat(result.stdout)
    assert "policy version 2 logged" in text and "AU ru-moscow -> ch-zurich" in text
    assert f"ru-moscow: {len(mine)} objects before, 0 after" in text
    assert "verified: every batch event proven" in text
    wrong = cli(
        "vault",
        "report",
        "relocation",
        root,
        "--customer",
        "perth-mine",
        "--key",
        "00" * 32,
        "--json",
    )
    assert json.loads(wrong.stdout)["batches"] == []  # no event carries that pseudonym
    result = cli("access", "history", root, "--customer", "perth-mine", "--json")
    actions = [(e["region"], e["action"]) for e in json.loads(result.stdout)]
    assert (MOW, "relocate") in actions and (ZRH, "relocate") in actions
    assert (MOW, "shred") in actions
    assert all(e["verified"] for e in json.loads(result.stdout))


def test_a_shredded_key_restored_from_a_backup_fails_the_report_and_the_audit(
    tmp_path: Path,
) -> None:
    root, _ = make_vault(tmp_path, scale=0.05)
    keys = root / "keyring" / MOW / "keys.db"
    backup = tmp_path / "keys-backup.db"
    backup.write_bytes(keys.read_bytes())
    result = cli("vault", "relocate", root, "--policy", policy_file(tmp_path, POLICY_V2))
    assert result.exit_code == 0, result.stderr
    with Vault(root) as vault:
        moved = sorted(o.id for o in vault.store(ZRH).objects() if o.customer == "sydney-bank")
    old = sqlite3.connect(backup)
    (wrapped,) = old.execute("SELECT wrapped FROM keys WHERE id = ?", (moved[0],)).fetchone()
    old.close()
    db = sqlite3.connect(keys)
    db.execute("INSERT INTO keys (id, wrapped) VALUES (?, ?)", (moved[0], wrapped))
    db.commit()
    db.close()
    result = cli("vault", "report", "relocation", root, "--customer", "sydney-bank")
    assert result.exit_code == 1
    assert "1 moved objects are still readable in ru-moscow" in flat(result.stderr)
    result = cli("vault", "audit", root)
    assert result.exit_code == 1
    assert f"erased object {moved[0]} still has its data key" in flat(result.stderr)


def test_a_new_region_gets_an_access_log_that_starts_with_the_policy_history(
    tmp_path: Path,
) -> None:
    root, digests = make_vault(tmp_path, scale=0.02)
    v2 = POLICY_V1.replace(
        "[countries]", '[regions.au-sydney]\ndescription = "Sydney, Australia"\n\n[countries]'
    ).replace('AU = "ru-moscow"', 'AU = "au-sydney"')
    with Vault(root) as vault:
        moving = au_ids(vault)
        change = set_policy(vault, v2)
        assert change.changes == [{"country": "AU", "from": MOW, "to": "au-sydney"}]
        Relocator(vault, 50).run()
        assert [d["version"] for _, k, d in entries(vault, "au-sydney") if k == "policy"] == [
            1,
            2,
        ]
        where = readable(vault, digests)
        assert all(where[i] == ["au-sydney"] for i in moving)
        report = audit(vault)
        assert report.ok, report.discrepancies
        assert report.relocated == len(moving)
    origin = (root / "logs" / "au-sydney" / "log.toml").read_text()
    assert "test.example/reloc/access/au-sydney" in origin


def test_a_policy_change_needs_every_access_log_and_changes_nothing_without(
    tmp_path: Path,
) -> None:
    root, _ = make_vault(tmp_path, scale=0.02)
    with drivers.log_held_elsewhere(root / "logs" / MOW):
        with Vault(root) as vault, pytest.raises(PolicyError, match="unavailable"):
            set_policy(vault, POLICY_V2)
        assert PolicyHistory(root).pending_version() is None
        assert (root / "residency.toml").read_text() == POLICY_V1
    with Vault(root) as vault:
        set_policy(vault, POLICY_V2)
    with (
        drivers.log_held_elsewhere(root / "logs" / ZRH),
        Vault(root) as vault,
        pytest.raises(RelocationError, match="nothing was moved"),
    ):
        Relocator(vault).run()
    assert unfinished_run(root) is None


def test_a_vault_made_before_policy_versions_logs_its_policy_as_version_1(
    tmp_path: Path,
) -> None:
    root, _ = make_vault(tmp_path, scale=0.02)
    for path in (root / "policies").iterdir():
        path.unlink()
    (root / "policies").rmdir()
    with Vault(root) as vault:
        assert vault.policy_version == 1
        change = set_policy(vault, POLICY_V2)
        assert change.initial_logged and change.version == 2
        Relocator(vault).run()
        report = audit(vault)
        assert report.ok, report.discrepancies
    assert (root / "policies" / "1.toml").read_text() == POLICY_V1
    assert [v.version for v in PolicyHistory(root).versions()] == [1, 2]

"""The supervisor's audit: do the stores, the keyrings and the access logs agree?

For each region it checks, from the access log (read and verified through its
tiles) and the store:

* every stored object has a logged, allowed write in the same region whose
  batch root covers it;
* no object is stored outside the region its customer's country maps to;
* every erased object has a logged erasure, no data key, and no ciphertext;
* every journalled operation names an allowed access event of the same action
  that covers the object: an operation without one bypassed the gate;
* no ciphertext file exists without its object record.

It also reports legal requests by requesting country and outcome.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from overt.crypto.keys import ed25519_verifier
from overt.errors import OvertError
from overt.log.remote import open_source
from overt.tlog.client import LogClient
from overt.vault.events import batch_root, open_event
from overt.vault.residency import ResidencyError
from overt.vault.vault import Vault


@dataclass
class AuditReport:
    discrepancies: list[str] = field(default_factory=list)
    checked_objects: int = 0
    checked_events: int = 0
    legal_requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.discrepancies


def audit(vault: Vault) -> AuditReport:
    report = AuditReport()
    for region in vault.policy.regions:
        _audit_region(vault, region, report)
    return report


def _events(vault: Vault, region: str, report: AuditReport) -> dict[int, dict[str, Any]]:
    source = open_source(str(vault.root / "logs" / region))
    assert source.vkey is not None
    client = LogClient(source.fetch, log_key=ed25519_verifier(source.vkey))
    client.update()
    events: dict[int, dict[str, Any]] = {}
    for index, entry in client.entries():
        try:
            events[index] = open_event(entry, vault.verifier)
        except OvertError as exc:
            report.discrepancies.append(
                f"{region}: log entry {index} is not a valid access event: {exc}"
            )
    # Events sequenced but not yet published are read from the log itself.
    log = vault.log(region)
    for index in range(client.checkpoint.size, log.sequenced_size()):
        try:
            events[index] = open_event(log.entry(index), vault.verifier)
        except OvertError as exc:
            report.discrepancies.append(f"{region}: pending entry {index}: {exc}")
    report.checked_events += len(events)
    return events


def _audit_region(vault: Vault, region: str, report: AuditReport) -> None:
    try:
        events = _events(vault, region, report)
    except OvertError as exc:
        report.discrepancies.append(f"{region}: the access log does not verify: {exc}")
        return
    for event in events.values():
        if event.get("justification") == "LEGAL_REQUEST":
            key = (str(event.get("requester_country") or "?"), str(event.get("outcome")))
            report.legal_requests[key] += 1
    store = vault.store(region)
    objects = store.objects()
    by_event: dict[int, list[str]] = defaultdict(list)
    for obj in objects:
        by_event[obj.write_event].append(obj.id)
    files = set(store.files())
    for obj in objects:
        report.checked_objects += 1
        try:
            home = vault.policy.region_for(obj.country)
        except ResidencyError as exc:
            report.discrepancies.append(f"{region}: object {obj.id}: {exc}")
            home = region
        if home != region:
            report.discrepancies.append(
                f"{region}: object {obj.id} of a customer in {obj.country} belongs in {home}"
            )
        if not obj.erased and store.data_key(obj.id) is None:
            report.discrepancies.append(
                f"{region}: object {obj.id} has lost its data key without a logged erasure"
            )
        if obj.erased:
            if store.data_key(obj.id) is not None:
                report.discrepancies.append(
                    f"{region}: erased object {obj.id} still has its data key"
                )
            if store.sealed(obj.id) is not None:
                report.discrepancies.append(
                    f"{region}: erased object {obj.id} still has its ciphertext"
                )
    for event_index, ids in sorted(by_event.items()):
        write = events.get(event_index)
        if not _allowed(write, region, "write"):
            report.discrepancies.append(
                f"{region}: objects {', '.join(ids[:3])}{'...' if len(ids) > 3 else ''} "
                f"have no logged write (event {event_index})"
            )
            continue
        assert write is not None
        batch = write.get("batch") or {}
        if batch.get("count") != len(ids) or batch.get("root") != batch_root(ids):
            report.discrepancies.append(
                f"{region}: the objects stored under event {event_index} are not the batch "
                "that event names"
            )
    # Allowed writes whose objects are all gone from the store (rows deleted).
    for index, event in sorted(events.items()):
        if _allowed(event, region, "write") and index not in by_event:
            count = (event.get("batch") or {}).get("count")
            report.warnings.append(
                f"{region}: write event {index} names {count} objects the store does not "
                "hold: an interrupted ingestion (never acknowledged), or objects deleted "
                "outside the gate"
            )
    used: set[tuple[int, str, str]] = set()
    erased_logged: set[str] = set()
    for seq, _, op, object_id, journalled in store.journal():
        authorising = events.get(journalled) if journalled is not None else None
        if not _allowed(authorising, region, op) or not _covers(
            authorising, object_id, by_event, journalled
        ):
            report.discrepancies.append(
                f"{region}: journal #{seq}: {op} of {object_id} has no matching allowed access "
                f"event (event {journalled}): it bypassed the gate"
            )
            continue
        assert journalled is not None
        if op == "erase":
            erased_logged.add(object_id)
        # An individual access event authorises one operation on each object it names.
        if authorising is not None and "objects" in authorising:
            use = (journalled, op, object_id)
            if use in used:
                report.discrepancies.append(
                    f"{region}: journal #{seq}: event {journalled} was already used for this "
                    f"{op} of {object_id}: a repeated access without its own event"
                )
            used.add(use)
    for obj in objects:
        if obj.erased and obj.id not in erased_logged:
            report.discrepancies.append(
                f"{region}: object {obj.id} is marked erased without a logged erasure"
            )
    for name in sorted(files):
        report.discrepancies.append(
            f"{region}: stray file objects/{name}: ciphertexts live only in the object records"
        )


def _allowed(event: dict[str, Any] | None, region: str, action: str) -> bool:
    return (
        event is not None
        and event.get("region") == region
        and event.get("action") == action
        and event.get("outcome") == "allowed"
    )


def _covers(
    event: dict[str, Any] | None, object_id: str, by_event: dict[int, list[str]], index: int | None
) -> bool:
    if event is None:
        return False
    if "objects" in event:
        return object_id in event["objects"]
    return index is not None and object_id in by_event.get(index, [])

"""The supervisor's audit: do the stores, the keyrings and the access logs agree?

For each region it checks, from the access log (read and verified through its
tiles) and the store:

* every stored object has a logged, allowed write (or relocation into the
  region) in the same region whose batch root covers it;
* every readable object is in the region its customer's country maps to under
  the policy in force now, and every object was written (or relocated) into a
  region the policy in force *at that moment* allowed: the version whose
  statement last precedes the write in that region's access log;
* the policy statements in each log are the vault's versions, in order, and the
  last one is the policy in force;
* every erased object has a logged erasure or shredding, no data key, and no
  ciphertext;
* every journalled operation names an allowed access event of the same action
  that covers the object: an operation without one bypassed the gate;
* each relocation batch event is exactly the objects journalled under it (in
  both regions), each shred event exactly the old copies shredded under it,
  and no object is readable in two regions or shredded without its copy;
* no ciphertext file exists without its object record.

It also reports legal requests by requesting country and outcome.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from overt.crypto.keys import ed25519_verifier
from overt.errors import OvertError
from overt.log.remote import open_source
from overt.tlog.client import LogClient
from overt.vault.events import batch_root, open_entry
from overt.vault.policy_history import PolicyHistory, PolicyVersion
from overt.vault.residency import ResidencyError, ResidencyPolicy
from overt.vault.vault import Vault


@dataclass
class AuditReport:
    discrepancies: list[str] = field(default_factory=list)
    checked_objects: int = 0
    checked_events: int = 0
    legal_requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    relocated: int = 0  # objects moved out of a region and shredded there
    policy_versions: int = 0  # policy statements checked

    @property
    def ok(self) -> bool:
        return not self.discrepancies


@dataclass
class _Vault:
    """What the audit learns across regions."""

    versions: dict[int, PolicyVersion] = field(default_factory=dict)
    readable: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    records: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    moved: list[tuple[str, str, str]] = field(default_factory=list)  # (id, from, to), shredded


def audit(vault: Vault) -> AuditReport:
    report = AuditReport()
    seen = _Vault()
    try:
        seen.versions = {v.version: v for v in PolicyHistory(vault.root).versions()}
    except OvertError as exc:
        report.discrepancies.append(f"the vault's policy versions are unreadable: {exc}")
    for region in vault.policy.regions:
        _audit_region(vault, region, report, seen)
    for object_id, regions in sorted(seen.readable.items()):
        if len(regions) > 1:
            report.discrepancies.append(
                f"object {object_id} is readable in {' and '.join(sorted(regions))}: an "
                "unfinished relocation ('overt vault relocate' finishes it)"
            )
    for object_id, src, dst in seen.moved:
        if object_id not in seen.records[dst]:
            report.discrepancies.append(
                f"{src}: object {object_id} was shredded after its relocation to {dst}, "
                f"but {dst} holds no copy of it: lost"
            )
    return report


def _events(
    vault: Vault, region: str, report: AuditReport
) -> tuple[dict[int, dict[str, Any]], list[tuple[int, dict[str, Any]]]]:
    source = open_source(str(vault.root / "logs" / region))
    assert source.vkey is not None
    client = LogClient(source.fetch, log_key=ed25519_verifier(source.vkey))
    client.update()
    events: dict[int, dict[str, Any]] = {}
    statements: list[tuple[int, dict[str, Any]]] = []

    def take(index: int, entry: bytes, what: str) -> None:
        try:
            kind, doc = open_entry(entry, vault.verifier)
        except OvertError as exc:
            report.discrepancies.append(
                f"{region}: {what} {index} is not a valid access event: {exc}"
            )
            return
        if kind == "policy":
            statements.append((index, doc))
        else:
            events[index] = doc

    for index, entry in client.entries():
        take(index, entry, "log entry")
    # Events sequenced but not yet published are read from the log itself.
    log = vault.log(region)
    for index in range(client.checkpoint.size, log.sequenced_size()):
        take(index, log.entry(index), "pending entry")
    report.checked_events += len(events)
    report.policy_versions += len(statements)
    return events, statements


class _Timeline:
    """Which policy version was in force at each position of a region's access log."""

    def __init__(
        self,
        vault: Vault,
        region: str,
        statements: list[tuple[int, dict[str, Any]]],
        seen: _Vault,
        report: AuditReport,
    ) -> None:
        self.indexes = [i for i, _ in statements]
        self.numbers = [int(doc["version"]) for _, doc in statements]
        self.seen = seen
        self._policies: dict[int, ResidencyPolicy | None] = {}
        expected = 1
        for (index, doc), number in zip(statements, self.numbers, strict=True):
            known = seen.versions.get(number)
            if number != expected:
                report.discrepancies.append(
                    f"{region}: policy statement at index {index} is version {number}; "
                    f"expected version {expected} (versions must follow each other)"
                )
            if known is None:
                report.discrepancies.append(
                    f"{region}: the log states policy version {number} (index {index}), "
                    "which the vault does not have (policies/)"
                )
            elif known.sha256 != doc.get("sha256"):
                report.discrepancies.append(
                    f"{region}: policy version {number} as logged (index {index}) is not "
                    f"policies/{number}.toml"
                )
            expected = number + 1
        last = self.numbers[-1] if self.numbers else 1
        pending = vault.pending_change()
        if last != vault.policy_version and not (pending is not None and last == pending):
            if last < vault.policy_version:
                report.discrepancies.append(
                    f"{region}: the policy in force (version {vault.policy_version}) was "
                    f"never logged in this region (its last statement is version {last})"
                )
            else:
                report.discrepancies.append(
                    f"{region}: the log states policy version {last}, but version "
                    f"{vault.policy_version} is in force"
                )
        if pending is not None:
            report.warnings.append(
                f"{region}: a change to policy version {pending} is under way; "
                "'overt vault policy set' finishes it"
            )

    def version_at(self, index: int) -> tuple[int, int | None]:
        """(version in force just before log position `index`, index of its statement)."""
        at = bisect.bisect_left(self.indexes, index)
        if at == 0:
            return 1, None
        return self.numbers[at - 1], self.indexes[at - 1]

    def policy(self, number: int) -> ResidencyPolicy | None:
        if number not in self._policies:
            known = self.seen.versions.get(number)
            try:
                self._policies[number] = known.policy if known is not None else None
            except OvertError:
                self._policies[number] = None
        return self._policies[number]

    def region_at(self, index: int, country: str) -> tuple[str | None, int, int | None]:
        """The region `country` mapped to at `index`, the version and its statement."""
        number, where = self.version_at(index)
        policy = self.policy(number)
        if policy is None:
            return None, number, where
        try:
            return policy.region_for(country), number, where
        except ResidencyError:
            return None, number, where


def _audit_region(vault: Vault, region: str, report: AuditReport, seen: _Vault) -> None:
    try:
        events, statements = _events(vault, region, report)
    except OvertError as exc:
        report.discrepancies.append(f"{region}: the access log does not verify: {exc}")
        return
    timeline = _Timeline(vault, region, statements, seen, report)
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
        seen.records[region].add(obj.id)
        if not obj.erased:
            seen.readable[obj.id].append(region)
            try:
                home = vault.policy.region_for(obj.country)
            except ResidencyError as exc:
                report.discrepancies.append(f"{region}: object {obj.id}: {exc}")
                home = region
            if home != region:
                report.discrepancies.append(
                    f"{region}: object {obj.id} of a customer in {obj.country} belongs in "
                    f"{home} under policy version {vault.policy_version}"
                    + (
                        " (relocation pending: 'overt vault relocate')"
                        if vault.policy_version > 1
                        else ""
                    )
                )
        allowed_then, number, where = timeline.region_at(obj.write_event, obj.country)
        if allowed_then != region:
            logged = f"logged at index {where}" if where is not None else "the initial policy"
            report.discrepancies.append(
                f"{region}: object {obj.id} of a customer in {obj.country} was written here "
                f"(event {obj.write_event}) while policy version {number} ({logged}) put "
                f"{obj.country} in {allowed_then or 'no region'}"
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
    journal = store.journal()
    # Objects journalled under each relocation event, by op.
    relocated: dict[int, set[str]] = defaultdict(set)
    skipped: dict[int, set[str]] = defaultdict(set)
    shredded: dict[int, set[str]] = defaultdict(set)
    for _, _, op, object_id, journalled in journal:
        if journalled is None:
            continue
        if op == "relocate":
            relocated[journalled].add(object_id)
        elif op == "relocate-skip":
            skipped[journalled].add(object_id)
        elif op == "shred":
            shredded[journalled].add(object_id)
    for event_index, ids in sorted(by_event.items()):
        write = events.get(event_index)
        if _allowed(write, region, "write"):
            assert write is not None
            batch = write.get("batch") or {}
            if batch.get("count") != len(ids) or batch.get("root") != batch_root(ids):
                report.discrepancies.append(
                    f"{region}: the objects stored under event {event_index} are not the batch "
                    "that event names"
                )
        elif _relocation(write, region, "relocate", "to"):
            assert write is not None
            members = set(ids) | skipped.get(event_index, set())
            if not _names(write, members) or set(ids) != relocated.get(event_index, set()):
                report.discrepancies.append(
                    f"{region}: the objects relocated here under event {event_index} are not "
                    "the batch that event names"
                )
        else:
            report.discrepancies.append(
                f"{region}: objects {', '.join(ids[:3])}{'...' if len(ids) > 3 else ''} "
                f"have no logged write (event {event_index})"
            )
    for index, event in sorted(events.items()):
        # Allowed writes whose objects are all gone from the store (rows deleted).
        if _allowed(event, region, "write") and index not in by_event:
            count = (event.get("batch") or {}).get("count")
            report.warnings.append(
                f"{region}: write event {index} names {count} objects the store does not "
                "hold: an interrupted ingestion (never acknowledged), or objects deleted "
                "outside the gate"
            )
        if event.get("action") in ("relocate", "shred") and event.get("outcome") == "allowed":
            _check_relocation_event(index, event, region, timeline, report)
        if _relocation(event, region, "relocate", "to") and index not in by_event:
            if not skipped.get(index):
                report.warnings.append(
                    f"{region}: relocation event {index} was logged but its batch has not "
                    "arrived (an interrupted relocation: 'overt vault relocate' resumes it)"
                )
            elif not _names(event, skipped[index]):
                report.discrepancies.append(
                    f"{region}: the objects skipped under relocation event {index} are not "
                    "the batch that event names"
                )
        if _relocation(event, region, "relocate", "from"):
            members = relocated.get(index, set()) | skipped.get(index, set())
            if not members:
                report.warnings.append(
                    f"{region}: relocation event {index} was logged but its batch has not "
                    "been moved (an interrupted relocation: 'overt vault relocate' resumes it)"
                )
            elif not _names(event, members):
                report.discrepancies.append(
                    f"{region}: the objects relocated out under event {index} are not the "
                    "batch that event names"
                )
        if _relocation(event, region, "shred", "from"):
            members = shredded.get(index, set())
            if not members:
                report.warnings.append(
                    f"{region}: shred event {index} was logged but its keys are not yet "
                    "destroyed (an interrupted relocation: 'overt vault relocate' resumes it)"
                )
                continue
            if not _names(event, members):
                report.discrepancies.append(
                    f"{region}: the objects shredded under event {index} are not the batch "
                    "that event names"
                )
            out = events.get(int((event.get("relocation") or {}).get("out_event", -1)))
            if not _relocation(out, region, "relocate", "from") or (out or {}).get(
                "batch"
            ) != event.get("batch"):
                report.discrepancies.append(
                    f"{region}: shred event {index} does not follow the relocation of its batch"
                )
            else:
                dst = str(event["relocation"].get("to"))
                for object_id in sorted(members - skipped.get(int(out_index(event)), set())):
                    seen.moved.append((object_id, region, dst))
                    report.relocated += 1
    used: set[tuple[int, str, str]] = set()
    erased_logged: set[str] = set()
    for seq, _, op, object_id, journalled in journal:
        authorising = events.get(journalled) if journalled is not None else None
        if op in ("relocate", "relocate-skip", "shred"):
            action = "shred" if op == "shred" else "relocate"
            ok = authorising is not None and (
                _relocation(authorising, region, action, "from")
                or (action == "relocate" and _relocation(authorising, region, action, "to"))
            )
            # Coverage is checked per batch, above.
        else:
            ok = _allowed(authorising, region, op) and _covers(
                authorising, object_id, by_event, journalled
            )
        if not ok:
            report.discrepancies.append(
                f"{region}: journal #{seq}: {op} of {object_id} has no matching allowed access "
                f"event (event {journalled}): it bypassed the gate"
            )
            continue
        assert journalled is not None
        if op in ("erase", "shred"):
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


def out_index(event: dict[str, Any]) -> int:
    return int((event.get("relocation") or {}).get("out_event", -1))


def _check_relocation_event(
    index: int, event: dict[str, Any], region: str, timeline: _Timeline, report: AuditReport
) -> None:
    """A relocation must be required by the policy in force when it was logged."""
    relocation = event.get("relocation")
    if not isinstance(relocation, dict) or region not in (
        relocation.get("from"),
        relocation.get("to"),
    ):
        report.discrepancies.append(
            f"{region}: {event.get('action')} event {index} does not say where data moved"
        )
        return
    country = str(relocation.get("country", ""))
    required, number, _ = timeline.region_at(index, country)
    claimed = relocation.get("policy")
    if required != relocation.get("to") or claimed != number:
        report.discrepancies.append(
            f"{region}: {event.get('action')} event {index} moves data of customers in "
            f"{country} to {relocation.get('to')} under policy version {claimed}, but the "
            f"version in force there (version {number}) puts them in {required or 'no region'}"
        )


def _names(event: dict[str, Any] | None, ids: set[str]) -> bool:
    batch = (event or {}).get("batch") or {}
    return (
        bool(ids)
        and batch.get("count") == len(ids)
        and batch.get("root") == batch_root(sorted(ids))
    )


def _relocation(event: dict[str, Any] | None, region: str, action: str, side: str) -> bool:
    return (
        _allowed(event, region, action)
        and isinstance((event or {}).get("relocation"), dict)
        and (event or {})["relocation"].get(side) == region
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

"""The relocation report: for a customer or a country, the evidence that their data moved.

From each region's access log, read through its tiles and verified against its
checkpoint (with a tlog-policy: only a checkpoint its witness quorum cosigned),
the report gathers

* the policy statements that promised the country's data to a region (when,
  which version, what changed);
* every relocation batch of the subject's data: its ``relocate`` event in the
  region the data left and in the one it entered, and the ``shred`` event that
  destroyed the old copies' keys, each signed by the vault and proven by an
  inclusion proof against the checkpoint; the three must name the same batch
  (count and Merkle root of the object ids), in the right regions and order;
* from the stores: the ids under each batch, checked against the logged root,
  the subject's objects per region now and before the moves, and that no
  moved object is readable (has a data key or a ciphertext) where it left.

Events sequenced but not yet in a checkpoint are not evidence: publish first
(the CLI does).
"""

from __future__ import annotations

import base64
from collections import defaultdict
from typing import Any

from overt.crypto.keys import ed25519_verifier
from overt.errors import MalformedError, OvertError
from overt.log.remote import open_source
from overt.tlog.client import CheckpointMemory, LogClient
from overt.tlog.policy import Policy
from overt.vault.events import batch_root, open_entry, pseudonym
from overt.vault.history import prove_entry
from overt.vault.vault import Vault


def relocation_report(
    vault: Vault,
    customer: str | None = None,
    country: str | None = None,
    customer_key: bytes | None = None,
    trust: Policy | None = None,
    memory: CheckpointMemory | None = None,
) -> dict[str, Any]:
    if (customer is None) == (country is None):
        raise MalformedError("a relocation report is for a customer or a country")
    alias = ""
    if customer is not None:
        key = customer_key if customer_key is not None else vault.customers.key(customer)
        alias = pseudonym(key, customer)
    wanted = country.strip().upper() if country else ""
    problems: list[str] = []

    # The subject's objects in the stores, and the countries they belong to.
    records: dict[str, dict[str, Any]] = defaultdict(dict)  # region -> id -> StoredObject
    countries: set[str] = {wanted} if wanted else set()
    for region in vault.policy.regions:
        for obj in vault.store(region).objects():
            if (customer is not None and obj.customer == customer) or obj.country == wanted:
                records[region][obj.id] = obj
                countries.add(obj.country)

    statements: list[dict[str, Any]] = []
    events: dict[tuple[str, int], dict[str, Any]] = {}  # (run, batch) -> role -> event
    checkpoints: dict[str, dict[str, Any]] = {}
    for region in vault.policy.regions:
        source = open_source(str(vault.root / "logs" / region))
        assert source.vkey is not None
        client = LogClient(
            source.fetch,
            log_key=None if trust else ed25519_verifier(source.vkey),
            policy=trust,
            memory=memory,
        )
        checkpoint = client.update()
        info: dict[str, Any] = {
            "origin": checkpoint.origin,
            "size": checkpoint.size,
            "root": base64.b64encode(checkpoint.root_hash).decode(),
            "witnessed": trust is not None and trust.quorum != "none",
        }
        if trust is not None:
            info["cosigners"] = sorted(trust.verify_checkpoint(client.signed_checkpoint).cosigners)
        checkpoints[region] = info
        reader = client.tiles.hash_reader()
        for index, entry in client.entries():
            try:
                kind, doc = open_entry(entry, vault.verifier)
            except OvertError:
                continue  # not the vault's (the audit reports such entries)
            relocation = doc.get("relocation")
            if kind == "policy":
                changes = [c for c in doc.get("changes", []) if c.get("country") in countries]
                if doc.get("version") != 1 and not changes:
                    continue
                placed = {c: doc.get("countries", {}).get(c) for c in sorted(countries)}
            elif doc.get("action") in ("relocate", "shred") and isinstance(relocation, dict):
                if customer is not None and doc.get("customer") != alias:
                    continue
                if wanted and relocation.get("country") != wanted:
                    continue
            else:
                continue
            proof, included = prove_entry(reader, entry, index, checkpoint)
            where = {
                "region": region,
                "log": checkpoint.origin,
                "index": index,
                "checkpoint_size": checkpoint.size,
                "proof": [base64.b64encode(h).decode() for h in proof],
                "verified": included,
                "witnessed": info["witnessed"],
            }
            if kind == "policy":
                statements.append(
                    {
                        "version": doc["version"],
                        "sha256": doc["sha256"],
                        "time": doc.get("time"),
                        "changes": changes,
                        "regions_of": placed,
                        **where,
                    }
                )
                continue
            assert isinstance(relocation, dict)
            role = (
                "shred"
                if doc["action"] == "shred"
                else ("out" if region == relocation.get("from") else "in")
            )
            events.setdefault((str(relocation.get("run")), int(relocation.get("batch", 0))), {})[
                role
            ] = {**doc, **where}

    journals = {region: vault.store(region).journal() for region in vault.policy.regions}
    moved_out: dict[str, int] = defaultdict(int)
    moved_in: dict[str, int] = defaultdict(int)
    shredded: dict[str, int] = defaultdict(int)
    batches: list[dict[str, Any]] = []
    for (run, number), roles in sorted(events.items()):
        out, into, shred = roles.get("out"), roles.get("in"), roles.get("shred")
        first = out or into or shred
        assert first is not None
        relocation = first["relocation"]
        src, dst = str(relocation.get("from")), str(relocation.get("to"))
        batch = first.get("batch") or {}
        item: dict[str, Any] = {
            "run": run,
            "batch": number,
            "from": src,
            "to": dst,
            "country": relocation.get("country"),
            "policy": relocation.get("policy"),
            "count": batch.get("count"),
            "root": batch.get("root"),
            "events": {
                role: {
                    k: ev[k]
                    for k in ("region", "log", "index", "time", "verified", "witnessed", "proof")
                }
                for role, ev in (("relocate_out", out), ("relocate_in", into), ("shred", shred))
                if ev is not None
            },
        }
        label = f"batch {number} of run {run}"
        issues: list[str] = []
        for role, ev in (("relocation out of", out), ("relocation into", into), ("shred", shred)):
            if ev is None:
                issues.append(f"no {role} event is in a published checkpoint")
            elif not ev["verified"]:
                issues.append(f"its {role} event does not verify against the checkpoint")
            elif ev.get("batch") != batch:
                issues.append(f"its {role} event names another batch")
        if out is not None and out["region"] != src:
            issues.append("its relocation-out event is not in the source region's log")
        if shred is not None and out is not None and into is not None:
            if (
                shred["relocation"].get("out_event") != out["index"]
                or shred["relocation"].get("in_event") != into["index"]
            ):
                issues.append("its shred event does not name the batch's relocation events")
            if shred["index"] < out["index"]:
                issues.append("its shred event precedes its relocation")
        # The ids under the batch, from the source's journal, against the logged root.
        ids: set[str] = set()
        skipped: set[str] = set()
        if out is not None:
            for _, _, op, object_id, event in journals.get(src, []):
                if event == out["index"] and op == "relocate":
                    ids.add(object_id)
                elif event == out["index"] and op == "relocate-skip":
                    skipped.add(object_id)
        members = ids | skipped
        item["contents_verified"] = bool(members) and batch == {
            "count": len(members),
            "root": batch_root(sorted(members)),
        }
        if not item["contents_verified"]:
            issues.append("the ids the source journalled under it do not hash to its root")
        moved = sorted(ids - skipped)
        readable_at_source = [
            i
            for i in moved
            if vault.store(src).data_key(i) is not None or vault.store(src).sealed(i) is not None
        ]
        held = vault.store(dst).fetch(moved) if moved else {}
        missing = [i for i in moved if i not in held]
        if readable_at_source:
            issues.append(
                f"{len(readable_at_source)} moved objects are still readable in {src} "
                f"(e.g. {readable_at_source[0]})"
            )
        if missing:
            issues.append(f"{len(missing)} moved objects are not in {dst} (e.g. {missing[0]})")
        item["moved"] = len(moved)
        item["skipped"] = len(skipped)
        if customer is not None:
            item["objects"] = moved
        item["complete"] = not issues
        item["problems"] = issues
        problems.extend(f"{label}: {p}" for p in issues)
        if out is not None:
            moved_out[src] += len(moved)
            moved_in[dst] += len(moved)
        if shred is not None:
            shredded[src] += len(moved)
        batches.append(item)

    regions: dict[str, dict[str, int]] = {}
    for region in vault.policy.regions:
        now = sum(1 for obj in records[region].values() if not obj.erased)
        regions[region] = {
            "before": now - moved_in[region] + moved_out[region],
            "after": now,
            "moved_out": moved_out[region],
            "moved_in": moved_in[region],
            "shredded": shredded[region],
        }
    # Nothing of the subject's left where the policy in force does not allow it.
    for region, objs in records.items():
        for obj in objs.values():
            if obj.erased:
                continue
            try:
                home = vault.policy.region_for(obj.country)
            except OvertError:
                home = ""
            if home != region:
                problems.append(
                    f"object {obj.id} is readable in {region}, but policy version "
                    f"{vault.policy_version} puts customers in {obj.country} in "
                    f"{home or 'no region'}"
                )
    subject = {"customer": customer} if customer is not None else {"country": wanted}
    return {
        "subject": subject,
        "policy_in_force": vault.policy_version,
        "policy_statements": statements,
        "batches": batches,
        "regions": regions,
        "checkpoints": checkpoints,
        "witnessed": trust is not None and trust.quorum != "none",
        "verified": not problems and all(s["verified"] for s in statements),
        "problems": problems,
    }

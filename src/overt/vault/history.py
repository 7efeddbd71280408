"""A customer's access history: every event touching their data, verified locally.

The customer holds their pseudonym key. For each region's access log the
client reads every entry through the tiles (each checked against the
checkpoint's root), keeps the events carrying the customer's pseudonym,
checks each is signed by the vault, and proves it with an inclusion proof
against the checkpoint.

Trust comes from the customer, not the vendor: with the customer's own
tlog-policy (listing the access logs and the witnesses they trust), each
checkpoint must meet that policy's quorum, and events are "witnessed". The
client remembers the last checkpoint of each access log (`memory`), so a log
that goes backwards or forks between two looks is refused.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from overt.crypto.keys import Ed25519Verifier, ed25519_verifier
from overt.errors import OvertError
from overt.log.remote import open_source
from overt.tlog.checkpoint import Checkpoint
from overt.tlog.client import CheckpointMemory, LogClient
from overt.tlog.hashing import leaf_hash
from overt.tlog.merkle import HashReader, inclusion_proof, verify_inclusion
from overt.tlog.policy import Policy
from overt.vault.events import open_event, pseudonym


def prove_entry(
    reader: HashReader, entry: bytes, index: int, checkpoint: Checkpoint
) -> tuple[list[bytes], bool]:
    """The entry's inclusion proof in `checkpoint`, and whether it verifies."""
    proof = inclusion_proof(reader, index, checkpoint.size)
    try:
        verify_inclusion(leaf_hash(entry), index, checkpoint.size, proof, checkpoint.root_hash)
    except OvertError:
        return proof, False
    return proof, True


def access_history(
    vault_root: Path,
    regions: list[str],
    customer: str,
    customer_key: bytes,
    vault_key: Ed25519Verifier,
    policy: Policy | None = None,
    memory: CheckpointMemory | None = None,
) -> list[dict[str, Any]]:
    alias = pseudonym(customer_key, customer)
    events: list[dict[str, Any]] = []
    for region in regions:
        log_dir = vault_root / "logs" / region
        source = open_source(str(log_dir))
        assert source.vkey is not None
        client = LogClient(
            source.fetch,
            log_key=None if policy else ed25519_verifier(source.vkey),
            policy=policy,
            memory=memory,
        )
        checkpoint = client.update()
        reader = client.tiles.hash_reader()
        for index, entry in client.entries():
            try:
                doc = open_event(entry, vault_key)
                signed = True
            except OvertError:
                continue  # not an access event of this vault
            if doc.get("customer") != alias:
                continue
            proof, included = prove_entry(reader, entry, index, checkpoint)
            doc["index"] = index
            doc["log"] = checkpoint.origin
            doc["checkpoint_size"] = checkpoint.size
            doc["witnessed"] = policy is not None and policy.quorum != "none"
            doc["proof"] = [base64.b64encode(h).decode() for h in proof]
            doc["verified"] = signed and included
            events.append(doc)
    events.sort(key=lambda d: (d.get("time", 0), d["log"], d["index"]))
    return events

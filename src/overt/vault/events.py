"""Access events: what the vault appends to a region's access log before it acts.

An event is a JSON object, DSSE-signed by the vault's key (payload type
`PAYLOAD_TYPE`), and the log entry is the envelope. Customers appear only as a
pseudonym, ``HMAC-SHA256(customer key, customer id)``: the public access log
says *that* some customer's data was touched, by whom and why, and only the
customer (and the supervisor, given a copy of the key) can tell which; the
vault keeps the keys, since it must compute the pseudonyms.

Fields (docs/vault.md): ``type`` ("overt/access-event/v1"), ``region``,
``action`` (write, read, delete, export, process, erase, relocate, shred), ``outcome`` (allowed
or refused, with ``reason``), ``customer`` (pseudonym), ``category``,
``objects`` (ids, for individual accesses) or ``batch`` (``{"count", "root"}``:
the RFC 9162 Merkle root of the ids, for bulk ingestion), ``actor`` (name,
role, employer, location), ``justification``, ``ticket``, ``time``, and for
legal requests ``requester_country``. A relocation's events (``relocate``, in the
region the data leaves and the one it enters, and ``shred`` for the old copies'
data keys) also carry ``relocation``: ``{"run", "batch", "from", "to", "policy",
"country"}`` (and, for ``shred``, the indexes of the batch's two ``relocate`` events).

The same logs also carry the vault's *residency policy statements*
(`POLICY_PAYLOAD_TYPE`, type "overt/residency-policy/v1"): each version of the
residency policy, logged in every region before it is in force
(policy_history.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from overt.crypto.dsse import Envelope, sign_envelope, verify_envelope
from overt.crypto.keys import Ed25519Signer, Ed25519Verifier
from overt.errors import MalformedError
from overt.tlog.merkle import MemoryTree

EVENT_TYPE = "overt/access-event/v1"
PAYLOAD_TYPE = "application/vnd.overt.access-event+json"
ACTIONS = ("write", "read", "delete", "export", "process", "erase", "relocate", "shred")
POLICY_TYPE = "overt/residency-policy/v1"
POLICY_PAYLOAD_TYPE = "application/vnd.overt.residency-policy+json"

# Modelled on the access-transparency reason codes of the large clouds.
JUSTIFICATIONS = {
    "CUSTOMER_INITIATED": "the customer asked for it (e.g. a support case they opened)",
    "CUSTOMER_SUPPORT": "support staff working on the customer's case",
    "THREAT_ANALYSIS": "analysing a sample or telemetry for threats",
    "SECURITY_INCIDENT": "responding to a security incident",
    "LEGAL_REQUEST": "a request from a government or court (names the requesting country)",
    "SYSTEM_OPERATION": "automated ingestion or maintenance by the system itself",
    "DATA_ERASURE": "erasing data, at the customer's request or at the end of retention",
}


def pseudonym(customer_key: bytes, customer: str) -> str:
    return hmac.new(customer_key, customer.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def batch_root(object_ids: Sequence[str]) -> str:
    """RFC 9162 Merkle root over the sorted object ids: names a batch in one hash."""
    tree = MemoryTree()
    tree.extend([i.encode() for i in sorted(object_ids)])
    return tree.root().hex()


@dataclass(frozen=True)
class Actor:
    name: str
    role: str
    employer: str
    location: str

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "role": self.role,
            "employer": self.employer,
            "location": self.location,
        }


@dataclass
class AccessEvent:
    region: str
    action: str
    actor: Actor
    justification: str
    ticket: str
    customer: str  # pseudonym
    category: str = ""
    objects: list[str] = field(default_factory=list)
    batch: dict[str, Any] | None = None
    outcome: str = "allowed"
    reason: str = ""
    requester_country: str = ""
    relocation: dict[str, Any] | None = None
    time: int = field(default_factory=lambda: int(time.time()))
    # Two identical accesses in the same second are two events: the log
    # deduplicates identical entries, so each event carries its own id.
    id: str = field(default_factory=lambda: secrets.token_hex(8))

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": EVENT_TYPE,
            "id": self.id,
            "region": self.region,
            "action": self.action,
            "outcome": self.outcome,
            "customer": self.customer,
            "category": self.category,
            "actor": self.actor.to_json(),
            "justification": self.justification,
            "ticket": self.ticket,
            "time": self.time,
        }
        if self.objects:
            doc["objects"] = self.objects
        if self.batch is not None:
            doc["batch"] = self.batch
        if self.reason:
            doc["reason"] = self.reason
        if self.requester_country:
            doc["requester_country"] = self.requester_country
        if self.relocation is not None:
            doc["relocation"] = self.relocation
        return doc

    def sign(self, signer: Ed25519Signer) -> bytes:
        payload = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()
        return sign_envelope(PAYLOAD_TYPE, payload, [signer]).to_bytes()


def open_event(entry: bytes, vault_key: Ed25519Verifier) -> dict[str, Any]:
    """Verify a log entry as an access event signed by the vault; return its fields."""
    envelope = Envelope.from_bytes(entry)
    verify_envelope(envelope, [vault_key], payload_type=PAYLOAD_TYPE)
    try:
        doc = json.loads(envelope.payload)
    except (ValueError, RecursionError) as exc:
        raise MalformedError(f"access event is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("type") != EVENT_TYPE:
        raise MalformedError("log entry is not an access event")
    if doc.get("action") not in ACTIONS:
        raise MalformedError(f"access event has unknown action {doc.get('action')!r}")
    return doc


def sign_policy_statement(doc: dict[str, Any], signer: Ed25519Signer) -> bytes:
    """A residency policy statement (policy_history.py), signed by the vault."""
    payload = json.dumps(
        {"type": POLICY_TYPE, **doc}, sort_keys=True, separators=(",", ":")
    ).encode()
    return sign_envelope(POLICY_PAYLOAD_TYPE, payload, [signer]).to_bytes()


def open_entry(entry: bytes, vault_key: Ed25519Verifier) -> tuple[str, dict[str, Any]]:
    """Verify an access log entry: ("access", event) or ("policy", statement)."""
    envelope = Envelope.from_bytes(entry)
    if envelope.payload_type != POLICY_PAYLOAD_TYPE:
        return "access", open_event(entry, vault_key)
    verify_envelope(envelope, [vault_key], payload_type=POLICY_PAYLOAD_TYPE)
    try:
        doc = json.loads(envelope.payload)
    except (ValueError, RecursionError) as exc:
        raise MalformedError(f"policy statement is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("type") != POLICY_TYPE:
        raise MalformedError("log entry is not a residency policy statement")
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise MalformedError("policy statement has no valid version")
    if not isinstance(doc.get("sha256"), str) or not isinstance(doc.get("countries"), dict):
        raise MalformedError("policy statement lacks its digest or its countries")
    return "policy", doc

"""Release bundles: everything a customer needs to verify a release offline (docs/formats.md).

    {
      "mediaType": "application/vnd.overt.bundle.v1+json",
      "provenance":   {"entry": "<base64 of the log entry>", "proof": "<C2SP tlog-proof>"},
      "attestations": [{"entry": "...", "proof": "..."}, ...]
    }

Each `entry` is the exact bytes that were logged (a DSSE envelope), so its
leaf hash can be recomputed; each `proof` carries an inclusion proof and the
cosigned checkpoint it is against. Attestations are the rebuilders' VSAs and
the reviewers' review statements about the provenance. Nothing in a bundle is
trusted by itself: the verifier checks every part against the customer's
policy, and a bundle assembled by anyone (a mirror, an attacker) is only as
good as the signatures and proofs in it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from overt.conveyor.provenance import PROVENANCE_TYPE
from overt.crypto.dsse import Envelope
from overt.crypto.intoto import Statement
from overt.errors import MalformedError
from overt.rebuild.vsa import VSA_TYPE
from overt.rules.statements import APPROVAL_TYPE, RULESET_TYPE
from overt.tlog.client import LogClient
from overt.tlog.proof import TlogProof

MEDIA_TYPE = "application/vnd.overt.bundle.v1+json"
MAX_BUNDLE_BYTES = 8 * 1024 * 1024
MAX_ATTESTATIONS = 256
REVIEW_TYPE = "https://overt.dev/review/v1"
# Statements about a provenance that travel in its bundle.
ATTESTATION_TYPES = (VSA_TYPE, REVIEW_TYPE, RULESET_TYPE, APPROVAL_TYPE)


@dataclass(frozen=True)
class Logged:
    """One logged envelope and the proof that it was logged."""

    entry: bytes
    proof: TlogProof

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.entry).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"entry": base64.b64encode(self.entry).decode(), "proof": self.proof.format()}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Logged:
        if not isinstance(obj, dict):
            raise MalformedError(f"bundle: {where} must be an object")
        entry, proof = obj.get("entry"), obj.get("proof")
        if not isinstance(entry, str) or not isinstance(proof, str):
            raise MalformedError(f"bundle: {where} needs 'entry' (base64) and 'proof' (text)")
        try:
            raw = base64.b64decode(entry, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedError(f"bundle: {where}.entry is not valid base64") from exc
        try:
            parsed = TlogProof.parse(proof)
        except MalformedError as exc:
            raise MalformedError(f"bundle: {where}.proof: {exc}") from exc
        return cls(raw, parsed)


@dataclass(frozen=True)
class Bundle:
    provenance: Logged
    attestations: tuple[Logged, ...] = ()

    def to_bytes(self) -> bytes:
        doc = {
            "mediaType": MEDIA_TYPE,
            "provenance": self.provenance.to_json(),
            "attestations": [a.to_json() for a in self.attestations],
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> Bundle:
        if len(data) > MAX_BUNDLE_BYTES:
            raise MalformedError(f"bundle larger than {MAX_BUNDLE_BYTES} bytes")
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise MalformedError(f"bundle is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise MalformedError("bundle must be a JSON object")
        if doc.get("mediaType") != MEDIA_TYPE:
            raise MalformedError(f"bundle: mediaType must be {MEDIA_TYPE}")
        attestations = doc.get("attestations", [])
        if not isinstance(attestations, list):
            raise MalformedError("bundle: attestations must be a list")
        if len(attestations) > MAX_ATTESTATIONS:
            raise MalformedError(f"bundle: more than {MAX_ATTESTATIONS} attestations")
        return cls(
            Logged.from_json(doc.get("provenance"), "provenance"),
            tuple(Logged.from_json(a, f"attestations[{i}]") for i, a in enumerate(attestations)),
        )


def attestation_subject(entry: bytes) -> tuple[str, str] | None:
    """(predicate type, provenance sha256) when the entry attests to a provenance."""
    try:
        statement = Statement.from_envelope(Envelope.from_bytes(entry))
    except MalformedError:
        return None
    if statement.predicate_type not in ATTESTATION_TYPES:
        return None
    inputs = statement.predicate.get("inputAttestations")
    if not isinstance(inputs, list) or not inputs or not isinstance(inputs[0], dict):
        return None
    digest = inputs[0].get("digest")
    if not isinstance(digest, dict) or not isinstance(digest.get("sha256"), str):
        return None
    return statement.predicate_type, digest["sha256"]


def index_attestations(entries: Iterable[tuple[int, bytes]]) -> dict[str, list[int]]:
    """Log indexes of the attestations about each provenance, by the provenance's sha256."""
    found: dict[str, list[int]] = {}
    for index, entry in entries:
        about = attestation_subject(entry)
        if about is not None:
            found.setdefault(about[1], []).append(index)
    return found


def assemble_bundle(
    client: LogClient, provenance_index: int, attestations: dict[str, list[int]]
) -> Bundle:
    """The bundle for the provenance at `provenance_index`, proven against the current checkpoint.

    `attestations` is `index_attestations` over the log (computed once for
    many bundles).
    """
    signed = client.signed_checkpoint
    entry = client.entry(provenance_index)
    try:
        kind = Statement.from_envelope(Envelope.from_bytes(entry)).predicate_type
    except MalformedError as exc:
        raise MalformedError(f"log entry {provenance_index} is not a provenance: {exc}") from exc
    if kind != PROVENANCE_TYPE:
        raise MalformedError(f"log entry {provenance_index} is a {kind}, not a provenance")

    def logged(index: int, data: bytes) -> Logged:
        return Logged(data, TlogProof(index, tuple(client.inclusion_proof(index)), signed))

    digest = hashlib.sha256(entry).hexdigest()
    if len(attestations.get(digest, [])) > MAX_ATTESTATIONS:
        raise MalformedError(
            f"{len(attestations[digest])} attestations are logged about entry "
            f"{provenance_index}; a bundle holds at most {MAX_ATTESTATIONS}"
        )
    return Bundle(
        logged(provenance_index, entry),
        tuple(logged(i, client.entry(i)) for i in attestations.get(digest, [])),
    )


def reprove(bundle: Bundle, client: LogClient) -> Bundle:
    """The same bundle with every proof against `client`'s current checkpoint.

    A bundle is assembled once, when its release is published; its checkpoint's
    cosignatures then age. A client that can reach the log swaps in proofs
    against the log's newest (freshly cosigned) checkpoint. Each entry must be
    the log's entry at its index, or it keeps its old proof; nothing here is
    trusted, since the verifier checks the result in full.
    """
    signed = client.signed_checkpoint
    size = client.checkpoint.size

    def fresh(item: Logged) -> Logged:
        index = item.proof.index
        if index >= size or client.entry(index) != item.entry:
            return item
        return Logged(item.entry, TlogProof(index, tuple(client.inclusion_proof(index)), signed))

    return Bundle(fresh(bundle.provenance), tuple(fresh(a) for a in bundle.attestations))

"""in-toto Attestation Framework Statement v1 (in-toto/attestation spec/v1/statement.md).

A Statement binds a predicate (SLSA provenance, a verification summary, a
review) to one or more subjects identified by digest. Overt only ever signs
Statements inside DSSE envelopes with payload type `PAYLOAD_TYPE`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from overt.crypto.dsse import Envelope, sign_envelope
from overt.crypto.keys import Ed25519Signer
from overt.errors import MalformedError

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"

_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class Subject:
    name: str
    digest: Mapping[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "digest": dict(self.digest)}


@dataclass(frozen=True)
class Statement:
    subjects: Sequence[Subject]
    predicate_type: str
    predicate: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "_type": STATEMENT_TYPE,
            "subject": [s.to_json() for s in self.subjects],
            "predicateType": self.predicate_type,
            "predicate": dict(self.predicate),
        }

    def to_bytes(self) -> bytes:
        # Sorted keys and compact separators make the payload reproducible.
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    def sign(self, signers: Sequence[Ed25519Signer]) -> Envelope:
        return sign_envelope(PAYLOAD_TYPE, self.to_bytes(), signers)

    @classmethod
    def from_bytes(cls, data: bytes) -> Statement:
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, huge ints
            raise MalformedError(f"in-toto statement is not valid JSON: {exc}") from exc
        return cls.from_json(obj)

    @classmethod
    def from_json(cls, obj: Any) -> Statement:
        if not isinstance(obj, dict):
            raise MalformedError("in-toto statement must be a JSON object")
        if obj.get("_type") != STATEMENT_TYPE:
            raise MalformedError(f"in-toto statement: _type must be {STATEMENT_TYPE}")
        subjects = obj.get("subject")
        if not isinstance(subjects, list) or not subjects:
            raise MalformedError("in-toto statement: subject must be a non-empty list")
        parsed = [_parse_subject(s, i) for i, s in enumerate(subjects)]
        ptype = obj.get("predicateType")
        if not isinstance(ptype, str) or not ptype:
            raise MalformedError("in-toto statement: predicateType must be a non-empty string")
        predicate = obj.get("predicate", {})
        if not isinstance(predicate, dict):
            raise MalformedError("in-toto statement: predicate must be a JSON object")
        return cls(parsed, ptype, predicate)

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Statement:
        if envelope.payload_type != PAYLOAD_TYPE:
            raise MalformedError(
                f"envelope payload type {envelope.payload_type!r} is not {PAYLOAD_TYPE}"
            )
        return cls.from_bytes(envelope.payload)


def _parse_subject(obj: Any, i: int) -> Subject:
    if not isinstance(obj, dict):
        raise MalformedError(f"in-toto statement: subject[{i}] must be an object")
    name = obj.get("name", "")
    digest = obj.get("digest")
    if not isinstance(name, str):
        raise MalformedError(f"in-toto statement: subject[{i}].name must be a string")
    if not isinstance(digest, dict) or not digest:
        raise MalformedError(f"in-toto statement: subject[{i}].digest must be a non-empty object")
    for alg, value in digest.items():
        if not isinstance(value, str) or not _HEX.fullmatch(value):
            raise MalformedError(
                f"in-toto statement: subject[{i}].digest.{alg} must be lowercase hex"
            )
    return Subject(name, dict(digest))

"""DSSE envelopes (github.com/secure-systems-lab/dsse, protocol v1).

The signature covers the Pre-Authentication Encoding

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

where LEN is the ASCII decimal byte length with no leading zeros and SP is one
space (DSSE protocol.md, "Signature definition"). The envelope's JSON form has
``payload`` (base64), ``payloadType`` and ``signatures`` (``keyid`` is an
unauthenticated hint, ``sig`` base64).

Verification is threshold based and fails closed: only signatures by distinct
trusted keys count, and a signature that does not verify simply does not count.
Key IDs in envelopes are never trusted to select a key's authority.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from overt.crypto.encoding import check_utf8
from overt.crypto.keys import Ed25519Signer, Ed25519Verifier
from overt.errors import MalformedError, VerificationError

# Envelopes are small JSON documents; refusing huge ones bounds memory on bad input.
MAX_ENVELOPE_BYTES = 16 * 1024 * 1024
MAX_ENVELOPE_SIGNATURES = 64


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 Pre-Authentication Encoding, byte-exact with the spec."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def dsse_keyid(name: str, key_id: int) -> str:
    """The hint we put in ``keyid``: the note key name and its 8-hex key ID."""
    return f"{name}+{key_id:08x}"


@dataclass(frozen=True)
class EnvelopeSignature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[EnvelopeSignature, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                for s in self.signatures
            ],
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, obj: Any) -> Envelope:
        if not isinstance(obj, dict):
            raise MalformedError("DSSE envelope must be a JSON object")
        payload_type = obj.get("payloadType")
        if not isinstance(payload_type, str) or not payload_type:
            raise MalformedError("DSSE envelope: payloadType must be a non-empty string")
        check_utf8(payload_type, "DSSE envelope: payloadType")
        payload = _b64_field(obj.get("payload"), "payload")
        sigs = obj.get("signatures")
        if not isinstance(sigs, list):
            raise MalformedError("DSSE envelope: signatures must be a list")
        if len(sigs) > MAX_ENVELOPE_SIGNATURES:
            raise MalformedError(f"DSSE envelope: more than {MAX_ENVELOPE_SIGNATURES} signatures")
        parsed = []
        for i, s in enumerate(sigs):
            if not isinstance(s, dict):
                raise MalformedError(f"DSSE envelope: signatures[{i}] must be an object")
            keyid = s.get("keyid", "")
            if not isinstance(keyid, str):
                raise MalformedError(f"DSSE envelope: signatures[{i}].keyid must be a string")
            parsed.append(
                EnvelopeSignature(keyid, _b64_field(s.get("sig"), f"signatures[{i}].sig"))
            )
        return cls(payload_type, payload, tuple(parsed))

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        if len(data) > MAX_ENVELOPE_BYTES:
            raise MalformedError(f"DSSE envelope larger than {MAX_ENVELOPE_BYTES} bytes")
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, huge ints
            raise MalformedError(f"DSSE envelope is not valid JSON: {exc}") from exc
        return cls.from_json(obj)


def _b64_field(value: Any, what: str) -> bytes:
    """Standard or URL-safe base64, padded or not (DSSE envelope.md: verifiers accept either)."""
    if not isinstance(value, str):
        raise MalformedError(f"DSSE envelope: {what} must be a base64 string")
    text = value.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError(f"DSSE envelope: {what} is not valid base64") from exc


def sign_envelope(payload_type: str, payload: bytes, signers: Sequence[Ed25519Signer]) -> Envelope:
    if not signers:
        raise MalformedError("a DSSE envelope needs at least one signer")
    message = pae(payload_type, payload)
    sigs = tuple(EnvelopeSignature(dsse_keyid(s.name, s.key_id), s.sign(message)) for s in signers)
    return Envelope(payload_type, payload, sigs)


def verify_envelope(
    envelope: Envelope,
    verifiers: Sequence[Ed25519Verifier],
    threshold: int = 1,
    payload_type: str | None = None,
) -> list[Ed25519Verifier]:
    """Return the distinct trusted keys that signed; raise unless at least `threshold` did."""
    if threshold < 1:
        raise MalformedError("DSSE threshold must be at least 1")
    if payload_type is not None and envelope.payload_type != payload_type:
        raise VerificationError(
            f"DSSE payload type is {envelope.payload_type!r}, expected {payload_type!r}"
        )
    message = pae(envelope.payload_type, envelope.payload)
    hints = {dsse_keyid(v.name, v.key_id) for v in verifiers}
    accepted: list[Ed25519Verifier] = []
    for verifier in verifiers:
        if any(v.vkey.public == verifier.vkey.public for v in accepted):
            continue
        # The keyid is only a hint: a signature hinting at another trusted key is
        # not tried with this one (it would fail), one with a foreign hint is.
        hint = dsse_keyid(verifier.name, verifier.key_id)
        candidates = [s for s in envelope.signatures if s.keyid == hint or s.keyid not in hints]
        if any(verifier.verify(message, s.sig) for s in candidates):
            accepted.append(verifier)
    if len(accepted) < threshold:
        raise VerificationError(
            f"DSSE envelope has {len(accepted)} valid signature(s) from trusted keys, "
            f"need {threshold}"
        )
    return accepted

"""Ed25519 note keys: signers, verifiers and the C2SP verifier-key ("vkey") form.

A vkey is ``<name>+<hex key ID>+<base64(type || public key)>`` (C2SP
signed-note, "Verifier keys"). The key ID is the first four bytes of
``SHA-256(name || 0x0A || type || public key)``. Two signature types matter to
Overt:

* 0x01, Ed25519 signatures over the note text (signed-note, "Ed25519
  signatures"): logs, conveyors, rebuilders;
* 0x04, timestamped Ed25519 cosignatures (tlog-cosignature): witnesses. The
  signer and verifier for that type live in `overt.tlog.cosignature` because
  what they sign is a checkpoint-specific message.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from overt.crypto.encoding import b64decode_strict, b64encode, check_key_name, check_utf8
from overt.errors import MalformedError

SIG_ED25519 = 0x01
SIG_COSIGNATURE_V1 = 0x04
KNOWN_TYPES = {SIG_ED25519: "ed25519", SIG_COSIGNATURE_V1: "cosignature/v1"}

ED25519_PUBLIC_SIZE = 32
ED25519_SEED_SIZE = 32


def key_id(name: str, sig_type: int, public: bytes) -> int:
    """The recommended 32-bit key ID (signed-note, "Signatures")."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public).digest()
    return int.from_bytes(digest[:4], "big")


class Signer(Protocol):
    """Anything that can add a signature line to a note."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def sign(self, message: bytes) -> bytes:
        """Return the signature bytes (without the 4-byte key ID prefix)."""
        ...


class Verifier(Protocol):
    """Anything that can check a signature line of a note."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True only if `signature` (without key ID prefix) is valid for `message`."""
        ...


@dataclass(frozen=True)
class VerifierKey:
    """A parsed vkey: name, key ID, signature type and raw public key."""

    name: str
    key_id: int
    sig_type: int
    public: bytes

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """Parse a vkey strictly: canonical base64, known type, matching key ID."""
        text = text.strip()
        check_utf8(text, "verifier key")
        parts = text.split("+", 2)
        if len(parts) != 3:
            raise MalformedError(f"verifier key {text!r}: want name+keyid+key (3 parts)")
        name, hex_id, b64 = parts
        check_key_name(name)
        if len(hex_id) != 8 or any(c not in "0123456789abcdef" for c in hex_id):
            raise MalformedError(f"verifier key {name!r}: key ID must be 8 lowercase hex digits")
        raw = b64decode_strict(b64, f"verifier key {name!r}")
        if not raw:
            raise MalformedError(f"verifier key {name!r}: empty key material")
        sig_type, public = raw[0], raw[1:]
        if sig_type not in KNOWN_TYPES:
            raise MalformedError(
                f"verifier key {name!r}: unsupported signature type 0x{sig_type:02x}"
            )
        if len(public) != ED25519_PUBLIC_SIZE:
            raise MalformedError(
                f"verifier key {name!r}: Ed25519 public key must be 32 bytes, got {len(public)}"
            )
        kid = int(hex_id, 16)
        if kid != key_id(name, sig_type, public):
            raise MalformedError(f"verifier key {name!r}: key ID does not match the key")
        return cls(name, kid, sig_type, public)

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id:08x}+{b64encode(bytes([self.sig_type]) + self.public)}"

    @property
    def type_name(self) -> str:
        return KNOWN_TYPES[self.sig_type]


class KeyedVerifier:
    """What every note verifier holds: one vkey of one signature type and its public key."""

    sig_type = SIG_ED25519

    def __init__(self, vkey: VerifierKey | str) -> None:
        parsed = VerifierKey.parse(vkey) if isinstance(vkey, str) else vkey
        if parsed.sig_type != self.sig_type:
            raise MalformedError(
                f"key {parsed.name!r} has type {parsed.type_name}, "
                f"want {KNOWN_TYPES[self.sig_type]}"
            )
        self._vkey = parsed
        self._public = Ed25519PublicKey.from_public_bytes(parsed.public)

    @property
    def name(self) -> str:
        return self._vkey.name

    @property
    def key_id(self) -> int:
        return self._vkey.key_id

    @property
    def vkey(self) -> VerifierKey:
        return self._vkey


class Ed25519Verifier(KeyedVerifier):
    """Verifies type 0x01 signatures: plain Ed25519 over the message."""

    sig_type = SIG_ED25519

    def verify(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            self._public.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class Ed25519Signer:
    """An Ed25519 private key with the note name it signs as."""

    def __init__(self, name: str, seed: bytes, sig_type: int = SIG_ED25519) -> None:
        check_key_name(name)
        if len(seed) != ED25519_SEED_SIZE:
            raise MalformedError(f"Ed25519 seed must be 32 bytes, got {len(seed)}")
        if sig_type not in KNOWN_TYPES:
            raise MalformedError(f"unsupported signature type 0x{sig_type:02x}")
        self._name = name
        self._seed = seed
        self._sig_type = sig_type
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self._public = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._key_id = key_id(name, sig_type, self._public)

    @classmethod
    def generate(cls, name: str, sig_type: int = SIG_ED25519) -> Ed25519Signer:
        return cls(name, os.urandom(ED25519_SEED_SIZE), sig_type)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self._key_id

    @property
    def sig_type(self) -> int:
        return self._sig_type

    @property
    def seed(self) -> bytes:
        return self._seed

    @property
    def public(self) -> bytes:
        return self._public

    def verifier_key(self) -> VerifierKey:
        return VerifierKey(self._name, self._key_id, self._sig_type, self._public)

    def sign(self, message: bytes) -> bytes:
        """Raw Ed25519 signature over `message` (callers build the message)."""
        return self._private.sign(message)

    def encode_private(self) -> str:
        """The private key in the Go note format ``PRIVATE+KEY+name+hex+base64(type||seed)``."""
        material = b64encode(bytes([self._sig_type]) + self._seed)
        return f"PRIVATE+KEY+{self._name}+{self._key_id:08x}+{material}"

    @classmethod
    def parse_private(cls, text: str) -> Ed25519Signer:
        """Parse the private key format written by `encode_private`, strictly."""
        text = text.strip()
        prefix = "PRIVATE+KEY+"
        if not text.startswith(prefix):
            raise MalformedError("private key: must start with PRIVATE+KEY+")
        parts = text[len(prefix) :].split("+", 2)
        if len(parts) != 3:
            raise MalformedError("private key: want PRIVATE+KEY+name+keyid+key")
        name, hex_id, b64 = parts
        check_key_name(name)
        raw = b64decode_strict(b64, "private key")
        if len(raw) != 1 + ED25519_SEED_SIZE:
            raise MalformedError("private key: want a type byte and a 32-byte Ed25519 seed")
        signer = cls(name, raw[1:], raw[0])
        if hex_id != f"{signer.key_id:08x}":
            raise MalformedError("private key: key ID does not match the key")
        return signer


def ed25519_verifier(vkey: str | VerifierKey) -> Ed25519Verifier:
    """Build a type 0x01 verifier from a vkey string or parsed key."""
    parsed = VerifierKey.parse(vkey) if isinstance(vkey, str) else vkey
    return Ed25519Verifier(parsed)

"""C2SP tlog-cosignature, the Ed25519 cosignature/v1 type (signature type 0x04).

A witness signs, with an Ed25519 key, the message

    cosignature/v1\\n
    time <POSIX seconds, decimal>\\n
    <checkpoint note text, including its final newline>

and the note signature is the 72-byte ``timestamped_signature``: the timestamp
as a big-endian uint64 followed by the 64-byte Ed25519 signature (with the
4-byte key ID in front, the line carries 76 bytes). The key ID is
``SHA-256(name || 0x0A || 0x04 || public key)[:4]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature

from overt.crypto.keys import SIG_COSIGNATURE_V1, Ed25519Signer, KeyedVerifier, VerifierKey
from overt.errors import MalformedError

HEADER = b"cosignature/v1\n"
MAX_TIMESTAMP = (1 << 63) - 1
SIGNATURE_SIZE = 8 + 64


def cosignature_message(checkpoint_text: bytes, timestamp: int) -> bytes:
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise MalformedError(f"cosignature timestamp {timestamp} is out of range")
    return HEADER + b"time %d\n" % timestamp + checkpoint_text


def cosignature_timestamp(signature: bytes) -> int:
    """The timestamp inside a cosignature (the signature bytes after the key ID)."""
    if len(signature) != SIGNATURE_SIZE:
        raise MalformedError(f"cosignature is {len(signature)} bytes, want {SIGNATURE_SIZE}")
    return int.from_bytes(signature[:8], "big")


class CosignatureSigner:
    """A witness key: signs checkpoint texts as cosignature/v1 at the clock's time."""

    def __init__(self, key: Ed25519Signer, clock: Callable[[], float] = time.time) -> None:
        if key.sig_type != SIG_COSIGNATURE_V1:
            raise MalformedError(f"key {key.name!r} is not a cosignature (type 0x04) key")
        self._key = key
        self._clock = clock

    @property
    def name(self) -> str:
        return self._key.name

    @property
    def key_id(self) -> int:
        return self._key.key_id

    def verifier_key(self) -> VerifierKey:
        return self._key.verifier_key()

    def sign(self, message: bytes) -> bytes:
        """Cosign `message`, the checkpoint note text."""
        timestamp = int(self._clock())
        sig = self._key.sign(cosignature_message(message, timestamp))
        return timestamp.to_bytes(8, "big") + sig


class CosignatureVerifier(KeyedVerifier):
    """Checks cosignature/v1 lines made by one witness key (vkey type 0x04)."""

    sig_type = SIG_COSIGNATURE_V1

    def verify(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != SIGNATURE_SIZE:
            return False
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            return False
        try:
            self._public.verify(signature[8:], cosignature_message(message, timestamp))
        except InvalidSignature:
            return False
        return True

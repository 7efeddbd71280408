"""Envelope encryption of vault objects (AES-256-GCM, NIST SP 800-38D).

Each object gets a fresh 256-bit data key. The content is encrypted under it
with AES-256-GCM; the associated data binds the object's id, region, customer
and category, so a ciphertext copied to another object, region, customer or
category fails to decrypt. The data key is wrapped (AES-256-GCM again) by the
region's key-encryption key, with the object id and region as associated data.

Why a key per object rather than per customer: erasure is then exact (one
object can be erased without re-encrypting the customer's others), and a
leaked data key exposes one object. Erasing a customer erases each of its
objects' keys.

Wrapped data keys are kept in the region's *keyring*, apart from the store of
ciphertexts: destroying a key there (crypto-shredding) makes every copy and
backup of the store undecryptable, as long as the keyring itself is not backed
up for longer than the retention the customer was promised (docs/vault.md).
"""

from __future__ import annotations

import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from overt.errors import OvertError

KEY_SIZE = 32
NONCE_SIZE = 12
FORMAT = b"overt-vault-object/v1\n"


class DecryptionError(OvertError):
    """A ciphertext does not belong where it was found, was changed, or its key is gone."""


def _json_list(items: tuple[str, ...]) -> bytes:
    """``json.dumps(list(items), separators=(",", ":"))``, without json for plain strings
    (printable ASCII without quotes or backslashes: JSON escapes none of them)."""
    for item in items:
        if not item.isascii() or not item.isprintable() or '"' in item or "\\" in item:
            return json.dumps(list(items), separators=(",", ":")).encode()
    return ('["' + '","'.join(items) + '"]').encode()


def object_aad(object_id: str, region: str, customer: str, category: str) -> bytes:
    return FORMAT + _json_list((object_id, region, customer, category))


def key_aad(object_id: str, region: str) -> bytes:
    return b"overt-vault-key/v1\n" + _json_list((object_id, region))


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """nonce || AES-256-GCM(key, nonce, plaintext, aad) (ciphertext with its 16-byte tag)."""
    nonce = os.urandom(NONCE_SIZE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes, what: str) -> bytes:
    if len(sealed) < NONCE_SIZE + 16:
        raise DecryptionError(f"{what}: too short to be a ciphertext")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], aad)
    except InvalidTag as exc:
        raise DecryptionError(
            f"{what}: does not decrypt (tampered, moved from another object or region, "
            "or encrypted under another key)"
        ) from exc


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)

"""C2SP tlog-checkpoint: the signed tree head of a log, as a signed note.

Note text (tlog-checkpoint, "Note text"):

    <origin>
    <tree size, decimal, no leading zeros>
    <root hash, base64>
    [extension lines, each non-empty]

The log signs it with an Ed25519 note key whose name is the origin.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from overt.crypto.encoding import b64decode_strict, b64encode
from overt.crypto.keys import Signer, Verifier
from overt.crypto.note import Note, Signature, check_text, open_note, sign_note
from overt.errors import MalformedError, VerificationError
from overt.tlog.hashing import HASH_SIZE

MAX_TREE_SIZE = (1 << 63) - 1
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise MalformedError("checkpoint origin must be one non-empty line")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise MalformedError(f"checkpoint tree size {self.size} is out of range")
        if len(self.root_hash) != HASH_SIZE:
            raise MalformedError(f"checkpoint root hash must be {HASH_SIZE} bytes")
        for ext in self.extensions:
            if not ext or "\n" in ext:
                raise MalformedError("checkpoint extension lines must be non-empty single lines")

    def text(self) -> str:
        lines = [self.origin, str(self.size), b64encode(self.root_hash), *self.extensions]
        text = "\n".join(lines) + "\n"
        check_text(text)
        return text

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse checkpoint note text (without signatures), strictly."""
        check_text(text)
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedError("checkpoint needs origin, size and root hash lines")
        origin, size_s, root_s, *ext = lines
        if not origin:
            raise MalformedError("checkpoint origin is empty")
        if not _SIZE.fullmatch(size_s) or int(size_s) > MAX_TREE_SIZE:
            raise MalformedError(f"checkpoint tree size {size_s[:30]!r} is not a canonical decimal")
        root = b64decode_strict(root_s, "checkpoint root hash")
        if len(root) != HASH_SIZE:
            raise MalformedError(f"checkpoint root hash is {len(root)} bytes, want {HASH_SIZE}")
        if any(not e for e in ext):
            raise MalformedError("checkpoint has an empty extension line")
        return cls(origin, int(size_s), root, tuple(ext))


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint whose note verified, with the note it came from."""

    checkpoint: Checkpoint
    note: Note
    raw: str


def sign_checkpoint(
    checkpoint: Checkpoint, signers: Sequence[Signer], keep: Sequence[Signature] = ()
) -> str:
    return sign_note(checkpoint.text(), signers, keep)


def open_checkpoint(
    message: bytes | str, log: Verifier, others: Iterable[Verifier] = ()
) -> SignedCheckpoint:
    """Verify a checkpoint signed by `log`; the origin must be the log key's name.

    `others` (e.g. witness cosigners) are checked too if their lines are
    present; an invalid line from any known key rejects the checkpoint.
    """
    note = open_note(message, [log, *others])
    if not note.signed_by(log.name, log.key_id):
        raise VerificationError(f"checkpoint is not signed by log key {log.name}")
    checkpoint = Checkpoint.parse(note.text)
    if checkpoint.origin != log.name:
        raise VerificationError(
            f"checkpoint origin {checkpoint.origin!r} does not match log key name {log.name!r}"
        )
    raw = message.decode("utf-8") if isinstance(message, bytes) else message
    return SignedCheckpoint(checkpoint, note, raw)

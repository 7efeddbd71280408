"""C2SP tlog-witness wire formats: the add-checkpoint request and responses.

Request body (tlog-witness, "add-checkpoint"):

    old <size, decimal, no leading zeros>\\n
    <consistency proof hash, base64>\\n        (zero to 63 lines)
    \\n
    <signed checkpoint>

A 200 response is one or more note signature lines (the cosignatures); a 409
response carries the witness's current size as ``<decimal>\\n`` with
``Content-Type: text/x.tlog.size``. The origin hash used in the monitoring
path is the lowercase hex SHA-256 of the origin.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from overt.crypto.encoding import b64decode_strict, b64encode
from overt.crypto.note import Signature, split
from overt.errors import MalformedError
from overt.tlog.checkpoint import Checkpoint
from overt.tlog.hashing import HASH_SIZE

MAX_PROOF_LINES = 63
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


@dataclass(frozen=True)
class AddCheckpointRequest:
    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: str  # the signed note, verbatim
    parsed: Checkpoint | None = None  # set by `parse`, which has checked its syntax

    def format(self) -> str:
        lines = [f"old {self.old_size}", *(b64encode(h) for h in self.proof)]
        return "\n".join(lines) + "\n\n" + self.checkpoint

    @classmethod
    def parse(cls, data: bytes) -> AddCheckpointRequest:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedError("request body is not UTF-8") from exc
        head, sep, checkpoint = text.partition("\n\n")
        if not sep:
            raise MalformedError("request body has no empty line before the checkpoint")
        lines = head.split("\n")
        if not lines[0].startswith("old "):
            raise MalformedError("request body must start with 'old <size>'")
        old_s = lines[0][4:]
        if not _DECIMAL.fullmatch(old_s) or int(old_s) >= 1 << 63:
            raise MalformedError(f"old size {old_s[:30]!r} is not a canonical decimal")
        if len(lines) - 1 > MAX_PROOF_LINES:
            raise MalformedError(f"more than {MAX_PROOF_LINES} consistency proof lines")
        proof = []
        for line in lines[1:]:
            h = b64decode_strict(line, "consistency proof line")
            if len(h) != HASH_SIZE:
                raise MalformedError(f"consistency proof hash is {len(h)} bytes")
            proof.append(h)
        note_text, _ = split(checkpoint)
        return cls(int(old_s), tuple(proof), checkpoint, Checkpoint.parse(note_text))


def format_cosignatures(signatures: Sequence[Signature]) -> str:
    return "".join(s.line() for s in signatures)


def parse_size_body(body: bytes) -> int:
    """The body of a 409 answer: the witness's size and a newline."""
    text = body.decode("ascii", errors="replace")
    if not text.endswith("\n") or not _DECIMAL.fullmatch(text[:-1]):
        raise MalformedError(f"409 body is not a tree size: {text[:40]!r}")
    return int(text[:-1])


def origin_hash(origin: str) -> str:
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()

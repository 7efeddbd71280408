"""C2SP tlog-proof: a self-contained, offline-verifiable proof of logging.

    c2sp.org/tlog-proof@v1
    [extra <base64>]
    index <decimal, no leading zeros>
    <inclusion proof hash, base64>      (zero or more lines, leaf side first)
    <empty line>
    <signed checkpoint, verbatim>

Verification (tlog-proof, "Verifying a tlog proof"): the caller computes the
leaf hash from data it trusts; the checkpoint must satisfy a tlog-policy (log
signature and witness quorum); the inclusion proof must bind the leaf to the
checkpoint's root. The `extra` data is unauthenticated and never trusted here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from overt.crypto.encoding import as_text, b64decode_strict, b64encode
from overt.crypto.note import split
from overt.errors import MalformedError
from overt.tlog.checkpoint import Checkpoint
from overt.tlog.hashing import HASH_SIZE
from overt.tlog.merkle import verify_inclusion
from overt.tlog.policy import Policy, VerifiedCheckpoint

HEADER = "c2sp.org/tlog-proof@v1"
MAX_PROOF_HASHES = 64  # a tree of 2**63 leaves needs at most 63
_INDEX = re.compile(r"0|[1-9][0-9]{0,18}")


@dataclass(frozen=True)
class TlogProof:
    index: int
    proof: tuple[bytes, ...]
    checkpoint: str  # the signed checkpoint note, verbatim
    extra: bytes | None = None

    def format(self) -> str:
        lines = [HEADER]
        if self.extra is not None:
            lines.append(f"extra {b64encode(self.extra)}")
        lines.append(f"index {self.index}")
        lines.extend(b64encode(h) for h in self.proof)
        return "\n".join(lines) + "\n\n" + self.checkpoint

    @classmethod
    def parse(cls, data: bytes | str) -> TlogProof:
        text = as_text(data, "tlog-proof")
        head, sep, checkpoint = text.partition("\n\n")
        if not sep:
            raise MalformedError("tlog-proof has no empty line before the checkpoint")
        lines = head.split("\n")
        if lines[0] != HEADER:
            raise MalformedError(f"tlog-proof must start with {HEADER!r}")
        pos = 1
        extra = None
        if pos < len(lines) and lines[pos].startswith("extra "):
            extra = b64decode_strict(lines[pos][len("extra ") :], "tlog-proof extra data")
            pos += 1
        if pos >= len(lines) or not lines[pos].startswith("index "):
            raise MalformedError("tlog-proof is missing its 'index N' line")
        index_s = lines[pos][len("index ") :]
        if not _INDEX.fullmatch(index_s) or int(index_s) >= 1 << 63:
            raise MalformedError(f"tlog-proof index {index_s[:30]!r} is not a canonical decimal")
        hashes = []
        for line in lines[pos + 1 :]:
            h = b64decode_strict(line, "tlog-proof inclusion hash")
            if len(h) != HASH_SIZE:
                raise MalformedError(f"tlog-proof inclusion hash is {len(h)} bytes")
            hashes.append(h)
        if len(hashes) > MAX_PROOF_HASHES:
            raise MalformedError(f"tlog-proof has more than {MAX_PROOF_HASHES} proof hashes")
        # Check the checkpoint's syntax now so a bad file fails as malformed,
        # before any signature work.
        note_text, _ = split(checkpoint)
        Checkpoint.parse(note_text)
        return cls(int(index_s), tuple(hashes), checkpoint, extra)


def make_proof(
    index: int, proof: Sequence[bytes], signed_checkpoint: str, extra: bytes | None = None
) -> TlogProof:
    return TlogProof(index, tuple(proof), signed_checkpoint, extra)


def verify_proof(proof: TlogProof, leaf_hash: bytes, policy: Policy) -> VerifiedCheckpoint:
    """Raise unless the proof shows `leaf_hash` logged under a checkpoint `policy` accepts."""
    verified = policy.verify_checkpoint(proof.checkpoint)
    cp = verified.checkpoint
    verify_inclusion(leaf_hash, proof.index, cp.size, proof.proof, cp.root_hash)
    return verified

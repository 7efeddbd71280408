"""C2SP signed notes: text signed by one or more keys (c2sp.org/signed-note).

A signed note is the text (ending in a newline), a blank line, then one or more
signature lines ``— <key name> base64(key ID || signature)``. The text is
separated from the signatures by the *last* blank line, so the text itself may
contain blank lines.

Verification follows the spec's rules exactly, failing closed:

* signatures from unknown keys (no verifier with that name *and* key ID) are
  ignored and reported as unverified;
* a signature from a known key that fails to verify rejects the whole note;
* a note with no verified signature is rejected;
* more than `MAX_SIGNATURES` signature lines, control characters other than
  newline, or invalid UTF-8 make the note malformed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from overt.crypto.encoding import as_text, b64decode_strict, b64encode, check_key_name, check_utf8
from overt.crypto.keys import Signer, Verifier
from overt.errors import MalformedError, VerificationError

# The spec requires accepting at least 16; golang.org/x/mod/sumdb/note stops at
# 100, and we match it so both accept the same notes.
MAX_SIGNATURES = 100

SIG_PREFIX = "\u2014 "  # em dash, space


@dataclass(frozen=True)
class Signature:
    """One signature line: key name, key ID and the signature bytes after the ID."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        blob = self.key_id.to_bytes(4, "big") + self.signature
        return f"{SIG_PREFIX}{self.name} {b64encode(blob)}\n"


@dataclass(frozen=True)
class Note:
    """A note after verification: its text and which signatures checked out."""

    text: str
    verified: tuple[Signature, ...]
    unverified: tuple[Signature, ...]

    def signed_by(self, name: str, key_id: int) -> bool:
        return any(s.name == name and s.key_id == key_id for s in self.verified)


def check_text(text: str) -> None:
    """Note text must end in a newline and hold no control character but newline."""
    if not text.endswith("\n"):
        raise MalformedError("note text must end with a newline")
    check_utf8(text, "note text")
    _check_chars(text)


_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


def _check_chars(text: str) -> None:
    bad = _CONTROL.search(text)
    if bad is not None:
        raise MalformedError(f"note contains control character U+{ord(bad.group()):04X}")


def split(message: bytes | str) -> tuple[str, list[Signature]]:
    """Split a signed note into text and signatures without verifying anything."""
    msg = as_text(message, "note")
    _check_chars(msg)
    cut = msg.rfind("\n\n")
    if cut < 0:
        raise MalformedError("note has no blank line before its signatures")
    text, sig_block = msg[: cut + 1], msg[cut + 2 :]
    if not sig_block:
        raise MalformedError("note has no signature lines")
    if not sig_block.endswith("\n"):
        raise MalformedError("last signature line does not end with a newline")
    lines = sig_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedError(f"note has {len(lines)} signatures, more than {MAX_SIGNATURES}")
    return text, [_parse_signature_line(line) for line in lines]


def _parse_signature_line(line: str) -> Signature:
    if not line.startswith(SIG_PREFIX):
        raise MalformedError(f"not a signature line: {line[:60]!r}")
    rest = line[len(SIG_PREFIX) :]
    name, space, b64 = rest.partition(" ")
    if not space or " " in b64:
        raise MalformedError(f"signature line must be '— name signature': {line[:60]!r}")
    check_key_name(name)
    blob = b64decode_strict(b64, f"signature by {name!r}")
    if len(blob) < 5:
        raise MalformedError(f"signature by {name!r} is too short")
    return Signature(name, int.from_bytes(blob[:4], "big"), blob[4:])


def open_note(message: bytes | str, verifiers: Iterable[Verifier]) -> Note:
    """Verify a signed note against known keys (signed-note, "Signatures").

    Raises MalformedError for syntax errors and VerificationError when a known
    key's signature is invalid or no known key signed the note.
    """
    text, sigs = split(message)
    known: dict[tuple[str, int], Verifier] = {}
    for v in verifiers:
        ident = (v.name, v.key_id)
        other = known.get(ident)
        if other is not None and getattr(other, "vkey", other) != getattr(v, "vkey", v):
            # Two different trusted keys with one name and key ID: a signature
            # line could not say which of them made it.
            raise MalformedError(
                f"ambiguous trusted keys: two keys are named {v.name}+{v.key_id:08x}"
            )
        known[ident] = v
    payload = text.encode("utf-8")
    verified: list[Signature] = []
    unverified: list[Signature] = []
    seen: set[tuple[str, int]] = set()
    for sig in sigs:
        ident = (sig.name, sig.key_id)
        verifier = known.get(ident)
        if verifier is None:
            unverified.append(sig)
            continue
        if not verifier.verify(payload, sig.signature):
            raise VerificationError(f"invalid signature from known key {sig.name}+{sig.key_id:08x}")
        if ident not in seen:
            seen.add(ident)
            verified.append(sig)
    if not verified:
        names = ", ".join(sorted({f"{n}+{k:08x}" for n, k in known})) or "none given"
        raise VerificationError(f"note has no valid signature from a trusted key ({names})")
    return Note(text, tuple(verified), tuple(unverified))


def sign_note(text: str, signers: Sequence[Signer], keep: Sequence[Signature] = ()) -> str:
    """Sign `text` with each signer; `keep` are existing signatures to carry over.

    Carried-over signatures come first, in their original order, so adding a
    cosignature to a checkpoint leaves the log's own line where it was.
    """
    check_text(text)
    payload = text.encode("utf-8")
    # A key that signs again replaces its earlier line instead of adding one.
    signing = {(s.name, s.key_id) for s in signers}
    lines = [s.line() for s in keep if (s.name, s.key_id) not in signing]
    for signer in signers:
        check_key_name(signer.name)
        lines.append(Signature(signer.name, signer.key_id, signer.sign(payload)).line())
    if not lines:
        raise MalformedError("a signed note needs at least one signature")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedError(f"a note may carry at most {MAX_SIGNATURES} signatures")
    return text + "\n" + "".join(lines)

"""Strict base64 and name checks shared by the note and key formats.

C2SP signed-note uses standard base64 (RFC 4648, section 4). We accept only the
canonical encoding of a value: padding present, no whitespace, and unused
trailing bits zero. Lenient decoding would let two different strings carry the
same signature or key, which makes byte-exact comparison of notes unreliable.
"""

import base64
import binascii
import re

from overt.errors import MalformedError


def b64decode_strict(text: str, what: str) -> bytes:
    """Decode canonical standard base64, naming `what` in the error."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MalformedError(f"{what}: invalid base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise MalformedError(f"{what}: non-canonical base64")
    return raw


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# \s is exactly str.isspace() for str patterns: every Unicode space.
_BAD_NAME_CHAR = re.compile(r"[\s+\x00-\x1f\x7f]")


def check_key_name(name: str) -> None:
    """Key names are non-empty, with no Unicode space and no '+' (signed-note, Format)."""
    if not name:
        raise MalformedError("key name is empty")
    check_utf8(name, "key name")
    bad = _BAD_NAME_CHAR.search(name)
    if bad is not None:
        if bad.group().isspace() or bad.group() == "+":
            raise MalformedError(f"key name {name!r} contains a space or '+'")
        raise MalformedError(f"key name {name!r} contains a control character")


def check_utf8(text: str, what: str) -> None:
    """Refuse a str that cannot be encoded as UTF-8 (e.g. a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedError(f"{what} is not valid Unicode text") from exc


def as_text(data: bytes | str, what: str) -> str:
    """Input that may arrive as bytes or str, as checked Unicode text."""
    if isinstance(data, str):
        check_utf8(data, what)
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError(f"{what} is not valid UTF-8") from exc

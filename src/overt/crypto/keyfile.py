"""Reading and writing private key files.

A key file holds one line, the private key in the Go note format
(``PRIVATE+KEY+name+keyid+base64(type||seed)``), so keys interoperate with
golang.org/x/mod/sumdb/note tools. Files are created with mode 0600 and never
overwritten: losing a log or witness key is unrecoverable, so an accidental
``generate`` over an existing key must fail instead.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from overt.crypto.keys import Ed25519Signer
from overt.errors import KeyFileError, MalformedError


def write_private_key(path: Path, signer: Ed25519Signer) -> None:
    """Create `path` (0600, exclusive) holding the signer's private key."""
    data = (signer.encode_private() + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path}: already exists; refusing to overwrite a key") from exc
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot create: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_private_key(path: Path) -> Ed25519Signer:
    """Read a private key file, refusing files that others can read."""
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise KeyFileError(f"{path}: no such key file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read key file: {exc}") from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path}: permissions {stat.filemode(st.st_mode)} are too open; run chmod 600 {path}"
        )
    try:
        return Ed25519Signer.parse_private(text)
    except MalformedError as exc:
        raise KeyFileError(f"{path}: {exc}") from exc

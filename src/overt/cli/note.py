"""`overt note`: sign and verify C2SP signed notes."""

from __future__ import annotations

from pathlib import Path

import typer

from overt.cli.common import err, fail, handle_errors, read_text, vkey_argument
from overt.crypto.keyfile import read_private_key
from overt.crypto.keys import SIG_COSIGNATURE_V1, Signer, Verifier, VerifierKey, ed25519_verifier
from overt.crypto.note import open_note, sign_note, split
from overt.tlog.checkpoint import Checkpoint
from overt.tlog.cosignature import CosignatureSigner, CosignatureVerifier

app = typer.Typer(
    help="Sign and verify C2SP signed notes (the format of checkpoints and cosignatures).",
    no_args_is_help=True,
)


def verifier_for(vkey_text: str) -> Verifier:
    vkey = VerifierKey.parse(vkey_argument(vkey_text))
    if vkey.sig_type == SIG_COSIGNATURE_V1:
        return CosignatureVerifier(vkey)
    return ed25519_verifier(vkey)


@app.command()
@handle_errors
def sign(
    key_file: Path = typer.Argument(..., help="Private key file."),
    file: Path | None = typer.Argument(None, help="Text to sign; standard input if omitted."),
    add: bool = typer.Option(
        False,
        "--add",
        help="FILE is already a signed note: keep its signatures and add this key's. "
        "With a witness key this cosigns a checkpoint.",
    ),
) -> None:
    """Sign the text in FILE and print the signed note.

    The text must end with a newline and contain no control characters other
    than newline. A witness key (type cosignature/v1) produces a timestamped
    cosignature; use it on checkpoints only.
    """
    key = read_private_key(key_file)
    signer: Signer = CosignatureSigner(key) if key.sig_type == SIG_COSIGNATURE_V1 else key
    data = read_text(file, "note")
    text, existing = split(data) if add else (data, [])
    if key.sig_type == SIG_COSIGNATURE_V1:
        # A cosignature is a statement about a checkpoint; refuse anything else.
        Checkpoint.parse(text)
    print(sign_note(text, [signer], keep=existing), end="")


@app.command()
@handle_errors
def verify(
    keys: list[str] = typer.Option(
        ...,
        "--key",
        "-k",
        help="Trusted verifier key (name+id+key), or a file holding one. Repeat for several.",
    ),
    file: Path | None = typer.Argument(None, help="Signed note; standard input if omitted."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the note text."),
) -> None:
    """Verify a signed note against trusted keys.

    Exits 0 if at least one trusted key signed it and every trusted key's
    signature is valid (the verified text is printed), 1 if verification
    failed, 2 if the note or a key is malformed. Signatures by keys you did not
    list are ignored.
    """
    if not keys:
        fail("give at least one --key")
    verifiers = [verifier_for(k) for k in keys]
    note = open_note(read_text(file, "note").encode("utf-8"), verifiers)
    for sig in note.verified:
        err.print(f"verified: signed by {sig.name}+{sig.key_id:08x}", soft_wrap=True)
    for sig in note.unverified:
        err.print(f"ignored: signature by unknown key {sig.name}+{sig.key_id:08x}", soft_wrap=True)
    if not quiet:
        print(note.text, end="")

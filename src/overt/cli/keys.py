"""`overt keys`: create and inspect signing keys."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from overt.cli.common import handle_errors, out
from overt.crypto.keyfile import read_private_key, write_private_key
from overt.crypto.keys import SIG_COSIGNATURE_V1, SIG_ED25519, Ed25519Signer, VerifierKey

app = typer.Typer(
    help="Create and inspect Ed25519 signing keys (C2SP signed-note verifier keys).",
    no_args_is_help=True,
)


class KeyType(StrEnum):
    note = "note"
    witness = "witness"


@app.command()
@handle_errors
def generate(
    name: str = typer.Argument(
        ...,
        help="Key name, ideally a schema-less URL such as example.com/acme/releases. "
        "For a log key this must be the log's origin.",
    ),
    out_file: Path = typer.Option(
        ..., "--out", "-o", help="Private key file to create (mode 0600; never overwritten)."
    ),
    key_type: KeyType = typer.Option(
        KeyType.note,
        "--type",
        help="note: signs notes, checkpoints and attestations (type 0x01). "
        "witness: cosigns checkpoints (cosignature/v1, type 0x04).",
    ),
) -> None:
    """Generate a new private key and print its verifier key (one line).

    Give the printed verifier key to whoever must check your signatures; keep
    the key file secret.
    """
    sig_type = SIG_COSIGNATURE_V1 if key_type == KeyType.witness else SIG_ED25519
    signer = Ed25519Signer.generate(name, sig_type)
    write_private_key(out_file, signer)
    out.print(str(signer.verifier_key()), soft_wrap=True)


@app.command()
@handle_errors
def public(
    key_file: Path = typer.Argument(..., help="Private key file written by 'overt keys generate'."),
) -> None:
    """Print the verifier key (one line) of a private key file."""
    out.print(str(read_private_key(key_file).verifier_key()), soft_wrap=True)


@app.command()
@handle_errors
def show(
    key: str = typer.Argument(..., help="A private key file, or a verifier key string."),
) -> None:
    """Explain a key: its name, type, key ID and verifier key."""
    path = Path(key)
    vkey = read_private_key(path).verifier_key() if path.is_file() else VerifierKey.parse(key)
    out.print(f"name:         {vkey.name}", soft_wrap=True)
    out.print(f"type:         {vkey.type_name} (0x{vkey.sig_type:02x})")
    out.print(f"key ID:       {vkey.key_id:08x}")
    out.print(f"public key:   {vkey.public.hex()}")
    out.print(f"verifier key: {vkey}", soft_wrap=True)

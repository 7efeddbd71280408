"""`overt witness`: run a C2SP tlog-witness."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path

import typer

from overt.cli.common import handle_errors, out, parse_listen, serve_forever, vkey_argument
from overt.tlog.witness import origin_hash
from overt.witness.witness import Witness, init_witness

app = typer.Typer(
    help="Run a witness: check that logs only grow, and cosign their checkpoints.",
    no_args_is_help=True,
)


@app.command()
@handle_errors
def init(
    directory: Path = typer.Argument(..., help="New, empty directory for the witness."),
    name: str = typer.Option(
        ..., "--name", help="The witness's name, e.g. witness.example.org/w1."
    ),
) -> None:
    """Create a witness and print its cosignature verifier key (type 0x04)."""
    out.print(init_witness(directory, name), soft_wrap=True)


@app.command("add-log")
@handle_errors
def add_log(
    directory: Path = typer.Argument(..., help="The witness directory."),
    origin: str = typer.Option(..., "--origin", help="The log's origin line."),
    keys: list[str] = typer.Option(..., "--key", help="The log's verifier key (repeatable)."),
) -> None:
    """Trust a log: cosign its checkpoints once they verify with one of its keys."""
    witness = Witness(directory)
    try:
        witness.add_log(origin, [vkey_argument(k) for k in keys])
    finally:
        witness.close()
    out.print(f"witnessing {origin}", soft_wrap=True)


@app.command()
@handle_errors
def serve(
    directory: Path = typer.Argument(..., help="The witness directory."),
    listen: str = typer.Option("127.0.0.1:8090", "--listen", help="HOST:PORT to listen on."),
) -> None:
    """Serve POST /add-checkpoint (tlog-witness) and GET /<origin hash>/checkpoint."""
    from overt.web.witness_api import create_witness_app

    host, port = parse_listen(listen)
    serve_forever(create_witness_app(directory), host, port, f"witness {directory}")


@app.command()
@handle_errors
def status(directory: Path = typer.Argument(..., help="The witness directory.")) -> None:
    """Show the witness's key, its view of each log, and recent refusals."""
    witness = Witness(directory)
    try:
        out.print(f"witness: {witness.signer.name}", soft_wrap=True)
        out.print(f"key:     {witness.vkey}", soft_wrap=True)
        for view in witness.store.logs():
            root = base64.b64encode(view.root).decode() if view.root else "-"
            when = (
                datetime.datetime.fromtimestamp(view.updated, datetime.UTC).isoformat()
                if view.updated
                else "never"
            )
            out.print(
                f"log {view.origin}: size {view.size}, root {root}, last cosigned {when} "
                f"(GET /{origin_hash(view.origin)}/checkpoint)",
                soft_wrap=True,
            )
        for origin, at, code, reason in witness.store.refusals(10):
            stamp = datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat()
            out.print(f"refused {origin} at {stamp}: {code} {reason}", soft_wrap=True)
    finally:
        witness.close()

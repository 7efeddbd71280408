"""`overt log`: create, serve, add to, read and check a transparency log."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from overt.cli.common import (
    err,
    fail,
    handle_errors,
    out,
    parse_listen,
    read_input,
    serve_forever,
    vkey_argument,
)
from overt.crypto.keys import ed25519_verifier
from overt.durable import atomic_write
from overt.errors import MalformedError
from overt.log.config import LogConfig
from overt.log.fsck import verify_log
from overt.log.log import LogPaths, init_log, set_witness_policy
from overt.log.remote import FileMemory, default_state_dir, open_source
from overt.log.submit import add_entries, running_server
from overt.tlog.client import LogClient
from overt.tlog.proof import TlogProof

app = typer.Typer(
    help="Run a transparency log: create it, serve it, add entries, read and verify it.",
    no_args_is_help=True,
)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


@app.command()
@handle_errors
def init(
    directory: Path = typer.Argument(..., help="New, empty directory for the log."),
    origin: str = typer.Option(
        ...,
        "--origin",
        help="The log's identity, e.g. example.com/acme/releases (also its key name).",
    ),
    integration_period_ms: int = typer.Option(500, help="How often a checkpoint is published."),
    sequence_batch: int = typer.Option(1000, help="Entries per sequencing batch."),
    sequence_linger_ms: int = typer.Option(5, help="Longest wait to fill a sequencing batch."),
    pool_size: int = typer.Option(50_000, help="Entries that may wait; beyond, adds get 503."),
    max_entry_size: int = typer.Option(65_535, help="Largest entry accepted, in bytes."),
    database: str = typer.Option(
        "",
        "--database",
        help="Keep the sequencing state in this PostgreSQL database (postgresql://...), "
        "so several 'overt log serve' processes can share the log; default: SQLite in DIR.",
    ),
) -> None:
    """Create a log: its key, write token, configuration and an empty checkpoint.

    Prints the log's verifier key (also in DIR/log.vkey). The bearer token for
    adds is in DIR/secrets/write-token. With --database, the database's schema
    is created or upgraded first ('overt db migrate').
    """
    if database:
        from overt.postgres import check_dsn

        check_dsn(database)
    config = LogConfig(
        origin=origin,
        integration_period_ms=integration_period_ms,
        sequence_batch=sequence_batch,
        sequence_linger_ms=sequence_linger_ms,
        pool_size=pool_size,
        max_entry_size=max_entry_size,
        database=database,
    )
    out.print(init_log(directory, config), soft_wrap=True)


@app.command("set-witnesses")
@handle_errors
def set_witnesses(
    directory: Path = typer.Argument(..., help="The log directory (the log must be stopped)."),
    policy_file: Path = typer.Argument(
        ...,
        help="A C2SP tlog-policy listing this log's key, each witness with its URL, and the "
        "quorum; or 'none' to stop asking witnesses.",
    ),
) -> None:
    """Make the log publish checkpoints only once the policy's witness quorum cosigned them."""
    if str(policy_file) == "none":
        set_witness_policy(directory, None)
        out.print("witnessing disabled: checkpoints are published with the log's signature only")
        return
    policy = set_witness_policy(directory, read_input(policy_file, "policy"))
    assert policy is not None
    out.print(
        f"{len(policy.witnesses)} witnesses configured, quorum {policy.quorum}; "
        "restart the log to apply"
    )


@app.command()
@handle_errors
def serve(
    directory: Path = typer.Argument(..., help="The log directory."),
    listen: str = typer.Option("127.0.0.1:8080", "--listen", help="HOST:PORT to listen on."),
) -> None:
    """Serve the log over HTTP: tlog-tiles at the root, POST /add, JSON proofs."""
    from overt.web.app import create_log_app

    host, port = parse_listen(listen)
    application = create_log_app(directory)
    server_file = LogPaths(directory).root / "state" / "server.json"
    atomic_write(
        server_file, json.dumps({"url": f"http://{host}:{port}", "pid": os.getpid()}).encode()
    )
    try:
        serve_forever(application, host, port, f"log {directory}")
    finally:
        server_file.unlink(missing_ok=True)


@app.command()
@handle_errors
def add(
    directory: Path = typer.Argument(..., help="The log directory."),
    files: list[Path] = typer.Argument(None, help="Files to add, each as one entry."),
    lines: Path | None = typer.Option(
        None, "--lines", help="Add each line of this file (without its newline) as an entry."
    ),
) -> None:
    """Add entries and return once a published checkpoint covers them all.

    Works on the directory directly, or through the log's server when
    'overt log serve' is running on it. Prints each entry's index; an entry
    already in the log keeps its original index.
    """
    entries: list[bytes] = []
    names: list[str] = []
    if lines is not None:
        data = sys.stdin.buffer.read() if str(lines) == "-" else lines.read_bytes()
        entries.extend(data.splitlines())
        names.extend(f"line {i + 1}" for i in range(len(entries)))
    for f in files or []:
        entries.append(f.read_bytes())
        names.append(str(f))
    if not entries:
        fail("nothing to add: give FILE arguments or --lines FILE")
    with _progress() as progress:
        task = progress.add_task("adding", total=len(entries))
        added = add_entries(str(directory), entries, progress=lambda n: progress.advance(task, n))
    indexes, size = added.indexes, added.size
    if len(entries) <= 100:
        for name, index in zip(names, indexes, strict=True):
            out.print(f"{index}\t{name}", soft_wrap=True)
    new = len(set(indexes))
    out.print(f"{len(entries)} entries added ({new} distinct); checkpoint size {size}")


def _client(source: str, key: str | None, remember: bool) -> LogClient:
    src = open_source(source)
    vkey = vkey_argument(key) if key else src.vkey
    if vkey is None:
        fail(f"{source}: give the log's verifier key with --key")
    memory = FileMemory(default_state_dir()) if remember else None
    return LogClient(src.fetch, log_key=ed25519_verifier(vkey), memory=memory)


SOURCE_HELP = "A log directory, a tiles directory, or the log's URL."
KEY_HELP = "The log's verifier key (or a file holding it); read from a log directory if omitted."


@app.command()
@handle_errors
def get(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    index: int = typer.Argument(..., min=0, help="Index of the entry."),
    key: str | None = typer.Option(None, "--key", help=KEY_HELP),
) -> None:
    """Print an entry's bytes, after verifying it against a verified checkpoint."""
    client = _client(source, key, remember=True)
    if index >= client.checkpoint.size:
        fail(f"no entry {index}: the published log has {client.checkpoint.size} entries")
    sys.stdout.buffer.write(client.entry(index))
    sys.stdout.buffer.flush()


@app.command()
@handle_errors
def proof(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    index: int = typer.Argument(..., min=0, help="Index of the entry."),
    key: str | None = typer.Option(None, "--key", help=KEY_HELP),
    out_file: Path | None = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
) -> None:
    """Write a C2SP tlog-proof for an entry, against the current checkpoint."""
    client = _client(source, key, remember=True)
    if index >= client.checkpoint.size:
        fail(f"no entry {index}: the published log has {client.checkpoint.size} entries")
    hashes = client.inclusion_proof(index)
    signed = open_source(source).fetch("checkpoint").decode()
    text = TlogProof(index, tuple(hashes), signed).format()
    TlogProof.parse(text)
    if out_file is None:
        print(text, end="")
    else:
        atomic_write(out_file, text.encode())
        err.print(f"wrote {out_file}")


@app.command()
@handle_errors
def status(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    key: str | None = typer.Option(None, "--key", help=KEY_HELP),
) -> None:
    """Show the log's verified checkpoint (and, for a directory, what is pending)."""
    client = _client(source, key, remember=False)
    cp = client.checkpoint
    out.print(f"origin:   {cp.origin}", soft_wrap=True)
    out.print(f"size:     {cp.size}")
    out.print(f"root:     {base64.b64encode(cp.root_hash).decode()}")
    path = Path(source)
    url = running_server(path) if (path / "log.toml").is_file() else None
    if url:
        out.print(f"server:   {url}")


@app.command()
@handle_errors
def verify(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    key: str | None = typer.Option(None, "--key", help=KEY_HELP),
) -> None:
    """Re-read the whole log, recompute every hash and tile, and check the checkpoint."""
    src = open_source(source)
    vkey = vkey_argument(key) if key else src.vkey
    if vkey is None:
        fail(f"{source}: give the log's verifier key with --key")
    verifier = ed25519_verifier(vkey)
    first = src.fetch("checkpoint")
    try:
        total = int(first.split(b"\n")[1])
    except (IndexError, ValueError) as exc:
        raise MalformedError("the checkpoint has no tree size line") from exc
    with _progress() as progress:
        task = progress.add_task("verifying", total=total)
        report = verify_log(
            src.fetch, verifier, lambda n: progress.advance(task, n), src.partial_tiles()
        )
    out.print(
        f"OK: {report.entries} entries and {report.tiles_checked} tiles of {src.description} "
        f"match checkpoint size {report.checkpoint.size}",
        soft_wrap=True,
    )

"""`overt rebuild`: independently rebuild logged releases and log signed verdicts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import typer
from rich.table import Table

from overt.cli.common import (
    err,
    fail,
    handle_errors,
    out,
    parse_listen,
    serve_forever,
    step_reporter,
    vkey_argument,
)
from overt.cli.conveyor import read_token
from overt.rebuild.queue import RebuildQueue, Watcher
from overt.rebuild.rebuilder import GOOD, Rebuilder, init_rebuilder, trust_conveyor

app = typer.Typer(
    help="Supervisor's rebuilder: rebuild each release elsewhere and attest (SLSA VSA).",
    no_args_is_help=True,
)

STATUS_STYLE = {
    "GOOD": "green",
    "BAD": "bold red",
    "FAIL": "red",
    "UNKWN": "dim",
    "BUILDING": "cyan",
}


def _say(message: str) -> None:
    err.print(f"  {message}", soft_wrap=True, markup=False)


@app.command()
@handle_errors
def init(
    directory: Path = typer.Argument(..., help="New, empty directory for the rebuilder."),
    name: str = typer.Option(..., "--name", help="Name of the rebuilder's signing key."),
    rebuilder_id: str = typer.Option(
        ..., "--id", help="URI naming this rebuilder (VSA verifier.id)."
    ),
    log: str = typer.Option(..., "--log", help="The release log: a log directory or its URL."),
    log_key: str = typer.Option(..., "--log-key", help="The release log's verifier key (or file)."),
    conveyor_keys: list[str] = typer.Option(
        ..., "--conveyor-key", help="A conveyor key whose releases to rebuild (repeatable)."
    ),
    artifacts: str | None = typer.Option(
        None,
        "--artifacts",
        help="Where the vendor publishes artifacts (NAME/VERSION/FILE under it, a directory or "
        "URL): used to detect tampered copies and to explain differences.",
    ),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="The log's write token, when --log is a URL."
    ),
) -> None:
    """Create a rebuilder: its signing key and what it follows. Prints its verifier key."""
    vkey = init_rebuilder(
        directory,
        name,
        rebuilder_id,
        log,
        vkey_argument(log_key),
        [vkey_argument(k) for k in conveyor_keys],
        artifacts,
        read_token(token_file),
    )
    out.print(vkey, soft_wrap=True)


@app.command("trust-conveyor")
@handle_errors
def trust_conveyor_key(
    directory: Path = typer.Argument(..., help="The rebuilder directory."),
    key: str = typer.Argument(..., help="A conveyor verifier key (or a file holding it)."),
) -> None:
    """Also rebuild releases signed by this conveyor key (e.g. after the conveyor moved).

    Releases scanned before are not looked at again.
    """
    trust_conveyor(directory, vkey_argument(key))
    out.print(f"releases signed by {vkey_argument(key).split('+')[0]} will be rebuilt")


@app.command()
@handle_errors
def entry(
    directory: Path = typer.Argument(..., help="The rebuilder directory."),
    index: int = typer.Argument(..., min=0, help="Log index of the release's provenance."),
    no_log: bool = typer.Option(False, "--no-log", help="Sign the verdict but do not log it."),
    again: bool = typer.Option(
        False, "--again", help="Rebuild even if a verdict on this entry is already logged."
    ),
) -> None:
    """Rebuild one logged release, compare every artifact, sign and log the verdict.

    Exit status 0 when the release was reproduced (PASSED), 1 when it was not.
    The verdict is recorded in the rebuilder's queue, as `watch` would.
    """
    rebuilder = Rebuilder(directory)
    queue = RebuildQueue(directory / "state")
    try:
        known = queue.row(index)
    finally:
        queue.close()
    if known is not None and known.vsa_index is not None and not again:
        fail(
            f"entry {index} already has a logged verdict ({known.status}, log entry "
            f"{known.vsa_index}); give --again to rebuild it once more"
        )
    with err.status("starting", spinner="dots") as status:
        outcome = rebuilder.rebuild_index(index, step=step_reporter(status), submit=not no_log)
    if not no_log:
        queue = RebuildQueue(directory / "state")
        try:
            queue.record_outcome(
                index,
                outcome.product,
                outcome.version,
                outcome.status,
                outcome.reason,
                outcome.vsa_index,
            )
        finally:
            queue.close()
    out.print(f"{outcome.product} {outcome.version}: {outcome.status} ({outcome.summary.result})")
    out.print(f"reason: {outcome.reason}", soft_wrap=True, markup=False)
    for check in outcome.summary.checks:
        mark = "same" if check.reproduced else "MISSING" if check.rebuilt is None else "DIFFERS"
        out.print(f"  {mark:8} {check.name}", soft_wrap=True)
    for difference in outcome.differences:
        for line in difference.lines():
            out.print(f"  {line}", soft_wrap=True, markup=False)
    out.print(f"verdict: {outcome.results / 'vsa.dsse.json'}", soft_wrap=True)
    if (outcome.results / "report.txt").is_file():
        out.print(f"report:  {outcome.results / 'report.txt'}", soft_wrap=True)
    if outcome.vsa_index is not None:
        out.print(f"logged:  entry {outcome.vsa_index}")
    if outcome.status != GOOD:
        raise typer.Exit(1)


@app.command()
@handle_errors
def watch(
    directory: Path = typer.Argument(..., help="The rebuilder directory."),
    interval: float = typer.Option(30.0, "--interval", help="Seconds between checks of the log."),
    once: bool = typer.Option(False, "--once", help="Rebuild what is new, then exit."),
    listen: str | None = typer.Option(
        None, "--listen", help="Also serve the status API (rebuilderd-style JSON) on HOST:PORT."
    ),
) -> None:
    """Follow the release log and rebuild every new release; restart-safe."""
    rebuilder = Rebuilder(directory)
    server = None
    if listen:
        from overt.web.rebuild_api import create_rebuilder_app
        from overt.web.server import BackgroundServer

        host, port = parse_listen(listen)
        server = BackgroundServer(create_rebuilder_app(directory), host, port)
        err.print(f"status at {server.start()}/api/v0/pkgs/list")
    with Watcher(rebuilder) as watcher:
        try:
            if once:
                done = watcher.run_once(_say)
                for message in done.errors or []:
                    err.print(f"[yellow]not done:[/] {message}", markup=True, soft_wrap=True)
            else:
                err.print(f"watching {rebuilder.log} every {interval:g} s (Ctrl-C to stop)")
                watcher.run(interval, threading.Event(), _say)
        except KeyboardInterrupt:
            err.print("stopped; the next start resumes where this one left off")
        finally:
            if server is not None:
                server.stop()


@app.command()
@handle_errors
def status(
    directory: Path = typer.Argument(..., help="The rebuilder directory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show every release the rebuilder has seen and its verdict."""
    Rebuilder(directory)
    queue = RebuildQueue(directory / "state")
    try:
        rows = queue.rows()
        scanned = queue.scanned()
    finally:
        queue.close()
    if as_json:
        print(json.dumps({"scanned": scanned, "releases": [r.to_json() for r in rows]}, indent=2))
        return
    table = Table("entry", "release", "status", "verdict logged", "reason")
    for row in rows:
        style = STATUS_STYLE.get(row.status, "")
        table.add_row(
            str(row.index),
            f"{row.product} {row.version}",
            f"[{style}]{row.status}[/]" if style else row.status,
            "" if row.vsa_index is None else f"entry {row.vsa_index}",
            row.reason,
        )
    out.print(table)
    out.print(f"log scanned: its first {scanned} entries")


@app.command()
@handle_errors
def serve(
    directory: Path = typer.Argument(..., help="The rebuilder directory."),
    listen: str = typer.Option("127.0.0.1:8090", "--listen", help="HOST:PORT to listen on."),
) -> None:
    """Serve the rebuilder's status, verdicts and difference reports over HTTP."""
    from overt.web.rebuild_api import create_rebuilder_app

    Rebuilder(directory)
    host, port = parse_listen(listen)
    serve_forever(create_rebuilder_app(directory), host, port, f"rebuilder {directory}")

"""The `overt` command: one sub-command group per part of the system."""

from __future__ import annotations

import typer

from overt import __version__
from overt.cli import (
    conveyor,
    db,
    demo,
    keys,
    log,
    monitor,
    note,
    policy,
    rebuild,
    review,
    rules,
    tlog,
    updates,
    vault,
    witness,
)

app = typer.Typer(
    name="overt",
    help="Overt: prove software integrity instead of asking to be trusted.\n\n"
    "Exit codes: 0 ok, 1 verification failed (reason on stderr), 2 bad input.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(keys.app, name="keys")
app.add_typer(note.app, name="note")
app.add_typer(tlog.app, name="tlog")
app.add_typer(log.app, name="log")
app.add_typer(witness.app, name="witness")
app.add_typer(monitor.app, name="monitor")
app.add_typer(conveyor.app, name="conveyor")
app.add_typer(rebuild.app, name="rebuild")
app.add_typer(rules.app, name="rules")
app.add_typer(review.app, name="review")
app.add_typer(policy.app, name="policy")
app.add_typer(updates.app, name="updates")
app.command("verify")(policy.verify)
app.command("update")(updates.update)
app.add_typer(vault.app, name="vault")
app.add_typer(vault.access_app, name="access")
app.add_typer(db.app, name="db")
app.command("demo")(demo.demo)


def _version(value: bool) -> None:
    if value:
        print(f"overt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Overt: prove software integrity instead of asking to be trusted."""


def main() -> None:
    app()

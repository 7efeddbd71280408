"""`overt conveyor`: build releases reproducibly and log their SLSA provenance."""

from __future__ import annotations

from pathlib import Path

import typer

from overt.cli.common import (
    err,
    fail,
    handle_errors,
    out,
    read_input,
    step_reporter,
    vkey_argument,
)
from overt.conveyor.conveyor import Conveyor, init_conveyor, publish
from overt.conveyor.provenance import Provenance
from overt.conveyor.transition import move_conveyor
from overt.crypto.dsse import Envelope, verify_envelope
from overt.crypto.intoto import PAYLOAD_TYPE, Statement
from overt.crypto.keys import ed25519_verifier

app = typer.Typer(
    help="The vendor's build conveyor: build from an exact source, sign provenance, log it.",
    no_args_is_help=True,
)


def read_token(token_file: Path | None) -> str | None:
    if token_file is None:
        return None
    return read_input(token_file, "write token").decode().strip()


@app.command()
@handle_errors
def init(
    directory: Path = typer.Argument(..., help="New, empty directory for the conveyor."),
    name: str = typer.Option(..., "--name", help="Name of the conveyor's signing key."),
    builder_id: str = typer.Option(
        ..., "--builder-id", help="URI naming this conveyor (SLSA runDetails.builder.id)."
    ),
    jurisdiction: str | None = typer.Option(
        None, "--jurisdiction", help="Where it runs, an ISO 3166 code like CH (in provenance)."
    ),
) -> None:
    """Create a conveyor: its signing key and configuration. Prints its verifier key."""
    out.print(init_conveyor(directory, name, builder_id, jurisdiction), soft_wrap=True)


@app.command()
@handle_errors
def move(
    old: Path = typer.Argument(..., help="The conveyor directory being retired."),
    new: Path = typer.Option(..., "--to", help="New, empty directory for the moved conveyor."),
    name: str = typer.Option(..., "--name", help="Name of the new conveyor's signing key."),
    builder_id: str = typer.Option(..., "--builder-id", help="URI naming the new conveyor."),
    jurisdiction: str = typer.Option(
        ..., "--jurisdiction", help="Where the new conveyor runs (ISO 3166 code, e.g. CH)."
    ),
    log: str = typer.Option(..., "--log", help="The release log: a log directory or URL."),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="The log's write token, when --log is a URL."
    ),
) -> None:
    """Move the conveyor: a new key in the new jurisdiction, the old key retired, both logged.

    Prints what customers add to their trust policy to follow the move.
    """
    moved = move_conveyor(old, new, name, builder_id, jurisdiction, log, read_token(token_file))
    t = moved.transition
    out.print(f"new conveyor key ({t.new_jurisdiction}): {t.new_key}", soft_wrap=True)
    out.print(f"retired key ({t.retired_jurisdiction or '?'}): {t.retired_key}", soft_wrap=True)
    out.print(f"transition logged as entry {moved.log_index}; end of the old key {t.end}")
    out.print("\nFor customers' policies:\n" + moved.policy_snippet(), markup=False, soft_wrap=True)


@app.command()
@handle_errors
def build(
    project: Path = typer.Argument(..., help="The project directory holding the recipe."),
    conveyor: Path = typer.Option(..., "--conveyor", help="The conveyor directory."),
    commit: str | None = typer.Option(
        None, "--commit", help="Commit to build (default HEAD); never the working copy."
    ),
    log: str | None = typer.Option(
        None, "--log", help="Release log to add the provenance to: a log directory or URL."
    ),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="The log's write token, when --log is a URL."
    ),
) -> None:
    """Build a release from the exact committed source and sign its SLSA provenance.

    The source is exported from the commit (untracked and uncommitted files are
    left out), built with a normalised environment and the recipe's pinned
    toolchain, and the release lands in CONVEYOR/releases/NAME/VERSION/.
    """
    engine = Conveyor(conveyor)
    with err.status("starting", spinner="dots") as status:
        release = engine.build(
            project,
            commit=commit,
            log=log,
            token=read_token(token_file),
            step=step_reporter(status),
        )
    if release.uncommitted:
        err.print(
            "[yellow]note:[/] the working copy has uncommitted changes; they are not in this build",
            markup=True,
        )
    recipe = release.provenance.recipe
    source = release.provenance.source
    out.print(f"built {recipe.name} {recipe.version}", soft_wrap=True)
    out.print(f"source:     {source.uri} {source.commit or ''}".rstrip(), soft_wrap=True)
    out.print(f"tree:       {source.digest}")
    for artifact in release.artifacts:
        out.print(f"artifact:   {artifact.sha256}  {artifact.name}", soft_wrap=True)
    out.print(f"provenance: {release.envelope_path}", soft_wrap=True)
    if release.log_index is not None:
        out.print(f"logged:     entry {release.log_index} of {log}", soft_wrap=True)


@app.command("publish")
@handle_errors
def publish_release(
    release: Path = typer.Argument(
        ..., help="A release directory (CONVEYOR/releases/NAME/VERSION)."
    ),
    log: str = typer.Option(..., "--log", help="The release log: a log directory or URL."),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="The log's write token, when --log is a URL."
    ),
) -> None:
    """Add a built release's provenance to the log (when the build could not log it)."""
    index = publish(release, log, read_token(token_file))
    out.print(f"logged:     entry {index} of {log}", soft_wrap=True)


@app.command()
@handle_errors
def inspect(
    envelope_file: Path = typer.Argument(..., help="A provenance envelope (provenance.dsse.json)."),
    key: list[str] = typer.Option(
        [], "--key", help="A conveyor verifier key (or file) to check the signature against."
    ),
) -> None:
    """Explain a provenance envelope; with --key, exit 1 unless that key signed it."""
    envelope = Envelope.from_bytes(read_input(envelope_file, "envelope"))
    provenance = Provenance.from_statement(Statement.from_envelope(envelope))
    if key:
        signers = verify_envelope(
            envelope, [ed25519_verifier(vkey_argument(k)) for k in key], payload_type=PAYLOAD_TYPE
        )
        out.print(
            f"signature:  valid, by {', '.join(str(s.vkey) for s in signers)}", soft_wrap=True
        )
    elif not envelope.signatures:
        fail("the envelope carries no signature")
    recipe, source = provenance.recipe, provenance.source
    out.print(f"release:    {recipe.name} {recipe.version}", soft_wrap=True)
    out.print(f"builder:    {provenance.builder_id}", soft_wrap=True)
    out.print(f"built:      {provenance.started_on} .. {provenance.finished_on}")
    out.print(f"source:     {source.uri} {source.commit or ''}".rstrip(), soft_wrap=True)
    out.print(f"tree:       {source.digest}")
    for command in recipe.commands:
        out.print(f"command:    {command}", soft_wrap=True, markup=False)
    for dep in provenance.toolchain:
        out.print(f"toolchain:  {dep.get('uri', dep.get('name'))}", soft_wrap=True)
    for subject in provenance.subjects:
        out.print(f"artifact:   {subject.digest['sha256']}  {subject.name}", soft_wrap=True)

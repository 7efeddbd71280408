"""`overt review`: export a release's exact source, read what changed, log a signed review."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from overt.cli.common import handle_errors, out, vkey_argument
from overt.cli.conveyor import read_token
from overt.review.release import ReleaseLog

app = typer.Typer(
    help="Source review: export a logged release's source, diff it, log a signed review.",
    no_args_is_help=True,
)

LOG_HELP = "The release log: a log directory or its URL."
LOG_KEY_HELP = "The release log's verifier key (or a file holding it)."
CONVEYOR_HELP = "A conveyor key whose releases you review (repeatable)."


def _open(log: str, log_key: str, conveyor_keys: list[str]) -> ReleaseLog:
    return ReleaseLog(log, vkey_argument(log_key), [vkey_argument(k) for k in conveyor_keys])


@app.command()
@handle_errors
def export(
    log: str = typer.Argument(..., help=LOG_HELP),
    index: int = typer.Argument(..., min=0, help="Log index of the release's provenance."),
    log_key: str = typer.Option(..., "--log-key", help=LOG_KEY_HELP),
    conveyor_keys: list[str] = typer.Option(..., "--conveyor-key", help=CONVEYOR_HELP),
    dest: Path = typer.Option(..., "--out", help="New (or empty) directory for the source."),
) -> None:
    """Export the exact source tree a logged release was built from, checked against its digest.

    Exit 1 when the source differs from the one recorded (nothing is left in --out).
    """
    from overt.review.record import export_release

    release_log = _open(log, log_key, conveyor_keys)
    release = export_release(release_log, index, dest)
    out.print(
        f"exported the source of {release.describe()} to {dest}\n"
        f"tree digest {release.provenance.source.digest} (matches the provenance)",
        soft_wrap=True,
        markup=False,
    )


@app.command()
@handle_errors
def delta(
    log: str = typer.Argument(..., help=LOG_HELP),
    index: int = typer.Argument(..., min=0, help="Log index of the release's provenance."),
    log_key: str = typer.Option(..., "--log-key", help=LOG_KEY_HELP),
    conveyor_keys: list[str] = typer.Option(..., "--conveyor-key", help=CONVEYOR_HELP),
    base: int | None = typer.Option(
        None,
        "--base",
        min=0,
        help="Diff against this earlier release (default: the last one "
        "of the same product with an approved review).",
    ),
    reviewer_keys: list[str] = typer.Option(
        [], "--reviewer-key", help="Only reviews by this key make a release the base (repeatable)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the delta as JSON."),
    report: Path | None = typer.Option(None, "--out", help="Write the report to FILE instead."),
) -> None:
    """What changed since the last reviewed release: files added, removed, changed, with diffs."""
    from overt.review.record import release_delta

    release_log = _open(log, log_key, conveyor_keys)
    found, _, _ = release_delta(
        release_log, index, base, [vkey_argument(k) for k in reviewer_keys] or None
    )
    text = json.dumps(found.to_json(), indent=2) + "\n" if as_json else found.text()
    if report is not None:
        report.write_text(text, encoding="utf-8")
        counts = found.counts()
        out.print(
            f"{counts['added']} added, {counts['removed']} removed, {counts['changed']} changed; "
            f"report written to {report}",
            soft_wrap=True,
            markup=False,
        )
    else:
        typer.echo(text, nl=False)


@app.command()
@handle_errors
def record(
    log: str = typer.Argument(..., help=LOG_HELP),
    index: int = typer.Argument(..., min=0, help="Log index of the release's provenance."),
    log_key: str = typer.Option(..., "--log-key", help=LOG_KEY_HELP),
    conveyor_keys: list[str] = typer.Option(..., "--conveyor-key", help=CONVEYOR_HELP),
    key: Path = typer.Option(..., "--key", help="The reviewer's private key file."),
    findings_file: Path = typer.Option(
        ..., "--findings", help="The findings file (TOML, or JSON if it ends in .json)."
    ),
    tree: Path | None = typer.Option(
        None, "--tree", help="The source directory you reviewed (default: export it again)."
    ),
    base: int | None = typer.Option(
        None, "--base", min=0, help="The earlier release the review was diffed against."
    ),
    no_log: bool = typer.Option(False, "--no-log", help="Sign the review but do not log it."),
    envelope_out: Path | None = typer.Option(
        None, "--out", help="Also write the signed review (DSSE envelope) to FILE."
    ),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="The log's write token, when LOG is a URL."
    ),
) -> None:
    """Sign your verdict and findings about a release's source and add them to the log.

    Exit 1 when the reviewed tree is not the release's source.
    """
    from overt.crypto.keyfile import read_private_key
    from overt.review.record import record_review
    from overt.review.statement import Findings, count_by_severity

    findings = Findings.load(findings_file)
    signer = read_private_key(key)
    release_log = _open(log, log_key, conveyor_keys)
    done = record_review(
        release_log,
        index,
        findings,
        signer,
        tree=tree,
        base_index=base,
        submit=not no_log,
        token=read_token(token_file),
    )
    if envelope_out is not None:
        envelope_out.write_bytes(done.envelope.to_bytes())
    counts = ", ".join(f"{n} {s}" for s, n in count_by_severity(findings.findings).items() if n)
    where = f"logged as entry {done.log_index}" if done.log_index is not None else "not logged"
    out.print(
        f"{findings.verdict} ({findings.scope}) {done.release.describe()}"
        + (f", diffed against {done.base.version}" if done.base is not None else "")
        + f"; {len(findings.findings)} finding(s)"
        + (f" ({counts})" if counts else "")
        + f"; {where}",
        soft_wrap=True,
        markup=False,
    )

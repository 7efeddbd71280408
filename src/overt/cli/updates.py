"""`overt updates` (the vendor's TUF repository) and `overt update` (the customer's client)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer

from overt.cli.common import (
    EXIT_VERIFY_FAILED,
    err,
    fail,
    handle_errors,
    out,
    step_reporter,
    vkey_argument,
)
from overt.cli.policy import print_decision
from overt.crypto.keys import ed25519_verifier
from overt.durable import atomic_write
from overt.errors import MalformedError
from overt.log.remote import default_state_dir, open_source
from overt.policy.bundle import assemble_bundle, index_attestations
from overt.policy.trust import load_policy
from overt.tlog.client import LogClient
from overt.updates.client import UpdateClient, UpdateError
from overt.updates.publish import RuleGate, publish_releases
from overt.updates.repository import CHANNEL_ROLES, TOP_ROLES, Repository, init_repository

app = typer.Typer(
    help="The vendor's update channel: a TUF repository of logged releases with their bundles.",
    no_args_is_help=True,
)

KEYS_HELP = "Directory of the repository's signing keys (kept apart from what is served)."


def _log_client(log: str, key: str | None) -> LogClient:
    source = open_source(log)
    vkey = vkey_argument(key) if key else source.vkey
    if vkey is None:
        raise MalformedError(f"{log}: give the log's verifier key with --log-key")
    return LogClient(source.fetch, log_key=ed25519_verifier(vkey))


@app.command()
@handle_errors
def init(
    repo: Path = typer.Argument(..., help="New directory to serve as the TUF repository."),
    keys: Path = typer.Option(..., "--keys", help=KEYS_HELP),
) -> None:
    """Create the repository: keys for every role and version 1 of its metadata.

    Give customers REPO/metadata/1.root.json (out of band): it is the root of trust
    their policy names in \\[updates] root.
    """
    digest = init_repository(repo, keys)
    out.print(f"repository created in {repo}; keys in {keys} (keep them offline)", soft_wrap=True)
    out.print(
        f"initial root: {repo / 'metadata' / '1.root.json'} (sha256 {digest})", soft_wrap=True
    )


@app.command()
@handle_errors
def publish(
    repo: Path = typer.Argument(..., help="The TUF repository."),
    releases: list[Path] = typer.Argument(..., help="Conveyor release directories to publish."),
    keys: Path = typer.Option(..., "--keys", help=KEYS_HELP),
    log: str = typer.Option(..., "--log", help="The release log (directory or URL)."),
    log_key: str | None = typer.Option(None, "--log-key", help="The log's verifier key."),
    channel: str = typer.Option("products", "--channel", help="products or rules."),
    conveyor_keys: list[str] = typer.Option(
        [], "--conveyor-key", help="Rules channel: a conveyor key whose rule-set statements count."
    ),
    approvers: list[str] = typer.Option(
        [], "--approver", help="Rules channel: a supervisor key whose rule approvals count."
    ),
) -> None:
    """Publish logged releases: artifacts and bundles as targets, new snapshot and timestamp.

    A rule set (--channel rules) is published only if its rule-set statement is logged and
    every flagged rule is approved by an --approver; otherwise nothing is published and the
    held-back rules are listed (exit 1).
    """
    if channel not in CHANNEL_ROLES:
        raise MalformedError(f"--channel must be one of {', '.join(CHANNEL_ROLES)}")
    gate = None
    if channel == "rules":
        if not conveyor_keys:
            raise MalformedError("--channel rules needs --conveyor-key (whose statements count)")
        gate = RuleGate(
            [ed25519_verifier(vkey_argument(k)) for k in conveyor_keys],
            [ed25519_verifier(vkey_argument(k)) for k in approvers],
        )
    repository = Repository(repo, keys)
    with err.status("publishing", spinner="dots") as status:
        targets = publish_releases(
            repository,
            _log_client(log, log_key),
            releases,
            channel,
            step_reporter(status),
            gate,
        )
    for target in targets:
        out.print(f"published {target}", soft_wrap=True)


@app.command()
@handle_errors
def bundle(
    log: str = typer.Argument(..., help="The release log (directory or URL)."),
    index: int = typer.Argument(..., min=0, help="Log index of the release's provenance."),
    log_key: str | None = typer.Option(None, "--log-key", help="The log's verifier key."),
    out_file: Path = typer.Option(..., "--out", "-o", help="Where to write the bundle."),
) -> None:
    """Write the bundle for one release: provenance, verdicts and reviews with their proofs."""
    client = _log_client(log, log_key)
    client.update()
    made = assemble_bundle(client, index, index_attestations(client.entries()))
    atomic_write(out_file, made.to_bytes())
    out.print(f"wrote {out_file}: provenance and {len(made.attestations)} attestation(s)")


@app.command()
@handle_errors
def refresh(
    repo: Path = typer.Argument(..., help="The TUF repository."),
    keys: Path = typer.Option(..., "--keys", help=KEYS_HELP),
) -> None:
    """Re-sign the timestamp (and other online roles past half their life); run it hourly.

    The timestamp expires after a day by default: a repository whose timestamp
    expired is refused by every client (freeze protection).
    """
    repository = Repository(repo, keys)
    version = repository.refresh()
    out.print(f"timestamp version {version} signed")
    left = repository.root_expires() - datetime.now(UTC)
    if left < timedelta(days=30):
        err.print(
            f"[yellow]warning:[/] the root expires in {left.days} day(s); sign a new root "
            "with the offline root key ('overt updates rotate --role root')",
            markup=True,
        )


@app.command()
@handle_errors
def rotate(
    repo: Path = typer.Argument(..., help="The TUF repository."),
    keys: Path = typer.Option(..., "--keys", help=KEYS_HELP),
    role: str = typer.Option(..., "--role", help=", ".join((*TOP_ROLES, *CHANNEL_ROLES))),
) -> None:
    """Replace a role's key; the old key moves to KEYS/retired/ and stops being trusted."""
    keyid = Repository(repo, keys).rotate(role)
    out.print(f"{role} key rotated; new key id {keyid}")


@app.command()
@handle_errors
def status(
    repo: Path = typer.Argument(..., help="The TUF repository."),
) -> None:
    """Show each role's version and expiry, and what the index offers."""
    repository = Repository(repo, Path("/nonexistent"))
    for role in (*TOP_ROLES, *CHANNEL_ROLES):
        md = repository.load(role)
        expires = f"{md.signed.expires:%Y-%m-%d %H:%M} UTC"
        out.print(f"{role:10} version {md.signed.version:4}  expires {expires}")
    out.print(json.dumps(repository.index(), indent=1, sort_keys=True), soft_wrap=True)


@handle_errors
def update(
    policy_file: Path = typer.Option(..., "--policy", help="The customer's trust policy."),
    repo: str | None = typer.Option(
        None, "--repo", help="The repository URL (default: the policy's \\[updates] url)."
    ),
    install_dir: Path = typer.Option(..., "--dir", help="Where accepted updates are installed."),
    state: Path | None = typer.Option(
        None, "--state", help="The client's state (TUF metadata, downloads, refusals)."
    ),
    no_gossip: bool = typer.Option(False, "--no-gossip", help="Skip the checkpoint gossip check."),
) -> None:
    """Update from a TUF repository, installing only what the policy accepts.

    Exit status 0 when everything offered was installed or already current, 1 when
    something was refused (the reasons are printed and kept in STATE/refusals.jsonl).
    """
    policy = load_policy(policy_file)
    url = repo or policy.updates_url
    if not url:
        raise MalformedError("give --repo or set [updates] url in the policy")
    state_dir = state or default_state_dir().parent / "updates"
    client = UpdateClient(policy, url, install_dir, state_dir, gossip=not no_gossip)
    try:
        with err.status("updating", spinner="dots") as status_line:
            report = client.update(step_reporter(status_line))
    except UpdateError as exc:
        # TUF refused the channel (expired, rolled back, badly signed): a refusal, recorded.
        fail(str(exc), EXIT_VERIFY_FAILED)
    for outcome in report.outcomes:
        label = f"{outcome.channel}/{outcome.product} {outcome.version}"
        if outcome.status == "installed":
            out.print(f"[green]installed[/] {label}: {', '.join(outcome.files)}", soft_wrap=True)
        elif outcome.status == "current":
            out.print(f"up to date {label}", soft_wrap=True)
        else:
            out.print(f"[bold red]refused[/] {label}: {outcome.reason}", soft_wrap=True)
        for decision in outcome.decisions:
            print_decision(decision)
    if report.refused:
        raise typer.Exit(EXIT_VERIFY_FAILED)

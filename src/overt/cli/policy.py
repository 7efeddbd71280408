"""`overt policy check` and `overt verify`: the customer's policy and the one verifier."""

from __future__ import annotations

import hashlib
from pathlib import Path

import typer

from overt.cli.common import EXIT_VERIFY_FAILED, err, handle_errors, out, read_input
from overt.log.remote import FileMemory, default_state_dir, http_fetcher
from overt.policy.bundle import Bundle
from overt.policy.gossip import consistency_prover
from overt.policy.trust import load_policy
from overt.policy.verify import Decision, verify_release

app = typer.Typer(help="The customer's trust policy.", no_args_is_help=True)

STATE_HELP = (
    "Where the newest verified checkpoint is remembered (gossip); "
    "default: the user's state directory."
)


@app.command()
@handle_errors
def check(policy_file: Path = typer.Argument(..., help="A trust policy (TOML).")) -> None:
    """Validate a policy and explain, in plain words, what it accepts."""
    policy = load_policy(policy_file)
    out.print(f"{policy_file}: valid. It requires that:", soft_wrap=True)
    for line in policy.explain():
        out.print(f"  - {line}", soft_wrap=True, markup=False)


def print_decision(decision: Decision) -> None:
    for check_ in decision.checks:
        mark = "[green]ok[/]  " if check_.passed else "[bold red]FAIL[/]"
        out.print(f"  {mark} {check_.name}: {check_.detail}", soft_wrap=True, highlight=False)


@handle_errors
def verify(
    artifact: Path = typer.Argument(..., help="The file to check."),
    bundle_file: Path = typer.Option(..., "--bundle", help="The release's bundle (JSON)."),
    policy_file: Path = typer.Option(..., "--policy", help="The customer's trust policy."),
    channel: str = typer.Option(
        "products", "--channel", help="Whose rules apply: products, rules."
    ),
    state: Path | None = typer.Option(None, "--state", help=STATE_HELP),
    no_gossip: bool = typer.Option(
        False, "--no-gossip", help="Do not compare with the checkpoint seen before (offline use)."
    ),
) -> None:
    """Verify an artifact offline against its bundle and a policy; prints every check.

    Exit status 0 accepted, 1 refused (the first failed check on stderr), 2 malformed input.
    """
    policy = load_policy(policy_file)
    policy.channel(channel)  # an unknown --channel is bad input, not a refusal
    bundle = Bundle.from_bytes(read_input(bundle_file, "bundle"))
    data = read_input(artifact, "artifact")
    memory = None if no_gossip else FileMemory(state or default_state_dir())
    prover = consistency_prover(http_fetcher(policy.log_url)) if policy.log_url else None
    decision = verify_release(
        artifact.name,
        hashlib.sha256(data).hexdigest(),
        bundle,
        policy,
        channel,
        memory=memory,
        prover=prover,
    )
    out.print(f"{artifact}:", soft_wrap=True)
    print_decision(decision)
    if not decision.accepted:
        err.print(f"[bold red]refused:[/] {decision.reason}", soft_wrap=True)
        raise typer.Exit(EXIT_VERIFY_FAILED)
    out.print("[green]accepted[/]")

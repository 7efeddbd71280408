"""`overt demo`: build the sample deployment, explain it, and serve it."""

from __future__ import annotations

import signal
from pathlib import Path

import typer

from overt.cli.common import handle_errors, out, parse_listen
from overt.demo.build import build


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@handle_errors
def demo(
    directory: Path = typer.Option(
        Path("demo"),
        "--dir",
        "-d",
        help="Directory for the deployment (replaced if it holds an earlier demo).",
    ),
    serve: bool = typer.Option(
        True, "--serve/--no-serve", help="Keep serving the deployment over HTTP until Ctrl-C."
    ),
    listen: str = typer.Option(
        "127.0.0.1:8080",
        "--listen",
        help="Address to serve on. With --no-serve a free port is used unless one is given.",
    ),
) -> None:
    """Build a complete sample Overt deployment in a directory and explain each step.

    It creates a release log and starts its server on localhost, adds sample
    release records over HTTP, re-reads and verifies them as a client would,
    has two witnesses cosign the checkpoint, writes a customer trust policy
    and an offline proof, verifies it (and shows a tampered entry refused).
    The build conveyor builds a sample product from a commit and logs its
    provenance; a supervisor's rebuilder rebuilds it and logs its verdict.
    The data vault routes, logs and audits customer data.
    Then it keeps serving until Ctrl-C.
    """
    host, port = parse_listen(listen)
    if not serve and listen == "127.0.0.1:8080":
        port = 0

    def say(step: str, message: str) -> None:
        out.print(f"[bold cyan]{step:>10}[/]  {message}", soft_wrap=True)

    out.print(f"[bold]Building the Overt demo in {directory}/[/]")
    result = build(directory, say, host, port)
    rel = Path(directory)
    out.print()
    out.print("[bold]Try it yourself[/] (with .venv/bin on your PATH):")
    out.print(
        f"  overt tlog verify-proof {rel / result.proof_file.relative_to(result.root)} "
        f"--policy {rel / result.policy_file.relative_to(result.root)} "
        f"--entry {rel / result.entry_file.relative_to(result.root)}",
        soft_wrap=True,
    )
    out.print(f"  overt log verify {rel}/logs/releases", soft_wrap=True)
    if result.release is not None:
        provenance = result.release.release.envelope_path.relative_to(result.root.resolve())
        out.print(
            f"  overt conveyor inspect {rel / provenance} --key {rel}/conveyor/conveyor.vkey",
            soft_wrap=True,
        )
        out.print(f"  overt rebuild status {rel}/rebuilders/lucerne", soft_wrap=True)
        release = rel / result.release.release.directory.relative_to(result.root.resolve())
        out.print(
            f"  overt verify {release}/hello_overt-1.0.0-py3-none-any.whl --bundle "
            f"{release}/bundle.json --policy {rel}/customer/policy.toml --no-gossip",
            soft_wrap=True,
        )
        out.print(f"  overt policy check {rel}/customer/policy.toml", soft_wrap=True)
    out.print(f"  Layout of {rel}/ is described in docs/demo.md.")
    if not serve:
        result.server.stop()
        return
    base = result.base_url
    site = base.rsplit("/logs/", 1)[0]
    out.print()
    out.print(f"[bold]Dashboard: {site}/[/] (Ctrl-C to stop)")
    out.print(f"  release log at {base}/", soft_wrap=True)
    out.print(f"  curl -s {base}/checkpoint")
    out.print(f"  curl -s {base}/entry/{42}")
    out.print(f"  overt log status {base}  --key {rel}/logs/releases/log.vkey", soft_wrap=True)
    if result.release is not None:
        out.print(f"  curl -s {site}/rebuilders/lucerne/api/v0/pkgs/list", soft_wrap=True)
    # Ctrl-C, or SIGTERM from a service manager, stops the demo cleanly.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result.server.wait()
    except KeyboardInterrupt:
        out.print("stopping")
    finally:
        result.server.stop()

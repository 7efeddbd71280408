"""`overt demo`: build the sample deployment, explain it, and serve it."""

from __future__ import annotations

from pathlib import Path

import typer

from overt.cli.common import fail, handle_errors, out
from overt.demo.build import build


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port_s = listen.rpartition(":")
    if not sep or not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        fail(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port_s)


@handle_errors
def demo(
    directory: Path = typer.Option(
        Path("demo"),
        "--dir",
        "-d",
        help="Directory for the deployment (replaced if it holds an earlier demo).",
    ),
    serve: bool = typer.Option(
        True, "--serve/--no-serve", help="Serve the deployment over HTTP until Ctrl-C."
    ),
    listen: str = typer.Option("127.0.0.1:8080", "--listen", help="Address to serve on."),
) -> None:
    """Build a complete sample Overt deployment in a directory and explain each step.

    It creates a release log with sample entries, witnesses that cosign its
    checkpoint, a customer trust policy, and an offline proof that it verifies
    (and shows a tampered entry being refused). Then it serves the log's
    tiles over HTTP so any tlog-tiles client can read them.
    """
    host, port = parse_listen(listen)

    def say(step: str, message: str) -> None:
        out.print(f"[bold cyan]{step:>10}[/]  {message}", soft_wrap=True)

    out.print(f"[bold]Building the Overt demo in {directory}/[/]")
    result = build(directory, say)
    rel = Path(directory)
    out.print()
    out.print("[bold]Try it yourself:[/]")
    out.print(
        f"  overt tlog verify-proof {rel / result.proof_file.relative_to(result.root)} "
        f"--policy {rel / result.policy_file.relative_to(result.root)} "
        f"--entry {rel / result.entry_file.relative_to(result.root)}",
        soft_wrap=True,
    )
    out.print(
        f"  overt note verify --key {rel}/logs/releases/log.vkey "
        f"{rel}/logs/releases/tiles/checkpoint",
        soft_wrap=True,
    )
    out.print(f"  Layout of {rel}/ is described in docs/demo.md.")
    if not serve:
        return
    import uvicorn

    from overt.web.app import create_app

    base = f"http://{host}:{port}"
    out.print()
    out.print(f"[bold]Serving {rel}/ at {base}/[/] (Ctrl-C to stop)")
    out.print(f"  {base}/logs/releases/checkpoint")
    out.print(f"  {base}/logs/releases/tile/0/000")
    uvicorn.run(create_app(directory), host=host, port=port, log_level="warning")

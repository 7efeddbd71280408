"""`overt monitor`: follow logs, check everything, raise alerts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from overt.cli.common import (
    EXIT_VERIFY_FAILED,
    err,
    handle_errors,
    out,
    parse_listen,
    vkey_argument,
)
from overt.monitor.config import MonitoredLog
from overt.monitor.monitor import Monitor, add_monitored_log, init_monitor

app = typer.Typer(
    help="Follow logs: verify every checkpoint and entry, compare with witnesses, alert.",
    no_args_is_help=True,
)


@app.command()
@handle_errors
def init(directory: Path = typer.Argument(..., help="Directory for the monitor's state.")) -> None:
    """Create a monitor directory (monitor.toml and its state database)."""
    init_monitor(directory)
    out.print(f"monitor created in {directory}; add logs with 'overt monitor add-log'")


@app.command("add-log")
@handle_errors
def add_log(
    directory: Path = typer.Argument(..., help="The monitor directory."),
    name: str = typer.Option(..., "--name", help="A short name for the log."),
    url: str = typer.Option(..., "--url", help="The log's URL (or a log/tiles directory)."),
    key: str = typer.Option(..., "--key", help="The log's verifier key, or a file holding it."),
    policy: str = typer.Option(
        "", "--policy", help="A tlog-policy: also require its witness quorum on checkpoints."
    ),
    witnesses: list[str] = typer.Option(
        [], "--witness", help="A witness URL to compare views with (repeatable)."
    ),
) -> None:
    """Follow another log."""
    add_monitored_log(
        directory,
        MonitoredLog(name, url, vkey_argument(key), policy, tuple(witnesses)),
    )
    out.print(f"following {name} at {url}")


@app.command()
@handle_errors
def follow(
    directory: Path = typer.Argument(..., help="The monitor directory."),
    once: bool = typer.Option(
        False, "--once", help="Check each log once; exit 1 if anything raised an alert."
    ),
    interval: float = typer.Option(10.0, "--interval", help="Seconds between rounds."),
    webhook: str | None = typer.Option(None, "--webhook", help="POST each alert as JSON here."),
    listen: str | None = typer.Option(
        None, "--listen", help="Serve /status (JSON) and /metrics (Prometheus) on HOST:PORT."
    ),
) -> None:
    """Check every log, then keep checking every INTERVAL seconds (or once)."""
    monitor = Monitor(directory, webhook)
    server = None
    if listen:
        from overt.web.monitor_api import create_monitor_app
        from overt.web.server import BackgroundServer

        host, port = parse_listen(listen)
        server = BackgroundServer(create_monitor_app(monitor), host, port)
        err.print(f"status at {server.start()}/status, metrics at /metrics")
    try:
        while True:
            alerted = False
            for result in monitor.check_all():
                for alert in result.alerts:
                    err.print(f"[bold red]ALERT[/] {alert.log} {alert.kind}: {alert.message}")
                    alerted = True
                if result.error:
                    err.print(f"[yellow]{result.log}: {result.error}[/]")
                elif result.size is not None:
                    checked = f"{result.new_entries} new entries checked"
                    out.print(f"{result.log}: size {result.size}, {checked}")
            if once:
                if alerted:
                    raise typer.Exit(EXIT_VERIFY_FAILED)
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.stop()
        monitor.close()


@app.command()
@handle_errors
def status(directory: Path = typer.Argument(..., help="The monitor directory.")) -> None:
    """Print what the monitor has seen, as JSON."""
    monitor = Monitor(directory)
    try:
        out.print_json(json.dumps(monitor.status()))
    finally:
        monitor.close()

"""Test helpers: `overt log serve` in a child process, on a free port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

OVERT = [sys.executable, "-m", "overt.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_log_server(log_dir: Path, port: int, ready: str = "/status") -> subprocess.Popen[bytes]:
    """Start `overt log serve LOG_DIR` on `port`; return once GET `ready` answers 200.

    Its stderr is a pipe, read into the error when the server exits before it is ready.
    """
    proc = subprocess.Popen(
        [*OVERT, "log", "serve", str(log_dir), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready}", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise AssertionError(
                f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("server did not start")
        time.sleep(0.05)

"""What every `overt` sub-command shares: input helpers and exit codes.

Exit codes are part of the interface: 0 success, 1 a verification failed (the
reason on stderr), 2 the input was malformed or unusable.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from overt.errors import KeyFileError, MalformedError, OvertError, VerificationError

EXIT_OK = 0
EXIT_VERIFY_FAILED = 1
EXIT_BAD_INPUT = 2

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    prefix = "verification failed" if code == EXIT_VERIFY_FAILED else "error"
    # Escaped: messages quote user input and names like [tool.overt].
    err.print(f"[bold red]{prefix}:[/] {escape(message)}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn Overt's errors into the documented exit codes, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except VerificationError as exc:
            fail(str(exc), EXIT_VERIFY_FAILED)
        except (MalformedError, KeyFileError) as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        except OvertError as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"{where}{exc.strerror or exc}", EXIT_BAD_INPUT)

    return wrapper


def read_input(path: Path | None, what: str) -> bytes:
    """Read FILE, or standard input when FILE is omitted or '-'."""
    if path is None or str(path) == "-":
        if sys.stdin.isatty():
            err.print(f"reading {what} from standard input (end with Ctrl-D)")
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except IsADirectoryError:
        fail(f"{path}: is a directory, expected a {what} file")


def read_text(path: Path | None, what: str) -> str:
    data = read_input(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        fail(f"{path or 'standard input'}: {what} is not valid UTF-8")


def vkey_argument(value: str) -> str:
    """A verifier key given inline, or the path of a file holding one."""
    if "+" not in value:
        path = Path(value)
        if path.is_file():
            return path.read_text(encoding="utf-8").strip()
    return value.strip()


def parse_listen(listen: str) -> tuple[str, int]:
    """A --listen value, HOST:PORT (IPv6 hosts in brackets)."""
    host, sep, port_s = listen.rpartition(":")
    if not sep or not host or not port_s.isdigit() or not 0 <= int(port_s) < 65536:
        fail(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port_s)


def serve_forever(app: Any, host: str, port: int, what: str) -> None:
    """Run an ASGI app in the foreground until Ctrl-C (the `serve` commands)."""
    import uvicorn

    err.print(f"{what} serving at http://{host}:{port}/ (Ctrl-C to stop)", soft_wrap=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def step_reporter(status: Any) -> Callable[[str], None]:
    """Show each step of a long job: on the spinner line, and as a line of its own."""

    def step(message: str) -> None:
        status.update(message)
        err.print(f"  {message}", soft_wrap=True, markup=False)

    return step

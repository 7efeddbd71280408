"""Running a recipe's build commands in a normalised (or deliberately varied) environment.

The conveyor builds with everything a build could pick up from its machine
pinned down: the environment is cleared except an allow-list, with
SOURCE_DATE_EPOCH set to the commit time, TZ=UTC, LC_ALL=C.UTF-8,
PYTHONHASHSEED=0, a HOME of its own and umask 022. A rebuilder runs the same
commands with the aspects the recipe allows varied (build directory, HOME,
time zone, locale, host name, time of day): a build that still gives the
same bytes depends on its source and toolchain only.

Where the operating system allows it (root, or user namespaces), each command
runs in its own mount and UTS namespaces in which the signing keys'
directories are covered by an empty tmpfs: a malicious build step cannot read
the conveyor's or rebuilder's key. This is not a sandbox: the build still runs
as the operator, with the network.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from overt.errors import OvertError

LOG_TAIL_LINES = 20


class BuildError(OvertError):
    """A build command failed or ran out of time; `log_tail` holds its last output."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(
            message + (f"\n--- end of the build log ---\n{log_tail}" if log_tail else "")
        )
        self.log_tail = log_tail


@dataclass(frozen=True)
class Environment:
    """The environment a build runs in."""

    home: Path
    tz: str = "UTC"
    locale: str = "C.UTF-8"
    hostname: str | None = None  # None: the machine's own name
    umask: int = 0o022
    passthrough: Mapping[str, str] = field(default_factory=dict)
    # Directories the build must not read (the signing keys): each is covered
    # by an empty, unreadable tmpfs in the build's own mount namespace.
    hidden: tuple[Path, ...] = ()

    def variables(self, toolchain_bin: Path, date_epoch: int) -> dict[str, str]:
        env = {
            "PATH": f"{toolchain_bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "SOURCE_DATE_EPOCH": str(date_epoch),
            "TZ": self.tz,
            "LC_ALL": self.locale,
            "LANG": self.locale,
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "VIRTUAL_ENV": str(toolchain_bin.parent),
        }
        env.update(self.passthrough)
        return env

    def described(self) -> dict[str, str]:
        """What a VSA or provenance records of this environment."""
        found = {"home": str(self.home), "tz": self.tz, "locale": self.locale}
        found["umask"] = f"{self.umask:04o}"
        if self.hostname is not None:
            found["hostname"] = self.hostname
        found["secretsHidden"] = "yes" if self.hidden and namespaces_available() else "no"
        return found


@functools.cache
def namespaces_available() -> bool:
    """Whether builds can run in their own mount and UTS namespaces (needs privileges)."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    try:
        done = subprocess.run(
            ["unshare", "--mount", "--uts", "true"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


# Runs inside the new namespaces: cover each hidden directory, set the host
# name, then become the build command. Exit 97 marks a failed isolation step.
_ISOLATE = (
    'cmd=$1; host=$2; shift 2; for d in "$@"; do '
    'mount -t tmpfs -o size=4k,mode=000 overt-hidden "$d" || exit 97; done; '
    'if [ -n "$host" ]; then hostname "$host" || exit 97; fi; exec /bin/sh -c "$cmd"'
)


def _argv(command: str, env: Environment) -> list[str]:
    hidden = [str(p) for p in env.hidden if p.is_dir()]
    if not (hidden or env.hostname) or not namespaces_available():
        return ["/bin/sh", "-c", command]
    return [
        "unshare",
        "--mount",
        "--uts",
        "/bin/sh",
        "-c",
        _ISOLATE,
        "overt-build",
        command,
        env.hostname or "",
        *hidden,
    ]


def run_commands(
    commands: Sequence[str],
    cwd: Path,
    variables: Mapping[str, str],
    env: Environment,
    timeout_s: int,
    log: Path,
    on_command: Callable[[int, str], None] | None = None,
) -> None:
    """Run each command with /bin/sh in `cwd`; all must succeed within `timeout_s` in total."""
    deadline = time.monotonic() + timeout_s
    with open(log, "ab") as out:
        for number, command in enumerate(commands, 1):
            if on_command is not None:
                on_command(number, command)
            out.write(f"$ {command}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                _argv(command, env),
                cwd=cwd,
                env=dict(variables),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as a whole
                umask=env.umask,
            )
            try:
                code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise BuildError(
                    f"the build ran out of its {timeout_s} s (build.timeout_seconds) in "
                    f"command {number}: {command}",
                    _tail(log),
                ) from None
            except BaseException:
                _kill_group(proc)
                raise
            if code != 0:
                raise BuildError(
                    f"build command {number} failed with exit status {code}: {command}",
                    _tail(log),
                )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _tail(log: Path) -> str:
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[-LOG_TAIL_LINES:])

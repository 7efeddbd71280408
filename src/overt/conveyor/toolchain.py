"""The pinned toolchain: a Python version and a hash-locked set of build packages.

The lock is a pip requirements file in which every line pins one package with
``==`` and at least one ``--hash=sha256:...`` (pip's hash-checking mode); the
conveyor refuses anything looser, because an unpinned build dependency makes
the build depend on whatever the index serves that day. Packages are
installed, wheels only and without dependency resolution, into a virtual
environment cached under the SHA-256 of the interpreter version and the lock,
so the second build with the same lock installs nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overt.errors import MalformedError, OvertError

INSTALL_TIMEOUT_S = 1800
COMPLETE_MARKER = ".overt-complete"

_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9,._-]+\])?==([A-Za-z0-9.!+_-]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


class ToolchainError(OvertError):
    """The toolchain could not be prepared."""


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...]

    def descriptor(self) -> dict[str, Any]:
        name = re.sub(r"[-_.]+", "-", self.name).lower()  # PEP 503 normalised, as in purl
        return {
            "name": name,
            "uri": f"pkg:pypi/{name}@{self.version}",
            "annotations": {"allowedSha256": list(self.hashes)},
        }


@dataclass(frozen=True)
class Lock:
    path: str  # as named in the recipe
    sha256: str
    pins: tuple[Pin, ...]

    def descriptor(self) -> dict[str, Any]:
        return {"name": "build-lock", "uri": self.path, "digest": {"sha256": self.sha256}}


def parse_lock(data: bytes, where: str) -> Lock:
    """Parse a hash-locked requirements file; errors name the line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError(f"{where}: not UTF-8") from exc
    pins: list[Pin] = []
    seen: set[str] = set()
    logical: list[tuple[int, str]] = []
    pending, first = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not pending:
            first = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            logical.append((first, pending.strip()))
        pending = ""
    if pending.strip():
        logical.append((first, pending.strip()))
    for number, line in logical:
        head, *options = line.split()
        match = _PIN.fullmatch(head)
        if match is None:
            raise MalformedError(
                f"{where} line {number}: {head!r} is not a pinned requirement NAME==VERSION"
            )
        hashes = []
        for option in options:
            hm = _HASH.fullmatch(option)
            if hm is None:
                raise MalformedError(
                    f"{where} line {number}: only --hash=sha256:<64 hex> may follow a "
                    f"requirement, got {option!r}"
                )
            hashes.append(hm.group(1))
        if not hashes:
            raise MalformedError(f"{where} line {number}: {head} has no --hash=sha256:...")
        key = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        if key in seen:
            raise MalformedError(f"{where} line {number}: {match.group(1)} is pinned twice")
        seen.add(key)
        pins.append(Pin(match.group(1), match.group(3), tuple(hashes)))
    return Lock(where, hashlib.sha256(data).hexdigest(), tuple(pins))


def find_python(version: str) -> Path:
    """An interpreter of the recipe's Python version (e.g. "3.11")."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return Path(sys.executable)
    found = shutil.which(f"python{version}")
    if found is None:
        raise ToolchainError(
            f"toolchain.python {version} is not installed here (no python{version} on PATH)"
        )
    return Path(found)


def _python_version(python: Path) -> str:
    try:
        done = subprocess.run(
            [str(python), "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolchainError(f"{python} does not run: {exc}") from exc
    return done.stdout.decode().strip()


@dataclass(frozen=True)
class Toolchain:
    venv: Path
    python_version: str  # full version, e.g. 3.11.7
    lock: Lock | None

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def descriptors(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = [
            {"name": "python", "uri": f"pkg:generic/python@{self.python_version}"}
        ]
        if self.lock is not None:
            found.append(self.lock.descriptor())
            found.extend(pin.descriptor() for pin in self.lock.pins)
        return found


def prepare_toolchain(
    cache: Path, python_version: str, lock: Lock | None, lock_file: Path | None, log: Path
) -> Toolchain:
    """A virtual environment with the locked packages, reused when already built.

    Installation output is appended to `log`. Concurrent builds with the same
    lock wait for each other instead of installing twice.
    """
    python = find_python(python_version)
    full_version = _python_version(python)
    key = hashlib.sha256(
        f"{full_version}\n{lock.sha256 if lock else 'no-lock'}".encode()
    ).hexdigest()[:32]
    venv = cache / key
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{key}.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not (venv / COMPLETE_MARKER).is_file():
            # A venv embeds its own path, so it is built in place; a crash
            # leaves it without the marker and it is rebuilt from scratch.
            shutil.rmtree(venv, ignore_errors=True)
            _run([str(python), "-m", "venv", str(venv)], log, "creating the virtual environment")
            if lock is not None and lock.pins:
                assert lock_file is not None
                _run(
                    [
                        str(venv / "bin" / "python"),
                        "-m",
                        "pip",
                        "install",
                        "--require-hashes",
                        "--no-deps",
                        "--only-binary",
                        ":all:",
                        "--no-input",
                        "--disable-pip-version-check",
                        "-r",
                        str(lock_file),
                    ],
                    log,
                    f"installing the {len(lock.pins)} locked build packages",
                )
            (venv / COMPLETE_MARKER).write_text(f"{full_version}\n")
    return Toolchain(venv, full_version, lock)


def _run(cmd: list[str], log: Path, what: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        try:
            done = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=INSTALL_TIMEOUT_S
            )
        except subprocess.TimeoutExpired as exc:
            raise ToolchainError(f"{what} took longer than {INSTALL_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-5:]
        raise ToolchainError(f"{what} failed (exit {done.returncode}):\n" + "\n".join(tail))

"""One build of an exported source tree: toolchain, commands, artifacts.

Shared by the conveyor (which then signs provenance) and by rebuilders
(which compare), so both run the recipe the same way and differ only in the
environment they are given.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from overt.conveyor.recipe import Recipe
from overt.conveyor.runner import BuildError, Environment, run_commands
from overt.conveyor.source import Source
from overt.conveyor.toolchain import Lock, Toolchain, parse_lock, prepare_toolchain
from overt.errors import MalformedError

Step = Callable[[str], None]


@dataclass(frozen=True)
class Artifact:
    name: str
    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class BuildResult:
    artifacts: tuple[Artifact, ...]
    toolchain: Toolchain
    variables: dict[str, str]
    started: float
    finished: float


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_lock(recipe: Recipe, project: Path) -> tuple[Lock | None, Path | None]:
    if recipe.lock is None:
        return None, None
    path = project / recipe.lock
    if not path.is_file():
        raise MalformedError(f"toolchain.lock: {recipe.lock} is not a file in the source")
    return parse_lock(path.read_bytes(), recipe.lock), path


def collect_artifacts(project: Path, globs: tuple[str, ...]) -> tuple[Artifact, ...]:
    found: dict[str, Artifact] = {}
    for i, pattern in enumerate(globs):
        matches = sorted(p for p in project.glob(pattern) if p.is_file() and not p.is_symlink())
        if not matches:
            raise BuildError(f"artifacts.paths[{i}] {pattern!r} matched no file after the build")
        for path in matches:
            if path.name in found and found[path.name].path != path:
                raise BuildError(f"two artifacts are named {path.name}; artifact names must differ")
            found[path.name] = Artifact(path.name, path, file_sha256(path), path.stat().st_size)
    return tuple(sorted(found.values(), key=lambda a: a.name))


def prepare_build_dir(path: Path, owned: bool) -> None:
    """Make `path` a fresh, empty directory.

    A directory Overt owns (under its work area) is emptied; a fixed path the
    recipe names is never deleted if it exists, since it may hold anything.
    """
    if path.exists():
        if not owned:
            raise BuildError(
                f"build.path {path} already exists: remove it (it may be left over from an "
                "interrupted build) or choose another path"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True)


def run_build(
    recipe: Recipe,
    project: Path,
    source: Source,
    env: Environment,
    cache: Path,
    log: Path,
    step: Step,
) -> BuildResult:
    """Install the toolchain, run the commands in `project`, collect the artifacts."""
    lock, lock_file = read_lock(recipe, project)
    step(
        f"toolchain: Python {recipe.python}"
        + (f", {len(lock.pins)} locked packages" if lock else "")
    )
    toolchain = prepare_toolchain(cache, recipe.python, lock, lock_file, log)
    passthrough = {name: os.environ[name] for name in recipe.env if name in os.environ}
    env = replace(env, passthrough=passthrough)
    variables = env.variables(toolchain.bin, source.date_epoch)
    env.home.mkdir(parents=True, exist_ok=True)
    started = time.time()
    total = len(recipe.commands)
    run_commands(
        recipe.commands,
        project,
        variables,
        env,
        recipe.timeout_s,
        log,
        lambda n, cmd: step(f"build command {n}/{total}: {cmd}"),
    )
    finished = time.time()
    step("collecting artifacts")
    artifacts = collect_artifacts(project, recipe.artifacts)
    return BuildResult(artifacts, toolchain, variables, started, finished)

"""Shared setup for the conveyor and rebuilder tests: git projects, logs, conveyors, rebuilders.

Everything here runs for real: `git` commits with fixed dates, local release
logs, toolchain virtual environments. Creating a virtual environment costs a
few seconds, so each pytest worker keeps two toolchain caches for its whole
session, one for conveyors and one for rebuilders (a rebuild really uses
another path than the build), and the three examples are built and rebuilt
once per worker (`example_world`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from overt.conveyor.conveyor import Conveyor, Release, init_conveyor
from overt.errors import MalformedError
from overt.log.config import LogConfig
from overt.log.log import Log, init_log
from overt.log.submit import add_entries
from overt.rebuild.rebuilder import Outcome, Rebuilder, init_rebuilder

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = PROJECT_ROOT / "examples"

COMMIT_DATE = "2024-01-02T03:04:05+00:00"
COMMIT_EPOCH = int(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp())
LATER_DATE = "2024-02-03T04:05:06+00:00"

LOG_ORIGIN = "example.com/acme/releases"
BUILDER_ID = "https://conveyor.example.com/acme"
REBUILDER_ID = "https://rebuilder.example.org/r1"


# --- git ---------------------------------------------------------------------


def git(repo: Path, *args: str, date: str = COMMIT_DATE) -> str:
    """Run git in `repo` with a fixed identity and date; return its output."""
    env = {
        **os.environ,
        "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_DATE": date,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    done = subprocess.run(
        [
            "git",
            "-c",
            "user.name=Overt Tests",
            "-c",
            "user.email=tests@overt.example",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
            *args,
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"git {' '.join(args)} failed: {done.stderr}"
    return done.stdout.strip()


def commit_all(repo: Path, message: str = "release", date: str = COMMIT_DATE) -> str:
    """Commit every change in `repo`; return the commit id."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message, date=date)
    return git(repo, "rev-parse", "HEAD")


def make_repo(project: Path) -> Path:
    """Turn the directory `project` into a git repository with one commit of all its files."""
    git(project, "init", "-q")
    commit_all(project, "initial")
    return project


def example_repo(name: str, dest: Path) -> Path:
    """A copy of examples/<name> as its own git repository, committed at COMMIT_DATE."""
    shutil.copytree(EXAMPLES / name, dest, ignore=shutil.ignore_patterns("dist", "build"))
    return make_repo(dest)


# --- projects ----------------------------------------------------------------


def recipe_toml(
    name: str = "tiny",
    version: str = "1.0",
    commands: Iterable[str] = ("mkdir -p out", "cp data.txt out/tiny.txt"),
    artifacts: Iterable[str] = ("out/*",),
    python: str = "3.11",
    build: Mapping[str, object] | None = None,
    extra: str = "",
) -> str:
    """The text of an overt.toml (JSON strings and lists are valid TOML)."""
    lines = [
        "[product]",
        f"name = {json.dumps(name)}",
        f"version = {json.dumps(version)}",
        "",
        "[build]",
        f"commands = {json.dumps(list(commands))}",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in (build or {}).items()]
    lines += [
        "",
        "[artifacts]",
        f"paths = {json.dumps(list(artifacts))}",
        "",
        "[toolchain]",
        f"python = {json.dumps(python)}",
        "",
        extra,
    ]
    return "\n".join(lines) + "\n"


def tiny_project(
    dest: Path,
    recipe: str | None = None,
    files: Mapping[str, str] | None = None,
    repo: bool = True,
) -> Path:
    """A small project whose build copies data.txt (by default); a git repository unless not."""
    dest.mkdir(parents=True)
    (dest / "overt.toml").write_text(recipe if recipe is not None else recipe_toml())
    for rel, text in (files if files is not None else {"data.txt": "hello from tiny\n"}).items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text)
    return make_repo(dest) if repo else dest


# --- the parts -----------------------------------------------------------------


_SESSION: dict[str, Path] = {}


def toolchain_caches(factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(conveyor cache, rebuilder cache): shared by every test of this worker's session."""
    if "conveyor" not in _SESSION:
        _SESSION["conveyor"] = factory.mktemp("conveyor-toolchains")
        _SESSION["rebuilder"] = factory.mktemp("rebuilder-toolchains")
    return _SESSION["conveyor"], _SESSION["rebuilder"]


@dataclass
class Stack:
    """A release log, a conveyor building into it and a rebuilder following it."""

    root: Path
    log_dir: Path
    log_vkey: str
    conveyor: Conveyor
    rebuilder_cache: Path
    rebuilder: Rebuilder = field(init=False)

    @property
    def log(self) -> str:
        return str(self.log_dir)

    def build(self, project: Path, commit: str | None = None) -> Release:
        release = self.conveyor.build(project, commit=commit, log=self.log)
        assert release.log_index is not None
        return release

    def add(self, entry: bytes) -> int:
        return add_entries(self.log, [entry]).indexes[0]

    def entry(self, index: int) -> bytes:
        with Log(self.log_dir) as log:
            return log.entry(index)

    def size(self) -> int:
        with Log(self.log_dir) as log:
            return log.checkpoint.size

    def entries(self) -> list[bytes]:
        with Log(self.log_dir) as log:
            return [log.entry(i) for i in range(log.checkpoint.size)]

    def new_rebuilder(
        self,
        root: Path,
        conveyor_keys: list[str] | None = None,
        artifacts: bool = True,
        name: str = "rebuilder.example.org",
    ) -> Rebuilder:
        init_rebuilder(
            root,
            name,
            REBUILDER_ID,
            self.log,
            self.log_vkey,
            conveyor_keys or [self.conveyor.vkey],
            artifacts=str(self.conveyor.releases) if artifacts else None,
        )
        return Rebuilder(root, cache=self.rebuilder_cache)

    def rebuild(self, release: Release, submit: bool = True) -> Outcome:
        assert release.log_index is not None
        return self.rebuilder.rebuild_index(release.log_index, submit=submit)


def make_stack(root: Path, factory: pytest.TempPathFactory, artifacts: bool = True) -> Stack:
    conveyor_cache, rebuilder_cache = toolchain_caches(factory)
    log_vkey = init_log(root / "log", LogConfig(origin=LOG_ORIGIN))
    init_conveyor(root / "conveyor", "conveyor.example.com", BUILDER_ID)
    conveyor = Conveyor(root / "conveyor", cache=conveyor_cache)
    stack = Stack(root, root / "log", log_vkey, conveyor, rebuilder_cache)
    stack.rebuilder = stack.new_rebuilder(root / "rebuilder", artifacts=artifacts)
    return stack


# --- the three examples, built and rebuilt once per worker ---------------------------


@dataclass
class ExampleWorld:
    stack: Stack
    factory: pytest.TempPathFactory
    releases: dict[str, Release] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    repos: dict[str, Path] = field(default_factory=dict)

    def release(self, name: str) -> Release:
        if name not in self.releases:
            repo = example_repo(name, self.stack.root / "src" / name)
            self.repos[name] = repo
            self.releases[name] = self.stack.build(repo)
        return self.releases[name]

    def outcome(self, name: str) -> Outcome:
        if name not in self.outcomes:
            self.outcomes[name] = self.stack.rebuild(self.release(name))
        return self.outcomes[name]


_WORLD: list[ExampleWorld] = []


def example_world(factory: pytest.TempPathFactory) -> ExampleWorld:
    if not _WORLD:
        _WORLD.append(ExampleWorld(make_stack(factory.mktemp("examples"), factory), factory))
    return _WORLD[0]


# --- JSON documents, for parsers that must refuse and never crash ---------------------------


JsonPath = tuple[str | int, ...]
ODD_VALUES: tuple[object, ...] = (None, True, -1, 1.5, "", "../x", [], [1], {}, {"a": 1})


def json_paths(obj: object, prefix: JsonPath = ()) -> Iterator[JsonPath]:
    """The path of every value inside `obj` (not `obj` itself)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield (*prefix, key)
            yield from json_paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield (*prefix, i)
            yield from json_paths(value, (*prefix, i))


def replaced(doc: Any, path: JsonPath, value: object) -> Any:
    """A deep copy of `doc` with the value at `path` replaced."""
    new = copy.deepcopy(doc)
    where = new
    for part in path[:-1]:
        where = where[part]
    where[path[-1]] = value
    return new


def odd_value_refusals(doc: Any, parse: Callable[[Any], object]) -> int:
    """Parse `doc` with each value inside it replaced by each of ODD_VALUES in turn;
    how many `parse` refused with MalformedError. Any other exception (a crash) escapes."""
    refused = 0
    for path in json_paths(doc):
        for value in ODD_VALUES:
            try:
                parse(replaced(doc, path, value))
            except MalformedError:
                refused += 1
    return refused


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_env(path: Path) -> dict[str, str]:
    """The NAME=value lines of an `env` dump."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)

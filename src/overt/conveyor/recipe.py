"""Build recipes: how a project declares that it is built (docs/conveyor.md, "Recipes").

A recipe lives in `overt.toml` at the project's root, or in the
`[tool.overt]` table of its `pyproject.toml`. The same recipe, as JSON, is
recorded in the provenance's `externalParameters`, so a rebuilder rebuilds
from exactly what the conveyor ran, not from a file that may have changed.

Every validation error names the field, e.g. ``overt.toml: build.commands[1]
must be a non-empty string``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from overt.errors import MalformedError

RECIPE_FILE = "overt.toml"
PYPROJECT_FILE = "pyproject.toml"

# Aspects of the environment a rebuilder may vary; a recipe narrows the list
# when its toolchain cannot tolerate one (e.g. a compiler that embeds the path).
VARIATIONS = ("path", "home", "tz", "locale", "hostname", "time")

DEFAULT_TIMEOUT_S = 1800
MAX_TIMEOUT_S = 24 * 3600
# 1980-01-01T00:00:00Z, the earliest time a ZIP archive can record: the
# default SOURCE_DATE_EPOCH for a directory source that names none.
DEFAULT_DATE_EPOCH = 315532800

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_PYTHON = re.compile(r"3\.\d{1,2}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class SourceSpec:
    """Where the source comes from when it is not the recipe's own directory."""

    git: str | None = None  # repository URL or path
    commit: str | None = None  # full commit id; required with `git`
    subdir: str = ""  # project directory inside the repository
    date_epoch: int | None = None  # SOURCE_DATE_EPOCH for a directory source


@dataclass(frozen=True)
class Recipe:
    name: str
    version: str
    commands: tuple[str, ...]
    artifacts: tuple[str, ...]
    python: str
    lock: str | None = None  # path of the hash-locked requirements, inside the project
    timeout_s: int = DEFAULT_TIMEOUT_S
    env: tuple[str, ...] = ()  # extra variables passed through from the caller
    build_path: str | None = None  # fixed absolute build path, when the toolchain needs one
    vary: tuple[str, ...] = VARIATIONS
    source: SourceSpec = field(default_factory=SourceSpec)

    def to_json(self) -> dict[str, Any]:
        """The form recorded in provenance (externalParameters.recipe)."""
        doc: dict[str, Any] = {
            "product": {"name": self.name, "version": self.version},
            "build": {
                "commands": list(self.commands),
                "timeout_seconds": self.timeout_s,
                "env": list(self.env),
                "vary": list(self.vary),
            },
            "artifacts": {"paths": list(self.artifacts)},
            "toolchain": {"python": self.python},
        }
        if self.build_path is not None:
            doc["build"]["path"] = self.build_path
        if self.lock is not None:
            doc["toolchain"]["lock"] = self.lock
        return doc

    @classmethod
    def from_json(cls, doc: Any, where: str = "recipe") -> Recipe:
        return _parse(doc, where, allow_source=False)


def load_recipe(project: Path) -> Recipe:
    """Read the recipe of the project in `project` (overt.toml, else pyproject.toml)."""
    recipe_file = project / RECIPE_FILE
    if recipe_file.is_file():
        return _parse(_read_toml(recipe_file), RECIPE_FILE, allow_source=True)
    pyproject = project / PYPROJECT_FILE
    if pyproject.is_file():
        doc = _read_toml(pyproject)
        tool = doc.get("tool", {})
        if isinstance(tool, dict) and "overt" in tool:
            return _parse(tool["overt"], f"{PYPROJECT_FILE} [tool.overt]", allow_source=True)
    raise MalformedError(
        f"{project}: no build recipe: add {RECIPE_FILE} or a [tool.overt] table to {PYPROJECT_FILE}"
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise MalformedError(f"{path}: not UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise MalformedError(f"{path}: {exc}") from exc


class _Fields:
    """Typed access to a TOML table with errors that name the field."""

    def __init__(self, doc: Any, where: str, prefix: str) -> None:
        if not isinstance(doc, dict):
            raise MalformedError(f"{where}: {prefix or 'the recipe'} must be a table")
        self.doc: Mapping[str, Any] = doc
        self.where = where
        self.prefix = prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def bad(self, key: str, what: str) -> MalformedError:
        return MalformedError(f"{self.where}: {self.name(key)} {what}")

    def table(self, key: str, required: bool = True) -> _Fields:
        if key not in self.doc:
            if required:
                raise self.bad(key, "is missing")
            return _Fields({}, self.where, self.name(key))
        return _Fields(self.doc[key], self.where, self.name(key))

    def string(self, key: str, required: bool = True) -> str | None:
        value = self.doc.get(key)
        if value is None:
            if required:
                raise self.bad(key, "is missing")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.bad(key, "must be a non-empty string")
        return value

    def strings(self, key: str, required: bool = True) -> tuple[str, ...]:
        value = self.doc.get(key)
        if value is None:
            if required:
                raise self.bad(key, "is missing")
            return ()
        if not isinstance(value, list) or (required and not value):
            raise self.bad(key, "must be a non-empty list of strings")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.bad(f"{key}[{i}]", "must be a non-empty string")
        return tuple(value)

    def integer(self, key: str, default: int | None, low: int, high: int) -> int | None:
        value = self.doc.get(key, default)
        if value is None:
            if key in self.doc:  # an explicit null (JSON), not an absent field
                raise self.bad(key, f"must be an integer from {low} to {high}")
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.bad(key, f"must be an integer from {low} to {high}")
        return value

    def unknown(self, known: set[str]) -> None:
        extra = sorted(set(self.doc) - known)
        if extra:
            raise MalformedError(
                f"{self.where}: unknown field {self.name(extra[0])} "
                f"(known: {', '.join(sorted(known))})"
            )


def _relative(path: str, what: str) -> str:
    """A path inside the project: relative, no '..', POSIX separators."""
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or "\\" in path:
        raise MalformedError(f"{what} must be a relative path inside the project, got {path!r}")
    return str(p)


def _parse(doc: Any, where: str, allow_source: bool) -> Recipe:
    top = _Fields(doc, where, "")
    top.unknown(
        {"product", "build", "artifacts", "toolchain"} | ({"source"} if allow_source else set())
    )

    product = top.table("product")
    product.unknown({"name", "version"})
    name = product.string("name")
    version = product.string("version")
    assert name is not None and version is not None
    for key, value in (("name", name), ("version", version)):
        if not _NAME.fullmatch(value):
            raise product.bad(key, "may hold only letters, digits and . _ + - (at most 128)")

    build = top.table("build")
    build.unknown({"commands", "timeout_seconds", "env", "path", "vary"})
    commands = build.strings("commands")
    timeout = build.integer("timeout_seconds", DEFAULT_TIMEOUT_S, 1, MAX_TIMEOUT_S)
    assert timeout is not None
    env = build.strings("env", required=False)
    for i, var in enumerate(env):
        if not _ENV_NAME.fullmatch(var):
            raise build.bad(f"env[{i}]", f"is not an environment variable name: {var!r}")
    build_path = build.string("path", required=False)
    if build_path is not None and not PurePosixPath(build_path).is_absolute():
        raise build.bad("path", "must be an absolute path")
    vary = build.strings("vary", required=False) if "vary" in build.doc else VARIATIONS
    for i, aspect in enumerate(vary):
        if aspect not in VARIATIONS:
            raise build.bad(f"vary[{i}]", f"must be one of {', '.join(VARIATIONS)}")
    if build_path is not None:
        vary = tuple(v for v in vary if v != "path")

    artifacts = top.table("artifacts")
    artifacts.unknown({"paths"})
    globs = tuple(
        _relative(g, f"{where}: artifacts.paths[{i}]")
        for i, g in enumerate(artifacts.strings("paths"))
    )

    toolchain = top.table("toolchain")
    toolchain.unknown({"python", "lock"})
    python = toolchain.string("python")
    assert python is not None
    if not _PYTHON.fullmatch(python):
        raise toolchain.bad("python", f"must be a Python version like 3.11, got {python!r}")
    lock = toolchain.string("lock", required=False)
    if lock is not None:
        lock = _relative(lock, f"{where}: toolchain.lock")

    source = SourceSpec()
    if allow_source and "source" in top.doc:
        source = _parse_source(top.table("source"))

    return Recipe(
        name=name,
        version=version,
        commands=commands,
        artifacts=globs,
        python=python,
        lock=lock,
        timeout_s=timeout,
        env=env,
        build_path=build_path,
        vary=tuple(vary),
        source=source,
    )


def _parse_source(table: _Fields) -> SourceSpec:
    table.unknown({"git", "commit", "subdir", "date_epoch"})
    git = table.string("git", required=False)
    commit = table.string("commit", required=False)
    subdir = table.string("subdir", required=False) or ""
    if subdir:
        subdir = _relative(subdir, f"{table.where}: source.subdir")
    if git is not None and commit is None:
        raise table.bad("commit", "is required with source.git (a full commit id, not a branch)")
    if commit is not None and git is None:
        raise table.bad("git", "is required with source.commit")
    if commit is not None and not _COMMIT.fullmatch(commit):
        raise table.bad("commit", "must be a full lowercase commit id (40 or 64 hex digits)")
    date_epoch = table.integer("date_epoch", None, 0, 2**40)
    return SourceSpec(git=git, commit=commit, subdir=subdir, date_epoch=date_epoch)

"""Build a reproducible detection database from the YARA rules in ``rules/``.

The result is ``<out>/detection-db-<version>.tar.gz``, holding::

    detection-db-<version>/index.json        one entry per rule file: path, size, sha256, rules
    detection-db-<version>/rules/<name>.yar  each rule file, normalised
    detection-db-<version>/ruleset.toml      the manifest (action, notification, audience)

Every input that could differ between two builds of the same commit is pinned down, so that a
rebuild anywhere yields the same bytes:

* rule files are normalised (UTF-8, LF line endings, no trailing whitespace, one final newline);
* files are taken in sorted order, and the archive members are written in sorted order;
* each member's mtime is ``SOURCE_DATE_EPOCH``, its owner 0:0 with empty names, its mode 0644;
* the tar is plain ustar (no pax headers, which could carry extra times);
* the gzip header carries ``SOURCE_DATE_EPOCH`` as its mtime and no file name;
* ``index.json`` is written with sorted keys, fixed separators and ASCII only.

Standard library only: ``python build_db.py --out dist``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PRODUCT = "detection-db"
RULE_SUFFIXES = (".yar", ".yara")
HERE = Path(__file__).resolve().parent

# A rule declaration at the start of a line: `[private] [global] rule NAME [: tags] {`.
# Simple on purpose: it is an index for people, not a YARA parser.
RULE_NAME = re.compile(
    r"^[ \t]*(?:(?:private|global)[ \t]+)*rule[ \t]+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE
)


class BuildError(Exception):
    """The rules or the arguments do not allow a build."""


@dataclass(frozen=True)
class RuleFile:
    """One normalised rule file, as it goes into the archive."""

    path: str  # relative to the rules directory's parent, with "/" separators
    data: bytes
    rules: tuple[str, ...]

    def index_entry(self) -> dict[str, object]:
        """Return this file's entry in ``index.json``."""
        return {
            "path": self.path,
            "rules": list(self.rules),
            "sha256": hashlib.sha256(self.data).hexdigest(),
            "size": len(self.data),
        }


def normalise(raw: bytes, name: str) -> bytes:
    """Return ``raw`` as UTF-8 text with LF endings, no trailing blanks and one final newline."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BuildError(f"{name}: not UTF-8 ({exc})") from exc
    text = text.removeprefix("\ufeff")
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise BuildError(f"{name}: empty rule file")
    return ("\n".join(lines) + "\n").encode("utf-8")


def collect_rules(rules_dir: Path) -> list[RuleFile]:
    """Read, normalise and index every rule file under ``rules_dir``, in sorted order."""
    if not rules_dir.is_dir():
        raise BuildError(f"{rules_dir}: no such directory")
    paths = sorted(
        (p for p in rules_dir.rglob("*") if p.is_file() and p.suffix in RULE_SUFFIXES),
        key=lambda p: p.relative_to(rules_dir).as_posix(),
    )
    if not paths:
        raise BuildError(f"{rules_dir}: no {'/'.join(RULE_SUFFIXES)} files")

    files: list[RuleFile] = []
    seen: dict[str, str] = {}  # rule name -> file declaring it
    for p in paths:
        rel = f"{rules_dir.name}/{p.relative_to(rules_dir).as_posix()}"
        data = normalise(p.read_bytes(), rel)
        names = tuple(RULE_NAME.findall(data.decode("utf-8")))
        if not names:
            raise BuildError(f"{rel}: no `rule NAME` declaration found")
        for n in names:
            if n in seen:
                raise BuildError(f"{rel}: rule {n} is already declared in {seen[n]}")
            seen[n] = rel
        files.append(RuleFile(rel, data, names))
    return files


def make_index(version: str, files: Sequence[RuleFile]) -> bytes:
    """Return ``index.json``: canonical JSON (sorted keys, ASCII) with a final newline."""
    index = {
        "format": 1,
        "product": PRODUCT,
        "version": version,
        "rule_count": sum(len(f.rules) for f in files),
        "files": [f.index_entry() for f in files],
    }
    text = json.dumps(index, sort_keys=True, indent=2, ensure_ascii=True, separators=(",", ": "))
    return (text + "\n").encode("ascii")


def make_archive(members: dict[str, bytes], mtime: int) -> bytes:
    """Return a deterministic ``.tar.gz`` holding ``members`` (name -> content)."""
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            data = members[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = mtime
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(data))

    gz_buf = io.BytesIO()
    # filename="" keeps the name out of the gzip header; mtime pins its timestamp.
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz_buf, compresslevel=9, mtime=mtime) as gz:
        gz.write(tar_buf.getvalue())
    return gz_buf.getvalue()


def source_date_epoch() -> int:
    """Return ``SOURCE_DATE_EPOCH`` (the commit time the conveyor sets), or 0 when unset."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not value:
        print("build_db: SOURCE_DATE_EPOCH is not set; using 0", file=sys.stderr)
        return 0
    if not value.isdigit():
        raise BuildError(f"SOURCE_DATE_EPOCH={value!r} is not a non-negative integer")
    return int(value)


def recipe_version(recipe: Path) -> str:
    """Return ``[product].version`` from the conveyor recipe ``recipe``."""
    try:
        with recipe.open("rb") as fh:
            version = tomllib.load(fh)["product"]["version"]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise BuildError(f"{recipe}: cannot read [product].version ({exc})") from exc
    if not isinstance(version, str):
        raise BuildError(f"{recipe}: [product].version is not a string")
    return version


def build(rules_dir: Path, out_dir: Path, version: str, mtime: int) -> Path:
    """Build the database and return the path of the written archive."""
    if not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z.+_-]*", version):
        raise BuildError(f"version {version!r} is not a plain version string")
    files = collect_rules(rules_dir)
    top = f"{PRODUCT}-{version}"
    members = {f"{top}/{f.path}": f.data for f in files}
    members[f"{top}/index.json"] = make_index(version, files)
    # The manifest says what each rule does when it matches and for whom; the
    # scanner and every audit of the release read it from the bundle.
    manifest = rules_dir.parent / "ruleset.toml"
    if manifest.is_file():
        members[f"{top}/ruleset.toml"] = normalise(manifest.read_bytes(), manifest.name)
    archive = make_archive(members, mtime)

    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{top}.tar.gz"
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(archive)
    os.replace(partial, target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, build the database and print the archive's path and sha256."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("dist"), help="output directory")
    parser.add_argument(
        "--rules", type=Path, default=HERE / "rules", help="rules directory (default: rules/)"
    )
    parser.add_argument(
        "--version", help="database version (default: [product].version of overt.toml)"
    )
    parser.add_argument(
        "--recipe", type=Path, default=HERE / "overt.toml", help="recipe to take the version from"
    )
    args = parser.parse_args(argv)
    try:
        version = args.version or recipe_version(args.recipe)
        target = build(args.rules, args.out, version, source_date_epoch())
    except BuildError as exc:
        print(f"build_db: error: {exc}", file=sys.stderr)
        return 1
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    print(f"{digest}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

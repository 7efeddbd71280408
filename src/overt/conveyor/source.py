"""The exact source a release is built from: exporting it, and proving it is the same.

A git source is exported from the commit's tree, never from the working copy,
so untracked or uncommitted files cannot slip into a build. It is identified
three ways, all recorded in the provenance: the commit id, the git tree id of
the project directory, and an `overt-tree/v1` digest of the exported files
(docs/formats.md, "Source tree digest"), which also covers directory sources
that have no git history.

The tree digest is SHA-256 over one line per file, sorted by path:

    <sha256 of content, hex> SP <mode> SP <path> LF

where mode is 100644, 100755 (executable) or 120000 (symlink, content = the
link target). Directories themselves are not listed, as in git.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from overt.conveyor.recipe import DEFAULT_DATE_EPOCH, SourceSpec
from overt.errors import MalformedError, OvertError, VerificationError

TREE_DIGEST = "overtTree"  # the digest-set key of the overt-tree/v1 digest
GIT_TIMEOUT_S = 600


class SourceError(OvertError):
    """The source could not be read (git failed, repository unreachable)."""


class SourceMismatch(VerificationError):
    """The source is not the one the provenance names: it was tampered with.

    `kind` is ``commit-missing`` (the commit is no longer in the repository:
    history rewritten or withheld), ``tree`` (the commit's tree differs from
    the one recorded) or ``digest`` (the exported files differ).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Source:
    """The identity of an exported source tree, as recorded in provenance."""

    uri: str  # git+<url> for a repository, file://<path> for a directory
    digest: str  # overt-tree/v1, hex
    date_epoch: int  # SOURCE_DATE_EPOCH: the commit time, or the recipe's date
    commit: str | None = None
    tree: str | None = None  # git tree id of the project directory
    subdir: str = ""

    @property
    def is_git(self) -> bool:
        return self.commit is not None

    def descriptor(self) -> dict[str, Any]:
        """An in-toto ResourceDescriptor for resolvedDependencies."""
        digest = {TREE_DIGEST: self.digest}
        if self.commit is not None and self.tree is not None:
            digest["gitCommit"] = self.commit
            digest["gitTree"] = self.tree
        return {
            "name": "source",
            "uri": self.uri,
            "digest": digest,
            "annotations": {"subdir": self.subdir, "sourceDateEpoch": self.date_epoch},
        }

    @classmethod
    def from_descriptor(cls, obj: Any) -> Source:
        where = "provenance: resolvedDependencies source"
        if not isinstance(obj, dict):
            raise MalformedError(f"{where} must be an object")
        uri = obj.get("uri")
        digest = obj.get("digest")
        notes = obj.get("annotations", {})
        if not isinstance(uri, str) or not uri.startswith(("git+", "file://")):
            raise MalformedError(f"{where}: uri must start with git+ or file://")
        if not isinstance(digest, dict) or not isinstance(digest.get(TREE_DIGEST), str):
            raise MalformedError(f"{where}: digest.{TREE_DIGEST} is missing")
        if not isinstance(notes, dict):
            raise MalformedError(f"{where}: annotations must be an object")
        subdir = notes.get("subdir", "")
        epoch = notes.get("sourceDateEpoch")
        if not isinstance(subdir, str) or ".." in Path(subdir).parts or subdir.startswith("/"):
            raise MalformedError(f"{where}: annotations.subdir must be a relative path")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise MalformedError(f"{where}: annotations.sourceDateEpoch must be an integer")
        commit, tree = digest.get("gitCommit"), digest.get("gitTree")
        if uri.startswith("git+"):
            if not isinstance(commit, str) or not isinstance(tree, str):
                raise MalformedError(f"{where}: a git source needs digest.gitCommit and gitTree")
        else:
            commit = tree = None
        return cls(uri, digest[TREE_DIGEST], epoch, commit, tree, subdir)


def tree_entries(root: Path) -> Iterator[tuple[str, str, bytes]]:
    """(relative POSIX path, git mode, content) of every file and symlink under `root`.

    Modes as git records them: 100644, 100755 (owner-executable) or 120000
    (a symlink, whose content is its target). Symlinks to directories are
    listed, not followed. Anything else (a FIFO, a device) is refused.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in [*filenames, *(d for d in dirnames if (base / d).is_symlink())]:
            path = base / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                yield rel, "120000", os.readlink(os.fsencode(path))
            elif stat.S_ISREG(st.st_mode):
                yield rel, "100755" if st.st_mode & stat.S_IXUSR else "100644", path.read_bytes()
            else:
                raise MalformedError(f"{rel}: only files and symlinks can be in a source tree")
        dirnames[:] = [d for d in dirnames if not (base / d).is_symlink()]


def tree_digest(root: Path) -> str:
    """The overt-tree/v1 digest of every file under `root`."""
    lines: list[bytes] = []
    for rel, mode, content in tree_entries(root):
        if "\n" in rel:
            raise MalformedError(f"{rel!r}: file names with a newline cannot be digested")
        digest = hashlib.sha256(content).hexdigest()
        try:
            lines.append(f"{digest} {mode} {rel}\n".encode())
        except UnicodeEncodeError as exc:
            raise MalformedError(f"{rel!r}: file names must be UTF-8") from exc
    lines.sort(key=lambda line: line.split(b" ", 2)[2])
    return hashlib.sha256(b"".join(lines)).hexdigest()


def _git(args: list[str], git_dir: Path | None = None, **env: str) -> str:
    cmd = ["git"]
    if git_dir is not None:
        cmd.append(f"--git-dir={git_dir}")
    cmd += ["-c", "core.autocrlf=false", "-c", "core.symlinks=true", *args]
    full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **env}
    try:
        done = subprocess.run(
            cmd, capture_output=True, env=full_env, timeout=GIT_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise SourceError("git is not installed; it is needed for git sources") from exc
    except subprocess.TimeoutExpired as exc:
        raise SourceError(f"git {args[0]} took longer than {GIT_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise SourceError(f"git {args[0]} failed: {message[-1] if message else done.returncode}")
    return done.stdout.decode(errors="replace").strip()


def _git_root(project: Path) -> Path | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(project), "rev-parse", "--show-toplevel", "--git-dir"],
            capture_output=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError:
        return None
    if done.returncode != 0:
        return None
    return Path(done.stdout.decode().splitlines()[0])


def _export_tree(git_dir: Path, tree: str, dest: Path) -> None:
    """Write the files of `tree` into `dest`, exactly as committed."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="overt-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), "GIT_WORK_TREE": str(dest)}
        _git(["read-tree", tree], git_dir, **env)
        _git(["checkout-index", "--all", "--force"], git_dir, **env)


def _git_identity(git_dir: Path, commit: str, subdir: str) -> tuple[str, str, int]:
    """(full commit id, tree id of subdir, commit time)."""
    full = _git(["rev-parse", "--verify", "--end-of-options", f"{commit}^{{commit}}"], git_dir)
    tree = _git(
        ["rev-parse", "--verify", f"{full}:{subdir}" if subdir else f"{full}^{{tree}}"], git_dir
    )
    kind = _git(["cat-file", "-t", tree], git_dir)
    if kind != "tree":
        raise MalformedError(f"{subdir!r} in commit {full[:12]} is not a directory")
    epoch = int(_git(["show", "-s", "--format=%ct", full], git_dir))
    return full, tree, epoch


def _file_uri(path: Path) -> str:
    return path.resolve().as_uri()


@dataclass(frozen=True)
class Export:
    source: Source
    tree: Path  # the exported project directory
    uncommitted: bool = False  # the working copy differs from the commit (not built)


def export_project(project: Path, spec: SourceSpec, dest: Path, commit: str | None) -> Export:
    """Export the source a recipe names into the fresh directory `dest`."""
    if spec.git is not None:
        assert spec.commit is not None
        with tempfile.TemporaryDirectory(prefix="overt-clone-") as tmp:
            git_dir = clone(spec.git, Path(tmp) / "repo.git")
            return Export(_export_git(git_dir, spec.git, spec.commit, spec.subdir, dest), dest)
    root = _git_root(project)
    if root is None:
        return Export(export_directory(project, dest, spec.date_epoch), dest)
    subdir = project.resolve().relative_to(root.resolve()).as_posix()
    subdir = "" if subdir == "." else subdir
    git_dir = Path(_git(["-C", str(root), "rev-parse", "--absolute-git-dir"]))
    uncommitted = bool(
        _git(
            ["-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", subdir or "."]
        )
    )
    source = _export_git(git_dir, _file_uri(root), commit or "HEAD", subdir, dest)
    return Export(source, dest, uncommitted)


def _export_git(git_dir: Path, url: str, commit: str, subdir: str, dest: Path) -> Source:
    full, tree, epoch = _git_identity(git_dir, commit, subdir)
    _export_tree(git_dir, tree, dest)
    uri = url if url.startswith("git+") else f"git+{url}"
    return Source(uri, tree_digest(dest), epoch, full, tree, subdir)


def export_directory(project: Path, dest: Path, date_epoch: int | None) -> Source:
    if not project.is_dir():
        raise MalformedError(f"{project}: not a directory")
    shutil.copytree(
        project, dest, symlinks=True, ignore=shutil.ignore_patterns(".git"), dirs_exist_ok=True
    )
    epoch = DEFAULT_DATE_EPOCH if date_epoch is None else date_epoch
    return Source(_file_uri(project), tree_digest(dest), epoch)


def clone(url: str, git_dir: Path) -> Path:
    """A bare mirror of the repository at `url` (a git+ URI, URL or path)."""
    plain = url.removeprefix("git+")
    _git(["clone", "--quiet", "--mirror", "--no-hardlinks", "--", plain, str(git_dir)])
    return git_dir


def fetch_verified(source: Source, dest: Path) -> None:
    """Fetch the source the provenance names into `dest` and check it is the same.

    Raises `SourceMismatch` when it is not, saying how it differs.
    """
    if source.is_git:
        assert source.commit is not None
        with tempfile.TemporaryDirectory(prefix="overt-clone-") as tmp:
            git_dir = clone(source.uri, Path(tmp) / "repo.git")
            try:
                _git(["cat-file", "-e", f"{source.commit}^{{commit}}"], git_dir)
            except SourceError as exc:
                raise SourceMismatch(
                    "commit-missing",
                    f"commit {source.commit} is not in {source.uri}: its history was rewritten "
                    "or the commit was withheld",
                ) from exc
            full, tree, _ = _git_identity(git_dir, source.commit, source.subdir)
            if tree != source.tree:
                raise SourceMismatch(
                    "tree",
                    f"commit {full[:12]} has tree {tree} for {source.subdir or 'the root'}, "
                    f"the provenance records {source.tree}",
                )
            _export_tree(git_dir, tree, dest)
    else:
        parsed = urlparse(source.uri)
        path = Path(unquote(parsed.path))
        if not path.is_dir():
            raise SourceError(f"source directory {path} is not available")
        shutil.copytree(
            path, dest, symlinks=True, ignore=shutil.ignore_patterns(".git"), dirs_exist_ok=True
        )
    actual = tree_digest(dest)
    if actual != source.digest:
        raise SourceMismatch(
            "digest",
            f"the source files differ from the ones built: tree digest {actual}, "
            f"the provenance records {source.digest}",
        )

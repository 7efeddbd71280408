"""What changed between two source trees: the part of a release a reviewer has not read yet.

Files are compared as the tree digest sees them (overt.conveyor.source): regular files with
their mode, and symlinks by their target. Each added, removed or changed file gets a unified
diff when both sides are text (UTF-8 without NUL bytes, at most `MAX_DIFF_BYTES`), and
otherwise its sizes and SHA-256 digests.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overt.conveyor.source import tree_entries

MAX_DIFF_BYTES = 2 * 1024 * 1024  # a larger file is reported by digest, not diffed


@dataclass(frozen=True)
class FileState:
    mode: str  # 100644, 100755, 120000
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def size(self) -> int:
        return len(self.content)

    def text(self) -> str | None:
        if b"\0" in self.content or len(self.content) > MAX_DIFF_BYTES:
            return None
        try:
            return self.content.decode("utf-8")
        except UnicodeDecodeError:
            return None


@dataclass(frozen=True)
class FileChange:
    path: str
    status: str  # added | removed | changed
    old: FileState | None
    new: FileState | None

    @property
    def binary(self) -> bool:
        return any(s is not None and s.text() is None for s in (self.old, self.new))

    def diff(self) -> str:
        """The unified diff, or '' for binary files (see sizes and digests)."""
        if self.binary:
            return ""
        old = self.old.text() if self.old is not None else ""
        new = self.new.text() if self.new is not None else ""
        assert old is not None and new is not None
        lines = difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            "/dev/null" if self.old is None else f"a/{self.path}",
            "/dev/null" if self.new is None else f"b/{self.path}",
        )
        return "".join(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
            for line in lines
        )

    def summary(self) -> str:
        parts = [f"{self.status:8} {self.path}"]
        if self.old is not None and self.new is not None and self.old.mode != self.new.mode:
            parts.append(f"(mode {self.old.mode} -> {self.new.mode})")
        if self.binary:
            sides = [
                f"{side} {s.size} bytes sha256:{s.sha256}"
                for side, s in (("old", self.old), ("new", self.new))
                if s is not None
            ]
            parts.append("[binary: " + ", ".join(sides) + "]")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        def side(s: FileState | None) -> dict[str, Any] | None:
            return None if s is None else {"mode": s.mode, "size": s.size, "sha256": s.sha256}

        return {
            "path": self.path,
            "status": self.status,
            "binary": self.binary,
            "old": side(self.old),
            "new": side(self.new),
            "diff": None if self.binary else self.diff(),
        }


@dataclass
class Delta:
    old_label: str
    new_label: str
    changes: list[FileChange] = field(default_factory=list)
    unchanged: int = 0

    def counts(self) -> dict[str, int]:
        statuses = ("added", "removed", "changed")
        return {s: sum(1 for c in self.changes if c.status == s) for s in statuses}

    def text(self) -> str:
        counts = self.counts()
        lines = [
            f"Changes from {self.old_label}",
            f"          to {self.new_label}",
            f"{counts['added']} added, {counts['removed']} removed, {counts['changed']} changed, "
            f"{self.unchanged} unchanged",
            "",
        ]
        lines += [c.summary() for c in self.changes]
        out = "\n".join(lines) + "\n"
        for change in self.changes:
            diff = change.diff()
            if diff:
                out += "\n" + diff
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "old": self.old_label,
            "new": self.new_label,
            **self.counts(),
            "unchanged": self.unchanged,
            "files": [c.to_json() for c in self.changes],
        }


def read_tree(root: Path) -> dict[str, FileState]:
    """Every file and symlink under `root`, by relative POSIX path."""
    return {rel: FileState(mode, content) for rel, mode, content in tree_entries(root)}


def compare_trees(
    old: Path | None, new: Path, old_label: str = "nothing", new_label: str = ""
) -> Delta:
    """The delta from `old` (None: an empty tree, every file is added) to `new`."""
    before = read_tree(old) if old is not None else {}
    after = read_tree(new)
    delta = Delta(old_label, new_label or str(new))
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if a is None:
            delta.changes.append(FileChange(path, "added", None, b))
        elif b is None:
            delta.changes.append(FileChange(path, "removed", a, None))
        elif a != b:
            delta.changes.append(FileChange(path, "changed", a, b))
        else:
            delta.unchanged += 1
    return delta

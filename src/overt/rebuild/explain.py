"""Explaining why a rebuilt artifact differs from the one the vendor built.

A FAILED verdict is only useful with its reason. When diffoscope is installed
(the reproducible-builds project's tool; Debian package `diffoscope`) it
writes a full, recursive comparison as text and HTML. Overt always writes its
own listing too, which needs nothing installed: for ZIP-based archives
(wheels, jars) and tar archives (sdists, tarballs), the members only on one
side and the members whose contents differ, with sizes and SHA-256; for other
files, their sizes and the first differing byte.
"""

from __future__ import annotations

import hashlib
import html
import shutil
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

DIFFOSCOPE_TIMEOUT_S = 600
MAX_MEMBERS = 100_000


@dataclass(frozen=True)
class MemberDifference:
    name: str
    original: tuple[int, str] | None  # (size, sha256); None: not in the original
    rebuilt: tuple[int, str] | None

    def describe(self) -> str:
        if self.original is None:
            return f"{self.name}: only in the rebuild"
        if self.rebuilt is None:
            return f"{self.name}: only in the original"
        (osize, osha), (rsize, rsha) = self.original, self.rebuilt
        return (
            f"{self.name}: differs (size {osize} -> {rsize}, "
            f"sha256 {osha[:16]}... -> {rsha[:16]}...)"
        )


@dataclass(frozen=True)
class ArtifactDifference:
    name: str
    expected: str
    rebuilt: str | None
    original_available: bool
    members: tuple[MemberDifference, ...]
    note: str  # a sentence for what the member listing cannot show

    def lines(self) -> list[str]:
        out = [f"artifact {self.name}"]
        out.append(f"  provenance sha256: {self.expected}")
        out.append(f"  rebuilt sha256:    {self.rebuilt or '(not produced by the rebuild)'}")
        if self.members:
            out.append("  differing members:")
            out.extend(f"    {m.describe()}" for m in self.members)
        if self.note:
            out.append(f"  {self.note}")
        return out


def members(path: Path) -> dict[str, tuple[int, str]] | None:
    """Each member's (size, sha256) for a ZIP or tar archive; None for other files."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return {
                    info.filename: _sized(zf.read(info))
                    for info in zf.infolist()[:MAX_MEMBERS]
                    if not info.is_dir()
                }
        if tarfile.is_tarfile(path):
            found: dict[str, tuple[int, str]] = {}
            with tarfile.open(path) as tf:
                for info in tf:
                    if len(found) >= MAX_MEMBERS:
                        break
                    if info.isfile():
                        stream = tf.extractfile(info)
                        data = stream.read() if stream is not None else b""
                        found[info.name] = _sized(data)
                    elif not info.isdir():
                        found[info.name] = _sized(f"{info.type!r} {info.linkname}".encode())
            return found
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        return {f"(unreadable archive: {exc})": (0, "")}
    return None


def _sized(data: bytes) -> tuple[int, str]:
    return len(data), hashlib.sha256(data).hexdigest()


def _first_difference(a: Path, b: Path) -> str:
    da, db = a.read_bytes(), b.read_bytes()
    for offset, (x, y) in enumerate(zip(da, db, strict=False)):
        if x != y:
            return f"first difference at byte {offset}; sizes {len(da)} and {len(db)}"
    return f"one is a prefix of the other; sizes {len(da)} and {len(db)}"


def compare_artifact(
    name: str, expected: str, rebuilt_path: Path | None, original: Path | None
) -> ArtifactDifference:
    rebuilt_sha = None
    if rebuilt_path is not None:
        rebuilt_sha = hashlib.sha256(rebuilt_path.read_bytes()).hexdigest()
    if rebuilt_path is None:
        return ArtifactDifference(name, expected, None, original is not None, (), "")
    if original is None:
        listing = members(rebuilt_path)
        note = "the vendor's copy is not available to compare with; rebuilt members listed"
        found = tuple(MemberDifference(n, None, v) for n, v in sorted((listing or {}).items()))
        return ArtifactDifference(name, expected, rebuilt_sha, False, found, note)
    left, right = members(original), members(rebuilt_path)
    if left is None or right is None:
        return ArtifactDifference(
            name, expected, rebuilt_sha, True, (), _first_difference(original, rebuilt_path)
        )
    diffs = tuple(
        MemberDifference(n, left.get(n), right.get(n))
        for n in sorted(set(left) | set(right))
        if left.get(n) != right.get(n)
    )
    note = ""
    if not diffs:
        note = "every member has the same contents: the archives differ in metadata or order"
    return ArtifactDifference(name, expected, rebuilt_sha, True, diffs, note)


def diffoscope_available() -> bool:
    return shutil.which("diffoscope") is not None


def run_diffoscope(original: Path, rebuilt: Path, text_out: Path, html_out: Path) -> str | None:
    """Run diffoscope; return None on success, else why it could not explain."""
    try:
        done = subprocess.run(
            [
                "diffoscope",
                "--no-progress",
                "--text",
                str(text_out),
                "--html",
                str(html_out),
                str(original),
                str(rebuilt),
            ],
            capture_output=True,
            timeout=DIFFOSCOPE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"diffoscope took longer than {DIFFOSCOPE_TIMEOUT_S} s"
    except OSError as exc:
        return f"diffoscope could not run: {exc}"
    # diffoscope exits 1 when it found differences, 0 when none, 2 on error.
    if done.returncode not in (0, 1):
        return f"diffoscope failed: {done.stderr.decode(errors='replace').strip()[-300:]}"
    return None


def render_html(title: str, text: str) -> str:
    """The built-in report as a page that needs no script and prints well."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>\n<body><main>"
        f"<h1>{html.escape(title)}</h1>\n<pre>{html.escape(text)}</pre></main></body></html>\n"
    )

"""Where a client reads a log from: a URL, a log directory, or a tiles directory.

Also `FileMemory`, the on-disk record of the last checkpoint a client accepted
per origin, so that `overt` notices a log going backwards between runs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from overt.durable import atomic_write
from overt.errors import MalformedError, OvertError
from overt.tlog.tiles import Tile


class FetchError(OvertError):
    """A resource of the log could not be fetched."""


@dataclass
class Source:
    fetch: Callable[[str], bytes]
    description: str
    vkey: str | None  # known when reading a log directory
    tiles_dir: Path | None = None  # known when reading from disk

    def partial_tiles(self) -> list[str]:
        """Paths of the partial tiles on disk (none known for a URL)."""
        if self.tiles_dir is None:
            return []
        tile_root = self.tiles_dir / "tile"
        return sorted(
            str(p.relative_to(self.tiles_dir))
            for p in tile_root.glob("**/*.p/*")
            if p.is_file() and not p.name.startswith(".")
        )


def _check_path(path: str) -> None:
    if path != "checkpoint":
        Tile.parse_path(path)  # only tlog-tiles resources, never arbitrary files


def directory_fetcher(tiles_dir: Path) -> Callable[[str], bytes]:
    def fetch(path: str) -> bytes:
        _check_path(path)
        try:
            return (tiles_dir / path).read_bytes()
        except FileNotFoundError as exc:
            raise FetchError(f"{tiles_dir / path}: not found") from exc

    return fetch


def http_fetcher(base_url: str, client: httpx.Client | None = None) -> Callable[[str], bytes]:
    http = client or httpx.Client(timeout=30, headers={"Accept-Encoding": "gzip, identity"})
    base = base_url.rstrip("/") + "/"

    def fetch(path: str) -> bytes:
        _check_path(path)
        try:
            resp = http.get(base + path)
        except httpx.HTTPError as exc:
            raise FetchError(f"{base + path}: {exc}") from exc
        if resp.status_code != 200:
            raise FetchError(f"{base + path}: HTTP {resp.status_code}")
        return resp.content

    return fetch


def open_source(source: str) -> Source:
    """A URL, a log directory (with log.toml) or a bare tiles directory."""
    if source.startswith(("http://", "https://")):
        return Source(http_fetcher(source), source, None)
    path = Path(source)
    if (path / "log.toml").is_file():
        vkey_file = path / "log.vkey"
        vkey = vkey_file.read_text(encoding="utf-8").strip() if vkey_file.is_file() else None
        return Source(directory_fetcher(path / "tiles"), str(path), vkey, path / "tiles")
    if (path / "checkpoint").is_file():
        return Source(directory_fetcher(path), str(path), None, path)
    raise MalformedError(f"{source}: not a URL, a log directory or a tiles directory")


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "overt" / "checkpoints"


class FileMemory:
    """Last accepted checkpoint per log identity, one file each, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, identity: str) -> Path:
        return self.directory / hashlib.sha256(identity.encode()).hexdigest()[:32]

    def load(self, identity: str) -> str | None:
        try:
            return self._path(identity).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def store(self, identity: str, signed_checkpoint: str) -> None:
        atomic_write(self._path(identity), signed_checkpoint.encode())

"""Adding entries to a log from another part of Overt or from the CLI.

A log is addressed as a log directory (used directly, or through the
`overt log serve` process that holds it; with PostgreSQL always directly,
since the front ends share the database) or as the URL of a log server with
its write token. Every path returns only once a published checkpoint covers
the entries, so a caller can immediately fetch a proof for them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from overt.errors import MalformedError, OvertError
from overt.log.log import Log, LogError, LogPaths

# Entries per request or per integration round: bounded so progress is visible
# and one request stays well under the server's body limit.
HTTP_CHUNK = 5000
LOCAL_CHUNK = 10_000
# With PostgreSQL, how long `overt log add` waits for another front end to publish.
LOCAL_WAIT_S = 60.0

Progress = Callable[[int], None]


class SubmitError(OvertError):
    """The log refused the entries or could not be reached."""


@dataclass(frozen=True)
class Added:
    indexes: list[int]
    size: int  # tree size of the published checkpoint covering them


def running_server(directory: Path) -> str | None:
    """The URL of the `overt log serve` process holding this log directory, if any."""
    try:
        info = json.loads((directory / "state" / "server.json").read_text())
        return str(info["url"])
    except (FileNotFoundError, NotADirectoryError, ValueError, KeyError, TypeError):
        return None


def add_http(
    url: str, token: str, entries: Sequence[bytes], progress: Progress | None = None
) -> Added:
    indexes: list[int] = []
    size = 0
    with httpx.Client(timeout=120) as http:
        for start in range(0, len(entries), HTTP_CHUNK):
            chunk = entries[start : start + HTTP_CHUNK]
            body = {"entries": [base64.b64encode(e).decode() for e in chunk]}
            try:
                resp = http.post(
                    f"{url.rstrip('/')}/add-batch?wait=true",
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                )
            except httpx.HTTPError as exc:
                raise SubmitError(f"{url}: {exc}") from exc
            if resp.status_code != 200:
                raise SubmitError(f"{url}: HTTP {resp.status_code}: {resp.text.strip()[:300]}")
            try:
                answer = resp.json()
                indexes.extend(int(i) for i in answer["indexes"])
                size = int(answer.get("size") or size)
            except (ValueError, KeyError, TypeError) as exc:
                raise SubmitError(f"{url}: unexpected answer to add-batch: {exc}") from exc
            if progress is not None:
                progress(len(chunk))
    return Added(indexes, size)


def add_local(directory: Path, entries: Sequence[bytes], progress: Progress | None = None) -> Added:
    """Add through the log directory, or through its server when one holds it."""
    try:
        log = Log(directory)
    except LogError as exc:
        url = running_server(directory)
        if url is None or "in use" not in str(exc):
            raise
        token = LogPaths(directory).token.read_text().strip()
        return add_http(url, token, entries, progress)
    with log:
        indexes: list[int] = []
        for start in range(0, len(entries), LOCAL_CHUNK):
            chunk = entries[start : start + LOCAL_CHUNK]
            indexes.extend(log.sequence(chunk))
            log.integrate()
            if progress is not None:
                progress(len(chunk))
        if indexes and log.shared and not log.integrating:
            # PostgreSQL: another front end integrates; wait for its checkpoint.
            wait = LOCAL_WAIT_S + log.config.integration_period_ms / 1000
            if log.wait_integrated(max(indexes) + 1, wait) is None:
                raise SubmitError(
                    f"the entries are sequenced (they will not be lost) but no checkpoint "
                    f"covered them within {wait:.0f} s: is the log's integrator stuck? "
                    "('overt log status' shows the published size)"
                )
        return Added(indexes, log.checkpoint.size)


def check_target(target: str, token: str | None) -> None:
    """Refuse a log address that cannot work, before any long job depends on it."""
    if target.startswith(("http://", "https://")):
        if not token:
            raise MalformedError(f"{target}: adding over HTTP needs the log's write token")
    elif not LogPaths(Path(target)).config.is_file():
        raise MalformedError(f"{target}: not a log directory (no log.toml) and not a URL")


def add_entries(
    target: str,
    entries: Sequence[bytes],
    token: str | None = None,
    progress: Progress | None = None,
) -> Added:
    """Add to `target`: a log directory, or a log server URL (which needs `token`)."""
    if not entries:
        raise MalformedError("nothing to add")
    check_target(target, token)
    if target.startswith(("http://", "https://")):
        assert token is not None
        return add_http(target, token, entries, progress)
    return add_local(Path(target), entries, progress)

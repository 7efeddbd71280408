"""A monitor's list of logs, ``DIR/monitor.toml``.

[[log]]
name = "releases"
url = "https://log.example.com/releases"      # or a log/tiles directory
key = "example.com/releases+1234abcd+AQ..."   # the log's verifier key
policy = "releases.tlog-policy"               # optional: also require a witness quorum
witnesses = ["https://w1.example.org"]        # optional: compare views with these witnesses
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overt.crypto.keys import SIG_ED25519, VerifierKey
from overt.errors import MalformedError


@dataclass(frozen=True)
class MonitoredLog:
    name: str
    url: str
    key: str
    policy: str = ""
    witnesses: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in '/\\\n"') or self.name.strip() != self.name:
            raise MalformedError(f"log name {self.name!r}: use letters, digits, '-' or '.'")
        if not self.url:
            raise MalformedError(f"log {self.name}: url is required")
        vkey = VerifierKey.parse(self.key)
        if vkey.sig_type != SIG_ED25519:
            raise MalformedError(f"log {self.name}: key must be the log's Ed25519 verifier key")

    def to_toml(self) -> str:
        lines = ["[[log]]"]
        for key in ("name", "url", "key", "policy"):
            value = getattr(self, key)
            if value:
                lines.append(f"{key} = {_quote(value)}")
        if self.witnesses:
            lines.append("witnesses = [" + ", ".join(_quote(w) for w in self.witnesses) + "]")
        return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def load_monitor_config(path: Path) -> list[MonitoredLog]:
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise MalformedError(f"{path}: no such file; run 'overt monitor init'") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MalformedError(f"{path}: {exc}") from exc
    logs = raw.get("log", [])
    if not isinstance(logs, list):
        raise MalformedError(f"{path}: 'log' must be an array of tables ([[log]])")
    out = []
    for i, entry in enumerate(logs):
        if not isinstance(entry, dict):
            raise MalformedError(f"{path}: log #{i + 1} is not a table")
        unknown = set(entry) - {"name", "url", "key", "policy", "witnesses"}
        if unknown:
            raise MalformedError(
                f"{path}: log #{i + 1}: unknown field(s) {', '.join(sorted(unknown))}"
            )
        witnesses = entry.get("witnesses", [])
        if not isinstance(witnesses, list) or not all(isinstance(w, str) for w in witnesses):
            raise MalformedError(f"{path}: log #{i + 1}: witnesses must be a list of URLs")
        for fname in ("name", "url", "key", "policy"):
            if fname in entry and not isinstance(entry[fname], str):
                raise MalformedError(f"{path}: log #{i + 1}: {fname} must be a string")
        try:
            out.append(
                MonitoredLog(
                    entry.get("name", ""),
                    entry.get("url", ""),
                    entry.get("key", ""),
                    entry.get("policy", ""),
                    tuple(witnesses),
                )
            )
        except MalformedError as exc:
            raise MalformedError(f"{path}: log #{i + 1}: {exc}") from exc
    names = [log.name for log in out]
    if len(set(names)) != len(names):
        raise MalformedError(f"{path}: two logs have the same name")
    return out

"""A log's configuration file, ``DIR/log.toml``.

Every setting has a safe default, so ``overt log init`` writes a complete file
an operator can read and change. Errors name the offending field.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from overt.crypto.encoding import check_key_name
from overt.errors import MalformedError
from overt.tlog.tiles import MAX_ENTRY_SIZE

DRIVERS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class LogConfig:
    """Settings of one log. Times are in milliseconds."""

    origin: str
    # Checkpoints: how often pending entries are integrated and a new
    # checkpoint is signed and published.
    integration_period_ms: int = 500
    # Sequencing: the pool is flushed (indexes assigned, durably) as soon as it
    # holds `sequence_batch` entries, or `sequence_linger_ms` after the first
    # entry arrived, whichever comes first. Acknowledged adds wait only for
    # this flush, not for a checkpoint.
    sequence_batch: int = 1000
    sequence_linger_ms: int = 5
    # Back-pressure: at most this many entries may wait for sequencing; more
    # adds are refused with HTTP 503 and Retry-After.
    pool_size: int = 50_000
    max_entry_size: int = MAX_ENTRY_SIZE
    # Storage of the sequencing state: "sqlite" keeps it in DIR/state (one
    # process serves the log); "postgresql" keeps it in the database named by
    # `database` (a postgresql:// URL), and several front ends may serve the
    # log at once. Setting `database` selects "postgresql".
    driver: str = "sqlite"
    database: str = ""
    # Witnessing: a C2SP tlog-policy file (relative to the log directory)
    # listing this log, the witnesses with their URLs, and the quorum. When
    # set, a checkpoint is published only once the quorum has cosigned it.
    witness_policy: str = ""
    witness_timeout_ms: int = 5000
    # An idle log asks its witnesses to cosign its unchanged checkpoint again
    # after this long, so that clients requiring recent cosignatures (a
    # maximum checkpoint age, against freeze attacks) keep accepting it.
    witness_refresh_ms: int = 3_600_000

    def __post_init__(self) -> None:
        try:
            check_key_name(self.origin)
        except MalformedError as exc:
            raise MalformedError(f"origin: {exc}") from exc
        for name, low, high in (
            ("integration_period_ms", 1, 3_600_000),
            ("sequence_batch", 1, 100_000),
            ("sequence_linger_ms", 0, 60_000),
            ("pool_size", 1, 10_000_000),
            ("max_entry_size", 1, MAX_ENTRY_SIZE),
            ("witness_timeout_ms", 1, 600_000),
            ("witness_refresh_ms", 1_000, 7 * 86_400_000),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise MalformedError(f"{name}: must be an integer from {low} to {high}")
        if not isinstance(self.witness_policy, str) or "\n" in self.witness_policy:
            raise MalformedError("witness_policy: must be a file name")
        if not isinstance(self.database, str):
            raise MalformedError("database: must be a postgresql:// URL")
        if self.database and self.driver == "sqlite":
            object.__setattr__(self, "driver", "postgresql")
        if self.driver not in DRIVERS:
            raise MalformedError(f"driver: must be one of {', '.join(DRIVERS)}")
        if self.driver == "postgresql":
            if not self.database.startswith(("postgresql://", "postgres://")):
                raise MalformedError(
                    "database: driver postgresql needs a postgresql:// URL naming the database"
                )
            if "\n" in self.database:
                raise MalformedError("database: must be one line")

    @classmethod
    def from_toml(cls, text: str, where: str = "log.toml") -> LogConfig:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise MalformedError(f"{where}: {exc}") from exc
        table = raw.get("log")
        if not isinstance(table, dict):
            raise MalformedError(f"{where}: missing [log] table")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise MalformedError(f"{where}: unknown setting(s) {', '.join(unknown)} in [log]")
        if "origin" not in table:
            raise MalformedError(f"{where}: origin is required")
        if not isinstance(table["origin"], str):
            raise MalformedError(f"{where}: origin must be a string")
        try:
            return cls(**table)
        except MalformedError as exc:
            raise MalformedError(f"{where}: {exc}") from exc

    def to_toml(self) -> str:
        lines = [
            "# Overt log configuration. Times are in milliseconds.",
            "[log]",
        ]
        for key, value in asdict(self).items():
            lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    return str(value)


def load_config(path: Path) -> LogConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise MalformedError(f"{path}: no such file; is this a log directory?") from exc
    except UnicodeDecodeError as exc:
        raise MalformedError(f"{path}: not UTF-8 text") from exc
    return LogConfig.from_toml(text, str(path))

"""Moving the conveyor to another jurisdiction: a logged key transition (docs/conveyor.md).

When the build conveyor moves (say from Moscow to Zurich), its old key is
retired with an end date and a new key, bound to the new jurisdiction, is
introduced. Both facts are one in-toto Statement (predicate type
`TRANSITION_TYPE`) signed by the old key and by the new one, and logged: its
log index marks the moment after which nothing signed by the old key may be
trusted, whatever date that key writes into a provenance. Customers put the
retirement in their policy; the verifier then refuses a release signed by the
retired key and logged after it.
"""

from __future__ import annotations

import hashlib
import json
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overt.conveyor.conveyor import Conveyor, ConveyorError, init_conveyor
from overt.conveyor.provenance import rfc3339
from overt.crypto.dsse import Envelope
from overt.crypto.intoto import Statement, Subject
from overt.durable import atomic_write
from overt.errors import MalformedError
from overt.log.submit import add_entries, check_target

TRANSITION_TYPE = "https://overt.dev/conveyor/key-transition/v1"


@dataclass(frozen=True)
class KeyTransition:
    retired_key: str
    retired_jurisdiction: str | None
    end: str  # RFC 3339: the old key's last moment
    new_key: str
    new_jurisdiction: str | None
    new_builder_id: str

    def statement(self) -> Statement:
        subjects = [
            Subject(f"conveyor-key:{key}", {"sha256": hashlib.sha256(key.encode()).hexdigest()})
            for key in (self.retired_key, self.new_key)
        ]
        return Statement(
            subjects,
            TRANSITION_TYPE,
            {
                "retired": {
                    "key": self.retired_key,
                    "jurisdiction": self.retired_jurisdiction,
                    "end": self.end,
                },
                "introduced": {
                    "key": self.new_key,
                    "jurisdiction": self.new_jurisdiction,
                    "builderId": self.new_builder_id,
                },
            },
        )

    @classmethod
    def from_statement(cls, statement: Statement) -> KeyTransition:
        if statement.predicate_type != TRANSITION_TYPE:
            raise MalformedError(f"not a conveyor key transition: {statement.predicate_type}")
        retired = statement.predicate.get("retired")
        introduced = statement.predicate.get("introduced")
        if not isinstance(retired, dict) or not isinstance(introduced, dict):
            raise MalformedError("key transition: retired and introduced are required")
        try:
            return cls(
                str(retired["key"]),
                retired.get("jurisdiction"),
                str(retired["end"]),
                str(introduced["key"]),
                introduced.get("jurisdiction"),
                str(introduced["builderId"]),
            )
        except KeyError as exc:
            raise MalformedError(f"key transition: {exc} is missing") from exc


@dataclass(frozen=True)
class Move:
    transition: KeyTransition
    envelope: Envelope
    log_index: int

    def policy_snippet(self) -> str:
        """What customers add to their trust policy to follow the move."""
        t = self.transition
        lines = [
            "[conveyors]",
            f'keys = ["{t.new_key}", "{t.retired_key}"]',
            "",
            "[[conveyors.retired]]",
            f'key = "{t.retired_key}"',
            f'end = "{t.end}"',
            f"log_index = {self.log_index}",
        ]
        if t.new_jurisdiction:
            lines += [
                "",
                "[conveyors.location]",
                f'jurisdiction = "{t.new_jurisdiction}"',
                f'after = "{t.end}"',
            ]
        return "\n".join(lines) + "\n"


def move_conveyor(
    old_dir: Path,
    new_dir: Path,
    name: str,
    builder_id: str,
    jurisdiction: str,
    log: str,
    token: str | None = None,
) -> Move:
    """Create the new conveyor, log the transition signed by both keys, retire the old one."""
    old = Conveyor(old_dir)
    if old.retired is not None:
        raise ConveyorError(f"{old_dir}: this conveyor was already retired on {old.retired}")
    check_target(log, token)
    init_conveyor(new_dir, name, builder_id, jurisdiction)
    new = Conveyor(new_dir)
    transition = KeyTransition(
        retired_key=old.vkey,
        retired_jurisdiction=old.jurisdiction,
        end=rfc3339(time.time()),
        new_key=new.vkey,
        new_jurisdiction=jurisdiction,
        new_builder_id=builder_id,
    )
    envelope = transition.statement().sign([old.signer, new.signer])
    atomic_write(new_dir / "transition.dsse.json", envelope.to_bytes())
    index = add_entries(log, [envelope.to_bytes()], token).indexes[0]
    _retire(old_dir, transition.end, index)
    return Move(transition, envelope, index)


def _retire(old_dir: Path, end: str, index: int) -> None:
    config_file = old_dir / "conveyor.toml"
    table: dict[str, Any] = tomllib.loads(config_file.read_text(encoding="utf-8"))["conveyor"]
    table["retired"] = end
    table["retired_log_index"] = index
    lines = ["# Overt build conveyor (retired: it moved; see transition in the log)", "[conveyor]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    atomic_write(config_file, ("\n".join(lines) + "\n").encode())

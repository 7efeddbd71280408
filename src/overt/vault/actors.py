"""Who may touch customer data: ``VAULT/actors.toml``.

    [[actor]]
    name = "alice"
    role = "threat analyst"
    employer = "Acme Security AG"
    location = "CH"
    justifications = ["THREAT_ANALYSIS", "CUSTOMER_SUPPORT"]
    token_sha256 = "<hex SHA-256 of the actor's API token>"   # for the HTTP API

An actor may only use the justifications listed for them. Tokens are stored
hashed; `overt vault add-actor` prints a new token once.
"""

from __future__ import annotations

import hashlib
import hmac
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overt.errors import MalformedError
from overt.vault.events import JUSTIFICATIONS, Actor

SYSTEM = Actor("overt-ingest", "automated ingestion", "vendor", "in-region")


@dataclass(frozen=True)
class ActorEntry:
    actor: Actor
    justifications: tuple[str, ...]
    token_sha256: str

    def to_toml(self) -> str:
        def q(v: str) -> str:
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

        return (
            "[[actor]]\n"
            f"name = {q(self.actor.name)}\nrole = {q(self.actor.role)}\n"
            f"employer = {q(self.actor.employer)}\nlocation = {q(self.actor.location)}\n"
            f"justifications = [{', '.join(q(j) for j in self.justifications)}]\n"
            f"token_sha256 = {q(self.token_sha256)}\n"
        )


def load_actors(path: Path) -> dict[str, ActorEntry]:
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MalformedError(f"{path}: {exc}") from exc
    entries = raw.get("actor", [])
    if not isinstance(entries, list):
        raise MalformedError(f"{path}: actors are [[actor]] tables")
    out: dict[str, ActorEntry] = {}
    for i, e in enumerate(entries):
        where = f"{path}: actor #{i + 1}"
        if not isinstance(e, dict):
            raise MalformedError(f"{where}: not a table")
        fields = {}
        for key in ("name", "role", "employer", "location"):
            value = e.get(key)
            if not isinstance(value, str) or not value:
                raise MalformedError(f"{where}: {key} must be a non-empty string")
            fields[key] = value
        justs = e.get("justifications", [])
        if not isinstance(justs, list) or not all(j in JUSTIFICATIONS for j in justs):
            raise MalformedError(
                f"{where}: justifications must be from {', '.join(JUSTIFICATIONS)}"
            )
        token = e.get("token_sha256", "")
        if not isinstance(token, str):
            raise MalformedError(f"{where}: token_sha256 must be a string")
        if fields["name"] in out:
            raise MalformedError(f"{where}: a second actor named {fields['name']!r}")
        out[fields["name"]] = ActorEntry(Actor(**fields), tuple(justs), token)
    return out


def actor_by_token(actors: dict[str, ActorEntry], token: str) -> ActorEntry | None:
    digest = hashlib.sha256(token.encode()).hexdigest()
    for entry in actors.values():
        if entry.token_sha256 and hmac.compare_digest(entry.token_sha256, digest):
            return entry
    return None

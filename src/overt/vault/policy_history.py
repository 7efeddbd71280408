"""Versions of the residency policy, each logged before it is in force.

    VAULT/residency.toml          the version in force
    VAULT/policies/<n>.toml       the text of version n (1 is the policy the vault was made with)
    VAULT/policies/<n>.json       its signed statement and where it was logged: {"version",
                                  "sha256", "statement": base64, "logged": {region: index}}
    VAULT/policies/pending        "n": a change to version n is under way

`set_policy` makes a new version: it writes the version and its signed
*policy statement* (events.py: version, SHA-256 of the text, the regions, every
country's region, the countries whose region changed, the previous version's
digest), marks the change pending, appends the statement to every region's
access log, and only then puts the text in residency.toml. Anyone reading an
access log thus sees when each country's data was promised to which region, and
the supervisor's audit checks every object against the version in force when it
was written (the last statement before its write event in that region's log).

The pending marker is written before the statement is logged, and a write
checks for it after its own event is durable (vault.py): a write whose event
follows the statement in the log can never land under the old version. Version
1 is logged (as "the initial policy") at the first change, so logs created
before this module keep their contents; until then it is in force implicitly.

A version may add regions but never drop one: a region whose countries all
moved away stays in the policy, empty, so its access log and the shredded
records of what left it stay auditable.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from overt.durable import atomic_write
from overt.errors import MalformedError, OvertError
from overt.vault.residency import ResidencyError, ResidencyPolicy

if TYPE_CHECKING:
    from overt.vault.vault import Vault

POLICIES = "policies"


class PolicyError(OvertError):
    """A policy change that cannot be made (it would strand data, drop a region, ...)."""


def policy_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class PolicyVersion:
    version: int
    text: str
    sha256: str
    statement: bytes | None = None  # the signed statement, once made
    logged: dict[str, int] = field(default_factory=dict)  # region -> index in its access log

    @cached_property
    def policy(self) -> ResidencyPolicy:
        return ResidencyPolicy.parse(self.text, f"residency policy version {self.version}")

    @property
    def fully_logged(self) -> bool:
        return self.statement is not None and set(self.policy.regions) <= set(self.logged)


def changes(old: ResidencyPolicy | None, new: ResidencyPolicy) -> list[dict[str, str | None]]:
    """Countries whose region differs between two versions (None: no region)."""
    before = old.countries if old is not None else {}
    return [
        {"country": c, "from": before.get(c), "to": new.countries.get(c)}
        for c in sorted(set(before) | set(new.countries))
        if before.get(c) != new.countries.get(c)
    ]


class PolicyHistory:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / POLICIES
        self.pending_file = self.dir / "pending"

    def write_initial(self, text: str) -> None:
        atomic_write(self.dir / "1.toml", text.encode("utf-8"))

    def _numbers(self) -> list[int]:
        if not self.dir.is_dir():
            return []
        return sorted(
            int(p.stem) for p in self.dir.glob("*.toml") if p.stem.isdigit() and p.stem[0] != "0"
        )

    def version(self, number: int) -> PolicyVersion:
        path = self.dir / f"{number}.toml"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if number == 1 and not self._numbers():
                # A vault made before policy versions: its policy is version 1.
                text = (self.root / "residency.toml").read_text(encoding="utf-8")
            else:
                raise MalformedError(f"{path}: no such policy version") from None
        version = PolicyVersion(number, text, policy_sha256(text))
        record = self.dir / f"{number}.json"
        if record.exists():
            try:
                doc = json.loads(record.read_text(encoding="utf-8"))
                version.statement = base64.b64decode(doc["statement"])
                version.logged = {str(k): int(v) for k, v in doc["logged"].items()}
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise MalformedError(f"{record}: {exc}") from exc
        return version

    def versions(self) -> list[PolicyVersion]:
        return [self.version(n) for n in self._numbers() or [1]]

    def pending_version(self) -> int | None:
        try:
            text = self.pending_file.read_text().strip()
        except FileNotFoundError:
            return None
        if not text.isdigit():
            raise MalformedError(f"{self.pending_file}: not a version number")
        return int(text)

    def current(self) -> PolicyVersion:
        """The version in force: the newest one whose change completed."""
        pending = self.pending_version()
        numbers = [n for n in self._numbers() if n != pending] or [1]
        return self.version(max(numbers))

    def describe(self) -> list[dict[str, Any]]:
        """Each version: number, digest, in force or pending, where logged, when, changes."""
        from overt.crypto.dsse import Envelope

        current = self.current().version
        pending = self.pending_version()
        rows = []
        for v in self.versions():
            row: dict[str, Any] = {
                "version": v.version,
                "sha256": v.sha256,
                "in_force": v.version == current,
                "pending": v.version == pending,
                "logged": v.logged,
            }
            if v.statement is not None:
                doc = json.loads(Envelope.from_bytes(v.statement).payload)
                row["time"] = doc.get("time")
                row["changes"] = doc.get("changes", [])
            rows.append(row)
        return rows

    def save(self, version: PolicyVersion) -> None:
        assert version.statement is not None
        text_file = self.dir / f"{version.version}.toml"
        if not text_file.exists():  # version 1 of a vault made before policy versions
            atomic_write(text_file, version.text.encode("utf-8"))
        doc = {
            "version": version.version,
            "sha256": version.sha256,
            "statement": base64.b64encode(version.statement).decode(),
            "logged": version.logged,
        }
        atomic_write(self.dir / f"{version.version}.json", json.dumps(doc, indent=1).encode())


def statement_doc(
    version: PolicyVersion, previous: PolicyVersion | None, note: str = ""
) -> dict[str, Any]:
    policy = version.policy
    doc: dict[str, Any] = {
        "id": secrets.token_hex(8),
        "version": version.version,
        "sha256": version.sha256,
        "previous": None
        if previous is None
        else {"version": previous.version, "sha256": previous.sha256},
        "regions": {r.name: r.description for r in policy.regions.values()},
        "countries": dict(sorted(policy.countries.items())),
        "changes": changes(previous.policy, policy) if previous is not None else [],
        "time": int(time.time()),
    }
    if note:
        doc["note"] = note
    return doc


@dataclass
class PolicyChange:
    version: int
    changed: bool
    logged: dict[str, int]
    changes: list[dict[str, str | None]]
    initial_logged: bool = False


def _origin_prefix(vault: Vault) -> str:
    from overt.log.config import load_config

    for region in vault.policy.regions:
        config = vault.root / "logs" / region / "log.toml"
        if config.exists():
            origin = load_config(config).origin
            suffix = f"/access/{region}"
            if origin.endswith(suffix):
                return origin[: -len(suffix)]
    raise PolicyError("cannot tell the access logs' origin prefix from the existing logs")


def _log_version(vault: Vault, history: PolicyHistory, version: PolicyVersion) -> None:
    """Append a version's statement to every region's access log (idempotent: a log
    that already holds the statement keeps its index), creating new regions' logs."""
    from overt.log.config import LogConfig
    from overt.log.log import init_log
    from overt.vault.vault import vault_database

    assert version.statement is not None
    earlier = [v for v in history.versions() if v.version < version.version and v.statement]
    for region in sorted(version.policy.regions):
        log_dir = vault.root / "logs" / region
        if not (log_dir / "log.toml").exists():
            init_log(
                log_dir,
                LogConfig(
                    origin=f"{_origin_prefix(vault)}/access/{region}",
                    database=vault_database(vault.root),
                ),
            )
            # A new region's log starts with the history so far.
            for old in earlier:
                assert old.statement is not None
                vault.append_signed(region, old.statement)
        version.logged[region] = vault.append_signed(region, version.statement)
    history.save(version)


def set_policy(vault: Vault, text: str) -> PolicyChange:
    """Make `text` the residency policy in force, as a new logged version.

    Finishes a change a crash interrupted first, and logs version 1 if it never
    was. Refuses a version that drops a region, or that would leave stored data
    with no region, and any change while a relocation run is unfinished.
    """
    from overt.vault.relocate import unfinished_run

    new = ResidencyPolicy.parse(text, "new residency policy")
    history = PolicyHistory(vault.root)
    # Every region's log must take the statement: find out before anything changes.
    for region in vault.policy.regions:
        try:
            vault.log(region)
        except OvertError as exc:
            raise PolicyError(
                f"the access log of region {region} is unavailable ({exc}); the policy is "
                "unchanged (with the SQLite driver, stop 'overt vault serve' first)"
            ) from exc
    _recover(vault, history)
    run = unfinished_run(vault.root)
    if run is not None:
        raise PolicyError(
            f"relocation run {run} is unfinished; finish it ('overt vault relocate') before "
            "changing the policy again"
        )
    current = history.current()
    initial_logged = False
    previous: PolicyVersion | None = None
    for version in history.versions():
        if version.version > current.version:
            break
        if not version.fully_logged:
            if version.statement is None:
                note = "the vault's initial policy" if version.version == 1 else ""
                version.statement = vault.sign_statement(statement_doc(version, previous, note))
                history.save(version)
            _log_version(vault, history, version)
            initial_logged = initial_logged or version.version == 1
        previous = version
    if policy_sha256(text) == current.sha256:
        return PolicyChange(current.version, False, current.logged, [], initial_logged)
    old = current.policy
    dropped = sorted(set(old.regions) - set(new.regions))
    if dropped:
        raise PolicyError(
            f"the new policy drops region(s) {', '.join(dropped)}; a version may add regions "
            "but not remove one: keep [regions.<name>] with no countries to empty it"
        )
    stranded: dict[str, int] = {}
    for region in old.regions:
        for country, count in vault.store(region).live_countries().items():
            with contextlib.suppress(ResidencyError):
                new.region_for(country)
                continue
            stranded[country] = stranded.get(country, 0) + count
    if stranded:
        listed = ", ".join(f"{n} of customers in {c}" for c, n in sorted(stranded.items()))
        raise PolicyError(
            f"the new policy gives no region to stored data ({listed} objects); "
            "erase it or keep those countries in the policy"
        )
    version = PolicyVersion(current.version + 1, text, policy_sha256(text))
    version.statement = vault.sign_statement(statement_doc(version, current))
    # The marker before anything else, and long before the statement is logged
    # (see the module's docstring); the statement is saved before it is logged.
    atomic_write(history.pending_file, f"{version.version}\n".encode())
    atomic_write(history.dir / f"{version.version}.toml", text.encode("utf-8"))
    history.save(version)
    _complete(vault, history, version)
    return PolicyChange(version.version, True, version.logged, changes(old, new), initial_logged)


def _recover(vault: Vault, history: PolicyHistory) -> None:
    """Finish a change a crash interrupted once its statement may be in a log, or
    forget it if it never got that far (nothing of it was logged)."""
    pending = history.pending_version()
    if pending is None:
        return
    toml = history.dir / f"{pending}.toml"
    if toml.exists() and (history.dir / f"{pending}.json").exists():
        _complete(vault, history, history.version(pending))
        return
    toml.unlink(missing_ok=True)
    history.pending_file.unlink(missing_ok=True)
    vault.reload_policy()


def _complete(vault: Vault, history: PolicyHistory, version: PolicyVersion) -> None:
    _log_version(vault, history, version)
    atomic_write(vault.root / "residency.toml", version.text.encode("utf-8"))
    history.pending_file.unlink(missing_ok=True)
    vault.reload_policy()


def logged_statements(vault: Vault, region: str) -> list[tuple[int, dict[str, Any]]]:
    """(index, statement) of every policy statement in a region's access log, in order."""
    from overt.vault.events import open_entry

    found = []
    log = vault.log(region)
    for index in range(log.sequenced_size()):
        try:
            kind, doc = open_entry(log.entry(index), vault.verifier)
        except OvertError:
            continue
        if kind == "policy":
            found.append((index, doc))
    return found

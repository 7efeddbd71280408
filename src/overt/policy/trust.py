"""The customer's trust policy: one TOML file that decides what gets installed (docs/policy.md).

It names the release log, the witnesses and their quorum (inline, or as a C2SP
tlog-policy file), the conveyor keys trusted to sign provenance, the
rebuilders and how many must report PASSED, the reviewers and how many
reviews are required, the longest a checkpoint may go without fresh
cosignatures, and per-channel rules (e.g. `rules` updates need fewer
rebuilders but a review). Unknown fields are refused, so a misspelt
requirement can never silently relax the policy.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from overt.crypto.keys import Ed25519Verifier, ed25519_verifier
from overt.errors import MalformedError
from overt.tlog.policy import Policy

CHANNELS = ("products", "rules")
REVIEW_SCOPES = ("overview", "critical", "full")


@dataclass(frozen=True)
class ChannelRule:
    rebuilders_required: int
    reviews_required: int
    review_scope: str
    # A rule set's statement must be logged, and its flagged rules approved.
    rule_audit: bool = False


@dataclass(frozen=True)
class RetiredConveyor:
    """A conveyor key retired when the conveyor moved (docs/conveyor.md, "Moving")."""

    key: str
    end: datetime
    log_index: int | None  # the key transition's log entry: nothing logged after it counts


@dataclass(frozen=True)
class Location:
    """Releases built after `after` must come from a conveyor in `jurisdiction`."""

    jurisdiction: str
    after: datetime


@dataclass(frozen=True)
class TrustPolicy:
    log_key: str
    log_url: str | None
    tlog_policy: Policy  # the log and its witness quorum
    max_checkpoint_age_s: int | None
    conveyor_keys: tuple[str, ...]
    rebuilder_keys: tuple[str, ...]
    reviewer_keys: tuple[str, ...]
    channels: dict[str, ChannelRule] = field(default_factory=dict)
    updates_url: str | None = None
    updates_root: Path | None = None
    retired_conveyors: tuple[RetiredConveyor, ...] = ()
    location: Location | None = None
    source: Path | None = None

    @property
    def origin(self) -> str:
        return self.log_key.split("+", 1)[0]

    def conveyors(self) -> list[Ed25519Verifier]:
        return [ed25519_verifier(k) for k in self.conveyor_keys]

    def rebuilders(self) -> list[Ed25519Verifier]:
        return [ed25519_verifier(k) for k in self.rebuilder_keys]

    def reviewers(self) -> list[Ed25519Verifier]:
        return [ed25519_verifier(k) for k in self.reviewer_keys]

    def channel(self, name: str) -> ChannelRule:
        try:
            return self.channels[name]
        except KeyError:
            raise MalformedError(
                f"channel {name!r} is not in the policy (known: {', '.join(sorted(self.channels))})"
            ) from None

    def explain(self) -> list[str]:
        """The policy in plain words, one sentence per line."""
        p = self.tlog_policy
        lines = [f"Releases must be logged in {self.origin} (key {self.log_key})."]
        if p.witnesses:
            names = ", ".join(sorted(p.witnesses))
            lines.append(
                f"Its checkpoints must be cosigned by witnesses satisfying quorum {p.quorum!r} "
                f"(witnesses: {names})."
            )
        else:
            lines.append("Checkpoints need no witness cosignatures (no split-view protection).")
        if self.max_checkpoint_age_s is not None:
            lines.append(
                f"The quorum's cosignatures must be at most {_duration(self.max_checkpoint_age_s)} "
                "old, so a frozen view of the log is refused."
            )
        lines.append(
            f"Provenance must be signed by one of {len(self.conveyor_keys)} trusted conveyor "
            f"key(s): {', '.join(k.split('+')[0] for k in self.conveyor_keys)}."
        )
        for r in self.retired_conveyors:
            after = f" or logged from entry {r.log_index} on" if r.log_index is not None else ""
            lines.append(
                f"Conveyor key {r.key.split('+')[0]}+{r.key.split('+')[1]} was retired on "
                f"{r.end:%Y-%m-%d %H:%M} UTC: releases it built after that{after} are refused."
            )
        if self.location is not None:
            lines.append(
                f"Releases built after {self.location.after:%Y-%m-%d %H:%M} UTC must come from "
                f"a conveyor in {self.location.jurisdiction}."
            )
        for name, rule in sorted(self.channels.items()):
            parts = [
                f"{rule.rebuilders_required} of the {len(self.rebuilder_keys)} trusted rebuilders "
                "must report PASSED (and none FAILED)"
            ]
            if rule.reviews_required:
                parts.append(
                    f"{rule.reviews_required} {rule.review_scope} review(s) by trusted reviewers "
                    "are required"
                )
            else:
                parts.append("no source review is required")
            if rule.rule_audit:
                parts.append(
                    "its rule-set statement must be logged and every rule with a high-severity "
                    "finding approved by a trusted reviewer"
                )
            lines.append(f"Channel {name!r}: " + "; ".join(parts) + ".")
        if self.log_url:
            lines.append(
                f"Checkpoints are checked for consistency with the last one seen, "
                f"asking {self.log_url} for proofs."
            )
        if self.updates_url:
            lines.append(f"Updates come from the TUF repository at {self.updates_url}.")
        return lines


def _duration(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} day(s)"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hour(s)"
    return f"{seconds} seconds"


class _Table:
    def __init__(self, doc: Any, where: str, name: str) -> None:
        if not isinstance(doc, dict):
            raise MalformedError(f"{where}: [{name}] must be a table")
        self.doc = doc
        self.where = where
        self.name = name

    def field(self, key: str) -> str:
        return f"{self.where}: {self.name}.{key}" if self.name else f"{self.where}: {key}"

    def only(self, known: set[str]) -> None:
        extra = sorted(set(self.doc) - known)
        if extra:
            raise MalformedError(
                f"{self.field(extra[0])} is not a policy field (known: {', '.join(sorted(known))})"
            )

    def string(self, key: str, required: bool = True) -> str | None:
        value = self.doc.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise MalformedError(f"{self.field(key)} must be a non-empty string")
        return value.strip()

    def count(self, key: str, default: int) -> int:
        value = self.doc.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise MalformedError(f"{self.field(key)} must be a whole number, 0 or more")
        return value

    def keys(self, key: str, required: bool) -> tuple[str, ...]:
        value = self.doc.get(key, [])
        if not isinstance(value, list) or (required and not value):
            raise MalformedError(f"{self.field(key)} must be a non-empty list of verifier keys")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise MalformedError(f"{self.field(key)}[{i}] must be a verifier key string")
            try:
                ed25519_verifier(item)
            except MalformedError as exc:
                raise MalformedError(f"{self.field(key)}[{i}]: {exc}") from exc
        if len(set(value)) != len(value):
            raise MalformedError(f"{self.field(key)} lists a key twice")
        return tuple(value)


def load_policy(path: Path) -> TrustPolicy:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError(f"{path}: not UTF-8") from exc
    return parse_policy(text, str(path), path.parent)


def parse_policy(text: str, where: str = "policy", base: Path | None = None) -> TrustPolicy:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MalformedError(f"{where}: {exc}") from exc
    top = _Table(doc, where, "")
    top.only(
        {"version", "log", "witnesses", "conveyors", "rebuilders", "reviews", "channels", "updates"}
    )
    if doc.get("version", 1) != 1:
        raise MalformedError(f"{where}: version must be 1")

    log = _Table(doc.get("log"), where, "log")
    log.only({"key", "url"})
    log_key = log.string("key")
    assert log_key is not None
    try:
        ed25519_verifier(log_key)
    except MalformedError as exc:
        raise MalformedError(f"{log.field('key')}: {exc}") from exc
    log_url = log.string("url", required=False)

    witnesses = _Table(doc.get("witnesses", {}), where, "witnesses")
    witnesses.only({"tlog_policy", "witness", "quorum", "max_checkpoint_age_hours"})
    tlog_policy = _witness_policy(witnesses, log_key, base)
    age_hours = witnesses.count("max_checkpoint_age_hours", 0)

    conveyors = _Table(doc.get("conveyors"), where, "conveyors")
    conveyors.only({"keys", "retired", "location"})
    retired, location = _conveyor_moves(conveyors)
    rebuilders = _Table(doc.get("rebuilders", {}), where, "rebuilders")
    rebuilders.only({"keys", "required"})
    rebuilder_keys = rebuilders.keys("keys", required=False)
    reviews = _Table(doc.get("reviews", {}), where, "reviews")
    reviews.only({"keys", "required", "scope"})
    reviewer_keys = reviews.keys("keys", required=False)

    default = ChannelRule(
        rebuilders.count("required", 1),
        reviews.count("required", 0),
        _scope(reviews, "scope"),
    )
    channels = {name: replace(default, rule_audit=name == "rules") for name in CHANNELS}
    channel_doc = _Table(doc.get("channels", {}), where, "channels")
    for name, body in channel_doc.doc.items():
        if name not in CHANNELS:
            # A misspelt channel would otherwise leave the real one on the defaults.
            raise MalformedError(
                f"{channel_doc.field(name)} is not a channel (known: {', '.join(CHANNELS)})"
            )
        table = _Table(body, where, f"channels.{name}")
        table.only(
            {
                "rebuilders_required",
                "reviews_required",
                "review_scope",
                "flagged_rules_need_approval",
            }
        )
        audit = table.doc.get("flagged_rules_need_approval", name == "rules")
        if not isinstance(audit, bool):
            raise MalformedError(
                f"{table.field('flagged_rules_need_approval')} must be true or false"
            )
        channels[name] = ChannelRule(
            table.count("rebuilders_required", default.rebuilders_required),
            table.count("reviews_required", default.reviews_required),
            _scope(table, "review_scope") if "review_scope" in table.doc else default.review_scope,
            audit,
        )
    for name, rule in channels.items():
        if rule.rebuilders_required > len(rebuilder_keys):
            raise MalformedError(
                f"{where}: channel {name!r} needs {rule.rebuilders_required} rebuilder(s) but "
                f"rebuilders.keys lists {len(rebuilder_keys)}: nothing could ever be installed"
            )
        if rule.reviews_required > len(reviewer_keys):
            raise MalformedError(
                f"{where}: channel {name!r} needs {rule.reviews_required} review(s) but "
                f"reviews.keys lists {len(reviewer_keys)}: nothing could ever be installed"
            )

    updates = _Table(doc.get("updates", {}), where, "updates")
    updates.only({"url", "root"})
    root = updates.string("root", required=False)
    return TrustPolicy(
        log_key=log_key,
        log_url=log_url,
        tlog_policy=tlog_policy,
        max_checkpoint_age_s=age_hours * 3600 if age_hours else None,
        conveyor_keys=conveyors.keys("keys", required=True),
        retired_conveyors=retired,
        location=location,
        rebuilder_keys=rebuilder_keys,
        reviewer_keys=reviewer_keys,
        channels=channels,
        updates_url=updates.string("url", required=False),
        updates_root=(base or Path(".")) / root if root else None,
        source=Path(where) if base is not None else None,
    )


def _timestamp(table: _Table, key: str) -> datetime:
    value = table.doc.get(key)
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedError(
            f"{table.field(key)} must be an RFC 3339 time like 2026-11-27T12:00:00Z"
        ) from exc
    if parsed.tzinfo is None:
        raise MalformedError(f"{table.field(key)} must carry a time zone (e.g. a trailing Z)")
    return parsed


def _conveyor_moves(
    conveyors: _Table,
) -> tuple[tuple[RetiredConveyor, ...], Location | None]:
    retired_doc = conveyors.doc.get("retired", [])
    if not isinstance(retired_doc, list):
        raise MalformedError(
            f"{conveyors.field('retired')} must be a list of [[conveyors.retired]]"
        )
    retired = []
    for i, item in enumerate(retired_doc):
        table = _Table(item, conveyors.where, f"conveyors.retired[{i}]")
        table.only({"key", "end", "log_index"})
        key = table.string("key")
        assert key is not None
        try:
            ed25519_verifier(key)
        except MalformedError as exc:
            raise MalformedError(f"{table.field('key')}: {exc}") from exc
        index = table.doc.get("log_index")
        if index is not None and (
            isinstance(index, bool) or not isinstance(index, int) or index < 0
        ):
            raise MalformedError(f"{table.field('log_index')} must be a log index, 0 or more")
        retired.append(RetiredConveyor(key, _timestamp(table, "end"), index))
    location = None
    if "location" in conveyors.doc:
        table = _Table(conveyors.doc["location"], conveyors.where, "conveyors.location")
        table.only({"jurisdiction", "after"})
        code = table.string("jurisdiction")
        if code is None or not re.fullmatch(r"[A-Z]{2}", code):
            raise MalformedError(f"{table.field('jurisdiction')} must be an ISO 3166 code like CH")
        location = Location(code, _timestamp(table, "after"))
    return tuple(retired), location


def _scope(table: _Table, key: str) -> str:
    value = table.doc.get(key, "full")
    if value not in REVIEW_SCOPES:
        raise MalformedError(f"{table.field(key)} must be one of {', '.join(REVIEW_SCOPES)}")
    return str(value)


def _witness_policy(table: _Table, log_key: str, base: Path | None) -> Policy:
    """The log and its witness quorum, as a C2SP tlog-policy."""
    if "tlog_policy" in table.doc:
        if "witness" in table.doc or "quorum" in table.doc:
            raise MalformedError(
                f"{table.field('tlog_policy')}: give a tlog-policy file or inline witnesses, "
                "not both"
            )
        name = table.string("tlog_policy")
        assert name is not None
        path = (base or Path(".")) / name
        try:
            policy = Policy.parse(path.read_bytes())
        except FileNotFoundError as exc:
            raise MalformedError(f"{table.field('tlog_policy')}: {path} does not exist") from exc
        if not any(str(log.vkey) == log_key for log in policy.logs):
            raise MalformedError(
                f"{table.field('tlog_policy')}: {path} does not list the log key given in log.key"
            )
        return policy
    witnesses = table.doc.get("witness", [])
    if not isinstance(witnesses, list):
        raise MalformedError(f"{table.field('witness')} must be a list of [[witnesses.witness]]")
    lines = [f"log {log_key}"]
    names = []
    for i, w in enumerate(witnesses):
        entry = _Table(w, table.where, f"witnesses.witness[{i}]")
        entry.only({"name", "key", "url"})
        name, key = entry.string("name"), entry.string("key")
        url = entry.string("url", required=False)
        lines.append(" ".join(["witness", str(name), str(key), *([url] if url else [])]))
        names.append(str(name))
    quorum = table.count("quorum", len(names))
    if quorum > len(names):
        raise MalformedError(
            f"{table.field('quorum')} is {quorum} but only {len(names)} witnesses are listed"
        )
    if names and quorum:
        lines.append(f"group policy-quorum {quorum} {' '.join(names)}")
        lines.append("quorum policy-quorum")
    else:
        lines.append("quorum none")  # no witnesses, or quorum = 0: no cosignature required
    try:
        return Policy.parse("\n".join(lines) + "\n")
    except MalformedError as exc:
        raise MalformedError(f"{table.where}: [witnesses]: {exc}") from exc

"""Rule-set statements and rule approvals: the signed, logged records of a rule set.

A **rule-set statement** (in-toto Statement, predicate type `RULESET_TYPE`,
signed with the conveyor key) has one subject for the bundle and one per rule
(``rule:NAME`` with the SHA-256 of its normalised text), and for each rule its
tags, action, whether the user is notified, its audience and the audit's
findings. Anyone can then prove that a given rule was, or was not, in what
customers received, and whom it targeted.

An **approval** (predicate type `APPROVAL_TYPE`, signed by a supervisor)
names exact rule digests and a written justification; a rule with a
high-severity finding needs one before its set may be published or installed.
Formats: docs/formats.md, "Rule-set statements".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from overt.crypto.dsse import Envelope, verify_envelope
from overt.crypto.intoto import PAYLOAD_TYPE, Statement, Subject
from overt.crypto.keys import Ed25519Signer, Ed25519Verifier
from overt.errors import MalformedError, OvertError

RULESET_TYPE = "https://overt.dev/rules/ruleset/v1"
APPROVAL_TYPE = "https://overt.dev/rules/approval/v1"
# Findings of these severities hold a rule set back until approved.
BLOCKING = ("error", "high")


def input_digest(predicate: Mapping[str, Any]) -> str | None:
    """The SHA-256 in `inputAttestations[0].digest`, or None whatever else is there."""
    inputs = predicate.get("inputAttestations")
    first = inputs[0] if isinstance(inputs, list) and inputs else None
    digest = first.get("digest") if isinstance(first, dict) else None
    value = digest.get("sha256") if isinstance(digest, dict) else None
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class RuleRecord:
    name: str
    sha256: str
    file: str
    tags: tuple[str, ...]
    action: str
    notify: bool
    audience: tuple[str, ...]
    findings: tuple[dict[str, Any], ...]  # {"lint", "severity", "message"}

    @property
    def flagged(self) -> bool:
        return any(f["severity"] in BLOCKING for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "file": self.file,
            "tags": list(self.tags),
            "action": self.action,
            "notify": self.notify,
            "audience": list(self.audience),
            "findings": list(self.findings),
        }

    @classmethod
    def from_json(cls, obj: Any, i: int) -> RuleRecord:
        where = f"rule-set statement: rules[{i}]"
        if not isinstance(obj, dict):
            raise MalformedError(f"{where} must be an object")
        for key in ("name", "sha256", "file", "action", "notify", "audience"):
            if key not in obj:
                raise MalformedError(f"{where} is missing {key!r}")
        for key in ("name", "sha256", "file", "action"):
            if not isinstance(obj[key], str):
                raise MalformedError(f"{where}.{key} must be a string")
        if not isinstance(obj["notify"], bool):
            raise MalformedError(f"{where}.notify must be true or false")
        lists = {"tags": obj.get("tags", []), "audience": obj["audience"]}
        for key, value in lists.items():
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise MalformedError(f"{where}.{key} must be a list of strings")
        if not obj["audience"]:
            raise MalformedError(f"{where}.audience must not be empty")
        findings = obj.get("findings", [])
        if not isinstance(findings, list):
            raise MalformedError(f"{where}.findings must be a list")
        for j, f in enumerate(findings):
            if not isinstance(f, dict) or not all(
                isinstance(f.get(k), str) for k in ("lint", "severity", "message")
            ):
                raise MalformedError(
                    f"{where}.findings[{j}] needs string lint, severity and message"
                )
        return cls(
            name=obj["name"],
            sha256=obj["sha256"],
            file=obj["file"],
            tags=tuple(lists["tags"]),
            action=obj["action"],
            notify=obj["notify"],
            audience=tuple(lists["audience"]),
            findings=tuple(
                {"lint": f["lint"], "severity": f["severity"], "message": f["message"]}
                for f in findings
            ),
        )


@dataclass(frozen=True)
class RuleSet:
    """The rule-set statement's content."""

    name: str
    version: str
    bundle: Subject
    provenance_sha256: str
    rules: tuple[RuleRecord, ...]

    @property
    def flagged(self) -> list[RuleRecord]:
        return [r for r in self.rules if r.flagged]

    @property
    def targeted(self) -> list[RuleRecord]:
        return [r for r in self.rules if tuple(r.audience) != ("all",)]

    def statement(self) -> Statement:
        subjects = [
            self.bundle,
            *(Subject(f"rule:{r.name}", {"sha256": r.sha256}) for r in self.rules),
        ]
        return Statement(
            subjects,
            RULESET_TYPE,
            {
                "ruleset": self.name,
                "version": self.version,
                "inputAttestations": [{"digest": {"sha256": self.provenance_sha256}}],
                "rules": [r.to_json() for r in self.rules],
                "flagged": [r.name for r in self.flagged],
                "targeted": [r.name for r in self.targeted],
            },
        )

    @classmethod
    def from_statement(cls, statement: Statement) -> RuleSet:
        if statement.predicate_type != RULESET_TYPE:
            raise MalformedError(f"not a rule-set statement: {statement.predicate_type}")
        pred = statement.predicate
        rules = pred.get("rules")
        inputs = pred.get("inputAttestations")
        if not isinstance(rules, list) or not isinstance(inputs, list) or not inputs:
            raise MalformedError("rule-set statement: rules and inputAttestations are required")
        digest = input_digest(pred)
        if not isinstance(digest, str):
            raise MalformedError("rule-set statement: inputAttestations[0] needs a sha256")
        records = tuple(RuleRecord.from_json(r, i) for i, r in enumerate(rules))
        bundle = statement.subjects[0]
        listed = {s.name: s.digest.get("sha256") for s in statement.subjects[1:]}
        for record in records:
            if listed.get(f"rule:{record.name}") != record.sha256:
                raise MalformedError(f"rule-set statement: rule {record.name} is not a subject")
        return cls(
            str(pred.get("ruleset", "")),
            str(pred.get("version", "")),
            bundle,
            digest,
            records,
        )


@dataclass(frozen=True)
class Approval:
    provenance_sha256: str
    rules: dict[str, str]  # name -> sha256 approved
    justification: str

    def statement(self) -> Statement:
        return Statement(
            [Subject(f"rule:{n}", {"sha256": d}) for n, d in sorted(self.rules.items())],
            APPROVAL_TYPE,
            {
                "verdict": "approved",
                "justification": self.justification,
                "inputAttestations": [{"digest": {"sha256": self.provenance_sha256}}],
            },
        )

    @classmethod
    def from_statement(cls, statement: Statement) -> Approval:
        if statement.predicate_type != APPROVAL_TYPE:
            raise MalformedError(f"not a rule approval: {statement.predicate_type}")
        pred = statement.predicate
        justification = pred.get("justification")
        if pred.get("verdict") != "approved" or not isinstance(justification, str):
            raise MalformedError("rule approval: verdict approved and a justification are required")
        digest = input_digest(pred)
        if not isinstance(digest, str):
            raise MalformedError("rule approval: inputAttestations[0] needs a sha256")
        rules = {
            s.name.removeprefix("rule:"): s.digest.get("sha256", "")
            for s in statement.subjects
            if s.name.startswith("rule:")
        }
        return cls(digest, rules, justification)


def make_approval(
    ruleset: RuleSet, names: Sequence[str], justification: str, signer: Ed25519Signer
) -> Envelope:
    """A supervisor's approval of these rules' exact digests, signed."""
    if len(justification.strip()) < 20:
        raise MalformedError("write a justification of at least a sentence (20 characters)")
    by_name = {r.name: r for r in ruleset.rules}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise MalformedError(f"not in the rule set: {', '.join(missing)}")
    if not names:
        raise MalformedError("name at least one rule to approve")
    approval = Approval(
        ruleset.provenance_sha256, {n: by_name[n].sha256 for n in names}, justification.strip()
    )
    return approval.statement().sign([signer])


def unapproved(
    ruleset: RuleSet, approvals: Sequence[bytes], reviewers: Sequence[Ed25519Verifier]
) -> list[RuleRecord]:
    """Flagged rules that no trusted reviewer approved at their exact digest."""
    approved: set[tuple[str, str]] = set()
    for entry in approvals:
        try:
            envelope = Envelope.from_bytes(entry)
            verify_envelope(envelope, reviewers, payload_type=PAYLOAD_TYPE)
            approval = Approval.from_statement(Statement.from_envelope(envelope))
        except (MalformedError, OvertError):
            continue
        if approval.provenance_sha256 != ruleset.provenance_sha256:
            continue
        approved.update(approval.rules.items())
    return [r for r in ruleset.flagged if (r.name, r.sha256) not in approved]

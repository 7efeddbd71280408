"""The review statement (docs/review.md, docs/formats.md "Review statements").

An in-toto Statement v1, predicate type `REVIEW_TYPE`, signed (DSSE) by the reviewer's key
and logged. Its subjects are the release's artifacts (the provenance's subjects), and its
predicate says which provenance was reviewed (`inputAttestations[0]`, by the SHA-256 of the
logged entry), which source tree was read, against which earlier release it was diffed, the
verdict, how deep the review went (`scope`) and every finding. This is exactly what the
verifier counts (`overt.policy.verify`, check "reviewed").

The reviewer writes a findings file (TOML or JSON):

    verdict = "approved"            # or "rejected"
    scope = "full"                  # overview | critical | full
    summary = "Read every change since 1.0."          # optional
    reviewer = "https://reviews.example.org/alice"     # optional, a URI naming the reviewer

    [[findings]]
    file = "src/tiny/net.py"
    line = 12                       # optional, 1-based; 0 or absent: the whole file
    severity = "medium"             # low | medium | high | critical
    text = "Timeout is not bounded."
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overt.crypto.dsse import Envelope
from overt.crypto.intoto import Statement, Subject
from overt.crypto.keys import Ed25519Signer
from overt.errors import MalformedError

REVIEW_TYPE = "https://overt.dev/review/v1"
VERDICTS = ("approved", "rejected")
SCOPES = ("overview", "critical", "full")  # narrowest to widest, as overt.policy.trust
SEVERITIES = ("low", "medium", "high", "critical")
MAX_FINDINGS = 10_000
MAX_TEXT = 20_000


@dataclass(frozen=True)
class Finding:
    file: str  # path inside the reviewed source tree
    line: int  # 1-based; 0: the file as a whole
    severity: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "severity": self.severity, "text": self.text}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Finding:
        if not isinstance(obj, dict):
            raise MalformedError(f"{where} must be a table/object")
        unknown = set(obj) - {"file", "line", "severity", "text"}
        if unknown:
            raise MalformedError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        file, line = obj.get("file"), obj.get("line", 0)
        severity, text = obj.get("severity"), obj.get("text")
        if not isinstance(file, str) or not file or file.startswith("/") or ".." in file.split("/"):
            raise MalformedError(f"{where}.file must be a relative path inside the source tree")
        if isinstance(line, bool) or not isinstance(line, int) or line < 0:
            raise MalformedError(f"{where}.line must be a line number (1-based) or 0")
        if severity not in SEVERITIES:
            raise MalformedError(f"{where}.severity must be one of {', '.join(SEVERITIES)}")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            raise MalformedError(f"{where}.text must be a non-empty string (what was found)")
        return cls(file, line, severity, text)


@dataclass(frozen=True)
class Findings:
    """What the reviewer wrote: verdict, scope, findings."""

    verdict: str
    scope: str
    findings: tuple[Finding, ...] = ()
    summary: str = ""
    reviewer: str = ""

    @classmethod
    def from_json(cls, obj: Any, where: str = "findings") -> Findings:
        if not isinstance(obj, dict):
            raise MalformedError(f"{where} must be a table/object")
        unknown = set(obj) - {"verdict", "scope", "findings", "summary", "reviewer"}
        if unknown:
            raise MalformedError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        verdict, scope = obj.get("verdict"), obj.get("scope")
        if verdict not in VERDICTS:
            raise MalformedError(f"{where}: verdict must be one of {', '.join(VERDICTS)}")
        if scope not in SCOPES:
            raise MalformedError(f"{where}: scope must be one of {', '.join(SCOPES)}")
        items = obj.get("findings", [])
        if not isinstance(items, list) or len(items) > MAX_FINDINGS:
            raise MalformedError(f"{where}: findings must be a list (at most {MAX_FINDINGS})")
        summary, reviewer = obj.get("summary", ""), obj.get("reviewer", "")
        if not isinstance(summary, str) or len(summary) > MAX_TEXT:
            raise MalformedError(f"{where}: summary must be a string")
        if not isinstance(reviewer, str):
            raise MalformedError(f"{where}: reviewer must be a string (a URI naming you)")
        return cls(
            verdict,
            scope,
            tuple(Finding.from_json(f, f"{where}: findings[{i}]") for i, f in enumerate(items)),
            summary,
            reviewer,
        )

    @classmethod
    def load(cls, path: Path) -> Findings:
        """Read a findings file: JSON if it ends in .json, TOML otherwise."""
        data = path.read_bytes()
        try:
            if path.suffix == ".json":
                obj = json.loads(data)
            else:
                obj = tomllib.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # JSON, TOML and UTF-8 errors
            raise MalformedError(f"{path}: {exc}") from exc
        return cls.from_json(obj, str(path))

    def check_against(self, tree: Path) -> None:
        """Every finding names a file in the reviewed tree, and a line it has."""
        for i, finding in enumerate(self.findings):
            path = tree / finding.file
            if not path.is_file():
                raise MalformedError(
                    f"findings[{i}]: {finding.file} is not a file of the reviewed source"
                )
            if finding.line:
                lines = path.read_bytes().count(b"\n") + 1
                if finding.line > lines:
                    raise MalformedError(
                        f"findings[{i}]: {finding.file} has {lines} lines, not {finding.line}"
                    )


@dataclass(frozen=True)
class Review:
    """A review statement's content."""

    subjects: tuple[Subject, ...]  # the release's artifacts
    provenance_uri: str  # tlog://ORIGIN#INDEX
    provenance_sha256: str  # of the logged provenance entry
    tree_digest: str  # overt-tree/v1 of the source that was read
    verdict: str
    scope: str
    reviewer_id: str
    time_reviewed: str  # RFC 3339
    findings: tuple[Finding, ...] = ()
    summary: str = ""
    base: Mapping[str, Any] | None = None  # {uri, digest: {sha256}, version} or None

    def statement(self) -> Statement:
        predicate: dict[str, Any] = {
            "reviewer": {"id": self.reviewer_id},
            "timeReviewed": self.time_reviewed,
            "inputAttestations": [
                {
                    "name": "provenance",
                    "uri": self.provenance_uri,
                    "digest": {"sha256": self.provenance_sha256},
                }
            ],
            "source": {"digest": {"overtTree": self.tree_digest}},
            "base": dict(self.base) if self.base is not None else None,
            "verdict": self.verdict,
            "scope": self.scope,
            "summary": self.summary,
            "findings": [f.to_json() for f in self.findings],
        }
        return Statement(list(self.subjects), REVIEW_TYPE, predicate)

    def sign(self, signer: Ed25519Signer) -> Envelope:
        return self.statement().sign([signer])

    @classmethod
    def from_statement(cls, statement: Statement) -> Review:
        if statement.predicate_type != REVIEW_TYPE:
            raise MalformedError(f"not a review: predicateType is {statement.predicate_type!r}")
        pred = statement.predicate
        inputs = pred.get("inputAttestations")
        first = inputs[0] if isinstance(inputs, list) and inputs else None
        digest = first.get("digest") if isinstance(first, dict) else None
        if not isinstance(first, dict) or not isinstance(digest, dict):
            raise MalformedError("review: inputAttestations[0] must name the provenance")
        sha, uri = digest.get("sha256"), first.get("uri", "")
        if not isinstance(sha, str) or not isinstance(uri, str):
            raise MalformedError("review: inputAttestations[0].digest.sha256 is missing")
        if pred.get("verdict") not in VERDICTS or pred.get("scope") not in SCOPES:
            raise MalformedError("review: verdict or scope is not one of the known values")
        reviewer, source = pred.get("reviewer"), pred.get("source")
        reviewer_id = reviewer.get("id") if isinstance(reviewer, dict) else None
        tree = source.get("digest", {}).get("overtTree") if isinstance(source, dict) else None
        if not isinstance(reviewer_id, str) or not isinstance(tree, str):
            raise MalformedError("review: reviewer.id and source.digest.overtTree are required")
        findings = pred.get("findings", [])
        if not isinstance(findings, list):
            raise MalformedError("review: findings must be a list")
        base = pred.get("base")
        if base is not None and not isinstance(base, dict):
            raise MalformedError("review: base must be an object or null")
        when, summary = pred.get("timeReviewed", ""), pred.get("summary", "")
        if not isinstance(when, str) or not isinstance(summary, str):
            raise MalformedError("review: timeReviewed and summary must be strings")
        return cls(
            subjects=tuple(statement.subjects),
            provenance_uri=uri,
            provenance_sha256=sha,
            tree_digest=tree,
            verdict=pred["verdict"],
            scope=pred["scope"],
            reviewer_id=reviewer_id,
            time_reviewed=when,
            findings=tuple(
                Finding.from_json(f, f"review: findings[{i}]") for i, f in enumerate(findings)
            ),
            summary=summary,
            base=base,
        )


def count_by_severity(findings: Sequence[Finding]) -> dict[str, int]:
    return {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES}

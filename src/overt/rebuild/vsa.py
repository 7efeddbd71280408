"""SLSA Verification Summary Attestation v1 (slsa.dev/spec/v1.0/verification_summary).

A rebuilder's verdict on one release. The spec's required fields are all
present: `verifier.id`, `timeVerified`, `resourceUri`, `policy`,
`verificationResult` (PASSED or FAILED) and `verifiedLevels`. The subjects are
the artifacts as the provenance names them, and `inputAttestations` points at
the provenance by its log position and the SHA-256 of the envelope, so a
verifier can tie the verdict to exactly one logged build.

What a rebuild compared goes in the predicate's `rebuild` field (docs/formats.md,
"Rebuild verdicts"); consumers that do not know it ignore it, as the in-toto
framework requires.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from overt.conveyor.provenance import check_descriptor, parse_rfc3339
from overt.crypto.intoto import Statement, Subject
from overt.errors import MalformedError

VSA_TYPE = "https://slsa.dev/verification_summary/v1"
REBUILD_POLICY = "https://overt.dev/rebuild/policy/bit-for-bit/v1"
PASSED = "PASSED"
FAILED = "FAILED"
# SLSA VSA v1 "SlsaResult": a track level, or FAILED. A PASSED rebuild claims
# Build L2 (signed provenance from a dedicated builder, verified) and Overt's
# own reproducibility track, which a custom level may name.
PASSED_LEVELS = ("SLSA_BUILD_LEVEL_2", "OVERT_REPRODUCIBLE_LEVEL_1")


@dataclass(frozen=True)
class ArtifactCheck:
    name: str
    expected: str  # sha256 the provenance records
    rebuilt: str | None  # sha256 of the rebuilder's artifact; None: not produced
    published: str | None = None  # sha256 of the vendor's published copy, when fetched

    @property
    def reproduced(self) -> bool:
        return self.rebuilt == self.expected

    @property
    def tampered(self) -> bool:
        return self.published is not None and self.published != self.expected

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "expected": self.expected}
        doc["rebuilt"] = self.rebuilt
        doc["match"] = self.reproduced
        if self.published is not None:
            doc["published"] = self.published
        return doc


@dataclass(frozen=True)
class VerificationSummary:
    subjects: tuple[Subject, ...]
    verifier_id: str
    time_verified: str
    resource_uri: str
    provenance: dict[str, Any]  # ResourceDescriptor of the provenance envelope
    result: str
    reason: str
    checks: tuple[ArtifactCheck, ...]
    environment: dict[str, str]  # what the rebuild varied, as it ran
    reports: tuple[dict[str, Any], ...] = ()  # difference reports, by name and digest
    verifier_version: str = ""

    @property
    def passed(self) -> bool:
        return self.result == PASSED

    @property
    def provenance_sha256(self) -> str:
        return str(self.provenance["digest"]["sha256"])

    def statement(self) -> Statement:
        return Statement(
            self.subjects,
            VSA_TYPE,
            {
                "verifier": {"id": self.verifier_id, "version": {"overt": self.verifier_version}},
                "timeVerified": self.time_verified,
                "resourceUri": self.resource_uri,
                "policy": {"uri": REBUILD_POLICY},
                "inputAttestations": [self.provenance],
                "verificationResult": self.result,
                "verifiedLevels": list(PASSED_LEVELS) if self.passed else [FAILED],
                "slsaVersion": "1.0",
                "rebuild": {
                    "reason": self.reason,
                    "artifacts": [c.to_json() for c in self.checks],
                    "environment": self.environment,
                    "reports": list(self.reports),
                },
            },
        )

    @classmethod
    def from_statement(cls, statement: Statement) -> VerificationSummary:
        if statement.predicate_type != VSA_TYPE:
            raise MalformedError(
                f"not a verification summary: predicateType is {statement.predicate_type!r}"
            )
        for i, subject in enumerate(statement.subjects):
            if "sha256" not in subject.digest or not subject.name:
                raise MalformedError(f"VSA: subject[{i}] needs a name and a sha256 digest")
        pred = statement.predicate
        verifier = pred.get("verifier")
        if not isinstance(verifier, dict) or not isinstance(verifier.get("id"), str):
            raise MalformedError("VSA: verifier.id must be a string")
        version = verifier.get("version", {})
        parse_rfc3339(pred.get("timeVerified"), "VSA: timeVerified")
        resource = pred.get("resourceUri")
        if not isinstance(resource, str) or not resource:
            raise MalformedError("VSA: resourceUri must be a non-empty string")
        check_descriptor(pred.get("policy"), "VSA: policy")
        result = pred.get("verificationResult")
        if result not in (PASSED, FAILED):
            raise MalformedError("VSA: verificationResult must be PASSED or FAILED")
        levels = pred.get("verifiedLevels")
        if not isinstance(levels, list) or not all(isinstance(v, str) for v in levels):
            raise MalformedError("VSA: verifiedLevels must be a list of strings")
        if (result == FAILED) != (levels == [FAILED]):
            raise MalformedError("VSA: verifiedLevels must be [FAILED] exactly when it failed")
        inputs = pred.get("inputAttestations")
        if not isinstance(inputs, list) or len(inputs) != 1:
            raise MalformedError("VSA: inputAttestations must name the one provenance verified")
        provenance = check_descriptor(inputs[0], "VSA: inputAttestations[0]")
        if not isinstance(provenance.get("digest", {}).get("sha256"), str):
            raise MalformedError("VSA: inputAttestations[0] needs a sha256 digest")
        rebuild = pred.get("rebuild", {})
        if not isinstance(rebuild, dict):
            raise MalformedError("VSA: rebuild must be an object")
        for key, kind in (("artifacts", list), ("environment", dict), ("reports", list)):
            if not isinstance(rebuild.get(key, kind()), kind):
                what = "a list" if kind is list else "an object"
                raise MalformedError(f"VSA: rebuild.{key} must be {what}")
        return cls(
            subjects=tuple(statement.subjects),
            verifier_id=verifier["id"],
            time_verified=pred["timeVerified"],
            resource_uri=resource,
            provenance=provenance,
            result=result,
            reason=str(rebuild.get("reason", "")),
            checks=tuple(_check(c, i) for i, c in enumerate(rebuild.get("artifacts", []))),
            environment={str(k): str(v) for k, v in dict(rebuild.get("environment", {})).items()},
            reports=tuple(rebuild.get("reports", [])),
            verifier_version=str(version.get("overt", "")) if isinstance(version, dict) else "",
        )


def _check(obj: Any, i: int) -> ArtifactCheck:
    if not isinstance(obj, dict):
        raise MalformedError(f"VSA: rebuild.artifacts[{i}] must be an object")
    name, expected = obj.get("name"), obj.get("expected")
    rebuilt, published = obj.get("rebuilt"), obj.get("published")
    if not isinstance(name, str) or not isinstance(expected, str):
        raise MalformedError(f"VSA: rebuild.artifacts[{i}] needs a name and an expected digest")
    if rebuilt is not None and not isinstance(rebuilt, str):
        raise MalformedError(f"VSA: rebuild.artifacts[{i}].rebuilt must be a string or null")
    if published is not None and not isinstance(published, str):
        raise MalformedError(f"VSA: rebuild.artifacts[{i}].published must be a string")
    return ArtifactCheck(name, expected, rebuilt, published)

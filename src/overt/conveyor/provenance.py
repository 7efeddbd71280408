"""SLSA Provenance v1 (slsa.dev/spec/v1.0/provenance) as the conveyor writes and reads it.

The predicate follows the spec's field rules: `buildDefinition.buildType`,
`externalParameters` and `runDetails.builder.id` are required, every
resolved dependency is a ResourceDescriptor with at least a uri or a digest,
and timestamps are RFC 3339. Overt's build type (docs/formats.md, "Build
provenance") puts the whole recipe in `externalParameters.recipe` and the
source in the `source` resolved dependency, so the provenance alone says
how to rebuild.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from overt.conveyor.recipe import Recipe
from overt.conveyor.source import Source
from overt.crypto.intoto import Statement, Subject
from overt.errors import MalformedError

PROVENANCE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://overt.dev/conveyor/build/v1"
JURISDICTION = re.compile(r"[A-Z]{2}")

# RFC 3339 date-time (section 5.6); Python's fromisoformat alone also takes
# other ISO 8601 forms (week dates, basic format, no seconds).
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?"
)


def rfc3339(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise MalformedError(f"{where} must be an RFC 3339 timestamp string")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise MalformedError(f"{where} is not an RFC 3339 timestamp: {value!r}")
    if match.group("offset") is None:
        raise MalformedError(f"{where} must carry a time zone (e.g. a trailing Z)")
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedError(f"{where} is not an RFC 3339 timestamp: {value!r}") from exc
    return parsed


def check_descriptor(obj: Any, where: str) -> dict[str, Any]:
    """The ResourceDescriptor rules: an object with a uri, a digest or content."""
    if not isinstance(obj, dict):
        raise MalformedError(f"{where} must be an object")
    if not any(k in obj for k in ("uri", "digest", "content")):
        raise MalformedError(f"{where} needs at least one of uri, digest or content")
    for key in ("uri", "name"):
        if key in obj and not isinstance(obj[key], str):
            raise MalformedError(f"{where}.{key} must be a string")
    digest = obj.get("digest", {})
    if not isinstance(digest, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in digest.items()
    ):
        raise MalformedError(f"{where}.digest must map algorithm names to strings")
    return obj


@dataclass(frozen=True)
class Provenance:
    subjects: tuple[Subject, ...]
    recipe: Recipe
    source: Source
    toolchain: tuple[dict[str, Any], ...]  # resolved dependencies other than the source
    builder_id: str
    invocation_id: str
    started_on: str
    finished_on: str
    environment: dict[str, str]
    byproducts: tuple[dict[str, Any], ...] = ()
    # Where the conveyor runs (ISO 3166 country code), part of the builder's
    # identity: runDetails.builder.jurisdiction, an Overt extension field.
    jurisdiction: str | None = None

    @property
    def lock_sha256(self) -> str | None:
        for dep in self.toolchain:
            if dep.get("name") == "build-lock":
                value = dep.get("digest", {}).get("sha256")
                return value if isinstance(value, str) else None
        return None

    @property
    def python_version(self) -> str | None:
        for dep in self.toolchain:
            uri = dep.get("uri", "")
            if dep.get("name") == "python" and uri.startswith("pkg:generic/python@"):
                return str(uri.split("@", 1)[1])
        return None

    def statement(self) -> Statement:
        return Statement(
            self.subjects,
            PROVENANCE_TYPE,
            {
                "buildDefinition": {
                    "buildType": BUILD_TYPE,
                    "externalParameters": {
                        "recipe": self.recipe.to_json(),
                        "source": {
                            "uri": self.source.uri,
                            "commit": self.source.commit,
                            "subdir": self.source.subdir,
                        },
                    },
                    "internalParameters": {"environment": self.environment},
                    "resolvedDependencies": [self.source.descriptor(), *self.toolchain],
                },
                "runDetails": {
                    "builder": {"id": self.builder_id}
                    | ({"jurisdiction": self.jurisdiction} if self.jurisdiction else {}),
                    "metadata": {
                        "invocationId": self.invocation_id,
                        "startedOn": self.started_on,
                        "finishedOn": self.finished_on,
                    },
                    "byproducts": list(self.byproducts),
                },
            },
        )

    @classmethod
    def from_statement(cls, statement: Statement) -> Provenance:
        if statement.predicate_type != PROVENANCE_TYPE:
            raise MalformedError(
                f"not a provenance: predicateType is {statement.predicate_type!r}, "
                f"expected {PROVENANCE_TYPE}"
            )
        for i, subject in enumerate(statement.subjects):
            if "sha256" not in subject.digest or not subject.name:
                raise MalformedError(f"provenance: subject[{i}] needs a name and a sha256 digest")
        pred = statement.predicate
        definition = _object(pred.get("buildDefinition"), "predicate.buildDefinition")
        build_type = definition.get("buildType")
        if build_type != BUILD_TYPE:
            raise MalformedError(
                f"provenance: buildDefinition.buildType {build_type!r} is not {BUILD_TYPE}"
            )
        external = _object(
            definition.get("externalParameters"), "buildDefinition.externalParameters"
        )
        recipe = Recipe.from_json(external.get("recipe"), "provenance externalParameters.recipe")
        internal = _object(definition.get("internalParameters", {}), "internalParameters")
        environment = internal.get("environment", {})
        if not isinstance(environment, dict):
            raise MalformedError("provenance: internalParameters.environment must be an object")
        deps = definition.get("resolvedDependencies")
        if not isinstance(deps, list):
            raise MalformedError("provenance: buildDefinition.resolvedDependencies must be a list")
        checked = [
            check_descriptor(d, f"provenance: resolvedDependencies[{i}]")
            for i, d in enumerate(deps)
        ]
        sources = [d for d in checked if d.get("name") == "source"]
        if len(sources) != 1:
            raise MalformedError("provenance: exactly one resolved dependency must be the source")
        run = _object(pred.get("runDetails"), "predicate.runDetails")
        builder = _object(run.get("builder"), "runDetails.builder")
        builder_id = builder.get("id")
        if not isinstance(builder_id, str) or not builder_id:
            raise MalformedError("provenance: runDetails.builder.id must be a non-empty string")
        jurisdiction = builder.get("jurisdiction")
        if jurisdiction is not None and not (
            isinstance(jurisdiction, str) and JURISDICTION.fullmatch(jurisdiction)
        ):
            raise MalformedError(
                "provenance: runDetails.builder.jurisdiction must be an ISO 3166 code like CH"
            )
        meta = _object(run.get("metadata", {}), "runDetails.metadata")
        invocation = meta.get("invocationId", "")
        if not isinstance(invocation, str):
            raise MalformedError("provenance: runDetails.metadata.invocationId must be a string")
        started = meta.get("startedOn")
        finished = meta.get("finishedOn")
        if parse_rfc3339(started, "runDetails.metadata.startedOn") > parse_rfc3339(
            finished, "runDetails.metadata.finishedOn"
        ):
            raise MalformedError("provenance: the build finished before it started")
        byproducts = run.get("byproducts", [])
        if not isinstance(byproducts, list):
            raise MalformedError("provenance: runDetails.byproducts must be a list")
        return cls(
            subjects=tuple(statement.subjects),
            recipe=recipe,
            source=Source.from_descriptor(sources[0]),
            toolchain=tuple(d for d in checked if d.get("name") != "source"),
            builder_id=builder_id,
            invocation_id=invocation,
            started_on=str(started),
            finished_on=str(finished),
            environment={str(k): str(v) for k, v in environment.items()},
            byproducts=tuple(
                check_descriptor(b, f"provenance: byproducts[{i}]")
                for i, b in enumerate(byproducts)
            ),
            jurisdiction=jurisdiction,
        )


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedError(f"provenance: {where} must be an object")
    return value

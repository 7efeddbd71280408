"""Turning logged releases into update-channel targets, each with its bundle.

The vendor publishes a release after its provenance is logged and, normally,
after the rebuilders have logged their verdicts: the bundle is assembled from
the log at publication time, so a verdict logged later reaches customers only
when the release is published again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from overt.conveyor.conveyor import read_release
from overt.crypto.dsse import Envelope
from overt.crypto.intoto import Statement
from overt.crypto.keys import Ed25519Verifier
from overt.errors import MalformedError, VerificationError
from overt.policy.bundle import assemble_bundle, attestation_subject, index_attestations
from overt.rebuild.vsa import VSA_TYPE
from overt.rules.release import RULESET_ARCHIVES, check_approved
from overt.tlog.client import LogClient
from overt.updates.repository import ReleaseFiles, Repository

Step = Callable[[str], None]


def publish_releases(
    repository: Repository,
    client: LogClient,
    release_dirs: list[Path],
    channel: str,
    step: Step = lambda _: None,
    gate: RuleGate | None = None,
) -> list[str]:
    """Publish releases with bundles proven against the log's current checkpoint.

    On the `rules` channel a `gate` is required: each rule set's logged statement
    must be signed by one of its conveyor keys and every flagged rule approved by
    one of its reviewer keys, or nothing is published (RuleSetHeld).
    """
    if channel == "rules" and gate is None:
        raise MalformedError(
            "publishing rule sets needs the conveyor keys and the approvers' keys to check "
            "the rule audit"
        )
    client.update()
    step(f"finding attestations in the {client.checkpoint.size} log entries")
    attestations = index_attestations(client.entries())
    releases = []
    for release_dir in release_dirs:
        name, version, files, provenance, index = read_release(release_dir)
        if index >= client.checkpoint.size or client.entry(index) != provenance:
            raise VerificationError(
                f"{name} {version}: log entry {index} is not this release's provenance"
            )
        bundle = assemble_bundle(client, index, attestations)
        verdicts = sum(1 for a in bundle.attestations if _is_vsa(a.entry))
        failed = sum(1 for a in bundle.attestations if _is_failed_vsa(a.entry))
        if failed:
            step(
                f"warning: {failed} rebuilder verdict(s) on {name} {version} are FAILED; "
                "customers trusting those rebuilders will refuse it"
            )
        if not verdicts:
            step(
                f"note: no rebuilder verdict is logged for {name} {version} yet; customers "
                "whose policy requires rebuilds will refuse it until it is published again"
            )
        if channel == "rules":
            assert gate is not None
            archives = [n for n in sorted(files) if n.endswith(RULESET_ARCHIVES)]
            if len(archives) != 1 or len(files) != 1:
                raise MalformedError(
                    f"{name} {version}: a rule-set release is exactly one archive "
                    f"(.tar.gz, .tgz or .tar); it has {', '.join(sorted(files))}"
                )
            archive = archives[0]
            ruleset = check_approved(
                [a.entry for a in bundle.attestations],
                hashlib.sha256(provenance).hexdigest(),
                hashlib.sha256(files[archive]).hexdigest(),
                gate.conveyors,
                gate.approvers,
            )
            step(
                f"{name} {version}: {len(ruleset.rules)} rules, {len(ruleset.flagged)} flagged "
                "and approved"
            )
        step(f"{name} {version}: {len(files)} artifact(s), bundle with {verdicts} verdict(s)")
        releases.append(ReleaseFiles(channel, name, version, files, bundle.to_bytes(), index))
    return repository.publish(releases)


@dataclass(frozen=True)
class RuleGate:
    """Whose rule-set statements and approvals the vendor's publication accepts."""

    conveyors: list[Ed25519Verifier]
    approvers: list[Ed25519Verifier]


def _is_failed_vsa(entry: bytes) -> bool:
    if not _is_vsa(entry):
        return False
    statement = Statement.from_envelope(Envelope.from_bytes(entry))
    return bool(statement.predicate.get("verificationResult") == "FAILED")


def _is_vsa(entry: bytes) -> bool:
    about = attestation_subject(entry)
    return about is not None and about[0] == VSA_TYPE

"""Turning logged releases into update-channel targets, each with its bundle.

The vendor publishes a release after its provenance is logged and, normally,
after the rebuilders have logged their verdicts: the bundle is assembled from
the log at publication time, so a verdict logged later reaches customers only
when the release is published again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from overt.conveyor.conveyor import PROVENANCE_FILE, RELEASE_FILE
from overt.crypto.dsse import Envelope
from overt.crypto.intoto import Statement
from overt.errors import MalformedError, VerificationError
from overt.policy.bundle import assemble_bundle, attestation_subject, index_attestations
from overt.rebuild.vsa import VSA_TYPE
from overt.tlog.client import LogClient
from overt.updates.repository import ReleaseFiles, Repository

Step = Callable[[str], None]


def read_release(release_dir: Path) -> tuple[str, str, dict[str, bytes], bytes, int]:
    """(name, version, artifact files, provenance entry, log index) of a conveyor release."""
    try:
        record = json.loads((release_dir / RELEASE_FILE).read_text(encoding="utf-8"))
        name, version = str(record["product"]), str(record["version"])
        artifacts = dict(record["artifacts"])
        log = record.get("log")
    except FileNotFoundError as exc:
        raise MalformedError(f"{release_dir}: not a conveyor release (no {RELEASE_FILE})") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedError(f"{release_dir / RELEASE_FILE}: malformed: {exc}") from exc
    if not isinstance(log, dict) or not isinstance(log.get("index"), int):
        raise MalformedError(
            f"{release_dir}: the release is not logged yet; add {PROVENANCE_FILE} to the "
            "release log first"
        )
    files: dict[str, bytes] = {}
    for artifact, digest in sorted(artifacts.items()):
        data = (release_dir / artifact).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise VerificationError(
                f"{release_dir / artifact} does not match the digest recorded at build time"
            )
        files[artifact] = data
    return name, version, files, (release_dir / PROVENANCE_FILE).read_bytes(), log["index"]


def publish_releases(
    repository: Repository,
    client: LogClient,
    release_dirs: list[Path],
    channel: str,
    step: Step = lambda _: None,
) -> list[str]:
    """Publish releases with bundles proven against the log's current checkpoint."""
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
        step(f"{name} {version}: {len(files)} artifact(s), bundle with {verdicts} verdict(s)")
        releases.append(ReleaseFiles(channel, name, version, files, bundle.to_bytes(), index))
    return repository.publish(releases)


def _is_failed_vsa(entry: bytes) -> bool:
    if not _is_vsa(entry):
        return False
    statement = Statement.from_envelope(Envelope.from_bytes(entry))
    return bool(statement.predicate.get("verificationResult") == "FAILED")


def _is_vsa(entry: bytes) -> bool:
    about = attestation_subject(entry)
    return about is not None and about[0] == VSA_TYPE

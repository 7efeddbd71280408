"""The reviewer's three steps as one API, called by `overt review` (and any other front end).

1. `export_release`: the exact source of a logged release, verified, into a directory;
2. `release_delta`: what changed since the last reviewed release of the same product;
3. `record_review`: sign the verdict and findings about that release and log them.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from overt.conveyor.provenance import rfc3339
from overt.crypto.dsse import Envelope
from overt.crypto.keys import Ed25519Signer, ed25519_verifier
from overt.log.submit import add_entries
from overt.review.delta import Delta, compare_trees
from overt.review.release import (
    LoggedRelease,
    ReleaseLog,
    ReviewError,
    check_tree,
    export_source,
)
from overt.review.statement import Findings, Review


def export_release(log: ReleaseLog, index: int, dest: Path) -> LoggedRelease:
    """Export the source of the release at log entry `index` into `dest`, verified."""
    release = log.release(index)
    export_source(release, dest)
    return release


def find_base(
    log: ReleaseLog,
    release: LoggedRelease,
    base_index: int | None = None,
    reviewer_keys: Sequence[str] | None = None,
) -> LoggedRelease | None:
    """The release to diff against: `base_index`, or the last one with an approved review."""
    if base_index is not None:
        base = log.release(base_index)
        if base.product != release.product:
            raise ReviewError(
                f"log entry {base_index} is {base.product}, not {release.product}: "
                "a delta compares two releases of one product"
            )
        if base.index == release.index:
            raise ReviewError("the base release is the release itself")
        return base
    reviewers = [ed25519_verifier(k) for k in reviewer_keys] if reviewer_keys else None
    return log.last_reviewed(release, reviewers)


def release_delta(
    log: ReleaseLog,
    index: int,
    base_index: int | None = None,
    reviewer_keys: Sequence[str] | None = None,
) -> tuple[Delta, LoggedRelease, LoggedRelease | None]:
    """The delta of the release at `index` since its base (every file, when there is none)."""
    release = log.release(index)
    base = find_base(log, release, base_index, reviewer_keys)
    with tempfile.TemporaryDirectory(prefix="overt-delta-") as tmp:
        new = Path(tmp) / "new"
        export_source(release, new)
        old: Path | None = None
        if base is not None:
            old = Path(tmp) / "old"
            export_source(base, old)
        delta = compare_trees(
            old,
            new,
            base.describe() if base is not None else "nothing (no earlier reviewed release)",
            release.describe(),
        )
    return delta, release, base


@dataclass(frozen=True)
class Recorded:
    release: LoggedRelease
    base: LoggedRelease | None
    review: Review
    envelope: Envelope
    log_index: int | None  # None when not logged


def record_review(
    log: ReleaseLog,
    index: int,
    findings: Findings,
    signer: Ed25519Signer,
    tree: Path | None = None,
    base_index: int | None = None,
    submit: bool = True,
    token: str | None = None,
    now: float | None = None,
) -> Recorded:
    """Sign a review of the release at `index` and (unless `submit` is false) log it.

    The reviewed source is `tree` (the directory the reviewer read), which must be exactly
    the release's source; without it the source is exported again and checked. Either way a
    tree that does not match the provenance's digest is refused (`SourceMismatch`), and the
    findings must name files (and lines) of that tree.
    """
    release = log.release(index)
    base = find_base(log, release, base_index)
    if tree is not None:
        digest = check_tree(release, tree)
        findings.check_against(tree)
    else:
        with tempfile.TemporaryDirectory(prefix="overt-review-") as tmp:
            digest = export_source(release, Path(tmp) / "tree")
            findings.check_against(Path(tmp) / "tree")
    review = Review(
        subjects=tuple(release.provenance.subjects),
        provenance_uri=release.uri,
        provenance_sha256=release.sha256,
        tree_digest=digest,
        verdict=findings.verdict,
        scope=findings.scope,
        reviewer_id=findings.reviewer or f"key:{signer.name}",
        time_reviewed=rfc3339(time.time() if now is None else now),
        findings=findings.findings,
        summary=findings.summary,
        base=None
        if base is None
        else {
            "uri": base.uri,
            "digest": {"sha256": base.sha256},
            "version": base.version,
            "source": {"digest": {"overtTree": base.provenance.source.digest}},
        },
    )
    envelope = review.sign(signer)
    logged = None
    if submit:
        logged = add_entries(log.log, [envelope.to_bytes()], token).indexes[0]
    return Recorded(release, base, review, envelope, logged)

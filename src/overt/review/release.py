"""A logged release as a reviewer sees it: its provenance, read from the log, and its source.

The provenance is read through the verifying log client (every entry is proven against a
checkpoint signed by the log key) and must be signed by a conveyor key the reviewer trusts.
Its source is fetched again and checked against the tree digest the provenance records
(`overt.conveyor.source.fetch_verified`): a reviewer never reads anything but the files the
release was built from.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from overt.conveyor.provenance import Provenance
from overt.conveyor.source import SourceMismatch, fetch_verified, tree_digest
from overt.crypto.dsse import Envelope, verify_envelope
from overt.crypto.intoto import PAYLOAD_TYPE, Statement
from overt.crypto.keys import Ed25519Verifier, ed25519_verifier
from overt.errors import MalformedError, OvertError, VerificationError
from overt.log.remote import open_source
from overt.review.statement import REVIEW_TYPE
from overt.rules.statements import input_digest
from overt.tlog.client import LogClient


class ReviewError(OvertError):
    """The release cannot be reviewed as asked (no such entry, not a provenance, no base)."""


@dataclass(frozen=True)
class LoggedRelease:
    """A provenance log entry, verified: signed by a trusted conveyor and proven logged."""

    index: int
    entry: bytes  # the exact logged bytes (a DSSE envelope)
    provenance: Provenance
    origin: str  # the log's origin

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.entry).hexdigest()

    @property
    def uri(self) -> str:
        return f"tlog://{self.origin}#{self.index}"

    @property
    def product(self) -> str:
        return self.provenance.recipe.name

    @property
    def version(self) -> str:
        return self.provenance.recipe.version

    def describe(self) -> str:
        return f"{self.product} {self.version} (log entry {self.index})"


class ReleaseLog:
    """A release log read with verification, and the conveyor keys whose releases count."""

    def __init__(
        self,
        log: str,
        log_key: str,
        conveyor_keys: Sequence[str],
        client: LogClient | None = None,
    ) -> None:
        if not conveyor_keys:
            raise MalformedError("give at least one trusted conveyor key")
        self.log = log
        self.conveyors = [ed25519_verifier(k) for k in conveyor_keys]
        if client is None:
            client = LogClient(open_source(log).fetch, log_key=ed25519_verifier(log_key))
        self.client = client
        self.client.update()

    @property
    def size(self) -> int:
        return self.client.checkpoint.size

    def entry(self, index: int) -> bytes:
        if index < 0 or index >= self.size:
            raise ReviewError(f"no entry {index}: the log has {self.size} entries")
        return self.client.entry(index)

    def parse_release(self, index: int, entry: bytes) -> LoggedRelease:
        """The release in `entry`, or MalformedError/VerificationError saying why not."""
        envelope = Envelope.from_bytes(entry)
        provenance = Provenance.from_statement(Statement.from_envelope(envelope))
        try:
            verify_envelope(envelope, self.conveyors, payload_type=PAYLOAD_TYPE)
        except VerificationError as exc:
            raise VerificationError(
                f"log entry {index} is not signed by a trusted conveyor key: {exc}"
            ) from exc
        return LoggedRelease(index, entry, provenance, self.client.checkpoint.origin)

    def release(self, index: int) -> LoggedRelease:
        entry = self.entry(index)
        try:
            return self.parse_release(index, entry)
        except MalformedError as exc:
            raise ReviewError(f"log entry {index} is not a release provenance: {exc}") from exc

    def approved_reviews(
        self, reviewers: Sequence[Ed25519Verifier] | None = None
    ) -> dict[str, list[int]]:
        """Log indexes of approving reviews, by the sha256 of the provenance they are about.

        With `reviewers`, only reviews signed by one of them count.
        """
        found: dict[str, list[int]] = {}
        for index in range(self.size):
            try:
                envelope = Envelope.from_bytes(self.client.entry(index))
                statement = Statement.from_envelope(envelope)
            except MalformedError:
                continue
            if statement.predicate_type != REVIEW_TYPE:
                continue
            if statement.predicate.get("verdict") != "approved":
                continue
            if reviewers is not None:
                try:
                    verify_envelope(envelope, reviewers, payload_type=PAYLOAD_TYPE)
                except VerificationError:
                    continue
            digest = input_digest(statement.predicate)
            if digest is not None:
                found.setdefault(digest, []).append(index)
        return found

    def last_reviewed(
        self, release: LoggedRelease, reviewers: Sequence[Ed25519Verifier] | None = None
    ) -> LoggedRelease | None:
        """The newest earlier release of the same product with an approving review."""
        reviewed = self.approved_reviews(reviewers)
        for index in range(release.index - 1, -1, -1):
            entry = self.client.entry(index)
            if hashlib.sha256(entry).hexdigest() not in reviewed:
                continue
            try:
                earlier = self.parse_release(index, entry)
            except (MalformedError, VerificationError):
                continue
            if earlier.product == release.product:
                return earlier
        return None


def export_source(release: LoggedRelease, dest: Path) -> str:
    """Export the release's source into `dest` (new or empty); return its tree digest.

    The tree is fetched into a scratch directory next to `dest` and moved into place only
    once its digest matches the provenance: on a mismatch (`SourceMismatch`, whose message
    says how it differs) nothing is left in `dest`.
    """
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ReviewError(f"{dest} exists and is not an empty directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".overt-export-", dir=dest.parent))
    try:
        fetch_verified(release.provenance.source, scratch / "tree")
        if dest.exists():
            dest.rmdir()
        (scratch / "tree").rename(dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return release.provenance.source.digest


def check_tree(release: LoggedRelease, tree: Path) -> str:
    """Check that the directory `tree` is exactly the release's source; return its digest."""
    if not tree.is_dir():
        raise ReviewError(f"{tree} is not a directory")
    actual = tree_digest(tree)
    if actual != release.provenance.source.digest:
        raise SourceMismatch(
            "digest",
            f"{tree} is not the source of {release.describe()}: tree digest {actual}, "
            f"the provenance records {release.provenance.source.digest}",
        )
    return actual

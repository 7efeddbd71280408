"""The demo's reviewer: a full source review of each product release, signed and logged.

`basel` (a supervisor with a key of its own, in `DEMO/reviewers/basel/`) exports
the exact source the provenance names, verified against its digest, reads what
changed since the last release it reviewed, and logs an approving review of
scope `full`. The customer's policy requires one for products.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from overt.crypto.keyfile import read_private_key, write_private_key
from overt.crypto.keys import Ed25519Signer
from overt.review.record import record_review, release_delta
from overt.review.release import ReleaseLog
from overt.review.statement import Findings

Say = Callable[[str, str], None]

REVIEWER = "basel"


def reviewer_key(root: Path) -> Ed25519Signer:
    """The demo reviewer's key, made on first use."""
    path = root / "reviewers" / REVIEWER / "reviewer.key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private_key(path, Ed25519Signer.generate(f"reviewer.demo.overt.example/{REVIEWER}"))
    return read_private_key(path)


def review_release(
    root: Path,
    say: Say,
    log_url: str,
    log_vkey: str,
    token: str,
    index: int,
    conveyor_keys: list[str],
) -> None:
    signer = reviewer_key(root)
    log = ReleaseLog(log_url, log_vkey, conveyor_keys)
    delta, release, base = release_delta(log, index, reviewer_keys=[str(signer.verifier_key())])
    since = f"since {base.version}" if base is not None else "(first review: every file)"
    findings = Findings.from_json(
        {
            "verdict": "approved",
            "scope": "full",
            "summary": "Read every changed file; no network access, no data collection.",
            "findings": [
                {
                    "file": "src/hello_overt/cli.py",
                    "line": 1,
                    "severity": "low",
                    "text": "The greeting is printed as given; no input reaches a shell.",
                }
            ],
        }
    )
    recorded = record_review(log, index, findings, signer, token=token)
    say(
        "review",
        f"{REVIEWER} read {len(delta.changes)} changed file(s) of {release.product} "
        f"{release.version} {since}, source verified against the provenance; full review "
        f"approved, logged as entry {recorded.log_index}",
    )

"""The one verifier: may this artifact be installed under this policy? (docs/policy.md)

Every path that decides (the `overt verify` command, the update client, the
dashboard) calls `verify_release`. It checks, in order, and stops at the first
failure:

1. the provenance is signed by a conveyor key the policy trusts;
2. it is a valid SLSA provenance, and the artifact's name and SHA-256 are one
   of its subjects;
3. it is logged: its tlog-proof binds it to a checkpoint signed by the
   policy's log,
4. which the policy's witness quorum cosigned,
5. recently enough (the quorum's cosignatures are younger than the policy's
   maximum age: a frozen view of the log is refused),
6. and which is consistent with every other checkpoint in the bundle and
   with the newest one this client verified before (gossip: a split view is
   refused);
7. enough trusted rebuilders logged a PASSED verdict on this very provenance,
   and none logged FAILED;
8. for a rule set (channel `rules`), the vendor logged its rule-set
   statement for this very bundle, and a trusted reviewer logged an approval
   of the exact digest of every rule with a high-severity finding;
9. enough trusted reviewers logged an approving review, if the channel
   requires it.

Each check is reported, so a refusal always says which promise was broken.
Anything the verifier cannot establish is a refusal: it fails closed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from overt.conveyor.provenance import Provenance, parse_rfc3339
from overt.crypto.dsse import Envelope, verify_envelope
from overt.crypto.intoto import PAYLOAD_TYPE, Statement
from overt.crypto.keys import Ed25519Verifier
from overt.crypto.note import split
from overt.errors import MalformedError, OvertError, VerificationError
from overt.policy.bundle import REVIEW_TYPE, Bundle, Logged
from overt.policy.trust import REVIEW_SCOPES, ChannelRule, TrustPolicy
from overt.rebuild.vsa import VSA_TYPE, VerificationSummary
from overt.rules.statements import (
    APPROVAL_TYPE,
    RULESET_TYPE,
    RuleRecord,
    RuleSet,
    input_digest,
    unapproved,
)
from overt.tlog.checkpoint import Checkpoint, open_checkpoint
from overt.tlog.client import CheckpointMemory
from overt.tlog.hashing import leaf_hash
from overt.tlog.merkle import verify_consistency, verify_inclusion
from overt.tlog.policy import VerifiedCheckpoint

# (old size, new size) -> consistency proof hashes, from the log (untrusted:
# the proof is verified against both roots).
ConsistencyProver = Callable[[int, int], Sequence[bytes]]


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Decision:
    artifact: str
    checks: list[Check] = field(default_factory=list)
    provenance: Provenance | None = None
    log_index: int | None = None
    checkpoint: Checkpoint | None = None

    @property
    def accepted(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def reason(self) -> str:
        for check in self.checks:
            if not check.passed:
                return f"{check.name}: {check.detail}"
        return ""


class Refused(VerificationError):
    """Raised by callers that turn a refused decision into an error."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"{decision.artifact} refused: {decision.reason}")
        self.decision = decision


class NotWitnessed(VerificationError):
    """The log signed the checkpoint, but the witness quorum did not (validly) cosign it."""


class _Stop(Exception):
    """A check failed; the decision is complete."""


def memory_identity(policy: TrustPolicy) -> str:
    """How the client's checkpoint memory names the policy's log."""
    return f"{policy.origin}\n{policy.log_key}"


class _Verifier:
    def __init__(
        self,
        decision: Decision,
        policy: TrustPolicy,
        now: float,
        memory: CheckpointMemory | None,
        prover: ConsistencyProver | None,
    ) -> None:
        self.decision = decision
        self.policy = policy
        self.now = now
        self.memory = memory
        self.prover = prover
        self.log_verifier = Ed25519Verifier(policy.log_key)
        self.seen: dict[str, VerifiedCheckpoint] = {}  # raw checkpoint -> verified

    def ok(self, name: str, detail: str) -> None:
        self.decision.checks.append(Check(name, True, detail))

    def refuse(self, name: str, detail: str) -> _Stop:
        self.decision.checks.append(Check(name, False, detail))
        return _Stop()

    def checkpoint(self, raw: str) -> VerifiedCheckpoint:
        """Log signature and witness quorum; raises VerificationError naming which failed."""
        if raw in self.seen:
            return self.seen[raw]
        try:
            verified = self.policy.tlog_policy.verify_checkpoint(raw)
        except VerificationError as exc:
            # Which promise failed: the log's own signature, or the witnesses'?
            open_checkpoint(raw, self.log_verifier)
            raise NotWitnessed(str(exc)) from exc
        self.seen[raw] = verified
        return verified

    def logged(self, item: Logged) -> VerifiedCheckpoint:
        """Raise VerificationError unless `item` is included under an accepted checkpoint."""
        verified = self.checkpoint(item.proof.checkpoint)
        cp = verified.checkpoint
        verify_inclusion(
            leaf_hash(item.entry), item.proof.index, cp.size, item.proof.proof, cp.root_hash
        )
        return verified

    def consistent(self, old: Checkpoint, new: Checkpoint, what: str) -> None:
        if old.size == new.size:
            if old.root_hash != new.root_hash:
                raise self.refuse(
                    "consistent view",
                    f"split view: {what} and this bundle show two different trees of size "
                    f"{new.size}",
                )
            return
        if old.size > new.size:
            old, new = new, old
        if old.size == 0:
            return
        if self.prover is None:
            raise self.refuse(
                "consistent view",
                f"cannot prove that the tree of size {new.size} extends the one of size "
                f"{old.size} ({what}): no log URL to ask for a consistency proof",
            )
        try:
            proof = self.prover(old.size, new.size)
            verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
        except VerificationError as exc:
            raise self.refuse(
                "consistent view",
                f"split view: the tree of size {new.size} does not extend the one of size "
                f"{old.size} ({what}): {exc}",
            ) from exc
        except (OvertError, OSError) as exc:  # malformed tiles, or the log lacks them (FetchError)
            raise self.refuse(
                "consistent view",
                f"could not obtain a consistency proof {old.size} -> {new.size}: {exc}",
            ) from exc


def verify_release(
    artifact_name: str,
    artifact_sha256: str,
    bundle: Bundle,
    policy: TrustPolicy,
    channel: str = "products",
    now: float | None = None,
    memory: CheckpointMemory | None = None,
    prover: ConsistencyProver | None = None,
) -> Decision:
    """Decide on one artifact; never raises for a bad bundle, the decision says why."""
    decision = Decision(artifact_name)
    v = _Verifier(decision, policy, time.time() if now is None else now, memory, prover)
    if channel not in policy.channels:
        v.refuse("channel", f"the policy has no rules for channel {channel!r}")
        return decision
    with contextlib.suppress(_Stop):
        _run(v, artifact_name, artifact_sha256, bundle, policy.channel(channel))
    return decision


def _run(v: _Verifier, name: str, sha256: str, bundle: Bundle, rule: ChannelRule) -> None:
    policy, decision = v.policy, v.decision
    item = bundle.provenance

    # 1. Signed by a trusted conveyor.
    try:
        envelope = Envelope.from_bytes(item.entry)
        signers = verify_envelope(envelope, policy.conveyors(), payload_type=PAYLOAD_TYPE)
    except (MalformedError, VerificationError) as exc:
        raise v.refuse(
            "provenance signature", f"not signed by a trusted conveyor key: {exc}"
        ) from exc
    v.ok("provenance signature", f"signed by trusted conveyor {signers[0].name}")

    # 2. A valid provenance naming this artifact.
    try:
        provenance = Provenance.from_statement(Statement.from_envelope(envelope))
    except MalformedError as exc:
        raise v.refuse("provenance", f"not a valid SLSA provenance: {exc}") from exc
    decision.provenance = provenance
    subject = next((s for s in provenance.subjects if s.name == name), None)
    if subject is None:
        names = ", ".join(s.name for s in provenance.subjects)
        raise v.refuse("artifact digest", f"the provenance does not list {name} (it lists {names})")
    if subject.digest.get("sha256") != sha256:
        raise v.refuse(
            "artifact digest",
            f"{name} has sha256 {sha256}, the provenance records {subject.digest.get('sha256')}: "
            "this is not the artifact that was built",
        )
    recipe = provenance.recipe
    v.ok("artifact digest", f"sha256 matches {recipe.name} {recipe.version} as built")

    # 3-4. Logged under a checkpoint of the policy's log, cosigned by the quorum.
    try:
        verified = v.checkpoint(item.proof.checkpoint)
    except NotWitnessed as exc:
        raise v.refuse(
            "witnessed", f"checkpoint not cosigned by the witness quorum: {exc}"
        ) from exc
    except (MalformedError, VerificationError) as exc:
        raise v.refuse(
            "logged", f"the proof's checkpoint is not signed by the release log: {exc}"
        ) from exc
    try:
        v.logged(item)  # the checkpoint is verified (and cached): this is the inclusion proof
    except VerificationError as exc:
        raise v.refuse("logged", f"the provenance is not in the release log: {exc}") from exc
    except MalformedError as exc:
        raise v.refuse("logged", f"the inclusion proof is malformed: {exc}") from exc
    decision.log_index = item.proof.index
    v.ok("logged", f"entry {item.proof.index} of {verified.checkpoint.origin}")
    _conveyor_moves(v, signers[0], provenance, item.proof.index)
    v.ok(
        "witnessed",
        f"checkpoint size {verified.checkpoint.size} cosigned by "
        f"{', '.join(sorted(verified.cosigners)) or 'no witness (the policy needs none)'}",
    )

    # Attestations, verified now so their checkpoints take part in the view checks.
    found = _attestations(v, bundle, item, sha256, rule)
    passed, failed, approved, rejected, ignored = (
        found.passed,
        found.failed,
        found.approved,
        found.rejected,
        found.ignored,
    )
    newest = max(v.seen.values(), key=lambda c: c.checkpoint.size)
    decision.checkpoint = newest.checkpoint

    # 5. Fresh.
    if policy.max_checkpoint_age_s is not None:
        oldest_ok = v.now - policy.max_checkpoint_age_s
        fresh = {w: ts for w, ts in newest.cosigners.items() if ts >= oldest_ok}
        if not policy.tlog_policy.quorum_met(fresh):
            newest_ts = max(newest.cosigners.values(), default=0)
            raise v.refuse(
                "fresh",
                f"the witness quorum's newest cosignatures are older than "
                f"{policy.max_checkpoint_age_s // 3600} h (newest: "
                f"{int((v.now - newest_ts) // 3600)} h ago): the log view may be frozen",
            )
        v.ok("fresh", "the quorum cosigned within the policy's maximum age")

    # 6. One consistent view: inside the bundle, and with what this client saw before.
    for other in v.seen.values():
        if other is not newest:
            v.consistent(other.checkpoint, newest.checkpoint, "another proof in the bundle")
    detail = "no earlier checkpoint remembered"
    if v.memory is not None:
        identity = memory_identity(policy)
        previous = v.memory.load(identity)
        if previous is not None:
            try:
                old = Checkpoint.parse(split(previous)[0])
            except MalformedError as exc:
                raise v.refuse(
                    "consistent view",
                    f"the checkpoint remembered from before is unreadable ({exc}); "
                    "refusing rather than forgetting it",
                ) from exc
            v.consistent(old, newest.checkpoint, f"the checkpoint of size {old.size} seen before")
            detail = f"consistent with the checkpoint of size {old.size} seen before"
            if newest.checkpoint.size > old.size:
                v.memory.store(identity, newest.raw)
        else:
            v.memory.store(identity, newest.raw)
    v.ok("consistent view", detail)

    # 7. Rebuilt.
    if failed:
        raise v.refuse("reproduced", "; ".join(failed))
    if len(passed) < rule.rebuilders_required:
        note = f" (ignored: {'; '.join(ignored)})" if ignored else ""
        raise v.refuse(
            "reproduced",
            f"{len(passed)} of the {rule.rebuilders_required} required trusted rebuilders "
            f"reported PASSED{note}",
        )
    v.ok(
        "reproduced",
        f"PASSED by {', '.join(sorted(passed)) or 'no rebuilder'} "
        f"({rule.rebuilders_required} required)",
    )

    # 8. A rule set: its statement logged, its flagged rules approved.
    if rule.rule_audit:
        _rule_audit(v, found, sha256)

    # 9. Reviewed.
    if rejected:
        raise v.refuse("reviewed", "; ".join(rejected))
    if len(approved) < rule.reviews_required:
        raise v.refuse(
            "reviewed",
            f"{len(approved)} of the {rule.reviews_required} required {rule.review_scope} "
            "reviews by trusted reviewers are logged",
        )
    v.ok(
        "reviewed",
        f"approved by {', '.join(sorted(approved))}" if approved else "no review required",
    )


def _conveyor_moves(
    v: _Verifier, signer: Ed25519Verifier, provenance: Provenance, index: int
) -> None:
    """A retired conveyor key, and where releases must be built, once the conveyor moved."""
    policy = v.policy
    try:
        built = parse_rfc3339(provenance.finished_on, "provenance finishedOn")
    except MalformedError as exc:
        raise v.refuse("conveyor key", str(exc)) from exc
    for retired in policy.retired_conveyors:
        if Ed25519Verifier(retired.key).vkey.public != signer.vkey.public:
            continue
        # The log orders what a retired key can backdate: its transition entry.
        late_in_log = retired.log_index is not None and index > retired.log_index
        if late_in_log or built > retired.end:
            when = f"logged at entry {index}" if late_in_log else f"built {provenance.finished_on}"
            raise v.refuse(
                "conveyor key",
                f"signed by conveyor key {signer.name}, retired on "
                f"{retired.end:%Y-%m-%d %H:%M} UTC (the conveyor moved), and {when}",
            )
        v.ok("conveyor key", f"{signer.name} was current when this was built and logged")
    if policy.location is not None and built > policy.location.after:
        where = provenance.jurisdiction or "an unstated jurisdiction"
        if provenance.jurisdiction != policy.location.jurisdiction:
            raise v.refuse(
                "built in",
                f"built in {where} on {provenance.finished_on}; releases built after "
                f"{policy.location.after:%Y-%m-%d %H:%M} UTC must come from a conveyor in "
                f"{policy.location.jurisdiction}",
            )
        v.ok("built in", f"built by a conveyor in {where}, as the policy requires")


@dataclass
class _Found:
    passed: set[str] = field(default_factory=set)
    failed: list[str] = field(default_factory=list)
    approved: set[str] = field(default_factory=set)
    rejected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    rulesets: list[RuleSet] = field(default_factory=list)
    rule_approvals: list[bytes] = field(default_factory=list)


def _rule_audit(v: _Verifier, found: _Found, artifact_sha256: str) -> None:
    statements = [r for r in found.rulesets if r.bundle.digest.get("sha256") == artifact_sha256]
    if not statements:
        raise v.refuse(
            "rules audited",
            "no logged rule-set statement from a trusted conveyor lists this bundle's rules",
        )
    # Every statement about this bundle counts: a later one cannot drop a finding.
    reviewers = v.policy.reviewers()
    held: dict[tuple[str, str], RuleRecord] = {}
    for statement in statements:
        for record in unapproved(statement, found.rule_approvals, reviewers):
            held.setdefault((record.name, record.sha256), record)
    missing = list(held.values())
    ruleset = statements[-1]
    if missing:
        detail = "; ".join(
            f"{r.name} ({', '.join(sorted({f['lint'] for f in r.findings}))})" for r in missing
        )
        raise v.refuse(
            "rules audited",
            f"{len(missing)} flagged rule(s) have no approval by a trusted reviewer: {detail}",
        )
    v.ok(
        "rules audited",
        f"{len(ruleset.rules)} rules listed in the log; {len(ruleset.flagged)} flagged, all "
        f"approved; {len(ruleset.targeted)} targeted at fewer than all customers",
    )


def _attestations(
    v: _Verifier, bundle: Bundle, provenance: Logged, artifact_sha256: str, rule: ChannelRule
) -> _Found:
    """Sort the bundle's attestations into what counts and what is ignored (and why)."""
    found = _Found()
    passed, failed, approved = found.passed, found.failed, found.approved
    rejected, ignored = found.rejected, found.ignored
    rebuilders, reviewers = v.policy.rebuilders(), v.policy.reviewers()
    trusted_for = {
        VSA_TYPE: rebuilders,
        REVIEW_TYPE: reviewers,
        RULESET_TYPE: v.policy.conveyors(),
        APPROVAL_TYPE: reviewers,
    }
    for i, item in enumerate(bundle.attestations):
        try:
            envelope = Envelope.from_bytes(item.entry)
            statement = Statement.from_envelope(envelope)
        except MalformedError as exc:
            ignored.append(f"attestation {i} is malformed: {exc}")
            continue
        trusted = trusted_for.get(statement.predicate_type)
        if trusted is None:
            ignored.append(f"attestation {i} has unknown type {statement.predicate_type}")
            continue
        try:
            signers = verify_envelope(envelope, trusted, payload_type=PAYLOAD_TYPE)
        except VerificationError:
            ignored.append(f"attestation {i} is not signed by a trusted key")
            continue
        who = signers[0].name
        try:
            v.logged(item)
        except (MalformedError, VerificationError) as exc:
            ignored.append(f"{who}'s attestation is not proven logged: {exc}")
            continue
        digest = input_digest(statement.predicate)
        if digest != provenance.sha256:
            ignored.append(f"{who}'s attestation is about another provenance")
            continue
        if statement.predicate_type == APPROVAL_TYPE:
            found.rule_approvals.append(item.entry)
            continue
        if not any(s.digest.get("sha256") == artifact_sha256 for s in statement.subjects):
            ignored.append(f"{who}'s attestation does not cover this artifact")
            continue
        if statement.predicate_type == RULESET_TYPE:
            try:
                found.rulesets.append(RuleSet.from_statement(statement))
            except MalformedError as exc:
                ignored.append(f"{who}'s rule-set statement is malformed: {exc}")
            continue
        if statement.predicate_type == VSA_TYPE:
            try:
                summary = VerificationSummary.from_statement(statement)
            except MalformedError as exc:
                ignored.append(f"{who}'s verdict is malformed: {exc}")
                continue
            if summary.passed:
                passed.add(who)
            else:
                failed.append(f"trusted rebuilder {who} reported FAILED: {summary.reason}")
        else:
            verdict = statement.predicate.get("verdict")
            scope = statement.predicate.get("scope")
            if verdict == "rejected":
                rejected.append(f"trusted reviewer {who} rejected it")
            elif verdict == "approved" and scope in REVIEW_SCOPES:
                if REVIEW_SCOPES.index(scope) >= REVIEW_SCOPES.index(rule.review_scope):
                    approved.add(who)
                else:
                    ignored.append(f"{who}'s review covers only {scope}")
            else:
                ignored.append(f"{who}'s review has no approved/rejected verdict")
    return found

"""The one verifier, `verify_release`: each promise it checks, and the attack that breaks each.

Every refusal is asserted by the failed check's name and a phrase of its
reason, and every check before it must have passed: an attack must be caught
by the check meant for it, not by an accident earlier on.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from overt.crypto.dsse import Envelope
from overt.crypto.intoto import Statement, Subject
from overt.crypto.keys import SIG_COSIGNATURE_V1, Ed25519Signer
from overt.crypto.note import split
from overt.log.remote import FileMemory, directory_fetcher, http_fetcher
from overt.policy.bundle import Bundle, Logged
from overt.policy.gossip import consistency_prover
from overt.policy.trust import TrustPolicy
from overt.policy.verify import (
    Check,
    ConsistencyProver,
    Decision,
    Refused,
    memory_identity,
    verify_release,
)
from overt.tlog.checkpoint import Checkpoint, sign_checkpoint
from overt.tlog.client import CheckpointMemory, DictMemory
from overt.tlog.proof import TlogProof
from update_fixtures import UpdateWorld, proven, review_statement, update_world

CHECKS = [
    "provenance signature",
    "artifact digest",
    "logged",
    "witnessed",
    "fresh",
    "consistent view",
    "reproduced",
    "reviewed",
]


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> UpdateWorld:
    return update_world(tmp_path_factory)


def decide(
    world: UpdateWorld,
    release: str,
    bundle: Bundle | None = None,
    policy: TrustPolicy | None = None,
    artifact: bytes | None = None,
    channel: str = "products",
    now: float | None = None,
    memory: CheckpointMemory | None = None,
    prover: ConsistencyProver | None = None,
) -> Decision:
    name, data = world.artifact(release)
    return verify_release(
        name,
        hashlib.sha256(artifact if artifact is not None else data).hexdigest(),
        bundle if bundle is not None else world.bundle(release),
        policy if policy is not None else world.policy(),
        channel,
        now=now,
        memory=memory,
        prover=prover,
    )


def refused_by(decision: Decision, name: str, phrase: str) -> Check:
    """The decision stopped at check `name`, whose reason says `phrase`; all before it passed."""
    assert not decision.accepted
    *before, last = decision.checks
    assert all(c.passed for c in before), decision.checks
    assert last.name == name, decision.reason
    assert not last.passed
    assert phrase in last.detail, last.detail
    assert decision.reason == f"{name}: {last.detail}"
    return last


def with_checkpoint(item: Logged, checkpoint: str) -> Logged:
    return Logged(item.entry, TlogProof(item.proof.index, item.proof.proof, checkpoint))


def resigned(entry: bytes, signer: Ed25519Signer, **changes: object) -> bytes:
    """The statement in `entry`, optionally changed, signed by `signer` instead."""
    statement = Statement.from_envelope(Envelope.from_bytes(entry))
    if "subjects" in changes:
        statement = Statement(
            changes["subjects"],  # type: ignore[arg-type]
            statement.predicate_type,
            statement.predicate,
        )
    return statement.sign([signer]).to_bytes()


def tampered(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


# --- accepted ---------------------------------------------------------------------------


def test_accepts_a_built_logged_witnessed_rebuilt_release(world: UpdateWorld) -> None:
    decision = decide(world, "v2")
    assert decision.accepted, decision.reason
    assert [c.name for c in decision.checks] == CHECKS
    assert decision.reason == ""
    assert decision.log_index == world.releases["v2"].log_index
    assert decision.checkpoint is not None and decision.checkpoint.size == len(world.entries())
    assert decision.provenance is not None and decision.provenance.recipe.version == "2024.5.1"
    details = {c.name: c.detail for c in decision.checks}
    assert "conveyor.updates.example" in details["provenance signature"]
    assert "w1, w2" in details["witnessed"]
    assert "rebuilder.example.org/r1" in details["reproduced"]
    assert details["reviewed"] == "no review required"


def test_refused_raises_with_the_decision(world: UpdateWorld) -> None:
    decision = decide(world, "v2", artifact=b"other")
    error = Refused(decision)
    assert error.decision is decision
    assert "refused: artifact digest" in str(error)


# --- 1-2: provenance ------------------------------------------------------------------


def test_provenance_from_an_untrusted_conveyor_key(world: UpdateWorld) -> None:
    other = str(Ed25519Signer.generate("conveyor.updates.example").verifier_key())
    decision = decide(world, "v2", policy=world.policy(conveyor_keys=[other]))
    refused_by(decision, "provenance signature", "not signed by a trusted conveyor key")
    # The same provenance signed by an attacker's key that takes the conveyor's name.
    bundle = world.bundle("v2")
    forged = resigned(bundle.provenance.entry, Ed25519Signer.generate("conveyor.updates.example"))
    decision = decide(world, "v2", Bundle(Logged(forged, bundle.provenance.proof), ()))
    refused_by(decision, "provenance signature", "not signed by a trusted conveyor key")


def test_artifact_swapped(world: UpdateWorld) -> None:
    _, data = world.artifact("v2")
    decision = decide(world, "v2", artifact=tampered(data))
    refused_by(decision, "artifact digest", "this is not the artifact that was built")
    # Another release's bundle for this artifact (e.g. an old, vulnerable version's).
    decision = decide(world, "v2", bundle=world.bundle("v1"))
    refused_by(decision, "artifact digest", "does not list detection-db-2024.5.1.tar.gz")


# --- 3-4: logged and witnessed ------------------------------------------------------------


def test_signed_by_the_conveyor_but_never_logged(world: UpdateWorld) -> None:
    name, data = world.artifact("v2")
    implant = data + b"\0implant"
    bundle = world.bundle("v2")
    unlogged = resigned(
        bundle.provenance.entry,
        world.conveyor_signer(),
        subjects=[Subject(name, {"sha256": hashlib.sha256(implant).hexdigest()})],
    )
    decision = decide(
        world, "v2", Bundle(Logged(unlogged, bundle.provenance.proof), ()), artifact=implant
    )
    refused_by(decision, "logged", "the provenance is not in the release log")


def test_checkpoint_of_another_log(world: UpdateWorld) -> None:
    bundle = world.bundle("v2")
    text, _ = split(bundle.provenance.proof.checkpoint)
    other = sign_checkpoint(Checkpoint.parse(text), [Ed25519Signer.generate(text.split("\n")[0])])
    decision = decide(world, "v2", Bundle(with_checkpoint(bundle.provenance, other), ()))
    refused_by(decision, "logged", "not signed by the release log")


def test_checkpoint_without_witness_cosignatures(world: UpdateWorld) -> None:
    bundle = world.bundle("v2")
    text, _ = split(bundle.provenance.proof.checkpoint)
    log_only = sign_checkpoint(Checkpoint.parse(text), [world.log_signer()])
    decision = decide(
        world, "v2", Bundle(with_checkpoint(bundle.provenance, log_only), bundle.attestations)
    )
    check = refused_by(decision, "witnessed", "not cosigned by the witness quorum")
    assert "cosigned by none" in check.detail


def test_checkpoint_lacking_a_witness_the_policy_requires(world: UpdateWorld) -> None:
    w3 = Ed25519Signer.generate("witness.example/w3", SIG_COSIGNATURE_V1).verifier_key()
    witnesses = "quorum = 3\n" + "".join(
        f'[[witnesses.witness]]\nname = "{n}"\nkey = "{k}"\n'
        for n, k in [*world.witness_vkeys.items(), ("w3", str(w3))]
    )
    decision = decide(world, "v2", policy=world.policy(witnesses=witnesses))
    check = refused_by(decision, "witnessed", "quorum")
    assert "cosigned by w1, w2" in check.detail


# --- 5: fresh -----------------------------------------------------------------------------


def test_stale_checkpoint_is_refused(world: UpdateWorld) -> None:
    later = time.time() + 49 * 3600
    decision = decide(world, "v2", now=later)
    check = refused_by(decision, "fresh", "older than 24 h")
    assert "the log view may be frozen" in check.detail
    # A policy without a maximum age has no freshness check.
    decision = decide(world, "v2", policy=world.policy(max_age_hours=None), now=later)
    assert decision.accepted, decision.reason
    assert "fresh" not in [c.name for c in decision.checks]


# --- 6: one consistent view -------------------------------------------------------------


def test_split_view_against_the_remembered_checkpoint(world: UpdateWorld) -> None:
    policy = world.policy()
    memory = DictMemory()
    assert decide(world, "v1", memory=memory).accepted
    assert memory.load(memory_identity(policy)) == world.signed_checkpoint()
    # Another tree of the same size, signed with the same log key and cosigned by
    # both witnesses: the client has seen the real one, so it is refused.
    entries = world.entries()
    tree, forged = world.forged_tree([*entries[:-1], b"what only this customer sees"])
    bundle = Bundle(proven(tree, 0, entries[0], forged), ())
    decision = decide(world, "v1", bundle, memory=memory)
    refused_by(decision, "consistent view", f"two different trees of size {len(entries)}")
    assert memory.load(memory_identity(policy)) == world.signed_checkpoint()


def test_split_view_that_rewrites_history_is_refused_with_a_proof(world: UpdateWorld) -> None:
    assert world.early_bundle is not None
    early = world.early_bundle.provenance.proof.checkpoint
    memory = DictMemory()
    memory.store(memory_identity(world.policy()), early)
    # A bigger tree that does not extend the remembered one (entry 1 rewritten).
    entries = world.entries()
    tree, forged = world.forged_tree([entries[0], b"rewritten", *entries[2:]])
    bundle = Bundle(proven(tree, 0, entries[0], forged), ())
    prover = consistency_prover(directory_fetcher(world.tiles))
    decision = decide(world, "v1", bundle, memory=memory, prover=prover)
    refused_by(
        decision,
        "consistent view",
        f"does not extend the one of size {Checkpoint.parse(split(early)[0]).size}",
    )
    assert memory.load(memory_identity(world.policy())) == early


def test_checkpoint_bigger_than_the_log_serves_is_refused(world: UpdateWorld) -> None:
    memory = DictMemory()
    memory.store(memory_identity(world.policy()), world.signed_checkpoint())
    entries = world.entries()
    tree, forged = world.forged_tree([*entries, b"a private extension"])
    bundle = Bundle(proven(tree, 0, entries[0], forged), ())
    prover = consistency_prover(directory_fetcher(world.tiles))
    decision = decide(world, "v1", bundle, memory=memory, prover=prover)
    refused_by(decision, "consistent view", "could not obtain a consistency proof")


def test_inconsistent_checkpoints_inside_one_bundle(world: UpdateWorld) -> None:
    bundle = world.bundle("v2")
    entries = world.entries()
    tree, forged = world.forged_tree([*entries[:-1], b"forked"])
    (vsa,) = bundle.attestations
    split_bundle = Bundle(bundle.provenance, (proven(tree, vsa.proof.index, vsa.entry, forged),))
    decision = decide(world, "v2", split_bundle)
    refused_by(decision, "consistent view", "another proof in the bundle")


def test_gossip_remembers_the_newest_checkpoint(world: UpdateWorld, tmp_path: Path) -> None:
    assert world.early_bundle is not None
    policy = world.policy()
    memory = FileMemory(tmp_path / "checkpoints")
    early = world.early_bundle.provenance.proof.checkpoint
    first = decide(world, "v1", world.early_bundle, memory=memory)
    assert first.accepted, first.reason
    assert first.checkpoint is not None and first.checkpoint.size == 2
    assert memory.load(memory_identity(policy)) == early
    assert "no earlier checkpoint remembered" in first.checks[5].detail
    # A later bundle with a bigger checkpoint: proven consistent from the log's tiles.
    prover = consistency_prover(http_fetcher(world.log_url))
    later = decide(world, "v1", memory=memory, prover=prover)
    assert later.accepted, later.reason
    assert "consistent with the checkpoint of size 2 seen before" in later.checks[5].detail
    assert memory.load(memory_identity(policy)) == world.signed_checkpoint()
    # The early bundle again: still consistent, and the memory never goes back.
    again = decide(world, "v1", world.early_bundle, memory=memory, prover=prover)
    assert again.accepted, again.reason
    assert memory.load(memory_identity(policy)) == world.signed_checkpoint()


def test_gossip_without_a_prover_cannot_accept_a_different_size(world: UpdateWorld) -> None:
    assert world.early_bundle is not None
    memory = DictMemory()
    memory.store(memory_identity(world.policy()), world.early_bundle.provenance.proof.checkpoint)
    decision = decide(world, "v1", memory=memory, prover=None)
    check = refused_by(decision, "consistent view", "cannot prove that the tree of size")
    assert "no log URL to ask for a consistency proof" in check.detail


# --- 7: reproduced ----------------------------------------------------------------------


def test_release_whose_rebuild_failed(world: UpdateWorld) -> None:
    decision = decide(world, "clock")
    check = refused_by(decision, "reproduced", "trusted rebuilder rebuilder.example.org/r1")
    assert "reported FAILED" in check.detail
    assert "not reproducible" in check.detail


def test_release_no_trusted_rebuilder_passed_yet(world: UpdateWorld) -> None:
    bundle = world.bundle("v2")
    decision = decide(world, "v2", Bundle(bundle.provenance, ()))
    refused_by(decision, "reproduced", "0 of the 1 required trusted rebuilders reported PASSED")
    # Unless the channel needs no rebuild.
    policy = world.policy(rebuilders_required=0)
    decision = decide(world, "v2", Bundle(bundle.provenance, ()), policy=policy)
    assert decision.accepted, decision.reason
    assert "0 required" in decision.checks[6].detail


def test_vsa_from_an_untrusted_rebuilder_is_ignored(world: UpdateWorld) -> None:
    other = str(Ed25519Signer.generate("rebuilder.example.org/r1").verifier_key())
    decision = decide(world, "v2", policy=world.policy(rebuilder_keys=[other]))
    refused_by(decision, "reproduced", "ignored: attestation 0 is not signed by a trusted key")
    # A verdict forged by a key that takes the trusted rebuilder's name.
    bundle = world.bundle("v2")
    (vsa,) = bundle.attestations
    fake = resigned(vsa.entry, Ed25519Signer.generate("rebuilder.example.org/r1"))
    decision = decide(world, "v2", Bundle(bundle.provenance, (Logged(fake, vsa.proof),)))
    refused_by(decision, "reproduced", "attestation 0 is not signed by a trusted key")


def test_vsa_about_another_release_does_not_count(world: UpdateWorld) -> None:
    v1, v2 = world.bundle("v1"), world.bundle("v2")
    decision = decide(world, "v2", Bundle(v2.provenance, v1.attestations))
    check = refused_by(decision, "reproduced", "0 of the 1 required")
    assert "attestation is about another provenance" in check.detail


def test_vsa_not_proven_logged_does_not_count(world: UpdateWorld) -> None:
    bundle = world.bundle("v2")
    (vsa,) = bundle.attestations
    wrong = Logged(vsa.entry, world.bundle("v1").provenance.proof)  # a proof for entry 0
    decision = decide(world, "v2", Bundle(bundle.provenance, (wrong,)))
    check = refused_by(decision, "reproduced", "0 of the 1 required")
    assert "attestation is not proven logged" in check.detail


# --- 8: reviewed --------------------------------------------------------------------------

REVIEWS = "[channels.products]\nreviews_required = 1\n"


def test_channel_requiring_a_review_refuses_an_unreviewed_release(world: UpdateWorld) -> None:
    reviewer = str(world.reviewer.verifier_key())
    policy = world.policy(reviewer_keys=[reviewer], channels=REVIEWS)
    decision = decide(world, "v2", policy=policy)
    refused_by(decision, "reviewed", "0 of the 1 required full reviews by trusted reviewers")
    # The rules channel's own rules apply only to it: products stays as configured.
    assert decide(world, "v2", policy=world.policy(reviewer_keys=[reviewer])).accepted


def test_logged_review_by_a_trusted_reviewer(world: UpdateWorld) -> None:
    reviewer = str(world.reviewer.verifier_key())
    decision = decide(world, "v1", policy=world.policy(reviewer_keys=[reviewer], channels=REVIEWS))
    assert decision.accepted, decision.reason
    assert decision.checks[-1].detail == "approved by reviewer.example.org/alice"
    # A reviewer the customer does not trust does not count.
    other = str(Ed25519Signer.generate("reviewer.example.org/alice").verifier_key())
    decision = decide(world, "v1", policy=world.policy(reviewer_keys=[other], channels=REVIEWS))
    refused_by(decision, "reviewed", "0 of the 1 required")


def test_review_of_a_narrower_scope_does_not_count(world: UpdateWorld) -> None:
    # The log as it would be had the reviewer also logged an overview-only review
    # of v2 (a tree extending the real one; no memory, so nothing to compare with).
    v2 = world.releases["v2"]
    statement = review_statement(v2, v2.envelope.to_bytes(), "approved", "overview")
    review = statement.sign([world.reviewer]).to_bytes()
    entries = [*world.entries(), review]
    tree, checkpoint = world.forged_tree(entries)
    index = v2.log_index
    assert index is not None
    vsa = world.bundle("v2").attestations[0]
    bundle = Bundle(
        proven(tree, index, entries[index], checkpoint),
        (
            proven(tree, vsa.proof.index, vsa.entry, checkpoint),
            proven(tree, len(entries) - 1, review, checkpoint),
        ),
    )
    reviewer = str(world.reviewer.verifier_key())
    overview = REVIEWS + 'review_scope = "overview"\n'
    accepted = decide(
        world, "v2", bundle, world.policy(reviewer_keys=[reviewer], channels=overview)
    )
    assert accepted.accepted, accepted.reason
    decision = decide(world, "v2", bundle, world.policy(reviewer_keys=[reviewer], channels=REVIEWS))
    refused_by(decision, "reviewed", "0 of the 1 required full reviews")


def test_an_old_bundle_reproved_against_the_logs_newest_checkpoint_is_accepted_again(
    world: UpdateWorld,
) -> None:
    from overt.policy.bundle import reprove

    assert world.early_bundle is not None
    early = world.early_bundle
    # A day later, the bundle's cosignatures are too old for a 1-hour maximum age...
    strict = world.policy(max_age_hours=1)
    later = time.time() + 2 * 3600
    stale = decide(world, "v1", early, policy=strict, now=later)
    assert not stale.accepted and stale.reason.startswith("fresh")
    # ...reproved against the log's current checkpoint, every proof is new and verifies.
    fresh = reprove(early, world.client())
    size = world.client().checkpoint.size
    assert Checkpoint.parse(split(fresh.provenance.proof.checkpoint)[0]).size == size > 2
    assert fresh.provenance.entry == early.provenance.entry
    assert decide(world, "v1", fresh).accepted
    # An entry that is not the log's entry at its index keeps its old proof.
    forged = Bundle(Logged(b"not the entry", early.provenance.proof), ())
    assert reprove(forged, world.client()).provenance.proof == early.provenance.proof

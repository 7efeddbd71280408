"""Rule sets on the update channel: the vendor's publication gate, the customer's verifier and
update client, the monitor's count of targeted rule sets, and the commands people run.

The deployment is `rules_fixtures.rules_world` (see there): v1 is clean and
published; spy (2024.6.0) carries a rule that silently uploads classified
documents from German customers and has no approval; approved (2024.6.1)
carries the same rule, approved by the reviewer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from overt.crypto.dsse import Envelope
from overt.crypto.intoto import Statement, Subject
from overt.crypto.keyfile import write_private_key
from overt.crypto.keys import Ed25519Signer
from overt.errors import MalformedError, VerificationError
from overt.log.config import LogConfig
from overt.log.log import init_log
from overt.monitor.config import MonitoredLog
from overt.monitor.monitor import Monitor, add_monitored_log, entry_type, init_monitor
from overt.policy.bundle import Bundle
from overt.policy.trust import TrustPolicy, load_policy
from overt.policy.verify import Decision, verify_release
from overt.rules import release as release_module
from overt.rules.release import RULESET_FILE, RuleSetHeld
from overt.rules.statements import APPROVAL_TYPE, RULESET_TYPE
from overt.updates.client import UpdateClient
from overt.updates.publish import publish_releases
from overt.updates.repository import ReleaseFiles
from rules_fixtures import JUSTIFICATION, SPY, VERSIONS, RulesWorld, rules_world
from update_fixtures import PRODUCT, cli, flat, proven

AUDITED = "rules audited"


@pytest.fixture(scope="module")
def rw(tmp_path_factory: pytest.TempPathFactory) -> RulesWorld:
    return rules_world(tmp_path_factory)


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def decide(
    rw: RulesWorld,
    name: str,
    policy: TrustPolicy | None = None,
    bundle: Bundle | None = None,
    channel: str = "rules",
) -> Decision:
    artifact, data = rw.world.artifact(name)
    return verify_release(
        artifact,
        hashlib.sha256(data).hexdigest(),
        bundle if bundle is not None else rw.world.bundle(name),
        policy if policy is not None else trusting(rw),
        channel,
    )


def trusting(rw: RulesWorld, reviewers: list[str] | None = None, channels: str = "") -> TrustPolicy:
    """The world's policy, trusting the reviewer (unless told otherwise)."""
    keys = [rw.reviewer_vkey] if reviewers is None else reviewers
    return rw.world.policy(reviewer_keys=keys, channels=channels)


def refused_by_the_audit(decision: Decision, phrase: str) -> None:
    assert not decision.accepted
    last = decision.checks[-1]
    assert (last.name, last.passed) == (AUDITED, False), decision.reason
    assert all(c.passed for c in decision.checks[:-1]), decision.checks
    assert phrase in last.detail, last.detail


def statement_entry(rw: RulesWorld, name: str) -> bytes:
    return rw.world.entries()[rw.statement_index[name]]


# --- the vendor's publication gate --------------------------------------------------------------


def test_gate_holds_a_flagged_set_and_publishes_it_once_approved(rw: RulesWorld) -> None:
    world = rw.world
    repo, _ = world.copy_repo()
    before = files_of(repo.repo)
    spy, approved = rw.release("spy").directory, rw.release("approved").directory
    for releases, gate in (
        ([spy], rw.gate()),
        # One held release holds back the whole publication.
        ([approved, spy], rw.gate()),
        # The approval counts only when its signer is one of the gate's approvers.
        ([approved], rw.gate(approvers=False)),
    ):
        with pytest.raises(RuleSetHeld, match=SPY):
            publish_releases(repo, world.client(), releases, "rules", gate=gate)
        assert files_of(repo.repo) == before
    # A set whose statement was never logged is not published either.
    with pytest.raises(VerificationError, match="no rule-set statement signed by a trusted"):
        publish_releases(
            repo, world.client(), [rw.release("broken").directory], "rules", gate=rw.gate()
        )
    with pytest.raises(MalformedError, match="needs the conveyor keys and the approvers' keys"):
        publish_releases(repo, world.client(), [approved], "rules")
    assert files_of(repo.repo) == before
    assert repo.index()["rules"][PRODUCT]["version"] == VERSIONS["v1"]

    steps: list[str] = []
    published = publish_releases(repo, world.client(), [approved], "rules", steps.append, rw.gate())
    name = f"{PRODUCT}-{VERSIONS['approved']}.tar.gz"
    assert published == [f"rules/{PRODUCT}/{VERSIONS['approved']}/{name}"]
    assert repo.index()["rules"][PRODUCT]["version"] == VERSIONS["approved"]
    assert any("7 rules, 1 flagged and approved" in s for s in steps), steps


def test_gate_refuses_a_rule_release_that_is_not_one_archive(
    rw: RulesWorld, tmp_path: Path
) -> None:
    repo, _ = rw.world.copy_repo()
    release = tmp_path / "release"
    shutil.copytree(rw.release("v1").directory, release)
    (release / "notes.txt").write_text("not audited\n")
    record = json.loads((release / "release.json").read_text())
    record["artifacts"]["notes.txt"] = hashlib.sha256(b"not audited\n").hexdigest()
    (release / "release.json").write_text(json.dumps(record))
    with pytest.raises(MalformedError, match="a rule-set release is exactly one archive"):
        publish_releases(repo, rw.world.client(), [release], "rules", gate=rw.gate())


# --- the customer's verifier ---------------------------------------------------------------------


def test_customer_accepts_audited_rule_sets(rw: RulesWorld) -> None:
    decision = decide(rw, "v1")
    assert decision.accepted, decision.reason
    audited = next(c for c in decision.checks if c.name == AUDITED)
    assert audited.detail == (
        "6 rules listed in the log; 0 flagged, all approved; 0 targeted at fewer than all customers"
    )
    decision = decide(rw, "approved")
    assert decision.accepted, decision.reason
    audited = next(c for c in decision.checks if c.name == AUDITED)
    assert audited.detail == (
        "7 rules listed in the log; 1 flagged, all approved; 1 targeted at fewer than all customers"
    )


def test_customer_refuses_a_flagged_rule_nobody_approved(rw: RulesWorld) -> None:
    refused_by_the_audit(
        decide(rw, "spy"),
        f"1 flagged rule(s) have no approval by a trusted reviewer: {SPY} (document-target, "
        "marking, narrow-audience, provenance, silent, upload-sample)",
    )
    # An approval counts only when the customer trusts its signer.
    refused_by_the_audit(decide(rw, "approved", trusting(rw, reviewers=[])), SPY)
    stranger = str(Ed25519Signer.generate("reviewer.example.org/alice").verifier_key())
    refused_by_the_audit(decide(rw, "approved", trusting(rw, reviewers=[stranger])), SPY)


def test_customer_refuses_a_rule_set_without_its_statement(rw: RulesWorld) -> None:
    bundle = rw.world.bundle("v1")
    statement = statement_entry(rw, "v1")
    without = Bundle(
        bundle.provenance, tuple(a for a in bundle.attestations if a.entry != statement)
    )
    assert len(without.attestations) == len(bundle.attestations) - 1
    refused_by_the_audit(
        decide(rw, "v1", bundle=without),
        "no logged rule-set statement from a trusted conveyor lists this bundle's rules",
    )


def logged_later(
    rw: RulesWorld, name: str, extra: bytes, drop: bytes | None = None, first: bool = False
) -> Bundle:
    """The release's bundle, `extra` logged after everything else (and `drop` left out),
    proven against a checkpoint of that longer log, cosigned by both witnesses; `extra`
    comes first among the bundle's attestations when `first`."""
    world = rw.world
    entries = world.entries()
    tree, checkpoint = world.forged_tree([*entries, extra])
    bundle = world.bundle(name)
    provenance = proven(tree, bundle.provenance.proof.index, bundle.provenance.entry, checkpoint)
    kept = [proven(tree, a.proof.index, a.entry, checkpoint) for a in bundle.attestations]
    added = proven(tree, len(entries), extra, checkpoint)
    kept = [a for a in kept if a.entry != drop]
    return Bundle(provenance, (added, *kept) if first else (*kept, added))


def test_customer_ignores_a_statement_about_another_bundle(rw: RulesWorld) -> None:
    """The vendor logs, about v1's provenance, a statement naming another archive (one without
    the rules it would rather not show): it does not speak for the archive customers receive."""
    ruleset = rw.rulesets["v1"]
    other = Subject(ruleset.bundle.name, {"sha256": hashlib.sha256(b"another archive").hexdigest()})
    foreign = (
        Statement([other], RULESET_TYPE, {**ruleset.statement().predicate, "rules": []})
        .sign([rw.world.conveyor.signer])
        .to_bytes()
    )
    real = statement_entry(rw, "v1")
    refused_by_the_audit(
        decide(rw, "v1", bundle=logged_later(rw, "v1", foreign, drop=real)),
        "no logged rule-set statement from a trusted conveyor lists this bundle's rules",
    )
    decision = decide(rw, "v1", bundle=logged_later(rw, "v1", foreign))
    assert decision.accepted, decision.reason


def test_a_later_statement_cannot_drop_a_finding_for_customers(rw: RulesWorld) -> None:
    ruleset = rw.rulesets["spy"]
    quiet = Statement(
        ruleset.statement().subjects,
        RULESET_TYPE,
        {
            **ruleset.statement().predicate,
            "rules": [{**r.to_json(), "findings": []} for r in ruleset.rules],
            "flagged": [],
        },
    )
    entry = quiet.sign([rw.world.conveyor.signer]).to_bytes()
    for first in (False, True):
        bundle = logged_later(rw, "spy", entry, first=first)
        refused_by_the_audit(decide(rw, "spy", bundle=bundle), SPY)
    # Alone, the quiet statement would pass: it is the first one's finding that counts.
    alone = logged_later(rw, "spy", entry, drop=statement_entry(rw, "spy"))
    assert decide(rw, "spy", bundle=alone).accepted


def test_the_audit_can_be_turned_off_and_products_do_not_need_it(rw: RulesWorld) -> None:
    relaxed = trusting(rw, channels="[channels.rules]\nflagged_rules_need_approval = false\n")
    assert not relaxed.channel("rules").rule_audit
    assert "rule-set statement" not in " ".join(relaxed.explain())
    decision = decide(rw, "spy", relaxed)
    assert decision.accepted, decision.reason
    assert AUDITED not in [c.name for c in decision.checks]
    strict = trusting(rw)
    assert strict.channel("rules").rule_audit and not strict.channel("products").rule_audit
    assert any("rule-set statement must be logged" in line for line in strict.explain())
    decision = decide(rw, "v1", channel="products")
    assert decision.accepted and AUDITED not in [c.name for c in decision.checks]
    with pytest.raises(MalformedError, match="flagged_rules_need_approval must be true or false"):
        trusting(rw, channels='[channels.rules]\nflagged_rules_need_approval = "no"\n')


def test_update_client_refuses_a_held_back_set_the_vendor_published_anyway(
    rw: RulesWorld, tmp_path: Path
) -> None:
    world = rw.world
    policy = world.customer(tmp_path / "customer", reviewer_keys=[rw.reviewer_vkey])
    install, state = tmp_path / "customer" / "install", tmp_path / "customer" / "state"

    def update(url: str) -> list[tuple[str, str, str]]:
        report = UpdateClient(load_policy(policy), url, install, state).update()
        return [(o.product, o.version, o.status) for o in report.outcomes]

    # The real channel: 2024.5.0, published through the gate, is installed.
    assert update(world.repo_url) == [(PRODUCT, VERSIONS["v1"], "installed")]
    v1_file = f"{PRODUCT}-{VERSIONS['v1']}.tar.gz"
    assert sorted(p.name for p in (install / PRODUCT).iterdir()) == [v1_file]

    # The vendor bypasses its gate and signs 2024.6.0 into the channel with its TUF keys.
    repo, url = world.copy_repo()
    release = rw.release("spy")
    (artifact,) = release.artifacts
    assert release.log_index is not None
    repo.publish(
        [
            ReleaseFiles(
                "rules",
                PRODUCT,
                VERSIONS["spy"],
                {artifact.name: artifact.path.read_bytes()},
                world.bundle("spy").to_bytes(),
                release.log_index,
            )
        ]
    )
    assert update(url) == [(PRODUCT, VERSIONS["spy"], "refused")]
    assert sorted(p.name for p in (install / PRODUCT).iterdir()) == [v1_file]
    (refusal,) = [json.loads(line) for line in (state / "refusals.jsonl").read_text().splitlines()]
    assert refusal["channel"] == "rules" and refusal["version"] == VERSIONS["spy"]
    assert f"{artifact.name}: {AUDITED}: 1 flagged rule(s)" in refusal["reason"]
    assert SPY in refusal["reason"]


# --- the monitor ---------------------------------------------------------------------------------


def test_monitor_counts_targeted_rule_sets(rw: RulesWorld, tmp_path: Path) -> None:
    world = rw.world
    entries = world.entries()
    assert entry_type(statement_entry(rw, "v1")) == "ruleset"
    assert entry_type(statement_entry(rw, "spy")) == "ruleset-targeted"
    assert entry_type(entries[rw.approval_index]) == "rule-approval"
    # Counted from the rules' audiences, not from the list the vendor wrote beside them.
    spy = rw.rulesets["spy"].statement()
    unlisted = Statement(spy.subjects, RULESET_TYPE, {**spy.predicate, "targeted": []})
    assert entry_type(unlisted.sign([world.conveyor.signer]).to_bytes()) == "ruleset-targeted"
    init_monitor(tmp_path / "monitor")
    add_monitored_log(tmp_path / "monitor", MonitoredLog("releases", world.log_url, world.log_vkey))
    monitor = Monitor(tmp_path / "monitor")
    try:
        (result,) = monitor.check_all()
        assert result.error is None and result.alerts == []
        (status,) = monitor.status()["logs"]  # type: ignore[misc]
        counts = status["entry_types"]
        # spy and approved (and cli, if the command-line test released it already).
        assert counts["ruleset-targeted"] >= 2 and counts["ruleset"] == 1, counts
        assert counts["rule-approval"] >= 1
        assert f'type="ruleset-targeted"}} {counts["ruleset-targeted"]}' in monitor.metrics()
    finally:
        monitor.close()


# --- the commands --------------------------------------------------------------------------------


def test_rules_release_and_approve_commands(rw: RulesWorld, tmp_path: Path) -> None:
    world = rw.world
    conveyor, log = world.root / "conveyor", world.log_dir
    release = rw.release("cli").directory
    key = tmp_path / "alice.key"
    write_private_key(key, world.reviewer)
    repo, _ = world.copy_repo()
    publish = (
        *("updates", "publish", repo.repo, release, "--keys", repo.keys, "--log", log),
        *("--channel", "rules", "--conveyor-key", world.conveyor.vkey),
    )

    # A flagged set: the statement is logged, the rule shown held back (exit 1).
    code, out, err = cli("rules", "release", release, "--conveyor", conveyor, "--log", log)
    assert code == 1, err
    said = flat(out)
    assert f"rule set {PRODUCT} {VERSIONS['cli']}: 7 rules; statement logged as entry" in said
    assert f"1 rule(s) aimed at fewer than all customers: {SPY} (country:DE)" in said
    assert "Held back until approved" in said and "marking (high)" in said
    index = int(said.split("statement logged as entry ")[1].split(" ")[0].rstrip(";"))
    assert world.entries()[index] == (release / RULESET_FILE).read_bytes()

    # Publishing is refused (exit 1) until a trusted approver approves, and changes nothing.
    before = files_of(repo.repo)
    code, _, err = cli(*publish, "--approver", rw.reviewer_vkey)
    assert code == 1 and "held back" in flat(err) and SPY in flat(err), err
    assert files_of(repo.repo) == before

    approve = ("rules", "approve", release, "--key", key, "--log", log)
    code, _, err = cli(*approve, "--rule", SPY, "--justification", "fine")
    assert code == 2 and "at least a sentence" in flat(err)
    code, _, err = cli(*approve, "--rule", "Not_A_Rule", "--justification", JUSTIFICATION)
    assert code == 2 and "not in the rule set: Not_A_Rule" in flat(err)
    code, out, err = cli(*approve, "--rule", SPY, "--justification", JUSTIFICATION)
    assert code == 0, err
    said = flat(out)
    assert f"approved {SPY} of {PRODUCT} {VERSIONS['cli']}; logged as entry" in said
    approval = world.entries()[int(said.rsplit(" ", 1)[1])]
    statement = Statement.from_envelope(Envelope.from_bytes(approval))
    assert statement.predicate_type == APPROVAL_TYPE
    assert statement.predicate["justification"] == JUSTIFICATION

    # Approved by a key the publisher was not told to trust: still held back.
    code, _, err = cli(*publish)
    assert code == 1 and "held back" in flat(err)
    code, out, err = cli(*publish, "--approver", rw.reviewer_vkey)
    assert code == 0, err
    assert f"published rules/{PRODUCT}/{VERSIONS['cli']}/" in flat(out)
    assert repo.index()["rules"][PRODUCT]["version"] == VERSIONS["cli"]


def test_rules_release_exit_codes(rw: RulesWorld, tmp_path: Path) -> None:
    world = rw.world
    conveyor = world.root / "conveyor"
    size = len(world.entries())
    # A rule that does not compile: nothing is logged, exit 2 with the file and line.
    broken = rw.release("broken").directory
    code, _, err = cli("rules", "release", broken, "--conveyor", conveyor, "--log", world.log_dir)
    assert code == 2 and "rules/broken.yar:9:" in flat(err) and "unknown identifier" in flat(err)
    assert len(world.entries()) == size and not (broken / RULESET_FILE).exists()

    # A clean set: exit 0 (logged here in a log of its own, so the world stays as it is).
    init_log(tmp_path / "log", LogConfig(origin="example.com/rules-cli"))
    clean = tmp_path / "v1"
    shutil.copytree(rw.release("v1").directory, clean)
    (clean / RULESET_FILE).unlink()
    code, _, err = cli(
        "rules",
        "approve",
        clean,
        "--key",
        tmp_path / "k",
        "--rule",
        "X",
        "--justification",
        JUSTIFICATION,
        "--log",
        tmp_path / "log",
    )
    assert code == 2 and "run 'overt rules release' first" in flat(err)
    code, out, err = cli(
        "rules", "release", clean, "--conveyor", conveyor, "--log", tmp_path / "log"
    )
    assert code == 0, err
    said = flat(out)
    assert "6 rules; statement logged as entry 0" in said
    assert "no rule is flagged: the set may be published" in said
    assert (clean / RULESET_FILE).read_bytes() == statement_entry(rw, "v1")

    # Bad input: exit 2 with a reason.
    code, _, err = cli(
        "rules", "release", tmp_path, "--conveyor", conveyor, "--log", tmp_path / "log"
    )
    assert code == 2 and "not a conveyor release" in flat(err)
    code, _, err = cli("rules", "release", clean, "--conveyor", tmp_path, "--log", tmp_path / "log")
    assert code == 2 and "is not a conveyor directory" in flat(err)
    code, _, err = cli(
        *("updates", "publish", world.repo, clean, "--keys", world.keys, "--log", world.log_dir),
        *("--channel", "rules"),
    )
    assert code == 2 and "--channel rules needs --conveyor-key" in flat(err)


def test_rules_release_shows_findings_as_text(
    rw: RulesWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Findings quote the rules' strings: "[/]" is text to show, not markup to interpret."""
    ruleset = rw.rulesets["spy"]
    quoting = replace(
        ruleset,
        rules=tuple(
            replace(
                r,
                findings=(
                    *r.findings,
                    {"lint": "broad", "severity": "medium", "message": "$a (line 6) '[/]' [bold]x"},
                ),
            )
            if r.name == SPY
            else r
            for r in ruleset.rules
        ),
    )
    monkeypatch.setattr(release_module, "release_ruleset", lambda *args: (quoting, 99))
    code, out, err = cli(
        "rules", "release", tmp_path, "--conveyor", rw.world.root / "conveyor", "--log", tmp_path
    )
    assert code == 1, err
    assert "'[/]' [bold]x" in flat(out)

"""Releasing a rule set: the logged rule-set statement, what blocks a release, what holds it back.

The releases come from `rules_fixtures.rules_world`: examples/detection-db
built by the conveyor (v1), then with the demo's spying rule added (spy,
approved), and with a rule that does not compile (broken). Hand-made archives
test what the audit does with bundles nobody should build.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from overt.crypto.dsse import Envelope, verify_envelope
from overt.crypto.intoto import PAYLOAD_TYPE, Statement, Subject
from overt.crypto.keys import Ed25519Signer, ed25519_verifier
from overt.errors import MalformedError, VerificationError
from overt.log.config import LogConfig
from overt.log.log import Log, init_log
from overt.rules import release as release_module
from overt.rules.lints import audit_paths
from overt.rules.manifest import load_manifest
from overt.rules.parse import parse_file
from overt.rules.release import (
    RULESET_FILE,
    RuleSetBlocked,
    RuleSetHeld,
    audit_bundle,
    check_approved,
    load_ruleset,
    release_ruleset,
    ruleset_statement,
)
from overt.rules.statements import (
    APPROVAL_TYPE,
    RULESET_TYPE,
    Approval,
    RuleSet,
    make_approval,
    unapproved,
)
from release_fixtures import EXAMPLES, odd_value_refusals
from rules_fixtures import BROKEN_RULE, JUSTIFICATION, SPY, RulesWorld, rules_world
from update_fixtures import PRODUCT

SAMPLES = Path(__file__).resolve().parent / "rules_samples"
EXAMPLE = EXAMPLES / PRODUCT
# The spying rule's high findings (a narrow audience is high when the rule uploads).
HIGH_LINTS = {"marking", "upload-sample", "silent", "narrow-audience"}


@pytest.fixture(scope="module")
def rw(tmp_path_factory: pytest.TempPathFactory) -> RulesWorld:
    return rules_world(tmp_path_factory)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def logged_statement(rw: RulesWorld, name: str) -> tuple[Envelope, Statement]:
    envelope = Envelope.from_bytes(rw.world.entries()[rw.statement_index[name]])
    return envelope, Statement.from_envelope(envelope)


def facts(rw: RulesWorld, name: str) -> tuple[str, str]:
    """(provenance sha256, archive sha256) of a release."""
    release = rw.release(name)
    (artifact,) = release.artifacts
    return sha256(release.envelope_path.read_bytes()), artifact.sha256


def bundle_entries(rw: RulesWorld, name: str) -> list[bytes]:
    return [a.entry for a in rw.world.bundle(name).attestations]


def check(rw: RulesWorld, name: str, entries: list[bytes], **keys: object) -> RuleSet:
    provenance, archive = facts(rw, name)
    gate = rw.gate()
    return check_approved(
        entries,
        provenance,
        archive,
        keys.get("conveyors", gate.conveyors),  # type: ignore[arg-type]
        keys.get("reviewers", gate.approvers),  # type: ignore[arg-type]
    )


def archive(where: Path, members: dict[str, bytes | str], name: str = "rules.tar.gz") -> Path:
    """A .tar.gz of `members` (name -> content)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for member, content in members.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    path = where / name
    path.write_bytes(buf.getvalue())
    return path


def example_members(top: str = "db") -> dict[str, bytes | str]:
    members: dict[str, bytes | str] = {
        f"{top}/rules/{p.name}": p.read_bytes() for p in sorted((EXAMPLE / "rules").iterdir())
    }
    members[f"{top}/ruleset.toml"] = (EXAMPLE / "ruleset.toml").read_bytes()
    return members


# --- the statement of a conveyor-built rule set ------------------------------------------------


def test_statement_lists_every_rule_as_built_and_deployed(rw: RulesWorld) -> None:
    ruleset = rw.rulesets["v1"]
    assert (ruleset.name, ruleset.version) == (PRODUCT, "2024.5.0")
    expected = {}
    for path in sorted((EXAMPLE / "rules").glob("*.yar")):
        rules, problems = parse_file(path, f"rules/{path.name}")
        assert problems == []
        expected.update({r.name: (r.sha256, r.file, r.tags) for r in rules})
    assert len(expected) == 6
    assert {r.name: (r.sha256, r.file, r.tags) for r in ruleset.rules} == expected
    assert [r.name for r in ruleset.rules] == sorted(expected)
    # ruleset.toml: quarantine for everyone, told; EICAR only detected.
    for record in ruleset.rules:
        action = "detect" if record.name == "EICAR_Test_File" else "quarantine"
        assert (record.action, record.notify, record.audience) == (action, True, ("all",))
    # The findings are the audit's, rule by rule, and none holds the set back.
    audit = audit_paths([EXAMPLE / "rules"], load_manifest(EXAMPLE).contexts())
    assert {
        (r.name, f["lint"], f["severity"], f["message"]) for r in ruleset.rules for f in r.findings
    } == {(f.rule, f.lint, f.severity, f.message) for f in audit.findings}
    assert ruleset.flagged == [] and ruleset.targeted == []


def test_statement_is_signed_logged_and_names_the_bundle(rw: RulesWorld) -> None:
    release = rw.release("v1")
    envelope, statement = logged_statement(rw, "v1")
    # The log holds the exact bytes written next to the release.
    assert (
        rw.world.entries()[rw.statement_index["v1"]]
        == (release.directory / RULESET_FILE).read_bytes()
    )
    signers = verify_envelope(
        envelope, [ed25519_verifier(rw.world.conveyor.vkey)], payload_type=PAYLOAD_TYPE
    )
    assert signers[0].name == rw.world.conveyor.signer.name
    assert statement.predicate_type == RULESET_TYPE
    provenance, archive_sha = facts(rw, "v1")
    (artifact,) = release.artifacts
    ruleset = rw.rulesets["v1"]
    assert list(statement.subjects) == [
        Subject(artifact.name, {"sha256": archive_sha}),
        *(Subject(f"rule:{r.name}", {"sha256": r.sha256}) for r in ruleset.rules),
    ]
    assert statement.predicate["inputAttestations"] == [{"digest": {"sha256": provenance}}]
    assert statement.predicate["flagged"] == [] and statement.predicate["targeted"] == []
    assert RuleSet.from_statement(statement) == ruleset == load_ruleset(release.directory)
    # It travels in the release's bundle, for customers.
    assert rw.world.entries()[rw.statement_index["v1"]] in bundle_entries(rw, "v1")


def test_statement_of_the_spying_release(rw: RulesWorld) -> None:
    _, statement = logged_statement(rw, "spy")
    assert statement.predicate["flagged"] == [SPY]
    assert statement.predicate["targeted"] == [SPY]
    ruleset = RuleSet.from_statement(statement)
    assert len(ruleset.rules) == 7
    (spy,) = ruleset.flagged
    assert (spy.name, spy.file, spy.action, spy.notify, spy.audience) == (
        SPY,
        "rules/collection.yar",
        "upload-sample",
        False,
        ("country:DE",),
    )
    high = {f["lint"] for f in spy.findings if f["severity"] == "high"}
    assert high == HIGH_LINTS
    assert {"document-target", "provenance"} <= {f["lint"] for f in spy.findings}
    # The other six rules are the same rules as in 2024.5.0, at the same digests.
    before = {(r.name, r.sha256) for r in rw.rulesets["v1"].rules}
    assert {(r.name, r.sha256) for r in ruleset.rules if r.name != SPY} == before


def test_malformed_statements_are_refused_naming_what(rw: RulesWorld) -> None:
    _, good = logged_statement(rw, "v1")

    def with_predicate(predicate: object, subjects: list[Subject] | None = None) -> Statement:
        return Statement(subjects or list(good.subjects), RULESET_TYPE, predicate)  # type: ignore[arg-type]

    def refused(statement: Statement, phrase: str) -> None:
        with pytest.raises(MalformedError) as info:
            RuleSet.from_statement(statement)
        assert phrase in str(info.value)

    pred = good.predicate
    refused(Statement(list(good.subjects), APPROVAL_TYPE, pred), "not a rule-set statement")
    refused(with_predicate({**pred, "rules": None}), "rules and inputAttestations are required")
    refused(with_predicate({**pred, "inputAttestations": []}), "inputAttestations are required")
    refused(with_predicate({**pred, "inputAttestations": [{}]}), "needs a sha256")
    first = pred["rules"][0]
    for change, phrase in (
        ({"sha256": None}, "rules[0].sha256 must be a string"),
        ({"notify": "false"}, "rules[0].notify must be true or false"),
        ({"audience": "all"}, "rules[0].audience must be a list of strings"),
        ({"audience": []}, "rules[0].audience must not be empty"),
        ({"findings": {}}, "rules[0].findings must be a list"),
        ({"findings": [{"lint": "marking"}]}, "rules[0].findings[0] needs string lint"),
        ({"sha256": "00" * 32}, f"rule {first['name']} is not a subject"),
    ):
        refused(with_predicate({**pred, "rules": [{**first, **change}]}), phrase)
    missing = {k: v for k, v in first.items() if k != "file"}
    refused(with_predicate({**pred, "rules": [missing]}), "rules[0] is missing 'file'")
    refused(with_predicate({**pred, "rules": ["x"]}), "rules[0] must be an object")
    # A rule whose subject is missing cannot be proven to be in the bundle.
    refused(with_predicate(pred, list(good.subjects)[:1]), "is not a subject")
    # Whatever is changed, the answer is a statement or MalformedError, never a crash.
    odd_value_refusals(pred, lambda p: RuleSet.from_statement(with_predicate(p)))


# --- what blocks a release: nothing is logged ---------------------------------------------------


def test_a_rule_that_does_not_compile_blocks_the_release(rw: RulesWorld) -> None:
    release = rw.release("broken")
    size = len(rw.world.entries())
    with pytest.raises(RuleSetBlocked) as info:
        release_ruleset(release.directory, rw.world.conveyor.signer, str(rw.world.log_dir))
    message = str(info.value)
    assert "rules/broken.yar:9:" in message and "unknown identifier" in message, message
    assert len(rw.world.entries()) == size
    assert not (release.directory / RULESET_FILE).exists()


def test_a_statement_too_large_for_a_log_entry_blocks_the_release(
    rw: RulesWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log entry holds at most 65,535 bytes: about 130 rules without findings."""
    release = tmp_path / "release"
    shutil.copytree(rw.release("v1").directory, release)
    (release / RULESET_FILE).unlink()
    init_log(tmp_path / "log", LogConfig(origin="example.com/too-large"))
    size = len(rw.world.entries()[rw.statement_index["v1"]])
    monkeypatch.setattr(release_module, "MAX_ENTRY_SIZE", size - 1)
    with pytest.raises(RuleSetBlocked, match=f"is {size:,} bytes, and a log entry holds at most"):
        release_ruleset(release, rw.world.conveyor.signer, str(tmp_path / "log"))
    assert not (release / RULESET_FILE).exists()
    with Log(tmp_path / "log") as log:
        assert log.checkpoint.size == 0


def test_syntax_errors_includes_and_duplicate_names_block(tmp_path: Path) -> None:
    def blocked(extra: dict[str, bytes | str], phrase: str) -> None:
        where = tmp_path / str(len(list(tmp_path.iterdir())))
        where.mkdir()
        path = archive(where, {**example_members(), **extra})
        with pytest.raises(RuleSetBlocked) as info:
            ruleset_statement(path, "1", b"provenance")
        assert phrase in str(info.value), info.value

    blocked(
        {"db/rules/syntax.yar": "rule Broken_Syntax\n{\n    condition:\n}\n"}, "rules/syntax.yar:4:"
    )
    blocked({"db/rules/inc.yar": 'include "other.yar"\n' + BROKEN_RULE}, "rules/inc.yar:1: include")
    eicar = (EXAMPLE / "rules" / "eicar.yar").read_bytes()
    blocked({"db/rules/copy.yar": eicar}, "repeated: EICAR_Test_File")


def test_bundles_without_a_manifest_or_rules_are_refused(tmp_path: Path) -> None:
    members = example_members()
    no_manifest = {k: v for k, v in members.items() if not k.endswith("ruleset.toml")}
    cases: list[tuple[dict[str, bytes | str], str]] = [
        (no_manifest, "the bundle holds no ruleset.toml"),
        ({"db/ruleset.toml": members["db/ruleset.toml"]}, "holds no .yar or .yara files"),
        (
            {
                **members,
                "db/ruleset.toml": '[ruleset]\nname = "x"\n[defaults]\naction = "delete"\n',
            },
            "defaults.action must be one of detect, quarantine, upload-sample",
        ),
        ({**members, "db/ruleset.toml": b"\xff\xfe"}, "ruleset.toml is not UTF-8"),
        (
            {**members, "other/ruleset.toml": members["db/ruleset.toml"]},
            "more than one ruleset.toml",
        ),
        # A rule file the manifest's directory does not hold would reach customers unaudited.
        ({**members, "elsewhere/extra.YAR": BROKEN_RULE}, "elsewhere/extra.YAR is not under"),
    ]
    for i, (content, phrase) in enumerate(cases):
        (tmp_path / str(i)).mkdir()
        with pytest.raises(MalformedError) as info:
            audit_bundle(archive(tmp_path / str(i), content))
        assert phrase in str(info.value), (i, info.value)
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive at all")
    with pytest.raises(MalformedError, match="not a readable tar archive"):
        audit_bundle(tmp_path / "junk.tar.gz")


def _raw_tar(path: Path, members: list[tarfile.TarInfo], data: bytes = b"") -> Path:
    with path.open("wb") as f:
        for info in members:
            f.write(info.tobuf(format=tarfile.GNU_FORMAT))
            f.write(data)
    return path


def test_hostile_archives_are_refused_and_write_nothing_outside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = example_members()
    bundles = tmp_path / "bundles"
    bundles.mkdir()

    def refused(extra: dict[str, bytes | str], phrase: str, name: str) -> None:
        with pytest.raises(MalformedError) as info:
            audit_bundle(archive(bundles, {**members, **extra}, f"{name}.tar.gz"))
        assert phrase in str(info.value), info.value

    refused({"../escaped.yar": BROKEN_RULE}, "points outside the archive", "dotdot")
    refused({"db/../../escaped.yar": BROKEN_RULE}, "points outside the archive", "nested")
    refused({str(tmp_path / "absolute.yar"): BROKEN_RULE}, "points outside the archive", "abs")
    assert not (tmp_path / "escaped.yar").exists() and not (tmp_path / "absolute.yar").exists()
    assert not (tmp_path.parent / "escaped.yar").exists()

    # Links: a rule read from the customer's disk would never have been audited.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for member, content in members.items():
            data = content if isinstance(content, bytes) else content.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("db/rules/passwd.yar")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    (bundles / "link.tar").write_bytes(buf.getvalue())
    with pytest.raises(MalformedError, match="is a link or a special file"):
        audit_bundle(bundles / "link.tar")

    # Two members of one name: which one a scanner loads is up to its unpacker.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for data in (b"rule A { condition: true }\n", BROKEN_RULE.encode()):
            info = tarfile.TarInfo("db/rules/twice.yar")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    (bundles / "twice.tar").write_bytes(buf.getvalue())
    with pytest.raises(MalformedError, match="appears twice"):
        audit_bundle(bundles / "twice.tar")

    # A member that claims a terabyte is refused before anything is read or written.
    huge = tarfile.TarInfo("db/rules/huge.yar")
    huge.size = 2**40
    with pytest.raises(MalformedError, match=r"huge\.yar is too large"):
        audit_bundle(_raw_tar(bundles / "huge.tar", [huge], b"\0" * 512))

    monkeypatch.setattr(release_module, "MAX_BUNDLE_MEMBERS", 3)
    refused({}, "more than 3 members", "many")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundles"]


# --- flagged rules: held back until a trusted supervisor approves them --------------------------


def test_espionage_samples_are_flagged(tmp_path: Path) -> None:
    members = {
        "s/ruleset.toml": '[ruleset]\nname = "samples"\n',
        "s/rules/markings.yar": (SAMPLES / "espionage" / "markings.yar").read_bytes(),
        "s/rules/identifiers.yar": (SAMPLES / "espionage" / "identifiers.yar").read_bytes(),
    }
    path = archive(tmp_path, members)
    watchlist = [
        line
        for line in (SAMPLES / "watchlist.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    ruleset = ruleset_statement(path, "1", b"provenance", watchlist)
    flagged = {r.name: {f["lint"] for f in r.findings} for r in ruleset.flagged}
    assert "marking" in flagged["Marking_Plain_Top_Secret"]
    assert "watchlist" in flagged["Ident_Watchlist_Code_Name"]
    assert ruleset.targeted == []  # the defaults: everyone
    assert ruleset.statement().predicate["flagged"] == [r.name for r in ruleset.flagged]


def test_a_flagged_rule_holds_the_set_back_until_approved(rw: RulesWorld) -> None:
    with pytest.raises(RuleSetHeld) as info:
        check(rw, "spy", bundle_entries(rw, "spy"))
    message = str(info.value)
    assert "held back: 1 flagged rule(s)" in message
    assert SPY in message and all(lint in message for lint in HIGH_LINTS), message
    assert [r.name for r in info.value.missing] == [SPY]
    # 2024.6.1 carries the same rule; the reviewer approved it, and the approval is logged.
    entry = rw.world.entries()[rw.approval_index]
    assert entry in bundle_entries(rw, "approved")
    approval = Approval.from_statement(Statement.from_envelope(Envelope.from_bytes(entry)))
    spy = rw.rulesets["approved"].flagged[0]
    assert approval.rules == {SPY: spy.sha256}
    assert approval.justification == JUSTIFICATION
    assert approval.provenance_sha256 == facts(rw, "approved")[0]
    assert check(rw, "approved", bundle_entries(rw, "approved")) == rw.rulesets["approved"]
    # An approval made now, for 2024.6.0's own provenance, releases it too.
    now = make_approval(rw.rulesets["spy"], [SPY], JUSTIFICATION, rw.world.reviewer)
    assert check(rw, "spy", [*bundle_entries(rw, "spy"), now.to_bytes()]).version == "2024.6.0"


def test_approvals_that_do_not_count(rw: RulesWorld) -> None:
    entries = bundle_entries(rw, "spy")
    ruleset = rw.rulesets["spy"]
    provenance, _ = facts(rw, "spy")
    stranger = Ed25519Signer.generate("reviewer.example.org/alice")  # same name, other key
    spy = ruleset.flagged[0]
    for why, approval in (
        ("untrusted key", make_approval(ruleset, [SPY], JUSTIFICATION, stranger)),
        (
            "another digest",
            Approval(provenance, {SPY: "00" * 32}, JUSTIFICATION)
            .statement()
            .sign([rw.world.reviewer]),
        ),
        # The same rule text, approved for 2024.6.1: another provenance.
        ("another provenance", Envelope.from_bytes(rw.world.entries()[rw.approval_index])),
    ):
        with pytest.raises(RuleSetHeld, match=SPY):
            check(rw, "spy", [*entries, approval.to_bytes()])
        assert unapproved(ruleset, [approval.to_bytes()], rw.gate().approvers) == [spy], why
    # A rule changed after its approval needs a new one.
    approval = make_approval(ruleset, [SPY], JUSTIFICATION, rw.world.reviewer)
    changed = replace(spy, sha256=sha256(b"rule changed after approval"))
    later = replace(ruleset, rules=(*[r for r in ruleset.rules if r.name != SPY], changed))
    assert unapproved(ruleset, [approval.to_bytes()], rw.gate().approvers) == []
    assert unapproved(later, [approval.to_bytes()], rw.gate().approvers) == [changed]
    # The vendor's gate trusts only the approvers it is given.
    with pytest.raises(RuleSetHeld):
        check(rw, "approved", bundle_entries(rw, "approved"), reviewers=[])


def test_a_second_statement_cannot_drop_a_finding(rw: RulesWorld) -> None:
    """Every trusted statement about the bundle counts, not only the first or the last."""
    ruleset = rw.rulesets["spy"]
    quiet = replace(
        ruleset, rules=tuple(replace(r, findings=()) if r.name == SPY else r for r in ruleset.rules)
    )
    assert quiet.flagged == []
    second = quiet.statement().sign([rw.world.conveyor.signer]).to_bytes()
    entries = bundle_entries(rw, "spy")
    for order in ([*entries, second], [second, *entries]):
        with pytest.raises(RuleSetHeld, match=SPY):
            check(rw, "spy", order)
    # Alone, it would pass: it is the first statement's finding that holds the set back.
    original = rw.world.entries()[rw.statement_index["spy"]]
    assert check(rw, "spy", [*(e for e in entries if e != original), second]) == quiet


def test_a_statement_must_be_logged_by_a_trusted_conveyor(rw: RulesWorld) -> None:
    entries = bundle_entries(rw, "v1")
    statement = rw.world.entries()[rw.statement_index["v1"]]
    without = [e for e in entries if e != statement]
    with pytest.raises(VerificationError, match="no rule-set statement signed by a trusted"):
        check(rw, "v1", without)
    with pytest.raises(VerificationError, match="no rule-set statement signed by a trusted"):
        check(rw, "v1", entries, conveyors=[ed25519_verifier(rw.reviewer_vkey)])
    # A statement about another bundle (2024.6.0's) does not speak for this one.
    with pytest.raises(VerificationError, match="no rule-set statement"):
        check(rw, "v1", [*without, rw.world.entries()[rw.statement_index["spy"]]])
    assert check(rw, "v1", entries) == rw.rulesets["v1"]


def test_justifications_and_rule_names_are_checked(rw: RulesWorld) -> None:
    ruleset, reviewer = rw.rulesets["spy"], rw.world.reviewer
    for short in ("ok", "   looks fine to me     "):
        with pytest.raises(MalformedError, match="at least a sentence"):
            make_approval(ruleset, [SPY], short, reviewer)
    with pytest.raises(MalformedError, match="not in the rule set: Not_A_Rule"):
        make_approval(ruleset, [SPY, "Not_A_Rule"], JUSTIFICATION, reviewer)
    with pytest.raises(MalformedError, match="name at least one rule"):
        make_approval(ruleset, [], JUSTIFICATION, reviewer)
    envelope = make_approval(ruleset, [SPY], f"  {JUSTIFICATION}  ", reviewer)
    statement = Statement.from_envelope(envelope)
    assert statement.predicate_type == APPROVAL_TYPE
    assert statement.predicate["justification"] == JUSTIFICATION
    assert [s.name for s in statement.subjects] == [f"rule:{SPY}"]
    # An approval is refused as malformed without its verdict or justification.
    doc = json.loads(json.dumps(statement.predicate))
    for broken in (
        {**doc, "verdict": "rejected"},
        {k: v for k, v in doc.items() if k != "justification"},
    ):
        with pytest.raises(MalformedError, match="verdict approved and a justification"):
            Approval.from_statement(Statement(list(statement.subjects), APPROVAL_TYPE, broken))

"""Source review (overt.review, `overt review`): export, delta, signed review statements.

A tiny product is built twice into a local log; reviews are recorded against it, and the
verifier (overt.policy.verify) is asked whether they count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from overt.cli.main import app
from overt.conveyor.conveyor import Release
from overt.conveyor.source import SourceMismatch, tree_digest
from overt.crypto.dsse import Envelope
from overt.crypto.intoto import Statement
from overt.crypto.keyfile import write_private_key
from overt.crypto.keys import Ed25519Signer, ed25519_verifier
from overt.errors import MalformedError, VerificationError
from overt.log.remote import open_source
from overt.policy.bundle import REVIEW_TYPE as POLICY_REVIEW_TYPE
from overt.policy.bundle import assemble_bundle
from overt.policy.trust import parse_policy
from overt.policy.verify import Decision, verify_release
from overt.review.delta import compare_trees
from overt.review.record import export_release, record_review, release_delta
from overt.review.release import ReleaseLog, ReviewError
from overt.review.statement import REVIEW_TYPE, Finding, Findings, Review
from overt.tlog.client import LogClient
from release_fixtures import (
    LATER_DATE,
    Stack,
    commit_all,
    make_stack,
    recipe_toml,
    tiny_project,
)

PNG = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(32))


@dataclass
class World:
    stack: Stack
    repo: Path
    v1: Release
    v2: Release
    reviewer: Ed25519Signer
    reviewer_file: Path

    @property
    def v1_index(self) -> int:
        assert self.v1.log_index is not None
        return self.v1.log_index

    @property
    def v2_index(self) -> int:
        assert self.v2.log_index is not None
        return self.v2.log_index

    def log(self, conveyor_keys: list[str] | None = None) -> ReleaseLog:
        return ReleaseLog(
            self.stack.log, self.stack.log_vkey, conveyor_keys or [self.stack.conveyor.vkey]
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("review")
    stack = make_stack(root, tmp_path_factory)
    repo = tiny_project(
        root / "src" / "tiny",
        files={"data.txt": "hello from tiny\nline two\n", "docs/readme.md": "# tiny\n"},
    )
    v1 = stack.build(repo)
    (repo / "overt.toml").write_text(recipe_toml(version="2.0"))
    (repo / "data.txt").write_text("hello from tiny\nline two, changed\n")
    (repo / "logo.png").write_bytes(PNG)
    (repo / "docs" / "readme.md").unlink()
    commit_all(repo, "v2", date=LATER_DATE)
    v2 = stack.build(repo)
    reviewer = Ed25519Signer.generate("reviews.example.org/alice")
    reviewer_file = root / "alice.key"
    write_private_key(reviewer_file, reviewer)
    return World(stack, repo, v1, v2, reviewer, reviewer_file)


def cli(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"overt crashed: {result.exception!r}\n{result.stderr}")
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stdout, result.stderr


def log_args(world: World) -> list[str]:
    return ["--log-key", world.stack.log_vkey, "--conveyor-key", world.stack.conveyor.vkey]


# --- export -----------------------------------------------------------------------------


def test_export_writes_the_exact_source_named_in_the_provenance(
    world: World, tmp_path: Path
) -> None:
    release = export_release(world.log(), world.v1_index, tmp_path / "src")
    assert release.provenance.source.digest == tree_digest(tmp_path / "src")
    assert (tmp_path / "src" / "data.txt").read_text() == "hello from tiny\nline two\n"
    assert not (tmp_path / "src" / "logo.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]  # no scratch left behind
    with pytest.raises(ReviewError, match="not an empty directory"):
        export_release(world.log(), world.v1_index, tmp_path / "src")


def test_export_cli(world: World, tmp_path: Path) -> None:
    code, stdout, _ = cli(
        "review", "export", world.stack.log, world.v2_index, *log_args(world), "--out",
        tmp_path / "v2",
    )  # fmt: skip
    assert code == 0, stdout
    assert "matches the provenance" in stdout
    assert (tmp_path / "v2" / "logo.png").read_bytes() == PNG


def test_release_of_an_untrusted_conveyor_is_refused(world: World, tmp_path: Path) -> None:
    other = str(Ed25519Signer.generate("conveyor.example.com").verifier_key())
    with pytest.raises(VerificationError, match="not signed by a trusted conveyor"):
        export_release(world.log([other]), world.v1_index, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_source_tampered_after_the_build_is_refused(world: World, tmp_path: Path) -> None:
    project = tiny_project(
        tmp_path / "plain", recipe_toml(name="plain"), repo=False
    )  # a directory source, no git
    release = world.stack.build(project)
    assert release.log_index is not None
    (project / "data.txt").write_text("hello from a tampered tiny\n")
    with pytest.raises(SourceMismatch, match="differ from the ones built") as caught:
        export_release(world.log(), release.log_index, tmp_path / "out")
    assert caught.value.kind == "digest"
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]
    findings = Findings("approved", "full")
    with pytest.raises(SourceMismatch):
        record_review(world.log(), release.log_index, findings, world.reviewer, submit=False)
    code, _, stderr = cli(
        "review", "export", world.stack.log, release.log_index, *log_args(world), "--out",
        tmp_path / "cli",
    )  # fmt: skip
    assert code == 1
    assert "verification failed" in stderr and "tree digest" in stderr


def test_provenance_naming_another_digest_is_refused(world: World, tmp_path: Path) -> None:
    prov = world.v1.provenance
    forged = dataclasses.replace(prov, source=dataclasses.replace(prov.source, digest="ab" * 32))
    index = world.stack.add(forged.statement().sign([world.stack.conveyor.signer]).to_bytes())
    with pytest.raises(SourceMismatch, match="the provenance records " + "ab" * 32):
        export_release(world.log(), index, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(SourceMismatch):
        record_review(world.log(), index, Findings("approved", "full"), world.reviewer)


def test_review_of_a_tree_other_than_the_release_is_refused(world: World, tmp_path: Path) -> None:
    export_release(world.log(), world.v1_index, tmp_path / "src")
    (tmp_path / "src" / "data.txt").write_text("something else\n")
    with pytest.raises(SourceMismatch, match=r"is not the source of tiny 1\.0"):
        record_review(
            world.log(), world.v1_index, Findings("approved", "full"), world.reviewer,
            tree=tmp_path / "src", submit=False,
        )  # fmt: skip


# --- delta ------------------------------------------------------------------------------


def test_delta_against_an_explicit_base(world: World) -> None:
    delta, release, base = release_delta(world.log(), world.v2_index, world.v1_index)
    assert base is not None and base.index == world.v1_index
    assert release.index == world.v2_index
    assert delta.counts() == {"added": 1, "removed": 1, "changed": 2}
    assert delta.unchanged == 0  # overt.toml changed too (its version)
    text = delta.text()
    assert "-line two\n+line two, changed\n" in text
    assert "--- a/data.txt\n+++ b/data.txt\n" in text
    assert f"added    logo.png [binary: new {len(PNG)} bytes sha256:" in text
    assert hashlib.sha256(PNG).hexdigest() in text
    assert "removed  docs/readme.md" in text and "-# tiny\n" in text
    doc = delta.to_json()
    by_path = {f["path"]: f for f in doc["files"]}
    assert by_path["logo.png"]["binary"] and by_path["logo.png"]["diff"] is None
    assert by_path["logo.png"]["new"]["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert by_path["data.txt"]["status"] == "changed"
    json.dumps(doc)


def test_delta_defaults_to_the_last_approved_release(world: World) -> None:
    log = world.log()
    # Nothing earlier: every file is new.
    delta, _, base = release_delta(log, world.v1_index)
    assert base is None and delta.counts()["added"] == 3
    record_review(log, world.v1_index, Findings("approved", "full"), world.reviewer)
    delta, _, base = release_delta(world.log(), world.v2_index)
    assert base is not None and base.index == world.v1_index
    # Only reviews by the reviewers named count.
    someone = str(Ed25519Signer.generate("someone.example").verifier_key())
    _, _, base = release_delta(world.log(), world.v2_index, reviewer_keys=[someone])
    assert base is None
    trusted = str(world.reviewer.verifier_key())
    _, _, base = release_delta(world.log(), world.v2_index, reviewer_keys=[trusted])
    assert base is not None and base.index == world.v1_index


def test_delta_cli_text_and_json(world: World, tmp_path: Path) -> None:
    args = ["review", "delta", world.stack.log, world.v2_index, *log_args(world)]
    code, stdout, _ = cli(*args, "--base", world.v1_index)
    assert code == 0 and "+line two, changed" in stdout
    code, stdout, _ = cli(*args, "--base", world.v1_index, "--json")
    assert code == 0 and json.loads(stdout)["changed"] == 2
    code, stdout, _ = cli(*args, "--base", world.v1_index, "--out", tmp_path / "d.txt")
    assert code == 0 and "report written" in stdout
    assert "logo.png" in (tmp_path / "d.txt").read_text()
    code, _, stderr = cli(*args, "--base", world.v2_index)
    assert code == 2 and "release itself" in stderr


def test_compare_trees_modes_and_symlinks(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "run.sh").write_text("echo hi\n")
    (tmp_path / "b" / "run.sh").write_text("echo hi\n")
    (tmp_path / "b" / "run.sh").chmod(0o755)
    (tmp_path / "b" / "link").symlink_to("run.sh")
    (tmp_path / "a" / "blob").write_bytes(b"\xff\xfe")
    (tmp_path / "b" / "blob").write_bytes(b"\xff\xfd")
    delta = compare_trees(tmp_path / "a", tmp_path / "b")
    summaries = [c.summary() for c in delta.changes]
    assert any("blob [binary: old 2 bytes" in s for s in summaries)
    assert "added    link" in summaries
    assert any("run.sh (mode 100644 -> 100755)" in s for s in summaries)


# --- record -----------------------------------------------------------------------------


def test_findings_file_is_checked(tmp_path: Path) -> None:
    good = tmp_path / "f.toml"
    good.write_text(
        'verdict = "rejected"\nscope = "critical"\n[[findings]]\nfile = "data.txt"\nline = 2\n'
        'severity = "high"\ntext = "Sends the data home."\n'
    )
    findings = Findings.load(good)
    assert findings.findings == (Finding("data.txt", 2, "high", "Sends the data home."),)
    bad = {
        "verdict": '"maybe"',
        "scope": '"partial"',
    }
    for field, value in bad.items():
        text = good.read_text().replace(f'{field} = "', f"{field} = {value}\n#")
        (tmp_path / "bad.toml").write_text(text)
        with pytest.raises(MalformedError, match=field):
            Findings.load(tmp_path / "bad.toml")
    (tmp_path / "f.json").write_text(
        json.dumps({"verdict": "approved", "scope": "full",
                    "findings": [{"file": "../x", "severity": "low", "text": "t"}]})
    )  # fmt: skip
    with pytest.raises(MalformedError, match="relative path"):
        Findings.load(tmp_path / "f.json")
    (tmp_path / "f.json").write_text(
        json.dumps({"verdict": "approved", "scope": "full",
                    "findings": [{"file": "x", "severity": "urgent", "text": "t"}]})
    )  # fmt: skip
    with pytest.raises(MalformedError, match="severity"):
        Findings.load(tmp_path / "f.json")


def test_findings_must_name_files_and_lines_of_the_release(world: World) -> None:
    for finding, message in (
        (Finding("nope.py", 1, "low", "x"), "not a file of the reviewed source"),
        (Finding("data.txt", 99, "low", "x"), "has 3 lines, not 99"),
    ):
        with pytest.raises(MalformedError, match=message):
            record_review(
                world.log(), world.v1_index, Findings("approved", "full", (finding,)),
                world.reviewer, submit=False,
            )  # fmt: skip


def test_recorded_review_is_the_statement_the_verifier_counts(world: World) -> None:
    findings = Findings(
        "approved",
        "full",
        (Finding("data.txt", 2, "medium", "Wording changed; no behaviour."),),
        summary="Read every change since 1.0.",
        reviewer="https://reviews.example.org/alice",
    )
    done = record_review(
        world.log(), world.v2_index, findings, world.reviewer, base_index=world.v1_index
    )
    assert done.log_index is not None
    logged = world.stack.entry(done.log_index)
    assert logged == done.envelope.to_bytes()
    statement = Statement.from_envelope(Envelope.from_bytes(logged))
    assert statement.predicate_type == REVIEW_TYPE == POLICY_REVIEW_TYPE
    provenance_entry = world.stack.entry(world.v2_index)
    pred = statement.predicate
    assert (
        pred["inputAttestations"][0]["digest"]["sha256"]
        == hashlib.sha256(provenance_entry).hexdigest()
    )
    assert pred["inputAttestations"][0]["uri"].endswith(f"#{world.v2_index}")
    assert pred["verdict"] == "approved" and pred["scope"] == "full"
    assert pred["source"]["digest"]["overtTree"] == world.v2.provenance.source.digest
    assert (
        pred["base"]["digest"]["sha256"]
        == hashlib.sha256(world.stack.entry(world.v1_index)).hexdigest()
    )
    assert pred["findings"] == [
        {"file": "data.txt", "line": 2, "severity": "medium",
         "text": "Wording changed; no behaviour."}
    ]  # fmt: skip
    assert pred["reviewer"] == {"id": "https://reviews.example.org/alice"}
    assert list(statement.subjects) == list(world.v2.provenance.subjects)
    assert Review.from_statement(statement) == done.review


def test_record_cli(world: World, tmp_path: Path) -> None:
    findings = tmp_path / "findings.toml"
    findings.write_text(
        'verdict = "approved"\nscope = "critical"\n[[findings]]\nfile = "data.txt"\nline = 1\n'
        'severity = "low"\ntext = "Greeting is fine."\n'
    )
    export_release(world.log(), world.v2_index, tmp_path / "src")
    code, stdout, stderr = cli(
        "review", "record", world.stack.log, world.v2_index, *log_args(world),
        "--key", world.reviewer_file, "--findings", findings, "--tree", tmp_path / "src",
        "--base", world.v1_index, "--out", tmp_path / "review.dsse.json",
    )  # fmt: skip
    assert code == 0, stderr
    assert "approved (critical) tiny 2.0" in stdout and "1 finding(s) (1 low)" in stdout
    assert "logged as entry" in stdout
    envelope = Envelope.from_bytes((tmp_path / "review.dsse.json").read_bytes())
    assert Statement.from_envelope(envelope).predicate["scope"] == "critical"
    (tmp_path / "src" / "data.txt").write_text("changed after review\n")
    code, _, stderr = cli(
        "review", "record", world.stack.log, world.v2_index, *log_args(world),
        "--key", world.reviewer_file, "--findings", findings, "--tree", tmp_path / "src",
        "--no-log",
    )  # fmt: skip
    assert code == 1 and "is not the source of" in stderr


# --- counted by the verifier --------------------------------------------------------------


def decide(world: World, review_index: int, trusted: Ed25519Signer) -> Decision:
    client = LogClient(
        open_source(world.stack.log).fetch, log_key=ed25519_verifier(world.stack.log_vkey)
    )
    client.update()
    provenance_sha = hashlib.sha256(world.stack.entry(world.v2_index)).hexdigest()
    bundle = assemble_bundle(client, world.v2_index, {provenance_sha: [review_index]})
    policy = parse_policy(
        f'[log]\nkey = "{world.stack.log_vkey}"\n\n[witnesses]\n\n'
        f'[conveyors]\nkeys = ["{world.stack.conveyor.vkey}"]\n\n'
        "[rebuilders]\nkeys = []\nrequired = 0\n\n"
        f'[reviews]\nkeys = ["{trusted.verifier_key()}"]\n\n'
        '[channels.products]\nreviews_required = 1\nreview_scope = "full"\n'
    )
    artifact = world.v2.artifacts[0]
    return verify_release(artifact.name, artifact.sha256, bundle, policy)


@pytest.mark.parametrize(
    ("verdict", "scope", "signer", "accepted", "reason"),
    [
        ("approved", "full", "trusted", True, ""),
        ("approved", "full", "stranger", False, "0 of the 1 required full reviews"),
        ("approved", "overview", "trusted", False, "0 of the 1 required full reviews"),
        ("rejected", "full", "trusted", False, "rejected it"),
    ],
)
def test_verifier_counts_only_trusted_full_approvals(
    world: World, verdict: str, scope: str, signer: str, accepted: bool, reason: str
) -> None:
    key = world.reviewer if signer == "trusted" else Ed25519Signer.generate("stranger.example")
    done = record_review(world.log(), world.v2_index, Findings(verdict, scope), key)
    assert done.log_index is not None
    decision = decide(world, done.log_index, world.reviewer)
    assert decision.accepted is accepted, decision.reason
    if accepted:
        assert decision.checks[-1].detail == "approved by reviews.example.org/alice"
    else:
        assert decision.reason.startswith("reviewed: ") and reason in decision.reason

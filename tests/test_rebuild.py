"""Independent rebuilds as a supervisor runs them: verdicts, reasons, reports, attestations.

Every release here is built by a real conveyor into a real log and rebuilt by
a rebuilder with its own toolchain cache and a varied environment. Tampering
is done the way a dishonest vendor would: rewriting git history, editing the
source or the published artifact after the build, or signing a provenance
that names something else.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from overt.conveyor.conveyor import Release
from overt.conveyor.runner import namespaces_available
from overt.conveyor.source import SourceMismatch, fetch_verified
from overt.crypto.dsse import Envelope, verify_envelope
from overt.crypto.intoto import PAYLOAD_TYPE, STATEMENT_TYPE, Statement
from overt.crypto.keys import Ed25519Signer, ed25519_verifier
from overt.errors import MalformedError, VerificationError
from overt.rebuild.explain import diffoscope_available
from overt.rebuild.rebuilder import (
    BAD,
    BUILD_LOG,
    DIFFOSCOPE_HTML,
    DIFFOSCOPE_TEXT,
    FAIL,
    GOOD,
    OUTCOME_FILE,
    REPORT_HTML,
    REPORT_TEXT,
    VARIED_LOCALE,
    VARIED_TZ,
    VSA_FILE,
    NotAProvenance,
    Outcome,
    Rebuilder,
    RebuildError,
    init_rebuilder,
)
from overt.rebuild.vsa import (
    FAILED,
    PASSED,
    PASSED_LEVELS,
    REBUILD_POLICY,
    VSA_TYPE,
    VerificationSummary,
)
from release_fixtures import (
    COMMIT_EPOCH,
    LOG_ORIGIN,
    REBUILDER_ID,
    ExampleWorld,
    Stack,
    commit_all,
    example_world,
    git,
    make_stack,
    odd_value_refusals,
    read_env,
    recipe_toml,
    sha256_file,
    tiny_project,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> ExampleWorld:
    return example_world(tmp_path_factory)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    return make_stack(tmp_path_factory.mktemp("rebuild"), tmp_path_factory)


def can_unshare() -> bool:
    """Whether this machine lets a build have a host name of its own (a UTS namespace)."""
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--mount", "--uts", "true"]
    return subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode == 0


def vsa_json(outcome: Outcome) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(outcome.envelope.payload)
    return doc


def forge(stack: Stack, release: Release, **source: Any) -> int:
    """Log a provenance like `release`'s but naming another source, signed by the conveyor."""
    provenance = replace(release.provenance, source=replace(release.provenance.source, **source))
    return stack.add(provenance.statement().sign([stack.conveyor.signer]).to_bytes())


def assert_logged_verdict(stack: Stack, outcome: Outcome) -> None:
    """The signed verdict is in the results directory and in the log, byte for byte."""
    assert outcome.vsa_index is not None
    vsa = (outcome.results / VSA_FILE).read_bytes()
    assert vsa == outcome.envelope.to_bytes()
    assert stack.entry(outcome.vsa_index) == vsa
    record = json.loads((outcome.results / OUTCOME_FILE).read_text())
    assert record["status"] == outcome.status
    assert record["vsa_index"] == outcome.vsa_index
    verify_envelope(
        Envelope.from_bytes(vsa),
        [ed25519_verifier(stack.rebuilder.vkey)],
        payload_type=PAYLOAD_TYPE,
    )


# --- the examples: two reproduce, one does not -------------------------------------------


@pytest.mark.parametrize("name", ["hello-product", "detection-db"])
def test_reproducible_example_rebuilds_good(world: ExampleWorld, name: str) -> None:
    release = world.release(name)
    outcome = world.outcome(name)
    assert outcome.status == GOOD, outcome.reason
    assert outcome.summary.result == PASSED
    assert outcome.summary.passed
    assert outcome.reason.endswith("rebuilt bit for bit")
    expected = {s.name: s.digest["sha256"] for s in release.provenance.subjects}
    assert {c.name: c.expected for c in outcome.summary.checks} == expected
    assert {c.name: c.rebuilt for c in outcome.summary.checks} == expected
    assert {c.name: c.published for c in outcome.summary.checks} == expected
    assert_logged_verdict(world.stack, outcome)
    files = {p.name for p in outcome.results.iterdir()}
    assert files == {VSA_FILE, BUILD_LOG, OUTCOME_FILE}
    # Nothing of the rebuild is left in its work area.
    assert not list((world.stack.rebuilder.root / "work").iterdir())


def test_rebuild_really_ran_elsewhere(world: ExampleWorld) -> None:
    outcome = world.outcome("hello-product")
    release = world.release("hello-product")
    env = outcome.summary.environment
    assert env["tz"] == VARIED_TZ
    assert env["locale"] == VARIED_LOCALE
    assert env["home"] != release.provenance.environment["HOME"]
    assert env["buildPath"].startswith(str(world.stack.rebuilder.root / "work"))
    if can_unshare():
        assert env["hostname"].startswith("rebuild-")
    # Its own toolchain, installed from the hash lock into the rebuilder's cache.
    assert world.stack.rebuilder.cache != world.stack.conveyor.cache
    assert list(world.stack.rebuilder.cache.glob("*/lib/python3.11/site-packages/build"))


def test_vsa_follows_the_slsa_verification_summary_rules(world: ExampleWorld) -> None:
    release = world.release("hello-product")
    outcome = world.outcome("hello-product")
    doc = vsa_json(outcome)
    assert doc["_type"] == STATEMENT_TYPE
    assert doc["predicateType"] == VSA_TYPE == "https://slsa.dev/verification_summary/v1"
    assert doc["subject"] == [s.to_json() for s in release.provenance.subjects]
    pred = doc["predicate"]
    assert pred["verifier"]["id"] == REBUILDER_ID
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", pred["timeVerified"])
    assert pred["resourceUri"] == "pkg:generic/hello-overt@1.0.0"
    assert pred["policy"] == {"uri": REBUILD_POLICY}
    assert pred["verificationResult"] == PASSED
    assert pred["verifiedLevels"] == list(PASSED_LEVELS)
    assert pred["slsaVersion"] == "1.0"
    # It names exactly the logged provenance it verified.
    assert release.log_index is not None
    entry = world.stack.entry(release.log_index)
    (attestation,) = pred["inputAttestations"]
    assert attestation["digest"]["sha256"] == hashlib.sha256(entry).hexdigest()
    assert attestation["uri"] == f"tlog://{LOG_ORIGIN}#{release.log_index}"
    parsed = VerificationSummary.from_statement(Statement.from_json(doc))
    assert parsed.passed
    assert parsed.provenance_sha256 == hashlib.sha256(entry).hexdigest()
    assert parsed.checks == outcome.summary.checks


def test_vsa_verifies_with_the_rebuilder_key_only(world: ExampleWorld) -> None:
    envelope = world.outcome("detection-db").envelope
    verify_envelope(envelope, [ed25519_verifier(world.stack.rebuilder.vkey)])
    with pytest.raises(VerificationError):
        verify_envelope(envelope, [ed25519_verifier(world.stack.conveyor.vkey)])
    # A verdict is not a provenance, whoever signed it.
    with pytest.raises(NotAProvenance, match="not a provenance"):
        world.stack.rebuilder.read_provenance(envelope.to_bytes())


def test_clock_stamped_rebuilds_bad_and_the_report_names_build_info(world: ExampleWorld) -> None:
    outcome = world.outcome("clock-stamped")
    assert outcome.status == BAD
    assert outcome.summary.result == FAILED
    assert vsa_json(outcome)["predicate"]["verifiedLevels"] == [FAILED]
    assert "not reproducible: clock-stamped-1.0.tar.gz differ" in outcome.reason
    assert_logged_verdict(world.stack, outcome)
    (check,) = outcome.summary.checks
    assert check.rebuilt is not None and check.rebuilt != check.expected
    assert check.published == check.expected  # the vendor's copy is the one it built
    # Only BUILD_INFO differs; the data files are the same.
    (difference,) = outcome.differences
    assert [m.name for m in difference.members] == ["clock-stamped-1.0/BUILD_INFO"]
    report = (outcome.results / REPORT_TEXT).read_text()
    assert "clock-stamped-1.0/BUILD_INFO: differs" in report
    assert "motd.txt" not in report
    assert check.expected in report and check.rebuilt in report
    assert "clock-stamped-1.0/BUILD_INFO" in (outcome.results / REPORT_HTML).read_text()
    kept = outcome.results / "rebuilt" / "clock-stamped-1.0.tar.gz"
    assert sha256_file(kept) == check.rebuilt
    reports = {r["name"]: r["digest"]["sha256"] for r in outcome.summary.reports}
    assert reports[REPORT_TEXT] == sha256_file(outcome.results / REPORT_TEXT)


@pytest.mark.skipif(not diffoscope_available(), reason="diffoscope is not installed")
def test_clock_stamped_diffoscope_report_names_build_info(world: ExampleWorld) -> None:
    outcome = world.outcome("clock-stamped")
    text = (outcome.results / DIFFOSCOPE_TEXT).read_text()
    assert "BUILD_INFO" in text
    assert "built_at_ns" in text
    assert "BUILD_INFO" in (outcome.results / DIFFOSCOPE_HTML).read_text()
    reports = {r["name"]: r["digest"]["sha256"] for r in outcome.summary.reports}
    assert reports[DIFFOSCOPE_TEXT] == sha256_file(outcome.results / DIFFOSCOPE_TEXT)


# --- VSA parsing: good ones parse, broken ones are refused --------------------------------


def _pred(d: dict[str, Any]) -> dict[str, Any]:
    return d["predicate"]  # type: ignore[no-any-return]


BROKEN_VSA: list[tuple[str, Any, str]] = [
    (
        "predicate type",
        lambda d: d.update(predicateType="https://slsa.dev/verification_summary/v0.2"),
        "not a verification summary",
    ),
    ("no subjects", lambda d: d.update(subject=[]), "subject must be a non-empty list"),
    (
        "subject without sha256",
        lambda d: d["subject"][0].update(digest={"sha512": "ab" * 64}),
        "VSA: subject[0] needs a name and a sha256 digest",
    ),
    ("no verifier", lambda d: _pred(d).pop("verifier"), "VSA: verifier.id must be a string"),
    (
        "verifier id a number",
        lambda d: _pred(d)["verifier"].update(id=7),
        "VSA: verifier.id must be a string",
    ),
    (
        "no time",
        lambda d: _pred(d).pop("timeVerified"),
        "VSA: timeVerified must be an RFC 3339 timestamp",
    ),
    (
        "impossible time",
        lambda d: _pred(d).update(timeVerified="2024-13-45T00:00:00Z"),
        "VSA: timeVerified is not an RFC 3339 timestamp",
    ),
    (
        "time without zone",
        lambda d: _pred(d).update(timeVerified="2024-01-01T00:00:00"),
        "VSA: timeVerified must carry a time zone",
    ),
    (
        "empty resource",
        lambda d: _pred(d).update(resourceUri=""),
        "VSA: resourceUri must be a non-empty string",
    ),
    ("no policy", lambda d: _pred(d).pop("policy"), "VSA: policy must be an object"),
    (
        "empty policy",
        lambda d: _pred(d).update(policy={}),
        "VSA: policy needs at least one of uri, digest or content",
    ),
    (
        "unknown result",
        lambda d: _pred(d).update(verificationResult="PASSED_MOSTLY"),
        "VSA: verificationResult must be PASSED or FAILED",
    ),
    (
        "levels a string",
        lambda d: _pred(d).update(verifiedLevels="SLSA_BUILD_LEVEL_2"),
        "VSA: verifiedLevels must be a list of strings",
    ),
    (
        "passed with FAILED level",
        lambda d: _pred(d).update(verifiedLevels=[FAILED]),
        "VSA: verifiedLevels must be [FAILED] exactly when it failed",
    ),
    (
        "failed with passing levels",
        lambda d: _pred(d).update(verificationResult=FAILED),
        "VSA: verifiedLevels must be [FAILED] exactly when it failed",
    ),
    (
        "no input attestation",
        lambda d: _pred(d).update(inputAttestations=[]),
        "VSA: inputAttestations must name the one provenance verified",
    ),
    (
        "two input attestations",
        lambda d: _pred(d)["inputAttestations"].append({"uri": "tlog://x#1"}),
        "VSA: inputAttestations must name the one provenance verified",
    ),
    (
        "input attestation without sha256",
        lambda d: _pred(d)["inputAttestations"][0].update(digest={"sha512": "ab"}),
        "VSA: inputAttestations[0] needs a sha256 digest",
    ),
    (
        "input attestation not a descriptor",
        lambda d: _pred(d).update(inputAttestations=[{"name": "provenance"}]),
        "VSA: inputAttestations[0] needs at least one of uri, digest or content",
    ),
    ("rebuild a list", lambda d: _pred(d).update(rebuild=[]), "VSA: rebuild must be an object"),
    (
        "artifact checks an object",
        lambda d: _pred(d)["rebuild"].update(artifacts={"x": 1}),
        "VSA: rebuild.artifacts must be a list",
    ),
    (
        "artifact check a string",
        lambda d: _pred(d)["rebuild"].update(artifacts=["x.whl"]),
        "VSA: rebuild.artifacts[0] must be an object",
    ),
    (
        "artifact check without expected digest",
        lambda d: _pred(d)["rebuild"]["artifacts"][0].pop("expected"),
        "VSA: rebuild.artifacts[0] needs a name and an expected digest",
    ),
    (
        "artifact rebuilt digest a number",
        lambda d: _pred(d)["rebuild"]["artifacts"][0].update(rebuilt=5),
        "VSA: rebuild.artifacts[0].rebuilt must be a string or null",
    ),
    (
        "environment a string",
        lambda d: _pred(d)["rebuild"].update(environment="TZ=UTC"),
        "VSA: rebuild.environment must be an object",
    ),
    (
        "reports a number",
        lambda d: _pred(d)["rebuild"].update(reports=3),
        "VSA: rebuild.reports must be a list",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [(b[1], b[2]) for b in BROKEN_VSA], ids=[b[0] for b in BROKEN_VSA]
)
def test_broken_vsa_is_refused_naming_the_field(
    world: ExampleWorld, mutate: Any, expected: str
) -> None:
    doc = vsa_json(world.outcome("detection-db"))
    mutate(doc)
    with pytest.raises(MalformedError) as info:
        VerificationSummary.from_statement(Statement.from_json(doc))
    assert expected in str(info.value), str(info.value)


def test_failed_vsa_parses(world: ExampleWorld) -> None:
    outcome = world.outcome("clock-stamped")
    parsed = VerificationSummary.from_statement(Statement.from_json(vsa_json(outcome)))
    assert not parsed.passed
    assert parsed.reason == outcome.reason
    assert parsed.checks == outcome.summary.checks


def test_vsa_parser_refuses_every_odd_value_without_crashing(world: ExampleWorld) -> None:
    doc = vsa_json(world.outcome("clock-stamped"))
    refused = odd_value_refusals(
        doc, lambda d: VerificationSummary.from_statement(Statement.from_json(d))
    )
    assert refused > 50


# --- tampered sources and artifacts ---------------------------------------------------------


def test_rewritten_git_history_is_a_tampered_source(stack: Stack, tmp_path: Path) -> None:
    repo = tiny_project(tmp_path / "project", recipe_toml(name="rewritten"))
    release = stack.build(repo)
    built = release.provenance.source.commit
    assert built is not None
    (repo / "data.txt").write_text("what the vendor wishes it had shipped\n")
    git(repo, "commit", "-q", "-a", "--amend", "-m", "rewritten")
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "-q", "--prune=now")
    assert git(repo, "rev-parse", "HEAD") != built
    with pytest.raises(AssertionError):
        git(repo, "cat-file", "-e", f"{built}^{{commit}}")

    with pytest.raises(SourceMismatch) as info:
        fetch_verified(release.provenance.source, tmp_path / "fetched")
    assert info.value.kind == "commit-missing"

    outcome = stack.rebuild(release)
    assert outcome.status == BAD
    assert outcome.summary.result == FAILED
    assert outcome.reason.startswith("tampered source (commit-missing): ")
    assert built in outcome.reason
    assert all(c.rebuilt is None for c in outcome.summary.checks)
    assert "tampered source (commit-missing)" in (outcome.results / REPORT_TEXT).read_text()
    assert_logged_verdict(stack, outcome)


def test_changed_directory_source_is_a_tampered_source(stack: Stack, tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "dir", recipe_toml(name="dir-changed"), repo=False)
    release = stack.build(project)
    assert not release.provenance.source.is_git
    (project / "data.txt").write_text("edited after the build\n")

    with pytest.raises(SourceMismatch) as info:
        fetch_verified(release.provenance.source, tmp_path / "fetched")
    assert info.value.kind == "digest"

    outcome = stack.rebuild(release)
    assert outcome.status == BAD
    assert outcome.reason.startswith("tampered source (digest): ")
    assert release.provenance.source.digest in outcome.reason
    assert_logged_verdict(stack, outcome)


def test_provenance_naming_another_tree_or_digest_is_a_tampered_source(
    stack: Stack, tmp_path: Path
) -> None:
    repo = tiny_project(tmp_path / "project", recipe_toml(name="other-tree"))
    release = stack.build(repo)
    (repo / "data.txt").write_text("later work\n")
    commit_all(repo, "later")
    other_tree = git(repo, "rev-parse", "HEAD^{tree}")
    assert other_tree != release.provenance.source.tree

    index = forge(stack, release, tree=other_tree)
    outcome = stack.rebuilder.rebuild_index(index)
    assert outcome.status == BAD
    assert outcome.reason.startswith("tampered source (tree): ")
    assert other_tree in outcome.reason

    index = forge(stack, release, digest="0" * 64)
    outcome = stack.rebuilder.rebuild_index(index)
    assert outcome.status == BAD
    assert outcome.reason.startswith("tampered source (digest): ")

    # The honest provenance of the same release still rebuilds: the commit is kept.
    assert stack.rebuild(release).status == GOOD


def test_provenance_naming_another_lock_is_a_tampered_source(world: ExampleWorld) -> None:
    release = world.release("hello-product")
    toolchain = tuple(
        d | {"digest": {"sha256": "0" * 64}} if d.get("name") == "build-lock" else d
        for d in release.provenance.toolchain
    )
    provenance = replace(release.provenance, toolchain=toolchain)
    envelope = provenance.statement().sign([world.stack.conveyor.signer])
    index = world.stack.add(envelope.to_bytes())
    outcome = world.stack.rebuilder.rebuild_index(index, submit=False)
    assert outcome.status == BAD
    assert "tampered source: the lock build-requirements.txt differs" in outcome.reason
    assert outcome.vsa_index is None


def test_published_artifact_changed_after_the_build(stack: Stack, tmp_path: Path) -> None:
    release = stack.build(tiny_project(tmp_path / "project", recipe_toml(name="swapped")))
    (artifact,) = release.artifacts
    artifact.path.write_text("a backdoored download\n")
    outcome = stack.rebuild(release)
    assert outcome.status == BAD
    assert "tampered artifact" in outcome.reason
    assert "tiny.txt" in outcome.reason
    (check,) = outcome.summary.checks
    assert check.reproduced  # the source still builds what the provenance says
    assert check.tampered
    assert check.published == sha256_file(artifact.path)
    assert vsa_json(outcome)["predicate"]["rebuild"]["artifacts"][0]["published"] == (
        check.published
    )
    assert "tampered artifact" in (outcome.results / REPORT_TEXT).read_text()
    assert_logged_verdict(stack, outcome)


def test_missing_published_artifact_is_not_tampering(stack: Stack, tmp_path: Path) -> None:
    release = stack.build(tiny_project(tmp_path / "project", recipe_toml(name="unpublished")))
    release.artifacts[0].path.unlink()
    outcome = stack.rebuild(release, submit=False)
    assert outcome.status == GOOD
    assert outcome.summary.checks[0].published is None


def test_source_that_is_unreachable_is_not_attested(stack: Stack, tmp_path: Path) -> None:
    # An outage is no evidence against the vendor: no verdict, the queue retries.
    gone = tiny_project(tmp_path / "gone-dir", recipe_toml(name="gone-dir"), repo=False)
    release = stack.build(gone)
    shutil.move(gone, tmp_path / "moved-away")
    size = stack.size()
    with pytest.raises(RebuildError, match=r"the source could not be fetched \(will retry\)"):
        stack.rebuild(release)
    assert not (stack.rebuilder.results_dir(release.log_index or 0) / VSA_FILE).exists()
    shutil.move(tmp_path / "moved-away", gone)
    assert stack.rebuild(release, submit=False).status == GOOD

    repo = tiny_project(tmp_path / "gone-repo", recipe_toml(name="gone-repo"))
    release = stack.build(repo)
    shutil.rmtree(repo)
    with pytest.raises(RebuildError, match="could not be fetched"):
        stack.rebuild(release)
    assert stack.size() == size + 1  # only the second release: no verdict was logged


# --- what a rebuild varies, and what it keeps ------------------------------------------------


PROBE = [
    "mkdir -p out",
    "env | sort > out/env.txt",
    "umask > out/umask.txt",
    "python -c 'import socket; print(socket.gethostname())' > out/hostname.txt",
    "pwd > out/pwd.txt",
]


def test_rebuild_varies_the_environment(stack: Stack, tmp_path: Path) -> None:
    release = stack.build(
        tiny_project(tmp_path / "probe", recipe_toml(name="probe", commands=PROBE))
    )
    outcome = stack.rebuild(release, submit=False)
    assert outcome.status == BAD
    differing = {c.name for c in outcome.summary.checks if not c.reproduced}
    assert {"env.txt", "pwd.txt"} <= differing
    assert "umask.txt" not in differing
    rebuilt = outcome.results / "rebuilt"
    env = read_env(rebuilt / "env.txt")
    assert env["TZ"] == VARIED_TZ
    assert env["LC_ALL"] == VARIED_LOCALE
    assert env["SOURCE_DATE_EPOCH"] == str(COMMIT_EPOCH)
    assert env["PYTHONHASHSEED"] == "0"
    assert env["HOME"] != str(stack.conveyor.root / "work" / "home")
    assert env["PATH"].startswith(str(stack.rebuilder.cache) + "/")
    assert (rebuilt / "pwd.txt").read_text().strip() == outcome.summary.environment["buildPath"]
    if can_unshare():
        hostname = (rebuilt / "hostname.txt").read_text().strip()
        assert hostname.startswith("rebuild-")
        assert outcome.summary.environment["hostname"] == hostname


def test_rebuild_cannot_read_the_rebuilder_key(stack: Stack, tmp_path: Path) -> None:
    if not namespaces_available():
        pytest.skip("builds get no mount namespace here, so the keys cannot be hidden")
    secrets = stack.rebuilder.root / "secrets"
    command = f"ls -A {secrets} > out/keys.txt 2>&1 || echo unreadable > out/keys.txt"
    recipe = recipe_toml(name="peek-rebuilder", commands=["mkdir -p out", command])
    release = stack.build(tiny_project(tmp_path / "peek", recipe))
    # The conveyor's build could list the rebuilder's directory (it is not its own)...
    assert "rebuilder.key" in (release.directory / "keys.txt").read_text()
    outcome = stack.rebuild(release, submit=False)
    # ...the rebuild of the same commands could not.
    assert outcome.status == BAD
    assert "rebuilder.key" not in (outcome.results / "rebuilt" / "keys.txt").read_text()
    assert outcome.summary.environment["secretsHidden"] == "yes"
    assert (secrets / "rebuilder.key").is_file()


def test_build_sensitive_to_time_zone_fails_unless_the_recipe_says_so(
    stack: Stack, tmp_path: Path
) -> None:
    commands = ['test "$TZ" = UTC || { echo "needs TZ=UTC, got $TZ"; exit 4; }', *PROBE[:1]]
    commands += ["echo $TZ $LC_ALL > out/settings.txt"]
    fragile = recipe_toml(name="tz-fragile", commands=commands)
    release = stack.build(tiny_project(tmp_path / "fragile", fragile))
    outcome = stack.rebuild(release)
    assert outcome.status == FAIL
    assert outcome.summary.result == FAILED
    assert outcome.reason.startswith(
        "the rebuild failed: build command 1 failed with exit status 4"
    )
    report = (outcome.results / REPORT_TEXT).read_text()
    assert f"needs TZ=UTC, got {VARIED_TZ}" in report
    assert_logged_verdict(stack, outcome)

    pinned = recipe_toml(name="tz-pinned", commands=commands, build={"vary": ["path"]})
    release = stack.build(tiny_project(tmp_path / "pinned", pinned))
    outcome = stack.rebuild(release, submit=False)
    assert outcome.status == GOOD, outcome.reason
    assert outcome.summary.environment["tz"] == "UTC"


def test_rebuild_uses_the_recorded_recipe_not_the_repository_head(
    stack: Stack, tmp_path: Path
) -> None:
    repo = tiny_project(tmp_path / "project", recipe_toml(name="moved-on"))
    release = stack.build(repo)
    (repo / "overt.toml").write_text(recipe_toml(name="moved-on", commands=["exit 9"]))
    (repo / "data.txt").write_text("next release\n")
    commit_all(repo, "next")
    assert stack.rebuild(release, submit=False).status == GOOD


def test_fixed_build_path_is_used_and_never_deleted(stack: Stack, tmp_path: Path) -> None:
    fixed = tmp_path / "fixed-build-path"
    recipe = recipe_toml(
        name="fixed-path",
        commands=["mkdir -p out", "pwd > out/pwd.txt"],
        build={"path": str(fixed)},
    )
    release = stack.build(tiny_project(tmp_path / "project", recipe))
    assert (release.directory / "pwd.txt").read_text().strip() == str(fixed)
    assert not fixed.exists()
    assert "path" not in release.provenance.recipe.vary
    outcome = stack.rebuild(release, submit=False)
    assert outcome.status == GOOD, outcome.reason
    assert not fixed.exists()
    # Something of the supervisor's is at that path: the rebuild refuses, deletes nothing.
    fixed.mkdir()
    (fixed / "precious.txt").write_text("the supervisor's\n")
    with pytest.raises(RebuildError, match=r"build\.path .* already exists"):
        stack.rebuild(release, submit=False)
    assert (fixed / "precious.txt").read_text() == "the supervisor's\n"


# --- what is not rebuilt ----------------------------------------------------------------------


def test_entries_that_are_not_trusted_provenance_are_refused(stack: Stack, tmp_path: Path) -> None:
    not_json = stack.add(b"just a note\n")
    with pytest.raises(NotAProvenance, match="DSSE envelope"):
        stack.rebuilder.rebuild_index(not_json)
    release = stack.build(tiny_project(tmp_path / "p", recipe_toml(name="untrusted")))
    evil = release.provenance.statement().sign([Ed25519Signer.generate("conveyor.evil.example")])
    untrusted = stack.add(evil.to_bytes())
    with pytest.raises(NotAProvenance, match="not signed by a trusted conveyor key"):
        stack.rebuilder.rebuild_index(untrusted)
    for index in (not_json, untrusted):
        assert not stack.rebuilder.results_dir(index).exists()
    size = stack.size()
    with pytest.raises(RebuildError, match=f"no entry {size + 5}: the log has {size} entries"):
        stack.rebuilder.rebuild_index(size + 5)


def test_unlogged_verdict_stays_local(stack: Stack, tmp_path: Path) -> None:
    release = stack.build(tiny_project(tmp_path / "p", recipe_toml(name="not-submitted")))
    size = stack.size()
    outcome = stack.rebuild(release, submit=False)
    assert outcome.status == GOOD
    assert outcome.vsa_index is None
    assert stack.size() == size
    assert json.loads((outcome.results / OUTCOME_FILE).read_text())["vsa_index"] is None
    submitted = stack.rebuilder.submit(outcome)
    assert submitted.vsa_index == size
    assert_logged_verdict(stack, submitted)


def test_init_rebuilder_refusals(stack: Stack, tmp_path: Path) -> None:
    args = ("rebuilder.example.org", REBUILDER_ID, stack.log, stack.log_vkey)
    with pytest.raises(MalformedError, match="--id must be a URI"):
        init_rebuilder(tmp_path / "a", args[0], "r1", args[2], args[3], [stack.conveyor.vkey])
    with pytest.raises(MalformedError):
        init_rebuilder(tmp_path / "b", *args[:3], "not a key", [stack.conveyor.vkey])
    with pytest.raises(MalformedError, match="at least one conveyor key"):
        init_rebuilder(tmp_path / "c", *args, [])
    with pytest.raises(MalformedError):
        init_rebuilder(tmp_path / "d", *args, ["conveyor+00000000+AAAA"])
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "keep").write_text("mine")
    with pytest.raises(RebuildError, match="is not empty"):
        init_rebuilder(tmp_path / "e", *args, [stack.conveyor.vkey])
    with pytest.raises(RebuildError, match="not a rebuilder directory"):
        Rebuilder(tmp_path / "e")
    for name in "abcd":
        assert not (tmp_path / name / "secrets").exists()

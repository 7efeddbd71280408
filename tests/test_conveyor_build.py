"""The build conveyor as a vendor uses it: exact source, normalised builds, signed provenance.

Builds run for real: git repositories with fixed commit dates, the recipe's
commands under /bin/sh, toolchain virtual environments (cached per worker,
see release_fixtures), and a local release log.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from overt.conveyor.conveyor import (
    BUILD_LOG,
    PROVENANCE_FILE,
    RELEASE_FILE,
    Conveyor,
    ConveyorError,
    init_conveyor,
)
from overt.conveyor.provenance import BUILD_TYPE, PROVENANCE_TYPE, Provenance
from overt.conveyor.recipe import DEFAULT_DATE_EPOCH, SourceSpec
from overt.conveyor.runner import BuildError, namespaces_available
from overt.conveyor.source import SourceError, export_project, tree_digest
from overt.crypto.dsse import Envelope, verify_envelope
from overt.crypto.intoto import PAYLOAD_TYPE, STATEMENT_TYPE, Statement
from overt.crypto.keys import Ed25519Signer, ed25519_verifier
from overt.errors import MalformedError, VerificationError
from overt.rebuild.rebuilder import NotAProvenance
from release_fixtures import (
    BUILDER_ID,
    COMMIT_EPOCH,
    LATER_DATE,
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

RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> ExampleWorld:
    return example_world(tmp_path_factory)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    return make_stack(tmp_path_factory.mktemp("conveyor-build"), tmp_path_factory)


def statement_json(envelope: Envelope) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(envelope.payload)
    return doc


# --- the examples ---------------------------------------------------------------------


def test_hello_product_builds_wheel_and_sdist_and_is_logged(world: ExampleWorld) -> None:
    release = world.release("hello-product")
    names = [a.name for a in release.artifacts]
    assert names == ["hello_overt-1.0.0-py3-none-any.whl", "hello_overt-1.0.0.tar.gz"]
    assert not release.uncommitted
    target = world.stack.conveyor.releases / "hello-overt" / "1.0.0"
    assert release.directory == target
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [*names, PROVENANCE_FILE, BUILD_LOG, RELEASE_FILE]
    )
    for artifact in release.artifacts:
        assert artifact.path == target / artifact.name
        assert sha256_file(artifact.path) == artifact.sha256
        assert artifact.size == artifact.path.stat().st_size
    subjects = {s.name: s.digest["sha256"] for s in release.provenance.subjects}
    assert subjects == {a.name: a.sha256 for a in release.artifacts}
    # The provenance is in the log, byte for byte, where release.json says.
    assert release.log_index is not None
    assert world.stack.entry(release.log_index) == (target / PROVENANCE_FILE).read_bytes()
    record = json.loads((target / RELEASE_FILE).read_text())
    assert record["log"]["index"] == release.log_index
    assert record["log"]["target"] == world.stack.log
    assert record["artifacts"] == subjects
    assert record["commit"] == git(world.repos["hello-product"], "rev-parse", "HEAD")


def test_hello_product_provenance_records_the_locked_toolchain(world: ExampleWorld) -> None:
    release = world.release("hello-product")
    repo = world.repos["hello-product"]
    deps = {d.get("uri"): d for d in release.provenance.toolchain}
    lock = next(d for d in release.provenance.toolchain if d["name"] == "build-lock")
    assert lock["uri"] == "build-requirements.txt"
    assert lock["digest"]["sha256"] == sha256_file(repo / "build-requirements.txt")
    assert release.provenance.lock_sha256 == lock["digest"]["sha256"]
    for purl in (
        "pkg:pypi/build@1.6.1",
        "pkg:pypi/flit-core@4.2.0",
        "pkg:pypi/packaging@26.4",
        "pkg:pypi/pyproject-hooks@1.3.3",
    ):
        assert len(deps[purl]["annotations"]["allowedSha256"]) == 1
    assert release.provenance.python_version is not None
    assert release.provenance.python_version.startswith("3.11.")
    # The build ran with the locked packages, from the conveyor's own cache.
    build_log = (release.directory / BUILD_LOG).read_text()
    assert "Successfully built hello_overt-1.0.0.tar.gz and hello_overt-1.0.0-py3-none-any.whl" in (
        build_log
    )


def test_detection_db_builds_with_commit_time_as_source_date_epoch(world: ExampleWorld) -> None:
    release = world.release("detection-db")
    (artifact,) = release.artifacts
    assert artifact.name == "detection-db-2024.5.0.tar.gz"
    with tarfile.open(artifact.path) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        index = json.loads(tar.extractfile("detection-db-2024.5.0/index.json").read())  # type: ignore[union-attr]
    assert "detection-db-2024.5.0/rules/eicar.yar" in names
    assert {m.mtime for m in members} == {COMMIT_EPOCH}
    assert index["version"] == "2024.5.0"
    assert release.provenance.source.date_epoch == COMMIT_EPOCH
    assert release.provenance.environment["SOURCE_DATE_EPOCH"] == str(COMMIT_EPOCH)
    assert release.provenance.toolchain[0]["name"] == "python"
    assert release.provenance.lock_sha256 is None


def test_source_identity_is_commit_tree_and_tree_digest(
    world: ExampleWorld, tmp_path: Path
) -> None:
    release = world.release("detection-db")
    repo = world.repos["detection-db"]
    source = release.provenance.source
    assert source.uri == f"git+{repo.resolve().as_uri()}"
    assert source.commit == git(repo, "rev-parse", "HEAD")
    assert source.tree == git(repo, "rev-parse", "HEAD^{tree}")
    assert source.subdir == ""
    # The digest is that of the committed files, as a plain clone checks them out.
    subprocess.run(["git", "clone", "-q", str(repo), str(tmp_path / "export")], check=True)
    shutil.rmtree(tmp_path / "export" / ".git")
    assert source.digest == tree_digest(tmp_path / "export")


# --- provenance: SLSA v1 field rules -----------------------------------------------------


def test_provenance_statement_follows_in_toto_and_slsa(world: ExampleWorld) -> None:
    release = world.release("hello-product")
    assert release.envelope.payload_type == PAYLOAD_TYPE
    doc = statement_json(release.envelope)
    assert doc["_type"] == STATEMENT_TYPE == "https://in-toto.io/Statement/v1"
    assert doc["predicateType"] == PROVENANCE_TYPE == "https://slsa.dev/provenance/v1"
    assert len(doc["subject"]) == 2
    for subject in doc["subject"]:
        assert subject["name"]
        assert re.fullmatch(r"[0-9a-f]{64}", subject["digest"]["sha256"])
    definition = doc["predicate"]["buildDefinition"]
    assert definition["buildType"] == BUILD_TYPE
    assert definition["externalParameters"]["recipe"]["product"] == {
        "name": "hello-overt",
        "version": "1.0.0",
    }
    assert definition["externalParameters"]["source"]["commit"] == release.provenance.source.commit
    deps = definition["resolvedDependencies"]
    assert deps[0]["name"] == "source"
    assert set(deps[0]["digest"]) == {"overtTree", "gitCommit", "gitTree"}
    for dep in deps:
        assert "uri" in dep or "digest" in dep
    run = doc["predicate"]["runDetails"]
    assert run["builder"]["id"] == BUILDER_ID
    assert run["metadata"]["invocationId"].startswith("urn:uuid:")
    assert RFC3339_UTC.fullmatch(run["metadata"]["startedOn"])
    assert RFC3339_UTC.fullmatch(run["metadata"]["finishedOn"])
    assert run["metadata"]["startedOn"] <= run["metadata"]["finishedOn"]
    log = next(b for b in run["byproducts"] if b["name"] == BUILD_LOG)
    assert log["digest"]["sha256"] == sha256_file(release.directory / BUILD_LOG)
    # The round trip gives back what the conveyor signed.
    parsed = Provenance.from_statement(Statement.from_json(doc))
    assert parsed == release.provenance


def _pred(d: dict[str, Any]) -> dict[str, Any]:
    return d["predicate"]  # type: ignore[no-any-return]


def _definition(d: dict[str, Any]) -> dict[str, Any]:
    return _pred(d)["buildDefinition"]  # type: ignore[no-any-return]


def _deps(d: dict[str, Any]) -> list[dict[str, Any]]:
    return _definition(d)["resolvedDependencies"]  # type: ignore[no-any-return]


def _source(d: dict[str, Any]) -> dict[str, Any]:
    return _deps(d)[0]


def _meta(d: dict[str, Any]) -> dict[str, Any]:
    return _pred(d)["runDetails"]["metadata"]  # type: ignore[no-any-return]


Mutation = Callable[[dict[str, Any]], object]

BROKEN_PROVENANCE: list[tuple[str, Mutation, str]] = [
    ("statement type", lambda d: d.update(_type="https://in-toto.io/Statement/v0.1"), "_type"),
    ("no subjects", lambda d: d.update(subject=[]), "subject must be a non-empty list"),
    (
        "subject without sha256",
        lambda d: d["subject"][0].update(digest={"sha512": "ab" * 64}),
        "subject[0] needs a name and a sha256 digest",
    ),
    (
        "subject without name",
        lambda d: d["subject"][1].update(name=""),
        "subject[1] needs a name",
    ),
    (
        "subject digest not hex",
        lambda d: d["subject"][1].update(digest={"sha256": "XYZ"}),
        "subject[1].digest.sha256 must be lowercase hex",
    ),
    (
        "predicate type",
        lambda d: d.update(predicateType="https://slsa.dev/provenance/v0.2"),
        "predicateType",
    ),
    (
        "build type",
        lambda d: _definition(d).update(buildType="https://example.com/make/v1"),
        "buildDefinition.buildType",
    ),
    (
        "no build definition",
        lambda d: _pred(d).pop("buildDefinition"),
        "predicate.buildDefinition must be an object",
    ),
    (
        "no external parameters",
        lambda d: _definition(d).pop("externalParameters"),
        "externalParameters must be an object",
    ),
    (
        "no recipe",
        lambda d: _definition(d)["externalParameters"].pop("recipe"),
        "externalParameters.recipe",
    ),
    (
        "recipe without commands",
        lambda d: _definition(d)["externalParameters"]["recipe"]["build"].update(commands=[]),
        "build.commands must be a non-empty list",
    ),
    (
        "recipe with escaping artifact",
        lambda d: _definition(d)["externalParameters"]["recipe"]["artifacts"].update(
            paths=["../../etc/*"]
        ),
        "artifacts.paths[0]",
    ),
    (
        "dependencies not a list",
        lambda d: _definition(d).update(resolvedDependencies={}),
        "resolvedDependencies must be a list",
    ),
    (
        "dependency without uri or digest",
        lambda d: _deps(d).append({"name": "mystery"}),
        "needs at least one of uri, digest or content",
    ),
    (
        "dependency not an object",
        lambda d: _deps(d).append("pkg:pypi/build@1.6.1"),
        "must be an object",
    ),
    (
        "dependency digest not strings",
        lambda d: _deps(d)[1].update(digest={"sha256": 5}),
        "resolvedDependencies[1].digest must map algorithm names to strings",
    ),
    (
        "dependency uri not a string",
        lambda d: _deps(d)[1].update(uri=["pkg:generic/python"]),
        "resolvedDependencies[1].uri must be a string",
    ),
    (
        "no source",
        lambda d: _deps(d).pop(0),
        "exactly one resolved dependency must be the source",
    ),
    (
        "two sources",
        lambda d: _deps(d).append(copy.deepcopy(_source(d))),
        "exactly one resolved dependency must be the source",
    ),
    (
        "source from the web",
        lambda d: _source(d).update(uri="https://example.com/src.tar.gz"),
        "uri must start with git+ or file://",
    ),
    ("source without tree digest", lambda d: _source(d)["digest"].pop("overtTree"), "overtTree"),
    (
        "git source without tree",
        lambda d: _source(d)["digest"].pop("gitTree"),
        "a git source needs digest.gitCommit and gitTree",
    ),
    (
        "source subdir escapes",
        lambda d: _source(d)["annotations"].update(subdir="../other"),
        "annotations.subdir must be a relative path",
    ),
    (
        "source date not a number",
        lambda d: _source(d)["annotations"].update(sourceDateEpoch="1704164645"),
        "annotations.sourceDateEpoch must be an integer",
    ),
    (
        "environment not an object",
        lambda d: _definition(d).update(internalParameters={"environment": ["TZ=UTC"]}),
        "internalParameters.environment must be an object",
    ),
    ("no run details", lambda d: _pred(d).pop("runDetails"), "runDetails must be an object"),
    (
        "no builder",
        lambda d: _pred(d)["runDetails"].pop("builder"),
        "runDetails.builder must be an object",
    ),
    (
        "empty builder id",
        lambda d: _pred(d)["runDetails"]["builder"].update(id=""),
        "runDetails.builder.id must be a non-empty string",
    ),
    (
        "start missing",
        lambda d: _meta(d).pop("startedOn"),
        "runDetails.metadata.startedOn must be an RFC 3339 timestamp",
    ),
    (
        "start not a time",
        lambda d: _meta(d).update(startedOn="yesterday"),
        "runDetails.metadata.startedOn is not an RFC 3339 timestamp",
    ),
    (
        "start as ISO week date",
        lambda d: _meta(d).update(startedOn="2024-W01-1T00:00:00Z"),
        "startedOn is not an RFC 3339 timestamp",
    ),
    (
        "start in basic format",
        lambda d: _meta(d).update(startedOn="20240101T000000Z"),
        "startedOn is not an RFC 3339 timestamp",
    ),
    (
        "finish without zone",
        lambda d: _meta(d).update(finishedOn="2024-01-01T00:00:00"),
        "runDetails.metadata.finishedOn must carry a time zone",
    ),
    (
        "finish before start",
        lambda d: _meta(d).update(startedOn="2099-01-01T00:00:00Z"),
        "the build finished before it started",
    ),
    (
        "invocation id a number",
        lambda d: _meta(d).update(invocationId=7),
        "invocationId must be a string",
    ),
    (
        "byproducts not a list",
        lambda d: _pred(d)["runDetails"].update(byproducts="build.log"),
        "runDetails.byproducts must be a list",
    ),
    (
        "byproduct without uri or digest",
        lambda d: _pred(d)["runDetails"].update(byproducts=[{"name": "build.log"}]),
        "byproducts[0] needs at least one of uri, digest or content",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [(b[1], b[2]) for b in BROKEN_PROVENANCE],
    ids=[b[0] for b in BROKEN_PROVENANCE],
)
def test_broken_provenance_is_refused_naming_the_field(
    world: ExampleWorld, mutate: Mutation, expected: str
) -> None:
    doc = copy.deepcopy(statement_json(world.release("hello-product").envelope))
    mutate(doc)
    with pytest.raises(MalformedError) as info:
        Provenance.from_statement(Statement.from_json(doc))
    assert expected in str(info.value), str(info.value)


def test_provenance_parser_refuses_every_odd_value_without_crashing(world: ExampleWorld) -> None:
    doc = statement_json(world.release("hello-product").envelope)
    refused = odd_value_refusals(doc, lambda d: Provenance.from_statement(Statement.from_json(d)))
    assert refused > 100


def test_provenance_times_accept_rfc3339_offsets_and_fractions(world: ExampleWorld) -> None:
    doc = copy.deepcopy(statement_json(world.release("hello-product").envelope))
    _meta(doc).update(startedOn="2024-01-01T00:00:00.25+01:00", finishedOn="2024-01-01t00:00:01z")
    parsed = Provenance.from_statement(Statement.from_json(doc))
    assert parsed.started_on == "2024-01-01T00:00:00.25+01:00"


def test_provenance_verifies_with_the_conveyor_key_only(world: ExampleWorld) -> None:
    release = world.release("detection-db")
    conveyor_key = ed25519_verifier(world.stack.conveyor.vkey)
    rebuilder_key = ed25519_verifier(world.stack.rebuilder.vkey)
    signers = verify_envelope(release.envelope, [conveyor_key], payload_type=PAYLOAD_TYPE)
    assert [str(s.vkey) for s in signers] == [world.stack.conveyor.vkey]
    with pytest.raises(VerificationError):
        verify_envelope(release.envelope, [rebuilder_key], payload_type=PAYLOAD_TYPE)
    # A changed byte of the statement breaks the conveyor's signature too.
    doc = statement_json(release.envelope)
    doc["subject"][0]["digest"]["sha256"] = "0" * 64
    forged = Envelope(
        release.envelope.payload_type,
        Statement.from_json(doc).to_bytes(),
        release.envelope.signatures,
    )
    with pytest.raises(VerificationError):
        verify_envelope(forged, [conveyor_key], payload_type=PAYLOAD_TYPE)
    with pytest.raises(NotAProvenance, match="not signed by a trusted conveyor key"):
        world.stack.rebuilder.read_provenance(forged.to_bytes())
    other = Statement.from_json(doc).sign([Ed25519Signer.generate("conveyor.evil.example")])
    with pytest.raises(NotAProvenance, match="not signed by a trusted conveyor key"):
        world.stack.rebuilder.read_provenance(other.to_bytes())
    assert world.stack.rebuilder.read_provenance(release.envelope.to_bytes()) == release.provenance


# --- only committed files are built ------------------------------------------------------


LISTING = recipe_toml(
    name="committed",
    commands=[
        "mkdir -p out",
        "find . -path ./out -prune -o -type f -print | sort > out/files.txt",
        "cp data.txt out/data.txt",
    ],
)


def test_untracked_and_uncommitted_files_are_not_built(stack: Stack, tmp_path: Path) -> None:
    repo = tiny_project(tmp_path / "project", LISTING)
    clean = stack.conveyor.build(repo)
    assert not clean.uncommitted

    (repo / "untracked.txt").write_text("never committed\n")
    only_untracked = export_project(repo, SourceSpec(), tmp_path / "export", None)
    assert not only_untracked.uncommitted
    assert not (tmp_path / "export" / "untracked.txt").exists()

    (repo / "data.txt").write_text("changed in the working copy\n")
    (repo / "overt.toml").write_text(LISTING.replace('version = "1.0"', 'version = "9.9"'))
    init_conveyor(tmp_path / "second", "conveyor2.example.com", BUILDER_ID)
    second = Conveyor(tmp_path / "second", cache=stack.conveyor.cache)
    dirty = second.build(repo)
    assert dirty.uncommitted
    # The committed recipe, the committed data, no untracked file.
    assert dirty.provenance.recipe.version == "1.0"
    files = (dirty.directory / "files.txt").read_text().split()
    assert files == ["./data.txt", "./overt.toml"]
    assert (dirty.directory / "data.txt").read_text() == "hello from tiny\n"
    # Clean or dirty, the same source and the same bytes.
    assert dirty.provenance.source == clean.provenance.source
    assert [a.sha256 for a in dirty.artifacts] == [a.sha256 for a in clean.artifacts]


def test_a_named_commit_is_built_not_head(stack: Stack, tmp_path: Path) -> None:
    repo = tiny_project(tmp_path / "project", recipe_toml(name="older"))
    first = git(repo, "rev-parse", "HEAD")
    (repo / "data.txt").write_text("second version\n")
    commit_all(repo, "second", date=LATER_DATE)
    release = stack.conveyor.build(repo, commit=first[:12])
    assert release.provenance.source.commit == first
    assert release.provenance.source.date_epoch == COMMIT_EPOCH
    assert (release.directory / "tiny.txt").read_text() == "hello from tiny\n"
    with pytest.raises(SourceError, match="git rev-parse failed"):
        stack.conveyor.build(repo, commit="f" * 40)


# --- the normalised environment ---------------------------------------------------------


PROBE_COMMANDS = [
    "mkdir -p out",
    "env | sort > out/env.txt",
    "umask > out/umask.txt",
    "python -c 'import socket; print(socket.gethostname())' > out/hostname.txt",
    "command -v python > out/python.txt",
    "touch out/made-by-build && stat -c %a out/made-by-build > out/mode.txt",
]


def test_build_environment_is_normalised(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OVERT_TEST_SECRET", "do-not-leak-4711")
    monkeypatch.setenv("OVERT_TEST_PASSED", "asked-for")
    monkeypatch.setenv("TZ", "America/New_York")
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("PYTHONHASHSEED", "123")
    recipe = recipe_toml(
        name="probe", commands=PROBE_COMMANDS, build={"env": ["OVERT_TEST_PASSED"]}
    )
    release = stack.conveyor.build(tiny_project(tmp_path / "probe", recipe))
    out = release.directory
    env = read_env(out / "env.txt")
    assert env["SOURCE_DATE_EPOCH"] == str(COMMIT_EPOCH)
    assert env["TZ"] == "UTC"
    assert env["LC_ALL"] == "C.UTF-8"
    assert env["LANG"] == "C.UTF-8"
    assert env["PYTHONHASHSEED"] == "0"
    assert env["HOME"] == str(stack.conveyor.root / "work" / "home")
    assert env["PATH"].startswith(str(stack.conveyor.cache) + "/")
    assert env["OVERT_TEST_PASSED"] == "asked-for"
    assert "OVERT_TEST_SECRET" not in env
    assert "do-not-leak-4711" not in (out / "env.txt").read_text()
    assert "do-not-leak-4711" not in release.envelope.payload.decode()
    assert (out / "umask.txt").read_text().strip() == "0022"
    assert (out / "mode.txt").read_text().strip() == "644"
    assert (out / "hostname.txt").read_text().strip() == socket.gethostname()
    assert (out / "python.txt").read_text().startswith(str(stack.conveyor.cache) + "/")
    # The provenance records the environment the build had.
    assert release.provenance.environment["TZ"] == "UTC"
    assert release.provenance.environment["SOURCE_DATE_EPOCH"] == str(COMMIT_EPOCH)
    assert release.provenance.recipe.env == ("OVERT_TEST_PASSED",)


def peek(directory: Path, into: str) -> str:
    """A build command listing `directory` into out/`into`, or saying it cannot."""
    return f"ls -A {directory} > out/{into} 2>&1 || echo unreadable > out/{into}"


def test_build_cannot_read_the_signing_keys(stack: Stack, tmp_path: Path) -> None:
    if not namespaces_available():
        pytest.skip("builds get no mount namespace here, so the keys cannot be hidden")
    conveyor_secrets = stack.conveyor.root / "secrets"
    log_secrets = stack.log_dir.resolve() / "secrets"
    assert (conveyor_secrets / "conveyor.key").is_file()
    assert (log_secrets / "log.key").is_file()
    commands = [
        "mkdir -p out",
        peek(conveyor_secrets, "conveyor.txt"),
        peek(log_secrets, "log.txt"),
    ]
    release = stack.build(
        tiny_project(tmp_path / "peek", recipe_toml(name="peek", commands=commands))
    )
    assert "conveyor.key" not in (release.directory / "conveyor.txt").read_text()
    assert "log.key" not in (release.directory / "log.txt").read_text()
    assert "write-token" not in (release.directory / "log.txt").read_text()
    # Hidden from the build only: the conveyor and the log still have their keys.
    assert (conveyor_secrets / "conveyor.key").is_file()
    assert (log_secrets / "log.key").is_file()


def test_log_target_is_checked_before_building(stack: Stack, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    recipe = recipe_toml(name="nowhere-to-log", commands=[f"touch {marker}", "mkdir -p out"])
    repo = tiny_project(tmp_path / "p", recipe)
    with pytest.raises(MalformedError, match="not a log directory"):
        stack.conveyor.build(repo, log=str(tmp_path))
    with pytest.raises(MalformedError, match="needs the log's write token"):
        stack.conveyor.build(repo, log="https://log.example.com/releases")
    assert not marker.exists()
    assert_nothing_released(stack.conveyor, "nowhere-to-log")


def test_directory_source_dates_from_recipe_or_1980(stack: Stack, tmp_path: Path) -> None:
    plain = tiny_project(tmp_path / "plain", recipe_toml(name="plain-dir"), repo=False)
    release = stack.conveyor.build(plain)
    source = release.provenance.source
    assert source.uri == plain.resolve().as_uri()
    assert source.commit is None and source.tree is None
    assert source.date_epoch == DEFAULT_DATE_EPOCH
    assert source.digest == tree_digest(plain)
    dated = recipe_toml(name="dated-dir", extra="[source]\ndate_epoch = 1700000000\n")
    release = stack.conveyor.build(tiny_project(tmp_path / "dated", dated, repo=False))
    assert release.provenance.environment["SOURCE_DATE_EPOCH"] == "1700000000"


# --- builds that fail: fast, clear, nothing left behind -----------------------------------


def assert_nothing_released(conveyor: Conveyor, name: str) -> None:
    assert not (conveyor.releases / name).exists()
    assert not list((conveyor.root / "work").glob(".release-*"))


def test_timeout_stops_the_whole_build_quickly(stack: Stack, tmp_path: Path) -> None:
    late = tmp_path / "late"
    recipe = recipe_toml(
        name="slow",
        commands=[f"(sleep 2 && touch {late}) & sleep 30"],
        build={"timeout_seconds": 1},
    )
    repo = tiny_project(tmp_path / "slow", recipe)
    started = time.monotonic()
    with pytest.raises(BuildError) as info:
        stack.conveyor.build(repo)
    assert time.monotonic() - started < 15
    assert "build.timeout_seconds" in str(info.value)
    assert "ran out of its 1 s" in str(info.value)
    assert_nothing_released(stack.conveyor, "slow")
    # Its background job was killed with it: it never gets to write.
    time.sleep(2.5)
    assert not late.exists()


def test_failing_command_reports_the_log_tail_and_next_build_works(
    stack: Stack, tmp_path: Path
) -> None:
    recipe = recipe_toml(
        name="failing", commands=["echo compiling widget-4711", "echo oops >&2; exit 3", "true"]
    )
    repo = tiny_project(tmp_path / "failing", recipe)
    with pytest.raises(BuildError) as info:
        stack.conveyor.build(repo)
    message = str(info.value)
    assert "build command 2 failed with exit status 3" in message
    assert "compiling widget-4711" in info.value.log_tail
    assert "oops" in info.value.log_tail
    assert_nothing_released(stack.conveyor, "failing")
    (repo / "overt.toml").write_text(recipe_toml(name="failing"))
    commit_all(repo, "fix the build")
    assert stack.conveyor.build(repo).artifacts[0].name == "tiny.txt"


def test_artifact_glob_matching_nothing_is_named(stack: Stack, tmp_path: Path) -> None:
    recipe = recipe_toml(name="missing-artifact", artifacts=["out/*.txt", "out/*.whl"])
    with pytest.raises(BuildError, match=r"artifacts\.paths\[1\] 'out/\*\.whl' matched no file"):
        stack.conveyor.build(tiny_project(tmp_path / "p", recipe))
    assert_nothing_released(stack.conveyor, "missing-artifact")


def test_two_artifacts_with_one_name_are_refused(stack: Stack, tmp_path: Path) -> None:
    recipe = recipe_toml(
        name="clash",
        commands=["mkdir -p a b", "echo 1 > a/x.txt", "echo 2 > b/x.txt"],
        artifacts=["a/*.txt", "b/*.txt"],
    )
    with pytest.raises(BuildError, match=r"two artifacts are named x\.txt"):
        stack.conveyor.build(tiny_project(tmp_path / "p", recipe))


def test_lock_problems_are_named(stack: Stack, tmp_path: Path) -> None:
    missing = recipe_toml(name="no-lock-file", extra="")
    missing = missing.replace('python = "3.11"', 'python = "3.11"\nlock = "requirements.txt"')
    with pytest.raises(MalformedError, match=r"toolchain\.lock: requirements\.txt is not a file"):
        stack.conveyor.build(tiny_project(tmp_path / "a", missing))
    files = {"data.txt": "x\n", "requirements.txt": "# build tools\nbuild>=1.0\n"}
    loose = missing.replace('name = "no-lock-file"', 'name = "loose-lock"')
    with pytest.raises(
        MalformedError, match=r"requirements\.txt line 2: 'build>=1\.0' is not a pinned"
    ):
        stack.conveyor.build(tiny_project(tmp_path / "b", loose, files))
    assert_nothing_released(stack.conveyor, "loose-lock")


def test_a_release_is_built_once(stack: Stack, tmp_path: Path) -> None:
    repo = tiny_project(tmp_path / "p", recipe_toml(name="once"))
    first = stack.conveyor.build(repo)
    before = (first.directory / PROVENANCE_FILE).read_bytes()
    with pytest.raises(ConveyorError, match=r"already built.*raise product\.version"):
        stack.conveyor.build(repo)
    assert (first.directory / PROVENANCE_FILE).read_bytes() == before


def test_bad_recipe_fails_before_anything_runs(stack: Stack, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    recipe = recipe_toml(name="bad", commands=[f"touch {marker}"], python="2")
    with pytest.raises(MalformedError, match=r"toolchain\.python"):
        stack.conveyor.build(tiny_project(tmp_path / "p", recipe))
    assert not marker.exists()
    with pytest.raises(MalformedError, match="no build recipe"):
        stack.conveyor.build(tmp_path)


def test_init_conveyor_refusals(tmp_path: Path) -> None:
    with pytest.raises(MalformedError, match="--builder-id must be a URI"):
        init_conveyor(tmp_path / "a", "conveyor.example.com", "acme-builder")
    with pytest.raises(MalformedError):
        init_conveyor(tmp_path / "b", "bad name", BUILDER_ID)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    with pytest.raises(ConveyorError, match="is not empty"):
        init_conveyor(tmp_path / "c", "conveyor.example.com", BUILDER_ID)
    assert (tmp_path / "c" / "keep.txt").read_text() == "mine"
    with pytest.raises(ConveyorError, match="not a conveyor directory"):
        Conveyor(tmp_path / "c")
    vkey = init_conveyor(tmp_path / "d", "conveyor.example.com", BUILDER_ID)
    assert (tmp_path / "d" / "conveyor.vkey").read_text().strip() == vkey
    assert (tmp_path / "d" / "secrets" / "conveyor.key").stat().st_mode & 0o077 == 0

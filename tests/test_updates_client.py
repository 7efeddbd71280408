"""The update client over HTTP: TUF first, then the transparency verifier, then install.

One test per attack. Each is refused with a specific reason; nothing refused
ever reaches the install directory, and every refusal is appended to
STATE/refusals.jsonl.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata

from overt.conveyor.conveyor import read_release
from overt.crypto.dsse import Envelope
from overt.crypto.intoto import Statement, Subject
from overt.crypto.note import split
from overt.errors import MalformedError, OvertError, VerificationError
from overt.policy.bundle import Bundle, Logged
from overt.policy.trust import load_policy
from overt.tlog.checkpoint import Checkpoint, sign_checkpoint
from overt.tlog.proof import TlogProof
from overt.updates.client import Outcome, UpdateClient, UpdateError, UpdateReport
from overt.updates.publish import publish_releases
from overt.updates.repository import (
    INDEX_TARGET,
    ReleaseFiles,
    Repository,
    RepositoryError,
    init_repository,
)
from update_fixtures import PRODUCT, V1, V2, UpdateWorld, cli, flat, proven, update_world


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> UpdateWorld:
    return update_world(tmp_path_factory)


@dataclass
class Customer:
    dir: Path
    world: UpdateWorld = field(repr=False)

    @property
    def policy(self) -> Path:
        return self.dir / "policy.toml"

    @property
    def install(self) -> Path:
        return self.dir / "install"

    @property
    def state(self) -> Path:
        return self.dir / "state"

    def update(self, url: str | None = None) -> UpdateReport:
        client = UpdateClient(
            load_policy(self.policy), url or self.world.repo_url, self.install, self.state
        )
        return client.update()

    def installed(self) -> list[str]:
        if not self.install.exists():
            return []
        return sorted(str(p.relative_to(self.install)) for p in self.install.rglob("*"))

    def refusals(self) -> list[dict[str, Any]]:
        path = self.state / "refusals.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def refused(self, url: str, reason: str, before: list[str] | None = None) -> Outcome:
        """Update from `url`: exactly one outcome, refused for `reason`; nothing installed."""
        before = self.installed() if before is None else before
        refusals = len(self.refusals())
        report = self.update(url)
        (outcome,) = report.outcomes
        assert outcome.status == "refused", outcome
        assert reason in outcome.reason, outcome.reason
        assert report.refused == [outcome]
        assert self.installed() == before
        records = self.refusals()
        assert len(records) == refusals + 1
        assert records[-1]["reason"] == outcome.reason
        assert records[-1]["product"] == outcome.product
        assert records[-1]["version"] == outcome.version
        return outcome

    def channel_refused(self, url: str, error: str) -> str:
        """Update from `url`: TUF refuses the whole channel; nothing installed."""
        before = self.installed()
        refusals = len(self.refusals())
        with pytest.raises(UpdateError) as info:
            self.update(url)
        reason = str(info.value)
        assert reason.startswith("TUF refused the update channel: ")
        assert error in reason, reason
        assert self.installed() == before
        records = self.refusals()
        assert len(records) == refusals + 1
        assert records[-1]["reason"] == reason
        assert records[-1]["product"] == "*"
        return reason


@pytest.fixture
def customer(world: UpdateWorld, tmp_path: Path) -> Customer:
    world.customer(tmp_path / "customer")
    return Customer(tmp_path / "customer", world)


V2_FILE = f"{PRODUCT}/{PRODUCT}-{V2}.tar.gz"


def failed_check(outcome: Outcome, name: str, phrase: str) -> None:
    decision = outcome.decisions[-1]
    last = decision.checks[-1]
    assert (last.name, last.passed) == (name, False), decision.reason
    assert all(c.passed for c in decision.checks[:-1])
    assert phrase in last.detail
    assert outcome.reason == f"{Path(V2_FILE).name}: {name}: {last.detail}"


def tampered(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


def release_files(
    world: UpdateWorld, version: str, files: dict[str, bytes], bundle: Bundle, index: int = 3
) -> ReleaseFiles:
    return ReleaseFiles("products", PRODUCT, version, files, bundle.to_bytes(), index)


# --- accepted -------------------------------------------------------------------------------


def test_update_installs_a_verified_release(world: UpdateWorld, customer: Customer) -> None:
    report = customer.update()
    (outcome,) = report.outcomes
    assert (outcome.channel, outcome.product, outcome.version, outcome.status) == (
        "products",
        PRODUCT,
        V2,
        "installed",
    )
    assert outcome.files == [f"{PRODUCT}-{V2}.tar.gz"]
    assert customer.installed() == [PRODUCT, V2_FILE]
    assert (customer.install / V2_FILE).read_bytes() == world.artifact("v2")[1]
    installed = json.loads((customer.state / "installed.json").read_text())
    assert installed == {
        f"products/{PRODUCT}": {"version": V2, "log_index": 3, "files": [f"{PRODUCT}-{V2}.tar.gz"]}
    }
    assert customer.refusals() == []
    # Nothing new: up to date, nothing downloaded again or refused.
    (again,) = customer.update().outcomes
    assert again.status == "current"
    assert customer.refusals() == []


def test_overt_update_command(world: UpdateWorld, customer: Customer) -> None:
    args = ("update", "--policy", customer.policy, "--dir", customer.install)
    code, stdout, stderr = cli(*args, "--state", customer.state)
    assert code == 0, stdout + stderr
    assert f"installed products/{PRODUCT} {V2}: {PRODUCT}-{V2}.tar.gz" in flat(stdout)
    assert "ok reproduced:" in flat(stdout)
    code, stdout, _ = cli(*args, "--state", customer.state, "--repo", world.repo_url)
    assert code == 0
    assert f"up to date products/{PRODUCT} {V2}" in flat(stdout)


def test_first_run_trusts_only_the_root_in_the_policy(
    world: UpdateWorld, customer: Customer, tmp_path: Path
) -> None:
    # A repository made with other keys: its metadata does not chain to the customer's root.
    other = tmp_path / "other"
    init_repository(other / "updates", other / "keys")
    shutil.copyfile(other / "updates" / "metadata" / "1.root.json", customer.dir / "root.json")
    customer.channel_refused(world.repo_url, "UnsignedMetadataError")
    # A policy without a root cannot start at all.
    fresh = Customer(tmp_path / "fresh", world)
    fresh.dir.mkdir()
    fresh.policy.write_text(world.policy_text())
    with pytest.raises(MalformedError, match="names no trusted TUF root"):
        fresh.update()


# --- attacks on the update channel (TUF refuses) ---------------------------------------------


def test_artifact_swapped_on_the_mirror(world: UpdateWorld, customer: Customer) -> None:
    repo, url = world.copy_repo()
    name, data = world.artifact("v2")
    (served,) = (repo.repo / "targets" / "products" / PRODUCT / V2).glob(f"*.{name}")
    served.write_bytes(tampered(data))
    outcome = customer.refused(url, "TUF refused a target")
    assert "does not match expected hash" in outcome.reason
    assert outcome.decisions == []  # never even reached the verifier


def test_metadata_rollback_is_refused(world: UpdateWorld, customer: Customer) -> None:
    assert customer.update().outcomes[0].status == "installed"
    # The repository as it was before 2024.5.1 was published (older metadata versions).
    customer.channel_refused(f"{world.base}/repos/v1-only/updates", "BadVersionNumberError")
    assert customer.installed() == [PRODUCT, V2_FILE]


def test_frozen_timestamp_is_refused(world: UpdateWorld, customer: Customer) -> None:
    repo, url = world.copy_repo()
    # A validly signed timestamp that has expired: what a mirror frozen in time serves.
    Repository(repo.repo, repo.keys, expiry_days={"timestamp": -1}).refresh()
    customer.channel_refused(url, "ExpiredMetadataError")


def test_target_signed_with_a_retired_targets_key_is_refused(
    world: UpdateWorld, customer: Customer, tmp_path: Path
) -> None:
    repo, url = world.copy_repo()
    old = (repo.keys / "targets.pem").read_bytes()
    repo.rotate("targets")
    assert (repo.keys / "targets.pem").read_bytes() != old
    (retired,) = (repo.keys / "retired").glob("targets-*.pem")
    assert retired.read_bytes() == old
    # The customer follows the rotation (root version 2 announces the new key).
    assert customer.update(url).outcomes[0].status == "installed"
    assert Metadata.from_file(str(customer.state / "tuf" / "root.json")).signed.version == 2
    # Whoever holds the retired key (and the online snapshot and timestamp keys)
    # signs new targets metadata: refused, by this client and by a new one.
    stolen = tmp_path / "stolen-keys"
    shutil.copytree(repo.keys, stolen)
    shutil.copyfile(retired, stolen / "targets.pem")
    name, data = world.artifact("v2")
    Repository(repo.repo, stolen).publish(
        [release_files(world, "2024.5.9", {name: data}, world.bundle("v2"))]
    )
    customer.channel_refused(url, "UnsignedMetadataError")
    fresh = Customer(tmp_path / "fresh", world)
    world.customer(fresh.dir)
    fresh.channel_refused(url, "UnsignedMetadataError")


def test_release_signed_with_a_retired_channel_key_is_refused(
    world: UpdateWorld, customer: Customer, tmp_path: Path
) -> None:
    repo, url = world.copy_repo()
    repo.rotate("products")
    (retired,) = (repo.keys / "retired").glob("products-*.pem")
    stolen = tmp_path / "stolen-keys"
    shutil.copytree(repo.keys, stolen)
    shutil.copyfile(retired, stolen / "products.pem")
    name, data = world.artifact("v2")
    Repository(repo.repo, stolen).publish(
        [release_files(world, "2024.5.9", {name: data}, world.bundle("v2"))]
    )
    outcome = customer.refused(url, "TUF refused a target")
    assert "products" in outcome.reason


def test_root_rotation_is_followed(world: UpdateWorld, customer: Customer) -> None:
    repo, url = world.copy_repo()
    repo.rotate("root")
    repo.rotate("root")
    report = customer.update(url)
    assert [o.status for o in report.outcomes] == ["installed"]
    assert Metadata.from_file(str(customer.state / "tuf" / "root.json")).signed.version == 3
    # The retired root keys sign nothing any more: a new root signed by them is refused.
    retired = sorted((repo.keys / "retired").glob("root-*.pem"))
    assert len(retired) == 2
    root = repo.load("root")
    root.signed.version += 1
    repo._write(
        "root", root, [CryptoSigner(load_pem_private_key(k.read_bytes(), None)) for k in retired]
    )
    customer.channel_refused(url, "UnsignedMetadataError")
    assert Metadata.from_file(str(customer.state / "tuf" / "root.json")).signed.version == 3


# --- attacks with the vendor's own TUF keys (transparency refuses) --------------------------


def test_swapped_artifact_resigned_with_the_vendors_tuf_keys(
    world: UpdateWorld, customer: Customer
) -> None:
    repo, url = world.copy_repo()
    name, data = world.artifact("v2")
    repo.publish([release_files(world, "2024.5.2", {name: tampered(data)}, world.bundle("v2"))])
    outcome = customer.refused(url, "artifact digest")
    failed_check(outcome, "artifact digest", "this is not the artifact that was built")


def test_release_signed_by_the_conveyor_but_never_logged(
    world: UpdateWorld, customer: Customer
) -> None:
    repo, url = world.copy_repo()
    name, data = world.artifact("v2")
    implant = data + b"\0implant"
    bundle = world.bundle("v2")
    statement = Statement.from_envelope(Envelope.from_bytes(bundle.provenance.entry))
    subjects = [Subject(name, {"sha256": hashlib.sha256(implant).hexdigest()})]
    unlogged = Statement(subjects, statement.predicate_type, statement.predicate)
    signed = unlogged.sign([world.conveyor_signer()]).to_bytes()
    forged = Bundle(Logged(signed, bundle.provenance.proof), bundle.attestations)
    repo.publish([release_files(world, "2024.5.2", {name: implant}, forged)])
    outcome = customer.refused(url, "logged")
    failed_check(outcome, "logged", "the provenance is not in the release log")


def test_checkpoint_not_witnessed_by_the_quorum(world: UpdateWorld, customer: Customer) -> None:
    repo, url = world.copy_repo()
    name, data = world.artifact("v2")
    bundle = world.bundle("v2")
    text, _ = split(bundle.provenance.proof.checkpoint)
    log_only = sign_checkpoint(Checkpoint.parse(text), [world.log_signer()])
    proof = bundle.provenance.proof
    unwitnessed = Bundle(
        Logged(bundle.provenance.entry, TlogProof(proof.index, proof.proof, log_only))
    )
    repo.publish([release_files(world, "2024.5.2", {name: data}, unwitnessed)])
    outcome = customer.refused(url, "witnessed")
    failed_check(outcome, "witnessed", "not cosigned by the witness quorum")


def test_split_view_is_refused(world: UpdateWorld, customer: Customer) -> None:
    assert customer.update().outcomes[0].status == "installed"  # remembers the real log
    # A forked log (same key, both witnesses' cosignatures) in which 2024.5.1 is logged too.
    entries = world.entries()
    tree, forked = world.forged_tree([*entries[:-1], b"a history only this customer sees"])
    bundle = world.bundle("v2")
    (vsa,) = bundle.attestations
    index = bundle.provenance.proof.index
    split_bundle = Bundle(
        proven(tree, index, bundle.provenance.entry, forked),
        (proven(tree, vsa.proof.index, vsa.entry, forked),),
    )
    repo, url = world.copy_repo()
    name, data = world.artifact("v2")
    repo.publish([release_files(world, "2024.5.2", {name: data}, split_bundle)])
    outcome = customer.refused(url, "consistent view")
    failed_check(outcome, "consistent view", "split view")


def test_release_whose_rebuild_failed(world: UpdateWorld, customer: Customer) -> None:
    repo, url = world.copy_repo()
    publish_releases(repo, world.client(), [world.release_dir("clock")], "products")
    report = customer.update(url)
    by_product = {o.product: o for o in report.outcomes}
    assert by_product[PRODUCT].status == "installed"
    clock = by_product["clock-stamped"]
    assert clock.status == "refused"
    assert "reproduced: trusted rebuilder rebuilder.example.org/r1 reported FAILED" in clock.reason
    assert customer.installed() == [PRODUCT, V2_FILE]
    assert [r["product"] for r in customer.refusals()] == ["clock-stamped"]


def test_release_no_rebuilder_passed_yet(world: UpdateWorld, customer: Customer) -> None:
    repo, url = world.copy_repo()
    name, data = world.artifact("v2")
    bundle = world.bundle("v2")
    repo.publish([release_files(world, "2024.5.2", {name: data}, Bundle(bundle.provenance))])
    outcome = customer.refused(url, "reproduced")
    failed_check(outcome, "reproduced", "0 of the 1 required trusted rebuilders reported PASSED")


def test_rollback_to_an_earlier_logged_release(world: UpdateWorld, customer: Customer) -> None:
    assert customer.update().outcomes[0].status == "installed"
    before = customer.installed()
    # The vendor's TUF metadata (newer versions, validly signed) offers 2024.5.0 again:
    # built, logged, witnessed and rebuilt, but logged before the installed 2024.5.1.
    repo, url = world.copy_repo()
    _, _, files, _, index = read_release(world.release_dir("v1"))
    repo.publish([release_files(world, V1, files, world.bundle("v1"), index)])
    outcome = customer.refused(url, "rollback", before)
    assert outcome.reason == (
        f"rollback: {V1} was logged (entry 0) before the installed {V2} (entry 3)"
    )


def test_refused_update_via_the_command_line(world: UpdateWorld, customer: Customer) -> None:
    repo, url = world.copy_repo()
    name, data = world.artifact("v2")
    repo.publish([release_files(world, "2024.5.2", {name: tampered(data)}, world.bundle("v2"))])
    code, stdout, stderr = cli(
        "update",
        "--policy",
        customer.policy,
        "--repo",
        url,
        "--dir",
        customer.install,
        "--state",
        customer.state,
    )
    assert code == 1, stdout + stderr
    assert f"refused products/{PRODUCT} 2024.5.2" in flat(stdout)
    assert "FAIL artifact digest" in flat(stdout)
    assert customer.installed() == []
    assert len(customer.refusals()) == 1
    # TUF refusing the channel: exit 1 with the reason.
    Repository(repo.repo, repo.keys, expiry_days={"timestamp": -1}).refresh()
    code, _, stderr = cli(
        "update",
        "--policy",
        customer.policy,
        "--repo",
        url,
        "--dir",
        customer.install,
        "--state",
        customer.dir / "state2",
    )
    assert code == 1  # a refusal, like any other (recorded in refusals.jsonl)
    assert "ExpiredMetadataError" in flat(stderr)


def write_index(repo: Repository, data: bytes) -> None:
    """Replace overt/index.json, signed with the vendor's targets key (as a vendor could)."""
    targets = repo.load("targets")
    targets.signed.targets[INDEX_TARGET] = repo._store_target(INDEX_TARGET, data)
    repo._bump("targets", targets)
    repo._write("targets", targets, [repo.signer("targets")])
    repo._snapshot_and_timestamp(["targets"])


def test_index_cannot_place_files_outside_the_install_dir(
    world: UpdateWorld, customer: Customer
) -> None:
    repo, url = world.copy_repo()
    index = repo.index()
    index["products"] = {"../escape": index["products"][PRODUCT]}
    write_index(repo, json.dumps(index).encode())
    outcome = customer.refused(url, "the index names a product that is not a plain name")
    assert outcome.product == "../escape"
    assert not (customer.dir / "escape").exists()


def test_malformed_index(world: UpdateWorld, customer: Customer) -> None:
    repo, url = world.copy_repo()
    write_index(repo, b"{not json")
    with pytest.raises(UpdateError, match=r"overt/index\.json is not valid JSON"):
        customer.update(url)
    write_index(repo, b"[]")
    with pytest.raises(UpdateError, match="must be a JSON object"):
        customer.update(url)
    write_index(repo, json.dumps({"products": {PRODUCT: {"version": "9"}}}).encode())
    customer.refused(url, "the index entry is malformed")
    assert customer.installed() == []


# --- the vendor's side: publishing and the repository commands --------------------------------


def test_publish_checks_the_release_against_the_log(world: UpdateWorld, tmp_path: Path) -> None:
    repo, _ = world.copy_repo()
    release = tmp_path / "release"
    shutil.copytree(world.release_dir("v1"), release)
    record = json.loads((release / "release.json").read_text())
    record["log"]["index"] = 3  # another release's entry
    (release / "release.json").write_text(json.dumps(record))
    with pytest.raises(VerificationError, match="log entry 3 is not this release's provenance"):
        publish_releases(repo, world.client(), [release], "products")
    record["log"] = None
    (release / "release.json").write_text(json.dumps(record))
    with pytest.raises(MalformedError, match="not logged yet"):
        publish_releases(repo, world.client(), [release], "products")
    record["log"] = {"index": 0}
    (release / "release.json").write_text(json.dumps(record))
    name, _ = world.artifact("v1")
    (release / name).write_bytes(b"swapped")
    with pytest.raises(VerificationError, match="does not match the digest recorded"):
        publish_releases(repo, world.client(), [release], "products")


def test_repository_refuses_unsafe_names(world: UpdateWorld) -> None:
    repo, _ = world.copy_repo()
    bundle = world.bundle("v2")
    for release, phrase in (
        (ReleaseFiles("products", "../x", "1", {"a": b""}, b"{}", 0), "cannot be part of"),
        (ReleaseFiles("products", "x", "1/2", {"a": b""}, b"{}", 0), "cannot be part of"),
        (ReleaseFiles("products", "x", "1", {"bundle.json": b""}, b"{}", 0), "cannot be a target"),
        (ReleaseFiles("products", "x", "1", {"a/b": b""}, b"{}", 0), "cannot be a target"),
    ):
        with pytest.raises(MalformedError, match=phrase):
            repo.publish([release])
    with pytest.raises(OvertError):
        repo.publish([ReleaseFiles("firmware", "x", "1", {"a": b""}, bundle.to_bytes(), 0)])
    with pytest.raises(MalformedError, match="nothing to publish"):
        repo.publish([])
    with pytest.raises(MalformedError, match="role must be one of"):
        repo.rotate("mirror")
    with pytest.raises(RepositoryError, match="already holds"):
        init_repository(repo.repo, repo.keys)


def test_updates_commands(world: UpdateWorld, tmp_path: Path) -> None:
    repo, _ = world.copy_repo()
    code, stdout, stderr = cli("updates", "status", repo.repo)
    assert code == 0, stderr
    said = flat(stdout)
    for role in ("root", "targets", "snapshot", "timestamp", "products", "rules"):
        assert f"{role} version" in said
    assert f'"version": "{V2}"' in stdout and '"log_index": 3' in stdout
    before = repo.version("timestamp")
    code, stdout, stderr = cli("updates", "refresh", repo.repo, "--keys", repo.keys)
    assert code == 0, stderr
    assert f"timestamp version {before + 1} signed" in stdout
    code, stdout, stderr = cli(
        "updates", "rotate", repo.repo, "--keys", repo.keys, "--role", "snapshot"
    )
    assert code == 0, stderr and "snapshot key rotated" in stdout
    assert repo.version("root") == 2
    code, _, stderr = cli("updates", "rotate", repo.repo, "--keys", repo.keys, "--role", "mirror")
    assert code == 2 and "role must be one of" in flat(stderr)
    code, _, stderr = cli("updates", "init", repo.repo, "--keys", tmp_path / "k")
    assert code == 2 and "already holds an update repository" in flat(stderr)
    code, _, stderr = cli(
        "updates",
        "publish",
        repo.repo,
        world.release_dir("v1"),
        "--keys",
        repo.keys,
        "--log",
        world.log_dir,
        "--channel",
        "firmware",
    )
    assert code == 2 and "--channel must be one of" in flat(stderr)
    code, _, stderr = cli("updates", "status", tmp_path)
    assert code == 2 and "is not an update repository" in flat(stderr)

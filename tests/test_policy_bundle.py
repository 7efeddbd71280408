"""Release bundles (the JSON format), assembling them from the log, and `overt verify`."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from overt.errors import MalformedError
from overt.log.remote import FileMemory
from overt.policy.bundle import (
    MAX_ATTESTATIONS,
    MAX_BUNDLE_BYTES,
    MEDIA_TYPE,
    REVIEW_TYPE,
    Bundle,
    attestation_subject,
    index_attestations,
)
from overt.policy.verify import memory_identity
from overt.rebuild.vsa import VSA_TYPE
from update_fixtures import UpdateWorld, b64, cli, flat, update_world


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> UpdateWorld:
    return update_world(tmp_path_factory)


# --- the format ---------------------------------------------------------------------------


def test_round_trip(world: UpdateWorld) -> None:
    bundle = world.bundle("v1")
    data = bundle.to_bytes()
    assert Bundle.from_bytes(data) == bundle
    doc = json.loads(data)
    assert doc["mediaType"] == MEDIA_TYPE
    assert sorted(doc) == ["attestations", "mediaType", "provenance"]
    assert base64.b64decode(doc["provenance"]["entry"]) == world.releases["v1"].envelope.to_bytes()
    assert doc["provenance"]["proof"].startswith("c2sp.org/tlog-proof@v1\nindex 0\n")
    assert [a["proof"].split("\n")[1] for a in doc["attestations"]] == ["index 1", "index 2"]
    # Byte-stable: the same bundle is the same file.
    assert Bundle.from_bytes(data).to_bytes() == data


def test_attestations_are_optional(world: UpdateWorld) -> None:
    doc = json.loads(world.bundle("v2").to_bytes())
    del doc["attestations"]
    bundle = Bundle.from_bytes(json.dumps(doc).encode())
    assert bundle.attestations == ()


def _doc(world: UpdateWorld) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(world.bundle("v1").to_bytes())
    return loaded


MALFORMED = {
    "not JSON": (lambda d: b"{", "bundle is not valid JSON"),
    "not UTF-8": (lambda d: b"\xff\xfe", "bundle is not valid JSON"),
    "deeply nested": (lambda d: b"[" * 100_000 + b"]" * 100_000, "bundle is not valid JSON"),
    "a list": (lambda d: b"[]", "bundle must be a JSON object"),
    "no mediaType": (lambda d: {k: v for k, v in d.items() if k != "mediaType"}, "mediaType"),
    "other mediaType": (lambda d: {**d, "mediaType": "application/json"}, "mediaType must be"),
    "no provenance": (
        lambda d: {k: v for k, v in d.items() if k != "provenance"},
        "provenance must be an object",
    ),
    "entry not a string": (
        lambda d: {**d, "provenance": {**d["provenance"], "entry": 1}},
        "provenance needs 'entry' (base64) and 'proof' (text)",
    ),
    "no proof": (
        lambda d: {**d, "provenance": {"entry": d["provenance"]["entry"]}},
        "provenance needs 'entry'",
    ),
    "entry not base64": (
        lambda d: {**d, "provenance": {**d["provenance"], "entry": "not base64!"}},
        "provenance.entry is not valid base64",
    ),
    "proof not a tlog-proof": (
        lambda d: {**d, "provenance": {**d["provenance"], "proof": "index 0\n\n"}},
        "provenance.proof: tlog-proof must start with",
    ),
    "proof with a bad hash": (
        lambda d: {
            **d,
            "provenance": {
                **d["provenance"],
                "proof": d["provenance"]["proof"].replace("index 0\n", "index 0\nAAAA\n", 1),
            },
        },
        "provenance.proof: tlog-proof inclusion hash is 3 bytes",
    ),
    "proof with a bad checkpoint": (
        lambda d: {
            **d,
            "provenance": {
                **d["provenance"],
                "proof": d["provenance"]["proof"].split("\n\n")[0] + "\n\nnot a checkpoint\n",
            },
        },
        "provenance.proof:",
    ),
    "attestations not a list": (lambda d: {**d, "attestations": {}}, "attestations must be a list"),
    "bad attestation": (
        lambda d: {**d, "attestations": [*d["attestations"], "x"]},
        "attestations[2] must be an object",
    ),
    "bad attestation entry": (
        lambda d: {
            **d,
            "attestations": [d["attestations"][0], {**d["attestations"][1], "entry": "%%"}],
        },
        "attestations[1].entry is not valid base64",
    ),
    "too many attestations": (
        lambda d: {**d, "attestations": [d["attestations"][0]] * (MAX_ATTESTATIONS + 1)},
        f"more than {MAX_ATTESTATIONS} attestations",
    ),
    "too large": (lambda d: b" " * (MAX_BUNDLE_BYTES + 1), "bundle larger than"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_bundle_is_refused_naming_what(world: UpdateWorld, case: str) -> None:
    change, phrase = MALFORMED[case]
    made = change(_doc(world))
    data = made if isinstance(made, bytes) else json.dumps(made).encode()
    with pytest.raises(MalformedError) as info:
        Bundle.from_bytes(data)
    assert phrase in str(info.value)


# --- assembling bundles from the log ---------------------------------------------------


def test_index_attestations_finds_verdicts_and_reviews(world: UpdateWorld) -> None:
    entries = world.entries()
    found = index_attestations(enumerate(entries))
    provenance = {name: r.envelope.to_bytes() for name, r in world.releases.items()}
    digests = {name: hashlib.sha256(p).hexdigest() for name, p in provenance.items()}
    assert found == {digests["v1"]: [1, 2], digests["v2"]: [4], digests["clock"]: [6]}
    assert attestation_subject(entries[1]) == (VSA_TYPE, digests["v1"])
    assert attestation_subject(entries[2]) == (REVIEW_TYPE, digests["v1"])
    assert attestation_subject(entries[0]) is None  # a provenance attests to nothing
    assert attestation_subject(b"not an envelope") is None


def test_assembled_bundles_prove_against_the_current_checkpoint(world: UpdateWorld) -> None:
    signed = world.signed_checkpoint()
    for name, attestations in (("v1", [1, 2]), ("v2", [4]), ("clock", [6])):
        bundle = world.bundle(name)
        assert bundle.provenance.entry == world.releases[name].envelope.to_bytes()
        assert bundle.provenance.proof.index == world.releases[name].log_index
        assert [a.proof.index for a in bundle.attestations] == attestations
        assert {a.proof.checkpoint for a in (bundle.provenance, *bundle.attestations)} == {signed}


def test_overt_updates_bundle_writes_the_same_bundle(world: UpdateWorld, tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    code, stdout, stderr = cli("updates", "bundle", world.log_dir, "3", "--out", out)
    assert code == 0, stderr
    assert "provenance and 1 attestation(s)" in stdout
    assert out.read_bytes() == world.bundle("v2").to_bytes()
    # Over HTTP, with the log's key given.
    out2 = tmp_path / "b2.json"
    code, _, stderr = cli(
        "updates", "bundle", world.log_url, "3", "--log-key", world.log_vkey, "-o", out2
    )
    assert code == 0, stderr
    assert out2.read_bytes() == out.read_bytes()
    code, _, stderr = cli("updates", "bundle", world.log_url, "3", "-o", out2)
    assert code == 2 and "--log-key" in stderr


# --- overt verify ---------------------------------------------------------------------------


@pytest.fixture
def customer(world: UpdateWorld, tmp_path: Path) -> Path:
    return world.customer(tmp_path / "customer")


def _files(world: UpdateWorld, tmp_path: Path, release: str) -> tuple[Path, Path]:
    name, data = world.artifact(release)
    artifact = tmp_path / name
    artifact.write_bytes(data)
    bundle = tmp_path / f"{release}.bundle.json"
    bundle.write_bytes(world.bundle(release).to_bytes())
    return artifact, bundle


def test_verify_accepts_and_prints_every_check(
    world: UpdateWorld, customer: Path, tmp_path: Path
) -> None:
    artifact, bundle = _files(world, tmp_path, "v2")
    state = tmp_path / "state"
    args = ("verify", artifact, "--bundle", bundle, "--policy", customer, "--state", state)
    code, stdout, stderr = cli(*args)
    assert code == 0, stdout + stderr
    for check in (
        "provenance signature",
        "artifact digest",
        "logged",
        "witnessed",
        "fresh",
        "consistent view",
        "reproduced",
        "reviewed",
    ):
        assert f"ok {check}:" in flat(stdout)
    assert "accepted" in stdout
    assert "FAIL" not in stdout and stderr == ""
    # The checkpoint is remembered for gossip under --state.
    remembered = FileMemory(state).load(memory_identity(world.policy()))
    assert remembered == world.signed_checkpoint()
    # Offline, without gossip.
    code, stdout, _ = cli(*args[:-2], "--no-gossip")
    assert code == 0 and "no earlier checkpoint remembered" in stdout


def test_verify_refuses_a_swapped_artifact(
    world: UpdateWorld, customer: Path, tmp_path: Path
) -> None:
    artifact, bundle = _files(world, tmp_path, "v2")
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    code, stdout, stderr = cli(
        "verify", artifact, "--bundle", bundle, "--policy", customer, "--no-gossip"
    )
    assert code == 1
    assert "refused: artifact digest:" in flat(stderr)
    assert "this is not the artifact that was built" in flat(stderr)
    assert "FAIL artifact digest" in flat(stdout)
    assert "accepted" not in stdout


def test_verify_refuses_a_failed_rebuild(
    world: UpdateWorld, customer: Path, tmp_path: Path
) -> None:
    artifact, bundle = _files(world, tmp_path, "clock")
    code, _, stderr = cli(
        "verify", artifact, "--bundle", bundle, "--policy", customer, "--no-gossip"
    )
    assert code == 1
    assert "refused: reproduced:" in flat(stderr) and "reported FAILED" in flat(stderr)


def test_verify_malformed_input_exits_2(world: UpdateWorld, customer: Path, tmp_path: Path) -> None:
    artifact, bundle = _files(world, tmp_path, "v2")
    doc = json.loads(bundle.read_text())
    doc["provenance"]["entry"] = "***"
    bundle.write_text(json.dumps(doc))
    code, stdout, stderr = cli(
        "verify", artifact, "--bundle", bundle, "--policy", customer, "--no-gossip"
    )
    assert code == 2
    assert "provenance.entry is not valid base64" in flat(stderr)
    assert "accepted" not in stdout
    _, good = _files(world, tmp_path, "v2")
    for args, phrase in (
        (("--bundle", good, "--policy", tmp_path / "none.toml"), "none.toml"),
        (("--bundle", tmp_path / "none.json", "--policy", customer), "none.json"),
        (("--bundle", good, "--policy", customer, "--channel", "firmware"), "firmware"),
    ):
        code, _, stderr = cli("verify", artifact, *args, "--no-gossip")
        assert code == 2, args
        assert phrase in flat(stderr)


def test_entry_field_is_the_logged_bytes(world: UpdateWorld) -> None:
    doc = json.loads(world.bundle("v2").to_bytes())
    assert doc["provenance"]["entry"] == b64(world.entries()[3])

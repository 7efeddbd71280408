"""`overt demo`: builds a working deployment, explains it, serves it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from overt.crypto.keys import ed25519_verifier
from overt.demo.rules import SPY_RULE
from overt.log.remote import directory_fetcher
from overt.rules.release import load_ruleset
from overt.tlog.checkpoint import open_checkpoint
from overt.tlog.client import LogClient
from overt.tlog.hashing import leaf_hash
from overt.tlog.merkle import inclusion_proof, verify_inclusion
from overt.tlog.policy import Policy
from overt.tlog.proof import TlogProof
from overt.tlog.tiles import Tile, TileHashReader, decode_bundle

OVERT = [sys.executable, "-m", "overt.cli"]


def overt(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OVERT, *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    parent = tmp_path_factory.mktemp("demo")
    d = parent / "d"
    # A relative --dir, as `make demo` gives it.
    proc = subprocess.run(
        [*OVERT, "demo", "--dir", "d", "--no-serve"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=parent,
    )
    assert proc.returncode == 0, proc.stderr
    assert "offline verification passed" in proc.stdout
    assert "tampered copy of entry 42 is refused" in proc.stdout
    return d


def test_demo_layout(demo_dir: Path) -> None:
    for rel in [
        "logs/releases/log.vkey",
        "logs/releases/secrets/log.key",
        "logs/releases/tiles/checkpoint",
        "logs/releases/tiles/tile/0/000",
        "logs/releases/tiles/tile/entries/000",
        "witnesses/zurich/witness.vkey",
        "customer/releases.tlog-policy",
        "customer/proofs/entry-42.tlog-proof",
    ]:
        assert (demo_dir / rel).is_file(), rel
    assert (demo_dir / "logs/releases/secrets/log.key").stat().st_mode & 0o077 == 0


def logged_entry(log: Path, index: int) -> bytes:
    proc = subprocess.run(
        [*OVERT, "log", "get", str(log), str(index)], capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_demo_builds_a_release_through_the_conveyor_and_a_supervisor_rebuilds_it(
    demo_dir: Path,
) -> None:
    release = demo_dir / "conveyor" / "releases" / "hello-overt" / "1.0.0"
    provenance = release / "provenance.dsse.json"
    assert (release / "hello_overt-1.0.0-py3-none-any.whl").is_file()
    inspected = overt(
        "conveyor", "inspect", provenance, "--key", demo_dir / "conveyor" / "conveyor.vkey"
    )
    assert inspected.returncode == 0, inspected.stderr
    assert "hello-overt 1.0.0" in inspected.stdout
    # The supervisor's verdict is GOOD (VSA PASSED), and both attestations are logged.
    status = overt("rebuild", "status", demo_dir / "rebuilders" / "lucerne", "--json")
    assert status.returncode == 0, status.stderr
    (row,) = [
        r
        for r in json.loads(status.stdout)["releases"]
        if (r["name"], r["version"]) == ("hello-overt", "1.0.0")
    ]
    assert row["status"] == "GOOD"
    log = demo_dir / "logs" / "releases"
    assert logged_entry(log, row["index"]) == provenance.read_bytes()
    vsa = demo_dir / "rebuilders" / "lucerne" / "results" / str(row["index"]) / "vsa.dsse.json"
    assert logged_entry(log, row["vsa_index"]) == vsa.read_bytes()


def test_demo_customer_accepts_the_release_and_refuses_both_attacks(demo_dir: Path) -> None:
    customer = demo_dir / "customer"
    assert (demo_dir / "updates" / "metadata" / "1.root.json").is_file()
    assert (demo_dir / "updates" / "metadata" / "timestamp.json").is_file()
    assert (customer / "policy.toml").is_file()
    installed = sorted(p.name for p in (customer / "install" / "hello-overt").iterdir())
    # 1.0.0 first; after the conveyor moved, 1.1.0 built in Zurich replaced it.
    assert installed == ["hello_overt-1.1.0-py3-none-any.whl", "hello_overt-1.1.0.tar.gz"]
    refusals = [
        json.loads(line)["reason"]
        for name in ("tampered", "unlogged")
        for line in (demo_dir / "attacks" / name / "customer-state" / "refusals.jsonl")
        .read_text()
        .splitlines()
    ]
    assert not (customer / "state" / "refusals.jsonl").exists()
    assert any("this is not the artifact that was built" in r for r in refusals)
    assert any("not in the release log" in r for r in refusals)
    # The same decision, offline, from the command line.
    release = demo_dir / "conveyor" / "releases" / "hello-overt" / "1.0.0"
    args = ["--bundle", release / "bundle.json", "--policy", customer / "policy.toml"]
    wheel = release / "hello_overt-1.0.0-py3-none-any.whl"
    accepted = overt("verify", wheel, *args, "--no-gossip")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "reproduced" in accepted.stdout
    assert overt("policy", "check", customer / "policy.toml").returncode == 0


def test_demo_publishes_an_audited_rule_set_and_holds_back_the_spying_rule(
    demo_dir: Path,
) -> None:
    releases = demo_dir / "conveyor" / "releases" / "detection-db"
    statement = releases / "2024.5.0" / "ruleset.dsse.json"
    log = LogClient(
        directory_fetcher(demo_dir / "logs" / "releases" / "tiles"),
        log_key=ed25519_verifier((demo_dir / "logs/releases/log.vkey").read_text().strip()),
    )
    log.update()
    entries = [e for _, e in log.entries()]
    assert statement.read_bytes() in entries  # logged, byte for byte
    clean = load_ruleset(releases / "2024.5.0")
    assert clean.flagged == [] and clean.targeted == [] and len(clean.rules) == 6
    installed = demo_dir / "customer" / "install" / "detection-db"
    assert [p.name for p in installed.iterdir()] == ["detection-db-2024.5.0.tar.gz"]
    # 2024.6.0's statement is logged too: the targeting is public, and the rule is flagged.
    spying = load_ruleset(releases / "2024.6.0")
    assert (releases / "2024.6.0" / "ruleset.dsse.json").read_bytes() in entries
    assert [r.name for r in spying.targeted] == [SPY_RULE]
    assert [r.name for r in spying.flagged] == [SPY_RULE]
    assert spying.targeted[0].audience == ("country:DE",)
    # It was never published: the channel still offers 2024.5.0.
    status = overt("updates", "status", demo_dir / "updates")
    assert status.returncode == 0, status.stderr
    index = json.loads(status.stdout[status.stdout.index("{") :])
    assert index["rules"]["detection-db"]["version"] == "2024.5.0"
    assert "2024.6.0" not in status.stdout


def test_demo_proof_verifies_with_the_cli(demo_dir: Path) -> None:
    proofs = demo_dir / "customer" / "proofs"
    proc = overt(
        "tlog",
        "verify-proof",
        proofs / "entry-42.tlog-proof",
        "--policy",
        demo_dir / "customer" / "releases.tlog-policy",
        "--entry",
        proofs / "entry-42.json",
    )
    assert proc.returncode == 0, proc.stderr
    assert "cosigned by witness zurich" in proc.stdout
    vkey = (demo_dir / "logs/releases/log.vkey").read_text().strip()
    ok = overt("note", "verify", "--key", vkey, demo_dir / "logs/releases/tiles/checkpoint")
    assert ok.returncode == 0


def test_demo_rebuilds_its_own_dir_but_refuses_others(tmp_path: Path) -> None:
    d = tmp_path / "d"
    assert overt("demo", "--dir", d, "--no-serve").returncode == 0
    first = (d / "logs/releases/log.vkey").read_text()
    assert overt("demo", "--dir", d, "--no-serve").returncode == 0
    assert (d / "logs/releases/log.vkey").read_text() != first  # fresh keys
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.txt").write_text("do not delete")
    proc = overt("demo", "--dir", other, "--no-serve")
    assert proc.returncode == 2
    assert "not made by 'overt demo'" in proc.stderr
    assert (other / "thesis.txt").read_text() == "do not delete"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_serves_tiles_a_client_can_verify(tmp_path: Path) -> None:
    port = _free_port()
    d = tmp_path / "served"
    proc = subprocess.Popen(
        [*OVERT, "demo", "--dir", str(d), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/logs/releases"
    try:
        # The demo is built once its proof exists; it keeps serving after that.
        deadline = time.monotonic() + 180
        while not (d / "customer/proofs/entry-42.tlog-proof").exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the demo did not finish building"
            time.sleep(0.2)
        # Once everything is up, the demo prints the dashboard's URL, and serves it there.
        assert proc.stdout is not None
        printed = ""
        while "Dashboard: " not in printed:
            line = proc.stdout.readline().decode()
            assert line, "the demo ended without printing the dashboard's URL"
            printed += line
        assert f"Dashboard: http://127.0.0.1:{port}/" in printed
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert page.status_code == 200 and "<h1>Overview</h1>" in page.text
        resp = httpx.get(f"{base}/checkpoint", timeout=5)
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/plain; charset=utf-8"
        log_key = ed25519_verifier((d / "logs/releases/log.vkey").read_text().strip())
        verified = open_checkpoint(resp.text, log_key)
        size = verified.checkpoint.size
        # The customer's proof carries the witnesses' cosignatures.
        policy = Policy.parse((d / "customer/releases.tlog-policy").read_bytes())
        proof = TlogProof.parse((d / "customer/proofs/entry-42.tlog-proof").read_bytes())
        # (the log has grown since: releases, verdicts and reviews were added after it)
        assert policy.verify_checkpoint(proof.checkpoint).checkpoint.size <= size

        with httpx.Client(base_url=base, timeout=5) as client:

            def fetch(tiles: Sequence[Tile]) -> list[bytes]:
                out = []
                for t in tiles:
                    r = client.get("/" + t.path())
                    assert r.status_code == 200
                    assert r.headers["content-type"] == "application/octet-stream"
                    out.append(r.content)
                return out

            reader = TileHashReader(size, fetch)
            entries = client.get("/tile/entries/003.p/232")
            assert entries.status_code == 200
            assert client.get("/tile/0/x/..").status_code in (400, 404)
            assert client.get("/tile/0/0000").status_code == 400
            assert client.get("/tile/0/999").status_code == 404
            assert client.get("/entry/42").json()["index"] == 42
            entry = decode_bundle(entries.content, 232)[10]
            index = 3 * 256 + 10
            proof = inclusion_proof(reader, index, size)
            assert reader.tiles_fetched <= 3
        verify_inclusion(leaf_hash(entry), index, size, proof, verified.checkpoint.root_hash)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_demo_moves_the_conveyor_and_refuses_the_retired_keys_release(demo_dir: Path) -> None:
    transition = demo_dir / "conveyor-zurich" / "transition.dsse.json"
    assert transition.is_file()
    assert "retired" in (demo_dir / "conveyor" / "conveyor.toml").read_text()
    policy = (demo_dir / "customer" / "policy.toml").read_text()
    assert "[[conveyors.retired]]" in policy and 'jurisdiction = "CH"' in policy
    refusals = demo_dir / "attacks" / "retired-key" / "customer-state" / "refusals.jsonl"
    reasons = [json.loads(line)["reason"] for line in refusals.read_text().splitlines()]
    assert any("conveyor key" in r and "retired" in r for r in reasons)

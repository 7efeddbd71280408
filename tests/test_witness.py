"""The witness as a log (or anyone) talks to it: C2SP tlog-witness over HTTP.

Every status code add-checkpoint can answer, the monitoring endpoint, the
durable state behind them, the `overt witness` CLI, and concurrent submissions.
"""

from __future__ import annotations

import base64
import hashlib
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from overt.crypto.keys import (
    SIG_COSIGNATURE_V1,
    Ed25519Signer,
    VerifierKey,
    ed25519_verifier,
)
from overt.crypto.note import Signature, open_note, split
from overt.log.config import LogConfig
from overt.log.log import Log, init_log
from overt.tlog.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from overt.tlog.cosignature import CosignatureVerifier, cosignature_timestamp
from overt.tlog.hashing import EMPTY_ROOT
from overt.tlog.merkle import MemoryTree, consistency_proof
from overt.tlog.policy import Policy
from overt.tlog.witness import origin_hash
from overt.web.witness_api import create_witness_app
from overt.witness.store import WitnessStore
from overt.witness.witness import Witness, WitnessRefusal, init_witness

OVERT = [sys.executable, "-m", "overt.cli"]
WITNESS_NAME = "witness.example/w1"
ORIGIN = "example.com/overt/witnessed"


# --- helpers ---------------------------------------------------------------


class TreeLog:
    """A log held in memory: a Merkle tree and a key, signing any size on demand."""

    def __init__(
        self,
        origin: str = ORIGIN,
        n: int = 64,
        seed: str = "a",
        signer: Ed25519Signer | None = None,
    ) -> None:
        self.origin = origin
        self.signer = signer or Ed25519Signer.generate(origin)
        self.tree = MemoryTree()
        self.tree.extend([f"{seed} entry {i}".encode() for i in range(n)])

    @property
    def vkey(self) -> str:
        return str(self.signer.verifier_key())

    def checkpoint(self, size: int) -> Checkpoint:
        return Checkpoint(self.origin, size, self.tree.root(size))

    def signed(self, size: int) -> str:
        return sign_checkpoint(self.checkpoint(size), [self.signer])

    def proof(self, old: int, new: int) -> list[bytes]:
        return consistency_proof(self.tree, old, new)

    def body(self, old: int, size: int, proof: Sequence[bytes] | None = None) -> bytes:
        if proof is None:
            proof = self.proof(old, size) if 0 < old < size else []
        return request_body(old, proof, self.signed(size))


def request_body(old: int | str, proof: Sequence[bytes], signed: str) -> bytes:
    lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + signed).encode()


@dataclass
class WitnessEnv:
    dir: Path
    vkey: str
    client: TestClient
    log: TreeLog

    @property
    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self.vkey)

    def post(self, body: bytes) -> httpx.Response:
        return self.client.post("/add-checkpoint", content=body)

    def view(self) -> tuple[int, bytes | None]:
        store = WitnessStore(self.dir / "witness.db")
        try:
            v = store.log(self.log.origin)
            assert v is not None
            return v.size, v.root
        finally:
            store.close()


def _no_500(response: httpx.Response) -> None:
    if response.status_code >= 500:
        response.read()
        raise AssertionError(f"HTTP {response.status_code}: {response.text}")


def new_witness(root: Path, name: str = WITNESS_NAME) -> tuple[Path, str]:
    vkey = init_witness(root, name)
    return root, vkey


def add_log(witness_dir: Path, origin: str, vkeys: list[str]) -> None:
    w = Witness(witness_dir)
    try:
        w.add_log(origin, vkeys)
    finally:
        w.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[WitnessEnv]:
    wdir, vkey = new_witness(tmp_path / "witness")
    log = TreeLog()
    add_log(wdir, log.origin, [log.vkey])
    with TestClient(create_witness_app(wdir), raise_server_exceptions=False) as client:
        client.event_hooks["response"].append(_no_500)
        yield WitnessEnv(wdir, vkey, client, log)


@pytest.fixture
def at5(env: WitnessEnv) -> WitnessEnv:
    """A witness that has cosigned size 5 of the log."""
    resp = env.post(env.log.body(0, 5))
    assert resp.status_code == 200, resp.text
    assert env.view() == (5, env.log.tree.root(5))
    return env


def cosignatures_verify(signed: str, answer: str, verifier: CosignatureVerifier) -> Signature:
    """The 200 answer's lines are note signatures; ours verifies over the checkpoint."""
    assert answer, "empty 200 answer"
    assert answer.endswith("\n")
    for line in answer.splitlines():
        assert line.startswith("\u2014 "), line
    text, _ = split(signed)
    note = open_note(text + "\n" + answer, [verifier])
    assert len(note.verified) == 1
    sig = note.verified[0]
    assert cosignature_timestamp(sig.signature) != 0
    return sig


def assert_refused(env: WitnessEnv, body: bytes, status: int) -> httpx.Response:
    before = env.view()
    resp = env.post(body)
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert "\u2014" not in resp.text, "a refusal must not carry a cosignature"
    assert env.view() == before, "a refused request changed the witness's view"
    return resp


# --- 200 -------------------------------------------------------------------


def test_cosigns_and_persists_then_serves_latest(env: WitnessEnv) -> None:
    log = env.log
    before = int(time.time())
    resp = env.post(log.body(0, 5))
    assert resp.status_code == 200, resp.text
    sig = cosignatures_verify(log.signed(5), resp.text, env.verifier)
    ts = cosignature_timestamp(sig.signature)
    assert before - 5 <= ts <= time.time() + 5

    resp = env.post(log.body(5, 23))
    assert resp.status_code == 200, resp.text
    cosignatures_verify(log.signed(23), resp.text, env.verifier)
    # Re-submitting the same tree (old == size, same root, no proof) is cosigned again.
    resp = env.post(log.body(23, 23))
    assert resp.status_code == 200, resp.text
    cosignatures_verify(log.signed(23), resp.text, env.verifier)
    last_answer = resp.text

    # Persisted: a fresh Witness opened on the directory sees size 23.
    w = Witness(env.dir)
    try:
        view = w.store.log(log.origin)
        assert view is not None
        assert (view.size, view.root) == (23, log.tree.root(23))
        sizes = [s for s, _, _ in w.store.history(log.origin)]
        assert sorted(sizes) == [5, 23]
        latest = w.latest(log.origin)
        assert latest is not None
    finally:
        w.close()

    # The monitoring endpoint serves the same checkpoint, with both signatures.
    got = env.client.get(f"/{origin_hash(log.origin)}/checkpoint")
    assert got.status_code == 200
    assert got.text == latest
    # It carries exactly the cosignature the last add-checkpoint returned.
    assert last_answer in got.text
    opened = open_checkpoint(got.text, ed25519_verifier(log.vkey), [env.verifier])
    assert opened.checkpoint == log.checkpoint(23)
    assert opened.note.signed_by(WITNESS_NAME, env.verifier.key_id)
    # And a tlog-policy requiring this witness accepts it.
    policy = Policy.parse(f"log {log.vkey}\nwitness w1 {env.vkey}\nquorum w1\n")
    verified = policy.verify_checkpoint(got.text)
    assert verified.checkpoint.size == 23 and "w1" in verified.cosigners

    status = env.client.get("/status").json()
    assert status["name"] == WITNESS_NAME
    assert status["vkey"] == env.vkey
    (entry,) = status["logs"]
    assert entry["origin"] == log.origin
    assert entry["origin_hash"] == hashlib.sha256(log.origin.encode()).hexdigest()
    assert entry["size"] == 23
    assert base64.b64decode(entry["root"]) == log.tree.root(23)
    assert entry["keys"] == [log.vkey]


def test_cosigns_with_a_real_log(tmp_path: Path) -> None:
    """Checkpoints and consistency proofs made by `Log` itself are accepted."""
    wdir, vkey = new_witness(tmp_path / "w")
    log_dir = tmp_path / "log"
    log_vkey = init_log(log_dir, LogConfig(origin="example.com/overt/real"))
    add_log(wdir, "example.com/overt/real", [log_vkey])
    verifier = CosignatureVerifier(vkey)
    with TestClient(create_witness_app(wdir)) as client, Log(log_dir) as log:
        old = 0
        for batch in (3, 250, 1, 300):
            n = log.checkpoint.size
            log.add([f"real {n + i}".encode() for i in range(batch)])
            size = log.checkpoint.size
            proof = log.consistency_proof(old, size) if old else []
            signed = log.signed_checkpoint().decode()
            resp = client.post("/add-checkpoint", content=request_body(old, proof, signed))
            assert resp.status_code == 200, resp.text
            cosignatures_verify(signed, resp.text, verifier)
            old = size
        assert old == 554


def test_extra_signatures_from_unknown_keys_are_ignored(env: WitnessEnv) -> None:
    log = env.log
    stranger = Ed25519Signer.generate("someone.example/else")
    signed = sign_checkpoint(log.checkpoint(4), [log.signer, stranger])
    resp = env.post(request_body(0, [], signed))
    assert resp.status_code == 200, resp.text
    cosignatures_verify(signed, resp.text, env.verifier)
    # The stored note keeps the log's verified signature and ours, not the stranger's.
    got = env.client.get(f"/{origin_hash(log.origin)}/checkpoint").text
    names = {s.name for s in split(got)[1]}
    assert names == {log.origin, WITNESS_NAME}


# --- 404 / 403 -------------------------------------------------------------


def test_unknown_origin_is_404(env: WitnessEnv) -> None:
    other = TreeLog(origin="example.com/overt/unknown")
    assert_refused(env, other.body(0, 3), 404)


def test_no_trusted_signature_is_403(at5: WitnessEnv) -> None:
    log = at5.log
    impostor = TreeLog(origin=log.origin)  # same origin, another key
    impostor.tree = log.tree
    assert_refused(at5, impostor.body(5, 9, log.proof(5, 9)), 403)


def test_invalid_signature_from_known_key_is_403(at5: WitnessEnv) -> None:
    log = at5.log
    text, sigs = split(log.signed(9))
    (sig,) = sigs
    bad = bytearray(sig.signature)
    bad[10] ^= 1
    forged = text + "\n" + Signature(sig.name, sig.key_id, bytes(bad)).line()
    assert_refused(at5, request_body(5, log.proof(5, 9), forged), 403)
    # A known key's line whose signature is too short to be one.
    short = text + "\n" + Signature(sig.name, sig.key_id, b"\x01").line()
    assert_refused(at5, request_body(5, log.proof(5, 9), short), 403)
    # The checkpoint text changed after signing: the known key's line no longer verifies.
    tampered_text = log.checkpoint(10).text()
    assert_refused(at5, request_body(5, log.proof(5, 10), tampered_text + "\n" + sig.line()), 403)


def test_bad_signature_from_one_known_key_fails_even_with_a_good_one(tmp_path: Path) -> None:
    """signed-note: a known key's failing signature rejects the note (403)."""
    wdir, _ = new_witness(tmp_path / "w")
    log = TreeLog()
    second = Ed25519Signer.generate(log.origin)
    add_log(wdir, log.origin, [log.vkey, str(second.verifier_key())])
    good = sign_checkpoint(log.checkpoint(3), [log.signer])
    _, sigs = split(sign_checkpoint(log.checkpoint(3), [second]))
    broken = Signature(sigs[0].name, sigs[0].key_id, bytes(64))
    with TestClient(create_witness_app(wdir)) as client:
        resp = client.post("/add-checkpoint", content=request_body(0, [], good + broken.line()))
        assert resp.status_code == 403, resp.text
        # The second trusted key alone is enough.
        signed = sign_checkpoint(log.checkpoint(3), [second])
        resp = client.post("/add-checkpoint", content=request_body(0, [], signed))
        assert resp.status_code == 200, resp.text


# --- 400 -------------------------------------------------------------------


def test_old_size_beyond_checkpoint_is_400(at5: WitnessEnv) -> None:
    log = at5.log
    assert_refused(at5, request_body(9, [], log.signed(7)), 400)
    assert_refused(at5, request_body(6, [], log.signed(5)), 400)


def non_canonical(b64: str) -> str:
    """The same 32 bytes in base64 with a non-zero padding bit (decoders may accept it)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    assert b64.endswith("=") and not b64.endswith("==")
    last = alphabet.index(b64[-2])
    return b64[:-2] + alphabet[last | 1] + "="


def _malformed_bodies(log: TreeLog) -> dict[str, bytes]:
    signed = log.signed(9)
    proof = [base64.b64encode(h).decode() for h in log.proof(5, 9)]
    good_head = "old 5\n" + "".join(p + "\n" for p in proof)
    cases = {
        "no blank line": (good_head + signed).encode(),
        "no old line": ("\n".join(proof) + "\n\n" + signed).encode(),
        "old without size": ("old\n" + "\n".join(proof) + "\n\n" + signed).encode(),
        "old with empty size": ("old \n\n" + signed).encode(),
        "negative old": ("old -5\n\n" + signed).encode(),
        "plus sign": ("old +5\n\n" + signed).encode(),
        "hex old": ("old 0x5\n\n" + signed).encode(),
        "two spaces": ("old  5\n\n" + signed).encode(),
        "trailing space": ("old 5 \n\n" + signed).encode(),
        "capitalised": ("Old 5\n\n" + signed).encode(),
        "leading zero": ("old 05\n" + "\n".join(proof) + "\n\n" + signed).encode(),
        "double zero": ("old 00\n\n" + signed).encode(),
        "too large old": ("old 99999999999999999999\n\n" + signed).encode(),
        "not base64": (good_head + "not*base64!\n\n" + signed).encode(),
        "non-canonical base64": (
            "old 5\n" + "".join(non_canonical(p) + "\n" for p in proof) + "\n" + signed
        ).encode(),
        "short hash": (good_head + base64.b64encode(bytes(31)).decode() + "\n\n" + signed).encode(),
        "64 proof lines": (
            "old 5\n" + (base64.b64encode(bytes(32)).decode() + "\n") * 64 + "\n" + signed
        ).encode(),
        "CRLF": (good_head + "\n" + signed).replace("\n", "\r\n").encode(),
        "not UTF-8": (b"old 5\n\n\xff\xfe" + signed.encode()),
        "checkpoint without signatures": ("old 5\n\n" + log.checkpoint(9).text()).encode(),
        "garbage checkpoint": b"old 5\n\nthis is not a checkpoint\n\n\xe2\x80\x94 x AAAA\n",
        "empty": b"",
        "huge": (good_head + "\n" + signed + "x" * (70 * 1024)).encode(),
    }
    return cases


def test_malformed_bodies_are_400(at5: WitnessEnv) -> None:
    for name, body in _malformed_bodies(at5.log).items():
        resp = at5.post(body)
        assert resp.status_code == 400, (name, resp.status_code, resp.text)
        assert at5.view() == (5, at5.log.tree.root(5)), name
    # The well-formed version of the same request still works afterwards.
    resp = at5.post(at5.log.body(5, 9))
    assert resp.status_code == 200, resp.text


def test_63_proof_lines_parse_but_do_not_verify(at5: WitnessEnv) -> None:
    """63 lines is the limit a client may send: a well-formed request, a bad proof (422)."""
    body = request_body(5, [bytes([i]) * 32 for i in range(63)], at5.log.signed(9))
    assert_refused(at5, body, 422)


def test_huge_streamed_body_is_400(at5: WitnessEnv) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"old 5\n"
        for _ in range(200):
            yield b"A" * 1024

    resp = at5.client.post("/add-checkpoint", content=chunks())
    assert resp.status_code == 400


# --- 409 -------------------------------------------------------------------


@pytest.mark.parametrize("old", [0, 3, 4, 6, 9])
def test_wrong_old_size_is_409_with_the_witness_size(at5: WitnessEnv, old: int) -> None:
    log = at5.log
    resp = assert_refused(at5, log.body(old, 9), 409)
    assert resp.content == b"5\n"
    assert resp.headers["content-type"].split(";")[0].strip() == "text/x.tlog.size"


def test_409_content_type_is_exactly_the_spec_media_type(at5: WitnessEnv) -> None:
    """Regression (found by this test, since fixed in src): tlog-witness says
    the 409 response MUST have a Content-Type of `text/x.tlog.size`; the witness
    answered `text/x.tlog.size; charset=utf-8` (Starlette appends a charset to
    every text/* media type). Go clients compare the header verbatim (e.g.
    sigsum-go's processConflictResponse rejects "text/x.tlog.size; charset=utf8"),
    so they would not recognise the 409, never learn the witness's size, and a
    log could not resynchronise with the witness.
    """
    resp = at5.post(at5.log.body(0, 9))
    assert resp.status_code == 409
    assert resp.headers["content-type"] == "text/x.tlog.size"


def test_409_for_a_fresh_log_reports_zero(env: WitnessEnv) -> None:
    resp = assert_refused(env, env.log.body(3, 9), 409)
    assert resp.content == b"0\n"


def test_409_answer_lets_a_client_resync(at5: WitnessEnv) -> None:
    log = at5.log
    resp = at5.post(log.body(0, 40))
    assert resp.status_code == 409
    old = int(resp.text)
    resp = at5.post(log.body(old, 40))
    assert resp.status_code == 200, resp.text
    assert at5.view() == (40, log.tree.root(40))


# --- 422 -------------------------------------------------------------------


def refusal_count(env: WitnessEnv) -> int:
    store = WitnessStore(env.dir / "witness.db")
    try:
        return len([r for r in store.refusals(1000) if r[2] == 422])
    finally:
        store.close()


def test_bad_consistency_proof_is_422_and_recorded(at5: WitnessEnv) -> None:
    log = at5.log
    proof = log.proof(5, 9)
    bad = [*proof[:-1], hashlib.sha256(b"nope").digest()]
    assert_refused(at5, log.body(5, 9, bad), 422)
    assert_refused(at5, log.body(5, 9, proof[:-1]), 422)  # too short
    assert_refused(at5, log.body(5, 9, [*proof, proof[0]]), 422)  # too long
    assert_refused(at5, log.body(5, 9, []), 422)  # missing
    assert_refused(at5, log.body(5, 9, log.proof(5, 10)), 422)  # proof for another size
    refusals = WitnessStore(at5.dir / "witness.db")
    try:
        rows = refusals.refusals(100)
    finally:
        refusals.close()
    assert len(rows) == 5
    assert all(origin == log.origin and status == 422 for origin, _, status, _ in rows)


def test_fork_is_422_and_recorded(at5: WitnessEnv) -> None:
    log = at5.log
    fork = TreeLog(origin=log.origin, seed="b", signer=log.signer)  # same key, other entries
    # Same size, different root.
    assert_refused(at5, fork.body(5, 5), 422)
    # A larger tree of the other branch, with its own (valid for it) proof.
    assert_refused(at5, fork.body(5, 12, fork.proof(5, 12)), 422)
    # Same size and root, but a proof where none belongs.
    assert_refused(at5, log.body(5, 5, [hashlib.sha256(b"x").digest()]), 422)
    assert refusal_count(at5) == 3
    # The honest log still gets cosigned.
    assert at5.post(log.body(5, 12)).status_code == 200


def test_old_zero_with_a_proof_is_422(env: WitnessEnv) -> None:
    log = env.log
    assert_refused(env, log.body(0, 9, log.proof(4, 9)), 422)
    assert refusal_count(env) == 1


def test_size_zero_needs_the_empty_root(env: WitnessEnv) -> None:
    log = env.log
    bogus = sign_checkpoint(Checkpoint(log.origin, 0, hashlib.sha256(b"x").digest()), [log.signer])
    assert_refused(env, request_body(0, [], bogus), 422)
    assert refusal_count(env) == 1
    empty = sign_checkpoint(Checkpoint(log.origin, 0, EMPTY_ROOT), [log.signer])
    resp = env.post(request_body(0, [], empty))
    assert resp.status_code == 200, resp.text
    cosignatures_verify(empty, resp.text, env.verifier)


def test_other_refusals_do_not_pile_up_as_evidence(at5: WitnessEnv) -> None:
    """Only validly signed, inconsistent requests (422) are kept as evidence."""
    log = at5.log
    at5.post(log.body(0, 9))  # 409
    at5.post(request_body(9, [], log.signed(7)))  # 400
    at5.post(TreeLog(origin=log.origin).body(5, 9, log.proof(5, 9)))  # 403
    assert refusal_count(at5) == 0


# --- monitoring endpoint ---------------------------------------------------


def test_latest_checkpoint_endpoint(env: WitnessEnv) -> None:
    hashed = origin_hash(env.log.origin)
    assert env.client.get(f"/{hashed}/checkpoint").status_code == 404  # known, never cosigned
    assert env.client.get(f"/{'0' * 64}/checkpoint").status_code == 404  # unknown
    for bad in (hashed.upper(), hashed[:-1], hashed + "0", "z" * 64, "..", "%2e%2e"):
        resp = env.client.get(f"/{bad}/checkpoint")
        assert resp.status_code in (400, 404), (bad, resp.status_code)
    for bad in (hashed.upper(), hashed[:-1], hashed + "0", "g" * 64):
        assert env.client.get(f"/{bad}/checkpoint").status_code == 400, bad

    assert env.post(env.log.body(0, 7)).status_code == 200
    resp = env.client.get(f"/{hashed}/checkpoint")
    assert resp.status_code == 200
    opened = open_checkpoint(resp.text, ed25519_verifier(env.log.vkey), [env.verifier])
    assert opened.checkpoint.size == 7
    assert opened.note.signed_by(WITNESS_NAME, env.verifier.key_id)
    # A refused request does not change what is served.
    env.post(TreeLog(origin=env.log.origin, seed="b", signer=env.log.signer).body(7, 7))
    assert env.client.get(f"/{hashed}/checkpoint").text == resp.text


# --- CLI -------------------------------------------------------------------


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*OVERT, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_cli_init_add_log_status(tmp_path: Path) -> None:
    wdir = tmp_path / "w"
    proc = run("witness", "init", wdir, "--name", "witness.example/cli")
    assert proc.returncode == 0, proc.stderr
    vkey = VerifierKey.parse(proc.stdout.strip())
    assert vkey.name == "witness.example/cli"
    assert vkey.sig_type == SIG_COSIGNATURE_V1
    assert base64.b64decode(proc.stdout.strip().split("+", 2)[2])[0] == 0x04
    assert (wdir / "witness.vkey").read_text().strip() == proc.stdout.strip()
    assert (wdir / "secrets" / "witness.key").stat().st_mode & 0o077 == 0

    log = TreeLog()
    key_file = tmp_path / "log.vkey"
    key_file.write_text(log.vkey + "\n")
    proc = run("witness", "add-log", wdir, "--origin", log.origin, "--key", key_file)
    assert proc.returncode == 0, proc.stderr
    # A cosignature key is not a log key.
    proc = run("witness", "add-log", wdir, "--origin", "x.example/y", "--key", str(vkey))
    assert proc.returncode == 2, proc.stdout

    w = Witness(wdir)
    try:
        w.add_checkpoint(log.body(0, 17))
        with pytest.raises(WitnessRefusal) as info:
            w.add_checkpoint(TreeLog(origin=log.origin, seed="b", signer=log.signer).body(17, 17))
        assert info.value.status == 422
    finally:
        w.close()

    proc = run("witness", "status", wdir)
    assert proc.returncode == 0, proc.stderr
    assert str(vkey) in proc.stdout
    assert log.origin in proc.stdout and "size 17" in proc.stdout
    assert origin_hash(log.origin) in proc.stdout
    assert "refused" in proc.stdout and "422" in proc.stdout

    # init refuses an existing witness.
    assert run("witness", "init", wdir, "--name", "witness.example/again").returncode == 2


# --- concurrency -----------------------------------------------------------


def _assert_history_sound(witness_dir: Path, log: TreeLog) -> None:
    db = sqlite3.connect(witness_dir / "witness.db")
    try:
        rows = db.execute(
            "SELECT size, root FROM cosigned WHERE origin = ? ORDER BY id", (log.origin,)
        ).fetchall()
    finally:
        db.close()
    sizes = [int(r[0]) for r in rows]
    assert len(sizes) == len(set(sizes)), "two roots recorded for one size"
    assert sizes == sorted(sizes), f"the witness went backwards: {sizes}"
    for size, root in rows:
        assert bytes(root) == log.tree.root(int(size)), f"size {size}: a root not in the log"
    store = WitnessStore(witness_dir / "witness.db")
    try:
        view = store.log(log.origin)
    finally:
        store.close()
    assert view is not None
    assert view.size == sizes[-1]
    assert view.root == log.tree.root(view.size)


def test_concurrent_add_checkpoint_over_http(env: WitnessEnv) -> None:
    log = env.log
    hint = [0]
    hint_lock = threading.Lock()
    got: list[tuple[int, str]] = []
    errors: list[str] = []

    def worker(targets: list[int]) -> None:
        for size in targets:
            for _ in range(50):
                with hint_lock:
                    old = hint[0]
                if old > size:
                    break  # the witness is past this size: nothing to ask
                resp = env.post(log.body(old, size))
                if resp.status_code == 200:
                    got.append((size, resp.text))
                    with hint_lock:
                        hint[0] = max(hint[0], size)
                    break
                if resp.status_code == 409:
                    with hint_lock:
                        hint[0] = max(hint[0], int(resp.text))
                    continue
                errors.append(f"{size}: HTTP {resp.status_code} {resp.text}")
                break

    sizes = list(range(1, 64))
    random.Random(7).shuffle(sizes)
    threads = [threading.Thread(target=worker, args=(sizes[i::12],)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert got
    for size, answer in got:
        cosignatures_verify(log.signed(size), answer, env.verifier)
    _assert_history_sound(env.dir, log)
    store = WitnessStore(env.dir / "witness.db")
    try:
        assert {s for s, _ in got} == {s for s, _, _ in store.history(log.origin, 1000)}
    finally:
        store.close()


def test_concurrent_add_checkpoint_on_one_witness_object(tmp_path: Path) -> None:
    """Threads call Witness.add_checkpoint directly (no HTTP lock), honest and forked."""
    wdir, vkey = new_witness(tmp_path / "w")
    log = TreeLog(n=128)
    fork = TreeLog(origin=log.origin, n=128, seed="fork", signer=log.signer)
    add_log(wdir, log.origin, [log.vkey])
    witness = Witness(wdir)
    verifier = CosignatureVerifier(vkey)
    witness.add_checkpoint(log.body(0, 1))
    results: list[tuple[str, int, list[Signature]]] = []
    unexpected: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        tree = fork if seed % 4 == 0 else log
        barrier.wait()
        for _ in range(40):
            size = rng.randint(1, 128)
            view = witness.store.log(log.origin)
            assert view is not None
            old = min(view.size, size)
            try:
                sigs = witness.add_checkpoint(tree.body(old, size))
            except WitnessRefusal as refusal:
                if refusal.status not in (409, 422):
                    unexpected.append(f"{refusal.status} {refusal}")
                continue
            except Exception as exc:  # a crash in a thread must fail the test
                unexpected.append(repr(exc))
                continue
            with lock:
                results.append(("fork" if tree is fork else "log", size, sigs))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not unexpected, unexpected
        assert results
        for which, size, sigs in results:
            assert which == "log", f"a forked checkpoint of size {size} was cosigned"
            text = log.checkpoint(size).text()
            note = open_note(text + "\n" + "".join(s.line() for s in sigs), [verifier])
            assert note.verified
        _assert_history_sound(wdir, log)
        assert witness.store.refusals(1000), "forked requests should be kept as evidence"
    finally:
        witness.close()

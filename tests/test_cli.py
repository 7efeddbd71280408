"""The `overt` command as a user runs it: exit codes, messages, files."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from overt.crypto.keys import SIG_COSIGNATURE_V1, Ed25519Signer
from overt.crypto.note import sign_note
from overt.tlog.hashing import leaf_hash
from overt.tlog.merkle import MemoryTree, consistency_proof, inclusion_proof

OVERT = [sys.executable, "-m", "overt.cli"]


def run(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*OVERT, *map(str, args)],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_version_and_help() -> None:
    assert run("--version").stdout.startswith("overt ")
    out = run("--help").stdout
    for group in ("keys", "note", "tlog", "demo"):
        assert group in out
    assert "Exit codes" in out


def test_keys_generate_writes_private_key_0600_and_prints_vkey(tmp_path: Path) -> None:
    key = tmp_path / "log.key"
    proc = run("keys", "generate", "example.com/acme/releases", "--out", key)
    assert proc.returncode == 0, proc.stderr
    vkey = proc.stdout.strip()
    assert vkey.startswith("example.com/acme/releases+")
    assert len(proc.stdout.strip().splitlines()) == 1
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().startswith("PRIVATE+KEY+example.com/acme/releases+")
    assert run("keys", "public", key).stdout.strip() == vkey
    shown = run("keys", "show", key).stdout
    assert "ed25519" in shown and vkey in shown


def test_keys_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    key = tmp_path / "k"
    assert run("keys", "generate", "a.example/k", "--out", key).returncode == 0
    before = key.read_bytes()
    proc = run("keys", "generate", "a.example/k", "--out", key)
    assert proc.returncode == 2
    assert "refusing to overwrite" in proc.stderr
    assert key.read_bytes() == before


def test_keys_generate_witness_type(tmp_path: Path) -> None:
    proc = run("keys", "generate", "w.example/1", "--out", tmp_path / "w", "--type", "witness")
    assert proc.returncode == 0
    raw = base64.b64decode(proc.stdout.strip().split("+", 2)[2])
    assert raw[0] == SIG_COSIGNATURE_V1


@pytest.mark.parametrize("name", ["bad name", "plus+sign", ""])
def test_keys_generate_rejects_bad_names(tmp_path: Path, name: str) -> None:
    proc = run("keys", "generate", name, "--out", tmp_path / "k")
    assert proc.returncode == 2
    assert "key name" in proc.stderr
    assert not (tmp_path / "k").exists()


def test_keys_public_refuses_world_readable_key(tmp_path: Path) -> None:
    key = tmp_path / "k"
    run("keys", "generate", "a.example/k", "--out", key)
    os.chmod(key, 0o644)
    proc = run("keys", "public", key)
    assert proc.returncode == 2
    assert "too open" in proc.stderr


def test_note_sign_and_verify_round_trip(tmp_path: Path) -> None:
    key = tmp_path / "k"
    vkey = run("keys", "generate", "example.com/signer", "--out", key).stdout.strip()
    text = tmp_path / "msg"
    text.write_text("release 1.2.3\nsha256 abc\n")
    signed = run("note", "sign", key, text)
    assert signed.returncode == 0
    assert signed.stdout.startswith("release 1.2.3\nsha256 abc\n\n\u2014 example.com/signer ")
    note = tmp_path / "note"
    note.write_text(signed.stdout)
    ok = run("note", "verify", "--key", vkey, note)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "release 1.2.3\nsha256 abc\n"
    # the same through standard input, and with the vkey given as a file
    vkey_file = tmp_path / "k.vkey"
    vkey_file.write_text(vkey + "\n")
    assert run("note", "sign", key, stdin=b"stdin text\n").returncode == 0
    assert run("note", "verify", "--key", vkey_file, stdin=note.read_bytes()).returncode == 0


def test_note_verify_exit_codes(tmp_path: Path) -> None:
    signer = Ed25519Signer.generate("example.com/a")
    other = Ed25519Signer.generate("example.com/b")
    note = sign_note("hello\n", [signer])
    good = str(signer.verifier_key())
    # 1: a note by a key we do not trust
    proc = run("note", "verify", "--key", str(other.verifier_key()), stdin=note.encode())
    assert proc.returncode == 1
    assert "no valid signature" in proc.stderr
    # 1: a known key whose signature does not verify
    forged = note.replace("hello", "hellO")
    proc = run("note", "verify", "--key", good, stdin=forged.encode())
    assert proc.returncode == 1
    assert "invalid signature" in proc.stderr
    # 2: malformed note
    proc = run("note", "verify", "--key", good, stdin=b"no signatures here\n")
    assert proc.returncode == 2
    # 2: malformed key
    proc = run("note", "verify", "--key", "not-a-key+00000000+AAAA", stdin=note.encode())
    assert proc.returncode == 2
    # 0 with two keys, one of which did not sign
    proc = run(
        "note", "verify", "--key", good, "--key", str(other.verifier_key()), stdin=note.encode()
    )
    assert proc.returncode == 0


def test_note_sign_rejects_text_without_final_newline(tmp_path: Path) -> None:
    key = tmp_path / "k"
    run("keys", "generate", "example.com/s", "--out", key)
    proc = run("note", "sign", key, stdin=b"no newline")
    assert proc.returncode == 2
    assert "newline" in proc.stderr


def test_note_sign_add_cosigns_with_witness_key(tmp_path: Path) -> None:
    log_key = tmp_path / "log"
    w_key = tmp_path / "w"
    log_vkey = run("keys", "generate", "example.com/log", "--out", log_key).stdout.strip()
    w_vkey = run(
        "keys", "generate", "w.example/1", "--out", w_key, "--type", "witness"
    ).stdout.strip()
    cp = tmp_path / "cp"
    cp.write_text(
        run(
            "note",
            "sign",
            log_key,
            stdin=b"example.com/log\n0\n" + b"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
        ).stdout
    )
    cosigned = run("note", "sign", "--add", w_key, cp)
    assert cosigned.returncode == 0, cosigned.stderr
    assert cosigned.stdout.count("\u2014 ") == 2
    both = run("note", "verify", "--key", log_vkey, "--key", w_vkey, stdin=cosigned.stdout.encode())
    assert both.returncode == 0, both.stderr
    assert "verified: signed by w.example/1" in both.stderr


def _tree(n: int) -> tuple[MemoryTree, list[bytes]]:
    entries = [f"entry {i}".encode() for i in range(n)]
    tree = MemoryTree()
    tree.extend(entries)
    return tree, entries


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def test_tlog_verify_inclusion(tmp_path: Path) -> None:
    tree, entries = _tree(77)
    proof = tmp_path / "proof"
    proof.write_text("\n".join(_b64(h) for h in inclusion_proof(tree, 10, 77)) + "\n")
    entry = tmp_path / "entry"
    entry.write_bytes(entries[10])
    args = ["tlog", "verify-inclusion", "--index", "10", "--size", "77"]
    ok = run(*args, "--root", _b64(tree.root()), "--entry", entry, proof)
    assert ok.returncode == 0, ok.stderr
    # the root may also be given in hex, and the leaf by its hash
    ok = run(*args, "--root", tree.root().hex(), "--leaf-hash", _b64(leaf_hash(entries[10])), proof)
    assert ok.returncode == 0, ok.stderr
    bad = run(*args, "--root", _b64(tree.root(76)), "--entry", entry, proof)
    assert bad.returncode == 1
    assert "does not match" in bad.stderr
    malformed = run(*args, "--root", "!!notbase64", "--entry", entry, proof)
    assert malformed.returncode == 2
    neither = run(*args, "--root", _b64(tree.root()), proof)
    assert neither.returncode == 2


def test_tlog_verify_consistency(tmp_path: Path) -> None:
    tree, _ = _tree(300)
    proof = tmp_path / "proof"
    proof.write_text("\n".join(_b64(h) for h in consistency_proof(tree, 100, 300)))
    base = ["tlog", "verify-consistency", "--old-size", "100", "--new-size", "300"]
    ok = run(*base, "--old-root", _b64(tree.root(100)), "--new-root", _b64(tree.root()), proof)
    assert ok.returncode == 0, ok.stderr
    bad = run(*base, "--old-root", _b64(tree.root(99)), "--new-root", _b64(tree.root()), proof)
    assert bad.returncode == 1


def test_tlog_verify_inclusion_against_signed_checkpoint(tmp_path: Path) -> None:
    from overt.tlog.checkpoint import Checkpoint, sign_checkpoint

    tree, entries = _tree(20)
    log = Ed25519Signer.generate("example.com/log")
    cp = tmp_path / "checkpoint"
    cp.write_text(sign_checkpoint(Checkpoint("example.com/log", 20, tree.root()), [log]))
    proof = tmp_path / "proof"
    proof.write_text("\n".join(_b64(h) for h in inclusion_proof(tree, 3, 20)))
    entry = tmp_path / "e"
    entry.write_bytes(entries[3])
    args = ["tlog", "verify-inclusion", "--index", "3", "--entry", entry, "--checkpoint", cp]
    assert run(*args, "--log-key", str(log.verifier_key()), proof).returncode == 0
    other = Ed25519Signer.generate("example.com/log")
    assert run(*args, "--log-key", str(other.verifier_key()), proof).returncode == 1
    assert run(*args, proof).returncode == 2  # no --log-key


def test_tlog_verify_proof_bad_policy_is_bad_input(tmp_path: Path) -> None:
    policy = tmp_path / "p"
    policy.write_text("log nonsense\nquorum none\n")
    proof = tmp_path / "x.tlog-proof"
    proof.write_text("c2sp.org/tlog-proof@v1\nindex 0\n\nx\n")
    proc = run("tlog", "verify-proof", proof, "--policy", policy, "--leaf-hash", "00" * 32)
    assert proc.returncode == 2
    assert "policy line 1" in proc.stderr
    policy.write_text("quorum none\n")
    missing = run(
        "tlog", "verify-proof", tmp_path / "nope", "--policy", policy, "--leaf-hash", "00" * 32
    )
    assert missing.returncode == 2
    assert "no such file" in missing.stderr


def test_witness_key_cannot_sign_plain_notes_as_ed25519(tmp_path: Path) -> None:
    # A witness key's note signature is a cosignature, which an Ed25519
    # verifier for the same public key must not accept.
    w = Ed25519Signer.generate("w.example/1", SIG_COSIGNATURE_V1)
    key = tmp_path / "w"
    from overt.crypto.keyfile import write_private_key

    write_private_key(key, w)
    signed = run(
        "note", "sign", key, stdin=b"example.com/log\n1\n" + _b64(b"\x00" * 32).encode() + b"\n"
    )
    assert signed.returncode == 0
    as_ed25519 = Ed25519Signer("w.example/1", w.seed).verifier_key()
    proc = run("note", "verify", "--key", str(as_ed25519), stdin=signed.stdout.encode())
    assert proc.returncode == 1  # different key ID: the signature is not recognised


def test_witness_key_cosigns_only_checkpoints(tmp_path: Path) -> None:
    key = tmp_path / "w"
    run("keys", "generate", "w.example/1", "--out", key, "--type", "witness")
    proc = run("note", "sign", key, stdin=b"just some text\n")
    assert proc.returncode == 2
    assert "checkpoint" in proc.stderr

"""Signed-note, checkpoint, cosignature and tile-path vectors (note/vectors.json)."""

from __future__ import annotations

from typing import Any

import pytest

from overt.crypto.keys import (
    SIG_COSIGNATURE_V1,
    SIG_ED25519,
    Ed25519Signer,
    VerifierKey,
    ed25519_verifier,
)
from overt.crypto.note import Signature, open_note, sign_note, split
from overt.errors import MalformedError, OvertError
from overt.tlog.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from overt.tlog.cosignature import (
    CosignatureSigner,
    CosignatureVerifier,
    cosignature_timestamp,
)
from overt.tlog.hashing import leaf_hash
from overt.tlog.policy import Policy
from overt.tlog.tiles import TILE_WIDTH, Tile, tiles_for_size

Vectors = dict[str, Any]


def _vkeys(entry: dict[str, Any]) -> list[str]:
    keys = entry.get("verifier_keys")
    return list(keys) if keys else [entry["verifier_key"]]


def _by_name(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(i for i in items if i["name"] == name)


# --- signed notes ---------------------------------------------------------------------


def test_vector_file_has_every_section(note_vectors: Vectors) -> None:
    for key in (
        "signed_notes",
        "must_reject",
        "bad_verifier_keys",
        "go_sumdb_tree_note",
        "c2sp_tile_paths",
        "tiles_for_size_70000",
        "cosignatures",
    ):
        assert note_vectors.get(key), key


def test_signed_notes_verify(note_vectors: Vectors) -> None:
    for entry in note_vectors["signed_notes"]:
        vkeys = [VerifierKey.parse(k) for k in _vkeys(entry)]
        for signed in (entry["signed"], entry["signed"].encode("utf-8")):
            note = open_note(signed, [ed25519_verifier(k) for k in vkeys])
            assert note.text == entry["text"], entry["name"]
            assert note.unverified == ()
            assert {(s.name, s.key_id) for s in note.verified} == {
                (k.name, k.key_id) for k in vkeys
            }
        text, sigs = split(entry["signed"])
        assert text == entry["text"]
        assert "".join(s.line() for s in sigs) == entry["signed"][len(text) + 1 :]


def test_signed_notes_each_key_alone(note_vectors: Vectors) -> None:
    """With several signers, any one trusted key verifies; the others are unverified."""
    entry = _by_name(note_vectors["signed_notes"], "go-note-two-signers")
    for key in _vkeys(entry):
        note = open_note(entry["signed"], [ed25519_verifier(key)])
        assert note.text == entry["text"]
        assert len(note.verified) == 1 and len(note.unverified) == 1
        vk = VerifierKey.parse(key)
        assert note.signed_by(vk.name, vk.key_id)


def test_signed_note_resigns_byte_for_byte_from_go_private_key(note_vectors: Vectors) -> None:
    entry = _by_name(note_vectors["signed_notes"], "go-note-peter")
    signer = Ed25519Signer.parse_private(entry["signer_key"])
    assert str(signer.verifier_key()) == entry["verifier_key"]
    assert signer.encode_private() == entry["signer_key"]
    assert sign_note(entry["text"], [signer]) == entry["signed"]


def test_signed_note_carries_signatures_over(note_vectors: Vectors) -> None:
    """Re-signing with `keep` reproduces the two-signer note from its parts."""
    peter = _by_name(note_vectors["signed_notes"], "go-note-peter")
    two = _by_name(note_vectors["signed_notes"], "go-note-two-signers")
    _, sigs = split(two["signed"])
    signer = Ed25519Signer.parse_private(peter["signer_key"])
    assert sign_note(two["text"], [], keep=sigs) == two["signed"]
    assert sign_note(two["text"], [signer], keep=sigs[1:]) != two["signed"]  # order matters
    rebuilt = sign_note(two["text"], [signer], keep=[])
    assert rebuilt == peter["signed"]


def test_checkpoint_vector_resigns_from_seed(note_vectors: Vectors) -> None:
    entry = _by_name(note_vectors["signed_notes"], "c2sp-issue-99-checkpoint")
    vkey = VerifierKey.parse(entry["verifier_key"])
    signer = Ed25519Signer(vkey.name, bytes.fromhex(entry["ed25519_seed_hex"]))
    assert signer.public.hex() == entry["public_key_hex"]
    assert str(signer.verifier_key()) == entry["verifier_key"]
    assert sign_note(entry["text"], [signer]) == entry["signed"]

    checkpoint = Checkpoint.parse(entry["text"])
    assert checkpoint.origin == vkey.name
    assert checkpoint.size == 10
    assert checkpoint.text() == entry["text"]
    assert sign_checkpoint(checkpoint, [signer]) == entry["signed"]
    opened = open_checkpoint(entry["signed"], ed25519_verifier(vkey))
    assert opened.checkpoint == checkpoint
    assert opened.raw == entry["signed"]


# --- rejections -----------------------------------------------------------------------


def test_must_reject_notes(note_vectors: Vectors) -> None:
    assert len(note_vectors["must_reject"]) >= 8
    for entry in note_vectors["must_reject"]:
        verifier = ed25519_verifier(entry["verifier_key"])
        for note in (entry["note"], entry["note"].encode("utf-8")):
            with pytest.raises(OvertError):
                open_note(note, [verifier])


@pytest.mark.parametrize("index", range(4))
def test_bad_verifier_keys(note_vectors: Vectors, index: int) -> None:
    bad = note_vectors["bad_verifier_keys"]
    assert len(bad) == 4
    with pytest.raises(MalformedError):
        VerifierKey.parse(bad[index])


# --- tiles ----------------------------------------------------------------------------


def test_c2sp_tile_paths(note_vectors: Vectors) -> None:
    for entry in note_vectors["c2sp_tile_paths"]:
        entries = bool(entry.get("entries", False))
        tile = Tile(entry.get("level", 0), entry["index"], entry["width"], entries=entries)
        assert tile.path() == entry["path"]
        assert Tile.parse_path(entry["path"]) == tile
        assert tile.partial == (entry["width"] < TILE_WIDTH)


def test_tiles_for_size_70000(note_vectors: Vectors) -> None:
    v = note_vectors["tiles_for_size_70000"]
    tiles = tiles_for_size(v["size"])
    by_level: dict[int, list[Tile]] = {}
    for t in tiles:
        by_level.setdefault(t.level, []).append(t)
    assert sorted(by_level) == [0, 1, 2]

    def full(level: int) -> list[Tile]:
        return [t for t in by_level[level] if not t.partial]

    def partial(level: int) -> list[Tile]:
        return [t for t in by_level[level] if t.partial]

    assert len(full(0)) == v["level0_full"]
    assert [t.width for t in partial(0)] == [v["level0_partial_width"]]
    assert partial(0)[0].index == v["level0_full"]
    assert len(full(1)) == v["level1_full"]
    assert [t.width for t in partial(1)] == [v["level1_partial_width"]]
    assert full(2) == []
    assert [t.width for t in partial(2)] == [v["level2_partial_width"]]
    assert len(tiles) == len(set(tiles))


# --- cosignatures ---------------------------------------------------------------------


def _cosig_parts(note_vectors: Vectors) -> tuple[dict[str, Any], Ed25519Signer]:
    entry = note_vectors["cosignatures"][0]
    key = Ed25519Signer(
        entry["witness_name"], bytes.fromhex(entry["witness_seed_hex"]), SIG_COSIGNATURE_V1
    )
    return entry, key


def test_cosignature_vector_key(note_vectors: Vectors) -> None:
    entry, key = _cosig_parts(note_vectors)
    vkey = VerifierKey.parse(entry["verifier_key"])
    assert vkey.sig_type == SIG_COSIGNATURE_V1
    assert str(key.verifier_key()) == entry["verifier_key"]
    assert vkey.public == key.public


def test_cosignature_vector_verifies_through_open_note(note_vectors: Vectors) -> None:
    entry, _ = _cosig_parts(note_vectors)
    note_text = entry["checkpoint_text"] + "\n" + entry["signature_line"] + "\n"
    verifier = CosignatureVerifier(entry["verifier_key"])
    note = open_note(note_text, [verifier])
    assert note.text == entry["checkpoint_text"]
    assert len(note.verified) == 1
    assert cosignature_timestamp(note.verified[0].signature) == entry["timestamp"]
    # An Ed25519 (type 0x01) verifier with the same name is a different key: ignored.
    wrong_type = Ed25519Signer(entry["witness_name"], bytes.fromhex(entry["witness_seed_hex"]))
    with pytest.raises(OvertError):
        open_note(note_text, [ed25519_verifier(wrong_type.verifier_key())])


def test_cosignature_vector_resigns_byte_for_byte(note_vectors: Vectors) -> None:
    entry, key = _cosig_parts(note_vectors)
    signer = CosignatureSigner(key, clock=lambda: float(entry["timestamp"]))
    sig = signer.sign(entry["checkpoint_text"].encode("utf-8"))
    assert Signature(signer.name, signer.key_id, sig).line() == entry["signature_line"] + "\n"
    # ... and through sign_note, which adds the blank line and carries the log line.
    cosigned = sign_note(entry["checkpoint_text"], [signer])
    assert cosigned == entry["checkpoint_text"] + "\n" + entry["signature_line"] + "\n"


def test_cosignature_vector_through_policy(note_vectors: Vectors) -> None:
    entry, _ = _cosig_parts(note_vectors)
    log_entry = _by_name(note_vectors["signed_notes"], "c2sp-issue-99-checkpoint")
    assert log_entry["text"] == entry["checkpoint_text"]
    cosigned = log_entry["signed"] + entry["signature_line"] + "\n"
    policy = Policy.parse(
        f"log {log_entry['verifier_key']}\nwitness w1 {entry['verifier_key']}\nquorum w1\n"
    )
    verified = policy.verify_checkpoint(cosigned)
    assert verified.cosigners == {"w1": entry["timestamp"]}
    assert verified.checkpoint == Checkpoint.parse(entry["checkpoint_text"])
    assert verified.log.vkey == VerifierKey.parse(log_entry["verifier_key"])
    # Without the cosignature the quorum is not met.
    with pytest.raises(OvertError):
        policy.verify_checkpoint(log_entry["signed"])


def test_cosignature_other_timestamp_gives_other_valid_line(note_vectors: Vectors) -> None:
    entry, key = _cosig_parts(note_vectors)
    signer = CosignatureSigner(key, clock=lambda: float(entry["timestamp"] + 1))
    cosigned = sign_note(entry["checkpoint_text"], [signer])
    assert cosigned != entry["checkpoint_text"] + "\n" + entry["signature_line"] + "\n"
    # Still a valid cosignature, at another time.
    note = open_note(cosigned, [CosignatureVerifier(entry["verifier_key"])])
    assert cosignature_timestamp(note.verified[0].signature) == entry["timestamp"] + 1


# --- go sumdb tree note -----------------------------------------------------------------


def test_go_sumdb_tree_note_checkpoint(note_vectors: Vectors) -> None:
    v = note_vectors["go_sumdb_tree_note"]
    checkpoint = Checkpoint.parse(v["text"])
    assert checkpoint.origin == v["origin"]
    assert checkpoint.size == v["size"]
    assert checkpoint.root_hash == leaf_hash(v["record"].encode())
    assert checkpoint.extensions == ()
    assert checkpoint.text() == v["text"]
    assert Checkpoint(v["origin"], v["size"], checkpoint.root_hash).text() == v["text"]


def test_go_sumdb_tree_note_signs_with_any_key(note_vectors: Vectors) -> None:
    """The origin has spaces, so no note key can be named after it; other keys can sign."""
    v = note_vectors["go_sumdb_tree_note"]
    with pytest.raises(MalformedError):
        Ed25519Signer(v["origin"], bytes(32))
    signer = Ed25519Signer("sum.golang.org", bytes(range(32)), SIG_ED25519)
    signed = sign_checkpoint(Checkpoint.parse(v["text"]), [signer])
    note = open_note(signed, [ed25519_verifier(signer.verifier_key())])
    assert Checkpoint.parse(note.text) == Checkpoint.parse(v["text"])
    with pytest.raises(OvertError):  # origin does not match the key name
        open_checkpoint(signed, ed25519_verifier(signer.verifier_key()))

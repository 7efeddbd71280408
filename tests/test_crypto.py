"""Keys, key files, signed notes, DSSE envelopes and in-toto statements."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from overt.crypto.dsse import (
    MAX_ENVELOPE_BYTES,
    MAX_ENVELOPE_SIGNATURES,
    Envelope,
    EnvelopeSignature,
    dsse_keyid,
    pae,
    sign_envelope,
    verify_envelope,
)
from overt.crypto.intoto import PAYLOAD_TYPE, STATEMENT_TYPE, Statement, Subject
from overt.crypto.keyfile import read_private_key, write_private_key
from overt.crypto.keys import (
    SIG_COSIGNATURE_V1,
    SIG_ED25519,
    Ed25519Signer,
    Ed25519Verifier,
    VerifierKey,
    ed25519_verifier,
    key_id,
)
from overt.crypto.note import MAX_SIGNATURES, Signature, open_note, sign_note, split
from overt.errors import KeyFileError, MalformedError, OvertError, VerificationError


def seed(n: int) -> bytes:
    return hashlib.sha256(b"crypto test %d" % n).digest()


ALICE = Ed25519Signer("alice.example", seed(1))
BOB = Ed25519Signer("bob.example/key", seed(2))
CAROL = Ed25519Signer("carol", seed(3))


def verifier(s: Ed25519Signer) -> Ed25519Verifier:
    return ed25519_verifier(s.verifier_key())


# --- keys -----------------------------------------------------------------------------------


def test_generate_keys() -> None:
    a = Ed25519Signer.generate("gen.example")
    b = Ed25519Signer.generate("gen.example")
    assert a.seed != b.seed and a.public != b.public
    assert len(a.seed) == 32 and len(a.public) == 32
    assert a.sig_type == SIG_ED25519
    w = Ed25519Signer.generate("w.example", SIG_COSIGNATURE_V1)
    assert w.sig_type == SIG_COSIGNATURE_V1
    assert w.verifier_key().sig_type == SIG_COSIGNATURE_V1
    sig = a.sign(b"message")
    assert len(sig) == 64
    assert ed25519_verifier(a.verifier_key()).verify(b"message", sig)
    assert not ed25519_verifier(b.verifier_key()).verify(b"message", sig)


def test_key_id_is_the_recommended_hash() -> None:
    want = hashlib.sha256(b"alice.example\n\x01" + ALICE.public).digest()[:4]
    assert ALICE.key_id == int.from_bytes(want, "big")
    assert key_id("alice.example", 1, ALICE.public) == ALICE.key_id
    # The same key under another type has another ID.
    assert key_id("alice.example", 4, ALICE.public) != ALICE.key_id


def test_signing_is_deterministic() -> None:
    assert ALICE.sign(b"x") == Ed25519Signer(ALICE.name, ALICE.seed).sign(b"x")


@pytest.mark.parametrize(
    "name", ["", "a b", "a+b", "a\tb", "a\nb", "a\u00a0b", "a\u2003b", "a\x01b", "a\x7fb", "+"]
)
def test_bad_key_names_refused(name: str) -> None:
    with pytest.raises(MalformedError):
        Ed25519Signer(name, seed(0))


def test_signer_refuses_bad_seed_and_type() -> None:
    for bad in (b"", bytes(31), bytes(33)):
        with pytest.raises(MalformedError):
            Ed25519Signer("k", bad)
    for sig_type in (0, 2, 3, 5, 0xFF):
        with pytest.raises(MalformedError):
            Ed25519Signer("k", seed(0), sig_type)


def test_vkey_round_trip() -> None:
    for signer in (ALICE, BOB, Ed25519Signer("w.example", seed(9), SIG_COSIGNATURE_V1)):
        vk = signer.verifier_key()
        text = str(vk)
        name, hex_id, b64 = text.split("+", 2)
        assert name == signer.name
        assert hex_id == f"{signer.key_id:08x}"
        assert base64.b64decode(b64) == bytes([signer.sig_type]) + signer.public
        assert VerifierKey.parse(text) == vk
        assert str(VerifierKey.parse(text)) == text
        assert vk.type_name in ("ed25519", "cosignature/v1")


def _vkey_with(raw: bytes, name: str = "k", kid: int | None = None) -> str:
    if kid is None:
        kid = key_id(name, raw[0], raw[1:]) if raw else 0
    return f"{name}+{kid:08x}+{base64.b64encode(raw).decode()}"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "k",
        "k+",
        "k+0000000",
        str(ALICE.verifier_key()).rsplit("+", 1)[0],
        str(ALICE.verifier_key()).replace(f"{ALICE.key_id:08x}", f"{ALICE.key_id:08X}"),
        str(ALICE.verifier_key()).replace(f"{ALICE.key_id:08x}", f"{ALICE.key_id:09x}"),
        str(ALICE.verifier_key()).replace(f"{ALICE.key_id:08x}", f"{ALICE.key_id ^ 1:08x}"),
        str(ALICE.verifier_key()).replace(f"{ALICE.key_id:08x}", "0x" + f"{ALICE.key_id:08x}"[2:]),
        str(ALICE.verifier_key())[:-1],
        str(ALICE.verifier_key()) + "A",
        str(ALICE.verifier_key()).replace("alice.example", "alice example"),
        "+" + str(ALICE.verifier_key()),
        _vkey_with(b""),
        _vkey_with(b"\x01" + bytes(31)),
        _vkey_with(b"\x01" + bytes(33)),
        _vkey_with(b"\x02" + bytes(32)),
        _vkey_with(b"\x05" + bytes(32)),
        _vkey_with(b"\xff" + bytes(32)),
        _vkey_with(b"\x01" + bytes(32), name=""),
        _vkey_with(b"\x01" + bytes(32), name="a\u00a0b"),
    ],
)
def test_bad_vkeys_refused(text: str) -> None:
    with pytest.raises(MalformedError):
        VerifierKey.parse(text)


def test_verifier_type_must_match() -> None:
    witness = Ed25519Signer("w.example", seed(9), SIG_COSIGNATURE_V1)
    with pytest.raises(MalformedError):
        Ed25519Verifier(witness.verifier_key())
    with pytest.raises(MalformedError):
        ed25519_verifier(str(witness.verifier_key()))


def test_verifier_rejects_wrong_signature_lengths() -> None:
    v = verifier(ALICE)
    sig = ALICE.sign(b"m")
    assert v.verify(b"m", sig)
    for bad in (b"", sig[:-1], sig + b"\x00", bytes(64)):
        assert not v.verify(b"m", bad)


def test_private_key_round_trip() -> None:
    for signer in (ALICE, Ed25519Signer("w.example", seed(9), SIG_COSIGNATURE_V1)):
        text = signer.encode_private()
        assert text.startswith(f"PRIVATE+KEY+{signer.name}+{signer.key_id:08x}+")
        parsed = Ed25519Signer.parse_private(text)
        assert parsed.seed == signer.seed
        assert parsed.sig_type == signer.sig_type
        assert parsed.verifier_key() == signer.verifier_key()
        assert Ed25519Signer.parse_private(text + "\n").seed == signer.seed


@pytest.mark.parametrize(
    "text",
    [
        "",
        "PRIVATE+KEY+",
        ALICE.encode_private().replace("PRIVATE+KEY+", "PUBLIC+KEY+"),
        ALICE.encode_private().replace("PRIVATE+KEY+", "private+key+"),
        ALICE.encode_private().replace(f"{ALICE.key_id:08x}", f"{ALICE.key_id ^ 1:08x}"),
        ALICE.encode_private().replace(f"+{ALICE.key_id:08x}+", "++"),
        ALICE.encode_private()[:-1],
        ALICE.encode_private()[:-8] + "AAAAAAA=",
        str(ALICE.verifier_key()),
        "PRIVATE+KEY+k+00000000+" + base64.b64encode(b"\x01" + bytes(31)).decode(),
        "PRIVATE+KEY+k+00000000+" + base64.b64encode(b"\x02" + bytes(32)).decode(),
        "PRIVATE+KEY+a b+00000000+" + base64.b64encode(b"\x01" + bytes(32)).decode(),
    ],
)
def test_bad_private_keys_refused(text: str) -> None:
    with pytest.raises(MalformedError):
        Ed25519Signer.parse_private(text)


# --- key files ------------------------------------------------------------------------------


def test_key_file_round_trip_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    old = os.umask(0)
    try:
        write_private_key(path, ALICE)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == ALICE.encode_private() + "\n"
    loaded = read_private_key(path)
    assert loaded.seed == ALICE.seed and loaded.name == ALICE.name


def test_key_file_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    write_private_key(path, ALICE)
    with pytest.raises(KeyFileError):
        write_private_key(path, BOB)
    assert read_private_key(path).seed == ALICE.seed
    other = tmp_path / "other.key"
    other.write_text("not a key")
    with pytest.raises(KeyFileError):
        write_private_key(other, BOB)
    assert other.read_text() == "not a key"


def test_key_file_refuses_unwritable_location(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        write_private_key(tmp_path / "missing-dir" / "k.key", ALICE)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620, 0o602, 0o601, 0o610, 0o666])
def test_key_file_refuses_open_permissions(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.key"
    write_private_key(path, ALICE)
    path.chmod(mode)
    with pytest.raises(KeyFileError):
        read_private_key(path)


def test_key_file_owner_only_modes_accepted(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    write_private_key(path, ALICE)
    for mode in (0o400, 0o600, 0o700):
        path.chmod(mode)
        assert read_private_key(path).seed == ALICE.seed


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\n",
        b"garbage\n",
        str(ALICE.verifier_key()).encode(),
        b"\xff\xfe\x00",
        ALICE.encode_private().encode()[:-3],
        (ALICE.encode_private() + "\n" + BOB.encode_private() + "\n").encode(),
    ],
)
def test_key_file_bad_content(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "k.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError):
        read_private_key(path)


def test_key_file_missing(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        read_private_key(tmp_path / "nope.key")
    with pytest.raises(KeyFileError):
        read_private_key(tmp_path)  # a directory


# --- signed notes ---------------------------------------------------------------------------

TEXT = "hello, notes\nsecond line\n"


def test_sign_and_open_multiple_signers() -> None:
    signed = sign_note(TEXT, [ALICE, BOB, CAROL])
    assert signed.startswith(TEXT + "\n\u2014 alice.example ")
    text, sigs = split(signed)
    assert text == TEXT
    assert [(s.name, s.key_id) for s in sigs] == [(k.name, k.key_id) for k in (ALICE, BOB, CAROL)]
    note = open_note(signed, [verifier(ALICE), verifier(BOB), verifier(CAROL)])
    assert note.text == TEXT
    assert len(note.verified) == 3 and note.unverified == ()
    for k in (ALICE, BOB, CAROL):
        assert note.signed_by(k.name, k.key_id)
        assert not note.signed_by(k.name, k.key_id ^ 1)


def test_unknown_keys_ignored_and_reported() -> None:
    signed = sign_note(TEXT, [ALICE, BOB, CAROL])
    note = open_note(signed, [verifier(BOB)])
    assert [s.name for s in note.verified] == ["bob.example/key"]
    assert [s.name for s in note.unverified] == ["alice.example", "carol"]
    assert note.signed_by(BOB.name, BOB.key_id)
    assert not note.signed_by(ALICE.name, ALICE.key_id)


def test_same_name_other_key_is_unknown() -> None:
    """An unknown key that shares a name (or an ID) with a known key is ignored."""
    impostor = Ed25519Signer(ALICE.name, seed(66))
    signed = sign_note(TEXT, [impostor, ALICE])
    note = open_note(signed, [verifier(ALICE)])
    assert len(note.verified) == 1 and len(note.unverified) == 1
    same_id = Signature("someone-else", ALICE.key_id, b"\x00" * 64)
    note = open_note(sign_note(TEXT, [ALICE], keep=[same_id]), [verifier(ALICE)])
    assert note.unverified == (same_id,)


def test_no_trusted_signature_rejected() -> None:
    signed = sign_note(TEXT, [ALICE])
    with pytest.raises(VerificationError):
        open_note(signed, [verifier(BOB)])
    with pytest.raises(VerificationError):
        open_note(signed, [])


def test_invalid_signature_from_known_key_rejects_whole_note() -> None:
    signed = sign_note(TEXT, [ALICE, BOB])
    _, sigs = split(signed)
    broken = Signature(BOB.name, BOB.key_id, bytes(64))
    forged = sign_note(TEXT, [], keep=[sigs[0], broken])
    with pytest.raises(VerificationError):
        open_note(forged, [verifier(ALICE), verifier(BOB)])
    assert open_note(forged, [verifier(ALICE)]).unverified == (broken,)
    with pytest.raises(VerificationError):
        open_note(sign_note("other\n", [], keep=sigs), [verifier(ALICE)])


def test_duplicate_known_signature_counts_once() -> None:
    signed = sign_note(TEXT, [ALICE, ALICE])
    note = open_note(signed, [verifier(ALICE)])
    assert len(note.verified) == 1


@pytest.mark.parametrize(
    "text",
    [
        "a\n\nb\n",
        "a\n\n\nb\n",
        "\n",
        "\n\n",
        "a\n\n",
        "top\n\n\u2014 fake AAAAAAA=\n\nbottom\n",
        "\u2014 alice.example AAAA\n",
        "ünïcødé ✓\n\nmore\n",
    ],
)
def test_text_with_blank_lines_splits_at_last_blank_line(text: str) -> None:
    signed = sign_note(text, [ALICE])
    got, sigs = split(signed)
    assert got == text
    assert len(sigs) == 1
    assert open_note(signed, [verifier(ALICE)]).text == text
    assert open_note(signed.encode(), [verifier(ALICE)]).text == text


def test_split_uses_the_last_blank_line() -> None:
    sig_line = Signature(ALICE.name, ALICE.key_id, ALICE.sign(b"x\n")).line()
    msg = "x\n\n" + sig_line + "\n" + sig_line
    # The last blank line is after the first signature line, so the text would include a
    # signature line and the note says nothing ALICE signed.
    text, sigs = split(msg)
    assert text == "x\n\n" + sig_line
    assert len(sigs) == 1
    with pytest.raises(VerificationError):
        open_note(msg, [verifier(ALICE)])


def _unknown(i: int) -> Signature:
    return Signature(f"unknown{i}.example", i, bytes(64))


def test_one_hundred_signatures_accepted() -> None:
    keep = [_unknown(i) for i in range(MAX_SIGNATURES - 1)]
    signed = sign_note(TEXT, [ALICE], keep=keep)
    assert len(split(signed)[1]) == 100
    note = open_note(signed, [verifier(ALICE)])
    assert len(note.verified) == 1 and len(note.unverified) == 99


def test_one_hundred_and_one_signatures_refused() -> None:
    keep = [_unknown(i) for i in range(MAX_SIGNATURES)]
    with pytest.raises(MalformedError):
        sign_note(TEXT, [ALICE], keep=keep)
    signed = sign_note(TEXT, [ALICE], keep=keep[:-1])
    too_many = signed + _unknown(1000).line()
    with pytest.raises(MalformedError):
        split(too_many)
    with pytest.raises(MalformedError):
        open_note(too_many, [verifier(ALICE)])


def test_sign_note_refusals() -> None:
    for text in ("no newline", "ctrl\x01\n", "tab\there\n", "cr\r\n", ""):
        with pytest.raises(MalformedError):
            sign_note(text, [ALICE])
    with pytest.raises(MalformedError):
        sign_note(TEXT, [])


SIG = Signature(ALICE.name, ALICE.key_id, ALICE.sign(TEXT.encode())).line()


@pytest.mark.parametrize(
    "message",
    [
        "",
        TEXT,
        TEXT + "\n",
        TEXT + SIG,  # no blank line
        TEXT + "\n" + SIG[:-1],  # no final newline
        TEXT + "\n" + SIG + "\n",  # blank line after the signatures
        TEXT + "\n" + SIG.replace("\u2014", "-"),
        TEXT + "\n" + SIG.replace("\u2014 ", "\u2014"),
        TEXT + "\n" + SIG.replace("\u2014 ", "\u2014  "),
        TEXT + "\n" + SIG.replace(" ", "\t"),
        TEXT + "\n" + SIG.replace(f"{ALICE.name} ", f"{ALICE.name}  "),
        TEXT + "\n" + SIG.replace(f"{ALICE.name} ", ""),
        TEXT + "\n" + SIG.replace(ALICE.name, ""),
        TEXT + "\n" + SIG.replace(ALICE.name, "a+b"),
        TEXT + "\n" + SIG.replace("=\n", "\n"),
        TEXT + "\n" + SIG.replace("\n", " \n"),
        TEXT + "\n" + f"\u2014 {ALICE.name} AAAA\n",  # 3 bytes: shorter than a key ID + 1
        TEXT + "\n" + f"\u2014 {ALICE.name} AAAAAA==\n",  # 4 bytes
        "ctrl\x1b\n\n" + SIG,
        TEXT + "\n" + SIG + "\x00",
    ],
)
def test_malformed_notes(message: str) -> None:
    with pytest.raises(MalformedError):
        split(message)
    with pytest.raises(MalformedError):
        open_note(message, [verifier(ALICE)])


def test_note_must_be_utf8() -> None:
    good = (TEXT + "\n" + SIG).encode()
    assert open_note(good, [verifier(ALICE)]).text == TEXT
    for bad in (b"\xff" + good, good.replace(b"\xe2\x80\x94", b"\xe2\x80"), good + b"\xc3"):
        with pytest.raises(MalformedError):
            open_note(bad, [verifier(ALICE)])


# --- DSSE -----------------------------------------------------------------------------------


def test_pae_spec_example() -> None:
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_edge_cases() -> None:
    assert pae("", b"") == b"DSSEv1 0  0 "
    assert pae("t\u00e9", b"\x00 \xff") == b"DSSEv1 3 t\xc3\xa9 3 \x00 \xff"  # byte lengths
    assert pae("a", b"x" * 1000).startswith(b"DSSEv1 1 a 1000 x")


def test_dsse_spec_example_envelope_parses() -> None:
    envelope = Envelope.from_bytes(
        b'{"payload": "aGVsbG8gd29ybGQ=",\n "payloadType": "http://example.com/HelloWorld",\n'
        b' "signatures": [{"sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfU'
        b'iHqJPcIAriEGAHTVeCUjW2JIZA=="}]}'
    )
    assert envelope.payload == b"hello world"
    assert envelope.payload_type == "http://example.com/HelloWorld"
    assert envelope.signatures[0].keyid == ""
    assert len(envelope.signatures[0].sig) == 64


def test_dsse_url_safe_base64_accepted() -> None:
    """DSSE protocol.md: "Either standard or URL-safe base64 encodings are allowed.
    Signers may use either, and verifiers MUST accept either." """
    payload = b"\xfb\xff\xfe payload with url-unsafe base64"
    env = sign_envelope("application/x-test", payload, [ALICE])
    obj = env.to_json()
    obj["payload"] = base64.urlsafe_b64encode(payload).decode()
    obj["signatures"][0]["sig"] = base64.urlsafe_b64encode(env.signatures[0].sig).decode()
    assert obj != env.to_json()
    parsed = Envelope.from_json(obj)
    assert parsed == env
    verify_envelope(parsed, [verifier(ALICE)])
    # Unpadded base64 decodes to the same bytes too.
    obj["payload"] = obj["payload"].rstrip("=")
    obj["signatures"][0]["sig"] = obj["signatures"][0]["sig"].rstrip("=")
    assert Envelope.from_json(obj) == env


PT = "application/vnd.overt.test+json"
PAYLOAD = b'{"hello":"world"}'


def test_dsse_sign_and_verify() -> None:
    env = sign_envelope(PT, PAYLOAD, [ALICE])
    assert env.payload_type == PT and env.payload == PAYLOAD
    assert env.signatures[0].keyid == dsse_keyid(ALICE.name, ALICE.key_id)
    assert env.signatures[0].keyid == f"alice.example+{ALICE.key_id:08x}"
    assert verifier(ALICE).verify(pae(PT, PAYLOAD), env.signatures[0].sig)
    assert [v.vkey for v in verify_envelope(env, [verifier(ALICE)])] == [ALICE.verifier_key()]
    assert verify_envelope(env, [verifier(ALICE)], payload_type=PT)


def test_dsse_threshold_one_of_two() -> None:
    env = sign_envelope(PT, PAYLOAD, [ALICE])
    accepted = verify_envelope(env, [verifier(BOB), verifier(ALICE)], threshold=1)
    assert [v.name for v in accepted] == [ALICE.name]


def test_dsse_threshold_two_of_two() -> None:
    both = sign_envelope(PT, PAYLOAD, [ALICE, BOB])
    assert len(verify_envelope(both, [verifier(ALICE), verifier(BOB)], threshold=2)) == 2
    one = sign_envelope(PT, PAYLOAD, [ALICE])
    with pytest.raises(VerificationError):
        verify_envelope(one, [verifier(ALICE), verifier(BOB)], threshold=2)
    # BOB's signature is present but invalid: still only one.
    bad_bob = Envelope(
        PT, PAYLOAD, (*one.signatures, EnvelopeSignature(dsse_keyid(BOB.name, 0), bytes(64)))
    )
    with pytest.raises(VerificationError):
        verify_envelope(bad_bob, [verifier(ALICE), verifier(BOB)], threshold=2)
    # BOB signed something else.
    other = sign_envelope(PT, PAYLOAD + b" ", [BOB])
    mixed = Envelope(PT, PAYLOAD, (*one.signatures, *other.signatures))
    with pytest.raises(VerificationError):
        verify_envelope(mixed, [verifier(ALICE), verifier(BOB)], threshold=2)


def test_dsse_same_key_twice_counts_once() -> None:
    env = sign_envelope(PT, PAYLOAD, [ALICE, ALICE])
    assert len(env.signatures) == 2
    with pytest.raises(VerificationError):
        verify_envelope(env, [verifier(ALICE), verifier(ALICE)], threshold=2)
    with pytest.raises(VerificationError):
        verify_envelope(env, [verifier(ALICE), verifier(BOB)], threshold=2)
    renamed = Ed25519Signer("another-name", ALICE.seed)  # same key, other name and ID
    with pytest.raises(VerificationError):
        verify_envelope(env, [verifier(ALICE), verifier(renamed)], threshold=2)
    assert len(verify_envelope(env, [verifier(ALICE), verifier(ALICE)], threshold=1)) == 1


def test_dsse_keyid_is_not_trusted() -> None:
    env = sign_envelope(PT, PAYLOAD, [ALICE])
    relabelled = Envelope(PT, PAYLOAD, (EnvelopeSignature("bob", env.signatures[0].sig),))
    assert verify_envelope(relabelled, [verifier(ALICE)])[0].name == ALICE.name
    with pytest.raises(VerificationError):
        verify_envelope(relabelled, [verifier(BOB)])


def test_dsse_wrong_payload_type() -> None:
    env = sign_envelope(PT, PAYLOAD, [ALICE])
    with pytest.raises(VerificationError):
        verify_envelope(env, [verifier(ALICE)], payload_type="application/other")
    relabelled = Envelope("application/other", PAYLOAD, env.signatures)
    with pytest.raises(VerificationError):
        verify_envelope(relabelled, [verifier(ALICE)])
    tampered = Envelope(PT, PAYLOAD + b"\n", env.signatures)
    with pytest.raises(VerificationError):
        verify_envelope(tampered, [verifier(ALICE)])


def test_dsse_argument_checks() -> None:
    env = sign_envelope(PT, PAYLOAD, [ALICE])
    with pytest.raises(MalformedError):
        verify_envelope(env, [verifier(ALICE)], threshold=0)
    with pytest.raises(MalformedError):
        sign_envelope(PT, PAYLOAD, [])
    with pytest.raises(VerificationError):
        verify_envelope(env, [])


def test_envelope_json_round_trip() -> None:
    env = sign_envelope(PT, b"\x00\xffbinary", [ALICE, BOB])
    data = env.to_bytes()
    obj = json.loads(data)
    assert set(obj) == {"payload", "payloadType", "signatures"}
    assert base64.b64decode(obj["payload"]) == b"\x00\xffbinary"
    assert [s["keyid"] for s in obj["signatures"]] == [
        dsse_keyid(ALICE.name, ALICE.key_id),
        dsse_keyid(BOB.name, BOB.key_id),
    ]
    assert Envelope.from_bytes(data) == env
    assert Envelope.from_json(env.to_json()) == env
    assert Envelope.from_bytes(data).to_bytes() == data
    verify_envelope(Envelope.from_bytes(data), [verifier(ALICE), verifier(BOB)], threshold=2)


def _env_obj(**changes: Any) -> dict[str, Any]:
    obj = sign_envelope(PT, PAYLOAD, [ALICE]).to_json()
    for key, value in changes.items():
        if value is _DROP:
            del obj[key]
        else:
            obj[key] = value
    return obj


_DROP = object()
GOOD_SIG = base64.b64encode(bytes(64)).decode()


@pytest.mark.parametrize(
    "obj",
    [
        [],
        "string",
        1,
        None,
        _env_obj(payloadType=_DROP),
        _env_obj(payloadType=""),
        _env_obj(payloadType=5),
        _env_obj(payloadType=None),
        _env_obj(payload=_DROP),
        _env_obj(payload=5),
        _env_obj(payload="not base64!"),
        _env_obj(payload="AA AA"),
        _env_obj(payload="é"),
        _env_obj(signatures=_DROP),
        _env_obj(signatures={}),
        _env_obj(signatures="sig"),
        _env_obj(signatures=["sig"]),
        _env_obj(signatures=[None]),
        _env_obj(signatures=[{"keyid": 5, "sig": GOOD_SIG}]),
        _env_obj(signatures=[{"keyid": "k"}]),
        _env_obj(signatures=[{"keyid": "k", "sig": None}]),
        _env_obj(signatures=[{"keyid": "k", "sig": "***"}]),
        _env_obj(signatures=[{"sig": GOOD_SIG}] * (MAX_ENVELOPE_SIGNATURES + 1)),
    ],
)
def test_malformed_envelopes(obj: Any) -> None:
    with pytest.raises(MalformedError):
        Envelope.from_json(obj)
    with pytest.raises(MalformedError):
        Envelope.from_bytes(json.dumps(obj).encode())


def test_envelope_signature_count_limit() -> None:
    obj = _env_obj(signatures=[{"sig": GOOD_SIG}] * MAX_ENVELOPE_SIGNATURES)
    assert len(Envelope.from_json(obj).signatures) == MAX_ENVELOPE_SIGNATURES


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"not json", b"\xff\xfe\xfd", b"{}" + b"x", b"[" * 100_000 + b"]" * 100_000],
)
def test_malformed_envelope_bytes(data: bytes) -> None:
    with pytest.raises(MalformedError):
        Envelope.from_bytes(data)


def test_envelope_size_limit() -> None:
    data = b" " * (MAX_ENVELOPE_BYTES + 1)
    with pytest.raises(MalformedError):
        Envelope.from_bytes(data)


def test_envelope_huge_json_number_is_malformed() -> None:
    """BUG: json.loads raises a plain ValueError (int conversion limit, 4300 digits) for
    a long JSON number; Envelope.from_bytes only catches JSONDecodeError, so the
    ValueError escapes instead of MalformedError."""
    with pytest.raises(MalformedError):
        Envelope.from_bytes(b"1" * 5000)
    with pytest.raises(MalformedError):
        Envelope.from_bytes(b'{"payloadType": ' + b"9" * 5000 + b"}")


# --- in-toto --------------------------------------------------------------------------------

DIGEST = hashlib.sha256(b"artifact").hexdigest()


def _statement() -> Statement:
    return Statement(
        [Subject("overt-1.0.tar.gz", {"sha256": DIGEST}), Subject("b", {"sha512": "ab" * 64})],
        "https://slsa.dev/provenance/v1",
        {"buildDefinition": {"buildType": "x"}, "n": [1, 2, 3]},
    )


def test_statement_round_trip() -> None:
    st = _statement()
    data = st.to_bytes()
    obj = json.loads(data)
    assert obj["_type"] == STATEMENT_TYPE == "https://in-toto.io/Statement/v1"
    assert obj["subject"][0] == {"name": "overt-1.0.tar.gz", "digest": {"sha256": DIGEST}}
    assert obj["predicateType"] == "https://slsa.dev/provenance/v1"
    parsed = Statement.from_bytes(data)
    assert parsed == st
    assert parsed.to_bytes() == data
    assert data == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def test_statement_sign_and_open() -> None:
    st = _statement()
    env = st.sign([ALICE])
    assert env.payload_type == PAYLOAD_TYPE == "application/vnd.in-toto+json"
    verify_envelope(env, [verifier(ALICE)], payload_type=PAYLOAD_TYPE)
    assert Statement.from_envelope(env) == st
    assert Statement.from_envelope(Envelope.from_bytes(env.to_bytes())) == st
    with pytest.raises(MalformedError):
        Statement.from_envelope(Envelope("application/json", env.payload, env.signatures))


def test_statement_predicate_defaults_to_empty() -> None:
    obj = json.loads(_statement().to_bytes())
    del obj["predicate"]
    assert Statement.from_json(obj).predicate == {}


def _st_obj(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(_statement().to_bytes())
    for key, value in changes.items():
        if value is _DROP:
            del obj[key]
        else:
            obj[key] = value
    return obj


@pytest.mark.parametrize(
    "obj",
    [
        [],
        "statement",
        None,
        _st_obj(_type=_DROP),
        _st_obj(_type="https://in-toto.io/Statement/v0.1"),
        _st_obj(_type=1),
        _st_obj(subject=_DROP),
        _st_obj(subject=[]),
        _st_obj(subject={"name": "a", "digest": {"sha256": DIGEST}}),
        _st_obj(subject=["a"]),
        _st_obj(subject=[{"name": 1, "digest": {"sha256": DIGEST}}]),
        _st_obj(subject=[{"name": "a"}]),
        _st_obj(subject=[{"name": "a", "digest": {}}]),
        _st_obj(subject=[{"name": "a", "digest": [DIGEST]}]),
        _st_obj(subject=[{"name": "a", "digest": {"sha256": DIGEST.upper()}}]),
        _st_obj(subject=[{"name": "a", "digest": {"sha256": "xyz"}}]),
        _st_obj(subject=[{"name": "a", "digest": {"sha256": ""}}]),
        _st_obj(subject=[{"name": "a", "digest": {"sha256": 5}}]),
        _st_obj(subject=[{"name": "a", "digest": {"sha256": " " + DIGEST}}]),
        _st_obj(predicateType=_DROP),
        _st_obj(predicateType=""),
        _st_obj(predicateType=["x"]),
        _st_obj(predicate=[]),
        _st_obj(predicate="p"),
        _st_obj(predicate=None),
    ],
)
def test_malformed_statements(obj: Any) -> None:
    with pytest.raises(MalformedError):
        Statement.from_json(obj)
    with pytest.raises(MalformedError):
        Statement.from_bytes(json.dumps(obj).encode())


@pytest.mark.parametrize("data", [b"", b"{", b"\xff", b"[" * 100_000])
def test_malformed_statement_bytes(data: bytes) -> None:
    with pytest.raises(MalformedError):
        Statement.from_bytes(data)


def test_statement_digest_with_trailing_newline_refused() -> None:
    """BUG: intoto._HEX is r"^[0-9a-f]+$" used with .match(), and "$" also matches before a
    final newline, so the digest "<hex>\\n" is accepted as lowercase hex."""
    obj = _st_obj(subject=[{"name": "a", "digest": {"sha256": DIGEST + "\n"}}])
    with pytest.raises(MalformedError):
        Statement.from_json(obj)


def test_statement_huge_json_number_is_malformed() -> None:
    """BUG: like Envelope.from_bytes, a JSON number of more than 4300 digits escapes
    Statement.from_bytes as a plain ValueError instead of MalformedError."""
    with pytest.raises(MalformedError):
        Statement.from_bytes(b"[" + b"7" * 5000 + b"]")


def test_errors_are_overt_errors() -> None:
    assert issubclass(MalformedError, OvertError)
    assert issubclass(VerificationError, OvertError)
    assert issubclass(KeyFileError, OvertError)


def test_resigning_replaces_the_earlier_line_of_the_same_key() -> None:
    signer = Ed25519Signer.generate("example.com/again")
    first = sign_note("text\n", [signer])
    _, sigs = split(first)
    again = sign_note("text\n", [signer], keep=sigs)
    assert again.count("\u2014 ") == 1


def test_two_trusted_keys_with_one_name_and_id_are_refused() -> None:
    a = Ed25519Signer.generate("example.com/twin")
    b = Ed25519Signer.generate("example.com/twin")
    note = sign_note("text\n", [a])
    # Forge b's verifier so it claims a's key ID: an ambiguous configuration.
    forged = Ed25519Verifier(VerifierKey(b.name, a.key_id, 0x01, b.public))
    with pytest.raises(MalformedError, match="ambiguous"):
        open_note(note, [Ed25519Verifier(a.verifier_key()), forged])
    # The same key given twice is fine.
    open_note(note, [Ed25519Verifier(a.verifier_key()), Ed25519Verifier(a.verifier_key())])


def test_dsse_payload_type_that_is_not_unicode_is_malformed() -> None:
    obj = {"payload": "", "payloadType": "\ud800", "signatures": []}
    with pytest.raises(MalformedError):
        Envelope.from_json(obj)

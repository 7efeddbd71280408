"""Checkpoints, cosignatures, tlog-policy and tlog-proof."""

from __future__ import annotations

import base64
import hashlib

import pytest

from overt.crypto.keys import (
    SIG_COSIGNATURE_V1,
    Ed25519Signer,
    VerifierKey,
    ed25519_verifier,
)
from overt.crypto.note import Signature, open_note, sign_note, split
from overt.errors import MalformedError, VerificationError
from overt.tlog.checkpoint import MAX_TREE_SIZE, Checkpoint, open_checkpoint, sign_checkpoint
from overt.tlog.cosignature import (
    MAX_TIMESTAMP,
    CosignatureSigner,
    CosignatureVerifier,
    cosignature_message,
    cosignature_timestamp,
)
from overt.tlog.merkle import MemoryTree, inclusion_proof
from overt.tlog.policy import Policy, PolicyGroup
from overt.tlog.proof import TlogProof, make_proof, verify_proof

T0 = 1_700_000_000


def seed(n: int) -> bytes:
    return hashlib.sha256(b"overt test key %d" % n).digest()


LOG = Ed25519Signer("example.com/log", seed(1))
LOG2 = Ed25519Signer("example.org/other-log", seed(2))
WITNESS_KEYS = {
    name: Ed25519Signer(f"{name.lower()}.witness.example", seed(10 + i), SIG_COSIGNATURE_V1)
    for i, name in enumerate(["X1", "X2", "X3", "Y1", "Y2", "Y3", "Z"])
}


def cosigner(name: str, t: int = T0) -> CosignatureSigner:
    return CosignatureSigner(WITNESS_KEYS[name], clock=lambda: float(t))


def wvkey(name: str) -> str:
    return str(WITNESS_KEYS[name].verifier_key())


TREE = MemoryTree()
TREE.extend([b"entry %d" % i for i in range(37)])
CHECKPOINT = Checkpoint(LOG.name, TREE.size, TREE.root())


def cosigned(
    names: list[str], checkpoint: Checkpoint = CHECKPOINT, log: Ed25519Signer = LOG
) -> str:
    return sign_checkpoint(checkpoint, [log, *(cosigner(n, T0 + i) for i, n in enumerate(names))])


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


ROOT_B64 = b64(TREE.root())

# --- checkpoint format ----------------------------------------------------------------------


def test_checkpoint_text_format() -> None:
    root = bytes(range(32))
    cp = Checkpoint("example.com/log", 20852163, root)
    assert cp.text() == f"example.com/log\n20852163\n{b64(root)}\n"
    assert Checkpoint.parse(cp.text()) == cp
    empty = Checkpoint("o", 0, hashlib.sha256(b"").digest())
    assert empty.text() == "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    assert Checkpoint.parse(empty.text()) == empty


def test_checkpoint_extension_lines_round_trip() -> None:
    cp = Checkpoint("o", 5, bytes(32), ("ext one", "— ext two", "3"))
    text = cp.text()
    assert text.endswith("\next one\n— ext two\n3\n")
    assert Checkpoint.parse(text) == cp


def test_checkpoint_max_size() -> None:
    cp = Checkpoint("o", MAX_TREE_SIZE, bytes(32))
    assert Checkpoint.parse(cp.text()).size == 2**63 - 1
    with pytest.raises(MalformedError):
        Checkpoint.parse(f"o\n{2**63}\n{b64(bytes(32))}\n")


@pytest.mark.parametrize(
    "size", ["01", "00", "+1", "-1", " 1", "1 ", "0x10", "1e3", "１", "٣", "", "1_000", "9" * 20]
)
def test_checkpoint_size_must_be_canonical_decimal(size: str) -> None:
    with pytest.raises(MalformedError):
        Checkpoint.parse(f"o\n{size}\n{ROOT_B64}\n")


@pytest.mark.parametrize(
    "root",
    [
        b64(bytes(31)),
        b64(bytes(33)),
        "",
        ROOT_B64.rstrip("="),  # missing padding
        ROOT_B64[:10] + " " + ROOT_B64[10:],
        base64.urlsafe_b64encode(b"\xfb" * 32).decode(),  # URL-safe alphabet
        ROOT_B64[:-2] + "B=",  # non-zero trailing bits: non-canonical
        hashlib.sha256(b"").hexdigest(),
    ],
)
def test_checkpoint_root_must_be_32_byte_canonical_base64(root: str) -> None:
    with pytest.raises(MalformedError):
        Checkpoint.parse(f"o\n1\n{root}\n")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "o\n",
        "o\n1\n",
        f"o\n1\n{ROOT_B64}",  # no final newline
        f"\n1\n{ROOT_B64}\n",  # empty origin
        f"o\n1\n{ROOT_B64}\n\n",  # empty extension line
        f"o\n1\n{ROOT_B64}\n\next\n",
        f"o\r\n1\n{ROOT_B64}\n",  # control character
        f"o\n1\n{ROOT_B64}\nx\ty\n",
        f"o\x00\n1\n{ROOT_B64}\n",
    ],
)
def test_checkpoint_malformed(text: str) -> None:
    with pytest.raises(MalformedError):
        Checkpoint.parse(text)


@pytest.mark.parametrize(
    "args",
    [
        ("", 1, bytes(32)),
        ("a\nb", 1, bytes(32)),
        ("o", -1, bytes(32)),
        ("o", 2**63, bytes(32)),
        ("o", 1, bytes(31)),
        ("o", 1, bytes(32), ("",)),
        ("o", 1, bytes(32), ("a\nb",)),
    ],
)
def test_checkpoint_constructor_refuses(args: tuple[object, ...]) -> None:
    with pytest.raises(MalformedError):
        Checkpoint(*args)  # type: ignore[arg-type]


def test_checkpoint_with_control_character_cannot_be_formatted() -> None:
    with pytest.raises(MalformedError):
        Checkpoint("o\x01", 1, bytes(32)).text()


# --- checkpoint signing ----------------------------------------------------------------------


def test_sign_and_open_checkpoint() -> None:
    signed = sign_checkpoint(CHECKPOINT, [LOG])
    opened = open_checkpoint(signed, ed25519_verifier(LOG.verifier_key()))
    assert opened.checkpoint == CHECKPOINT
    assert opened.raw == signed
    assert opened.note.text == CHECKPOINT.text()
    assert open_checkpoint(signed.encode(), ed25519_verifier(LOG.verifier_key())).raw == signed


def test_open_checkpoint_origin_must_match_key_name() -> None:
    other = Checkpoint("example.com/not-the-log", CHECKPOINT.size, CHECKPOINT.root_hash)
    signed = sign_checkpoint(other, [LOG])
    open_note(signed, [ed25519_verifier(LOG.verifier_key())])  # the signature itself is fine
    with pytest.raises(VerificationError):
        open_checkpoint(signed, ed25519_verifier(LOG.verifier_key()))


def test_open_checkpoint_needs_the_log_signature() -> None:
    log_v = ed25519_verifier(LOG.verifier_key())
    other_v = ed25519_verifier(LOG2.verifier_key())
    by_other = sign_checkpoint(CHECKPOINT, [LOG2])
    with pytest.raises(VerificationError):
        open_checkpoint(by_other, log_v)
    with pytest.raises(VerificationError):  # other key known and valid, log key absent
        open_checkpoint(by_other, log_v, [other_v])


def test_open_checkpoint_with_cosigners() -> None:
    signed = cosigned(["X1", "Y1"])
    witnesses = [CosignatureVerifier(wvkey(n)) for n in ("X1", "Y1")]
    opened = open_checkpoint(signed, ed25519_verifier(LOG.verifier_key()), witnesses)
    assert len(opened.note.verified) == 3
    # A broken cosignature from a known witness rejects the checkpoint.
    text, sigs = split(signed)
    bad = Signature(sigs[1].name, sigs[1].key_id, sigs[1].signature[:-1] + b"\x00")
    tampered = sign_note(text, [], keep=[sigs[0], bad, sigs[2]])
    with pytest.raises(VerificationError):
        open_checkpoint(tampered, ed25519_verifier(LOG.verifier_key()), witnesses)
    # ... but is ignored when that witness is not known.
    opened = open_checkpoint(tampered, ed25519_verifier(LOG.verifier_key()))
    assert len(opened.note.unverified) == 2


def test_tampered_checkpoint_text_rejected() -> None:
    signed = sign_checkpoint(CHECKPOINT, [LOG])
    other_root = b64(hashlib.sha256(b"x").digest())
    tampered = signed.replace(ROOT_B64, other_root)
    assert tampered != signed
    with pytest.raises(VerificationError):
        open_checkpoint(tampered, ed25519_verifier(LOG.verifier_key()))


# --- cosignatures ---------------------------------------------------------------------------


def test_cosignature_message_format() -> None:
    assert (
        cosignature_message(b"o\n1\nR\n", 1679315147)
        == b"cosignature/v1\ntime 1679315147\no\n1\nR\n"
    )
    assert cosignature_message(b"x\n", 0) == b"cosignature/v1\ntime 0\nx\n"
    for bad in (-1, MAX_TIMESTAMP + 1):
        with pytest.raises(MalformedError):
            cosignature_message(b"x\n", bad)


def test_cosignature_sign_and_verify() -> None:
    text = CHECKPOINT.text().encode()
    signer = cosigner("X1", T0 + 42)
    sig = signer.sign(text)
    assert len(sig) == 72
    assert cosignature_timestamp(sig) == T0 + 42
    assert sig[:8] == (T0 + 42).to_bytes(8, "big")
    verifier = CosignatureVerifier(wvkey("X1"))
    assert verifier.verify(text, sig)
    assert verifier.name == signer.name and verifier.key_id == signer.key_id
    assert verifier.vkey == signer.verifier_key()
    # Equivalent to a plain Ed25519 signature over the cosignature message.
    public = WITNESS_KEYS["X1"].verifier_key().public
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    Ed25519PublicKey.from_public_bytes(public).verify(sig[8:], cosignature_message(text, T0 + 42))


def test_cosignature_key_id_uses_type_0x04() -> None:
    key = WITNESS_KEYS["X1"]
    want = hashlib.sha256(key.name.encode() + b"\n\x04" + key.public).digest()[:4]
    assert key.key_id == int.from_bytes(want, "big")
    assert wvkey("X1").split("+", 2)[2] == b64(b"\x04" + key.public)


def test_cosignature_refusals() -> None:
    text = CHECKPOINT.text().encode()
    sig = cosigner("X1").sign(text)
    x1 = CosignatureVerifier(wvkey("X1"))
    # wrong key
    assert not CosignatureVerifier(wvkey("X2")).verify(text, sig)
    # tampered timestamp
    later = (T0 + 1).to_bytes(8, "big") + sig[8:]
    assert not x1.verify(text, later)
    huge = (MAX_TIMESTAMP + 1).to_bytes(8, "big") + sig[8:]
    assert not x1.verify(text, huge)
    # tampered checkpoint
    assert not x1.verify(text.replace(b"37", b"38"), sig)
    # wrong lengths
    assert not x1.verify(text, sig[:-1])
    assert not x1.verify(text, sig + b"\x00")
    assert not x1.verify(text, sig[8:])
    with pytest.raises(MalformedError):
        cosignature_timestamp(sig[:-1])


def test_cosignature_in_note_refusals() -> None:
    """A cosignature line under a known witness's name and key ID must verify."""
    text = CHECKPOINT.text()
    x1, x2 = WITNESS_KEYS["X1"], WITNESS_KEYS["X2"]
    verifiers = [ed25519_verifier(LOG.verifier_key()), CosignatureVerifier(wvkey("X1"))]
    good = cosigned(["X1"])
    assert open_note(good, verifiers).text == text
    # wrong key: X2's signature labelled as X1
    forged = Signature(x1.name, x1.key_id, cosigner("X2").sign(text.encode()))
    log_sig = split(good)[1][0]
    with pytest.raises(VerificationError):
        open_note(sign_note(text, [], keep=[log_sig, forged]), verifiers)
    # tampered timestamp
    real = split(good)[1][1]
    moved = Signature(real.name, real.key_id, (T0 + 5).to_bytes(8, "big") + real.signature[8:])
    with pytest.raises(VerificationError):
        open_note(sign_note(text, [], keep=[log_sig, moved]), verifiers)
    # tampered checkpoint: a valid cosignature over a different checkpoint
    other = Checkpoint(LOG.name, 36, TREE.root(36)).text()
    stale = Signature(x1.name, x1.key_id, cosigner("X1").sign(other.encode()))
    with pytest.raises(VerificationError):
        open_note(sign_note(text, [], keep=[log_sig, stale]), verifiers)
    assert x2.name != x1.name


def test_cosignature_types_are_enforced() -> None:
    with pytest.raises(MalformedError):
        CosignatureSigner(LOG)
    with pytest.raises(MalformedError):
        CosignatureVerifier(str(LOG.verifier_key()))
    with pytest.raises(MalformedError):
        ed25519_verifier(wvkey("X1"))


# --- tlog-policy: parsing --------------------------------------------------------------------


def spec_example_policy() -> str:
    """The example of C2SP tlog-policy, with real keys."""
    return (
        f"log {LOG.verifier_key()}\n"
        "\n"
        f"witness X1 {wvkey('X1')}\n"
        f"witness X2 {wvkey('X2')}\n"
        f"witness X3 {wvkey('X3')}\n"
        "group X-witnesses 2 X1 X2 X3\n"
        "\n"
        f"witness Y1 {wvkey('Y1')}\n"
        f"witness Y2 {wvkey('Y2')}\n"
        f"witness Y3 {wvkey('Y3')}\n"
        "group Y-witnesses any Y1 Y2 Y3\n"
        "\n"
        "group X-and-Y all X-witnesses Y-witnesses\n"
        "quorum X-and-Y\n"
    )


def test_policy_spec_example_parses() -> None:
    policy = Policy.parse(spec_example_policy())
    assert [log.vkey for log in policy.logs] == [LOG.verifier_key()]
    assert list(policy.witnesses) == ["X1", "X2", "X3", "Y1", "Y2", "Y3"]
    assert policy.witnesses["Y2"].vkey == WITNESS_KEYS["Y2"].verifier_key()
    assert policy.groups == {
        "X-witnesses": PolicyGroup("X-witnesses", 2, ("X1", "X2", "X3")),
        "Y-witnesses": PolicyGroup("Y-witnesses", 1, ("Y1", "Y2", "Y3")),
        "X-and-Y": PolicyGroup("X-and-Y", 2, ("X-witnesses", "Y-witnesses")),
    }
    assert policy.quorum == "X-and-Y"
    assert Policy.parse(spec_example_policy().encode()) == policy


def test_policy_format_round_trip() -> None:
    policy = Policy.parse(
        spec_example_policy().replace(
            f"log {LOG.verifier_key()}", f"log {LOG.verifier_key()} https://log.example/"
        )
    )
    assert policy.logs[0].url == "https://log.example/"
    again = Policy.parse(policy.format())
    assert again == policy


@pytest.mark.parametrize(
    ("cosigners", "met"),
    [
        (set(), False),
        ({"X1", "X2", "Y1"}, True),
        ({"X1", "X3", "Y3"}, True),
        ({"X1", "X2", "X3", "Y1", "Y2", "Y3"}, True),
        ({"X1", "Y1", "Y2", "Y3"}, False),  # only one X
        ({"X1", "X2", "X3"}, False),  # no Y
        ({"X1", "X2"}, False),
        ({"Y1", "Y2"}, False),
        ({"X1", "X2", "Z"}, False),  # Z is not in the policy
        ({"X-witnesses", "Y-witnesses"}, False),  # group names are not witnesses
        ({"X-and-Y"}, False),
    ],
)
def test_policy_spec_example_quorum(cosigners: set[str], met: bool) -> None:
    assert Policy.parse(spec_example_policy()).quorum_met(cosigners) is met


def _witness_lines(*names: str) -> str:
    return "".join(f"witness {n} {wvkey(n)}\n" for n in names)


@pytest.mark.parametrize(
    ("threshold", "ok_sets", "bad_sets"),
    [
        ("any", [{"X1"}, {"X3"}, {"X1", "X2", "X3"}], [set(), {"Y1"}]),
        ("all", [{"X1", "X2", "X3"}], [{"X1", "X2"}, {"X3"}]),
        ("1", [{"X2"}], [set()]),
        ("2", [{"X1", "X2"}, {"X2", "X3"}], [{"X1"}, {"X3", "Y1"}]),
        ("3", [{"X1", "X2", "X3"}], [{"X1", "X2"}]),
    ],
)
def test_policy_thresholds(
    threshold: str, ok_sets: list[set[str]], bad_sets: list[set[str]]
) -> None:
    policy = Policy.parse(
        _witness_lines("X1", "X2", "X3", "Y1") + f"group g {threshold} X1 X2 X3\nquorum g\n"
    )
    for s in ok_sets:
        assert policy.quorum_met(s), s
    for s in bad_sets:
        assert not policy.quorum_met(s), s


def test_policy_nested_groups() -> None:
    policy = Policy.parse(
        _witness_lines("X1", "X2", "X3", "Y1", "Y2", "Y3", "Z")
        + "group a any X1 X2\n"
        + "group b all X3 Y1\n"
        + "group c 2 a b Y2\n"
        + "group top all c Z\n"
        + "quorum top\n"
    )
    assert policy.quorum_met({"X1", "Y2", "Z"})
    assert policy.quorum_met({"X3", "Y1", "X2", "Z"})
    assert not policy.quorum_met({"X1", "Y2"})  # Z missing
    assert not policy.quorum_met({"X1", "X3", "Z"})  # b needs Y1 too: only one of c's members
    assert not policy.quorum_met({"X1", "X2", "Z"})  # a counts once


def test_policy_quorum_single_witness() -> None:
    policy = Policy.parse(_witness_lines("X1", "X2") + "quorum X2\n")
    assert policy.quorum_met({"X2"})
    assert not policy.quorum_met({"X1"})


def test_policy_quorum_none() -> None:
    policy = Policy.parse(f"log {LOG.verifier_key()}\nquorum none\n")
    assert policy.quorum == "none"
    assert policy.quorum_met(set())
    assert policy.witnesses == {}
    assert Policy.parse("quorum none\n").logs == []
    assert Policy.parse("quorum none").quorum == "none"  # no final newline


def test_policy_comments_whitespace_and_tabs() -> None:
    text = (
        "# a policy\n"
        "   # an indented comment\n"
        "\t#\ttabbed comment with ĳ and é\n"
        "\n"
        "   \t  \n"
        f"  log\t{LOG.verifier_key()}   \n"
        f"witness\t\tX1 \t {wvkey('X1')}\t\n"
        f"\twitness X2 {wvkey('X2')} https://x2.example/add  \n"
        "group   g\tall   X1\t X2\n"
        "   quorum\tg   \n"
        "# trailing comment"
    )
    policy = Policy.parse(text)
    assert list(policy.witnesses) == ["X1", "X2"]
    assert policy.witnesses["X2"].url == "https://x2.example/add"
    assert policy.witnesses["X1"].url is None
    assert policy.groups["g"] == PolicyGroup("g", 2, ("X1", "X2"))
    assert policy.quorum == "g"


def test_policy_names_are_opaque_octets() -> None:
    """Non-ASCII octets are allowed in names and distinguish names byte for byte."""
    kelvin = "\u212a"  # KELVIN SIGN, not "K"
    text = (
        f"witness K {wvkey('X1')}\n"
        f"witness {kelvin} {wvkey('X2')}\n"
        f"witness caf\u00e9 {wvkey('X3')}\n"
        f"group g all K {kelvin} caf\u00e9\n"
        "quorum g\n"
    )
    policy = Policy.parse(text.encode("utf-8"))
    assert len(policy.witnesses) == 3
    assert policy.quorum_met({"K", kelvin, "caf\u00e9"})
    assert not policy.quorum_met({"K", "caf\u00e9"})
    # Octets that are not UTF-8 are names too.
    raw = b"witness \xff\xfe " + wvkey("X1").encode() + b"\nquorum \xff\xfe\n"
    assert len(Policy.parse(raw).witnesses) == 1


def test_policy_format_round_trip_with_non_utf8_octets() -> None:
    """BUG: octets 0x80-0xFF are allowed anywhere in names and URLs and need not be UTF-8
    (tlog-policy, "Character set"). Policy.parse(bytes) keeps them as surrogate escapes,
    so Policy.format() returns a str with lone surrogates, and Policy.parse(str) then
    raises UnicodeEncodeError (it encodes str with strict UTF-8) instead of parsing it."""
    raw = (
        b"log " + str(LOG.verifier_key()).encode() + b" https://log.example/\xa0x\n"
        b"witness w\xff " + wvkey("X1").encode() + b"\nquorum w\xff\n"
    )
    policy = Policy.parse(raw)
    assert Policy.parse(policy.format().encode("utf-8", "surrogateescape")) == policy
    assert Policy.parse(policy.format()) == policy


def test_policy_name_with_utf8_no_break_space_is_one_name() -> None:
    """BUG: only ASCII space and tab separate fields (tlog-policy, "Structure"); the
    octets C2 A0 (U+00A0) are an opaque part of a name. Policy.parse splits on them."""
    raw = b"witness a\xc2\xa0b " + wvkey("X1").encode() + b"\nquorum a\xc2\xa0b\n"
    policy = Policy.parse(raw)
    assert len(policy.witnesses) == 1


def test_policy_group_member_with_no_break_space_is_not_two_members() -> None:
    """BUG: 'group g all a<U+00A0>b' names one (undefined) member, so it must be refused;
    Policy.parse instead reads two members a and b, silently changing the quorum."""
    raw = (
        b"witness a " + wvkey("X1").encode() + b"\n"
        b"witness b " + wvkey("X2").encode() + b"\n"
        b"group g all a\xc2\xa0b\nquorum g\n"
    )
    with pytest.raises(MalformedError):
        Policy.parse(raw)


@pytest.mark.parametrize(
    "sep",
    ["\u0085", "\u3000"],
    ids=["NEL", "IDEOGRAPHIC-SPACE"],
)
def test_policy_unicode_space_is_not_a_separator(sep: str) -> None:
    """BUG (same as above): NEL (C2 85) and IDEOGRAPHIC SPACE (E3 80 80) are octets of a
    name, not whitespace."""
    text = f"witness a{sep}b {wvkey('X1')}\nquorum a{sep}b\n"
    policy = Policy.parse(text.encode("utf-8"))
    assert list(policy.witnesses) == [f"a{sep}b"]


def test_policy_huge_numeric_threshold_is_malformed() -> None:
    """BUG: a threshold of more than 4300 digits makes int() raise a plain ValueError
    (Python's integer string conversion limit) instead of MalformedError."""
    text = _witness_lines("X1") + "group g " + "1" * 5000 + " X1\nquorum g\n"
    with pytest.raises(MalformedError):
        Policy.parse(text)


PW = _witness_lines("X1", "X2", "X3")


@pytest.mark.parametrize(
    ("why", "text"),
    [
        ("undefined group member", PW + "group g any X1 Q\nquorum g\n"),
        ("undefined quorum", PW + "quorum Q\n"),
        ("quorum names a log", f"log {LOG.verifier_key()}\nquorum {LOG.name}\n"),
        ("forward reference: group", PW + "group a any b\ngroup b any X1\nquorum a\n"),
        ("forward reference: quorum", f"quorum X1\nwitness X1 {wvkey('X1')}\n"),
        (
            "forward reference: witness after group",
            f"witness X1 {wvkey('X1')}\ngroup g any X1 X2\nwitness X2 {wvkey('X2')}\nquorum g\n",
        ),
        ("self reference", PW + "group g any X1 g\nquorum g\n"),
        ("duplicate witness key", PW + f"witness X4 {wvkey('X1')}\nquorum none\n"),
        (
            "duplicate witness key under another key name",
            PW
            + "witness X4 "
            + str(
                Ed25519Signer(
                    "renamed.example", WITNESS_KEYS["X1"].seed, SIG_COSIGNATURE_V1
                ).verifier_key()
            )
            + "\nquorum none\n",
        ),
        (
            "duplicate log key",
            f"log {LOG.verifier_key()}\nlog {LOG.verifier_key()} https://mirror/\nquorum none\n",
        ),
        (
            "duplicate log key under another key name",
            f"log {LOG.verifier_key()}\nlog "
            + str(Ed25519Signer("renamed.example", LOG.seed).verifier_key())
            + "\nquorum none\n",
        ),
        ("duplicate witness name", PW + f"witness X1 {wvkey('Y1')}\nquorum none\n"),
        ("duplicate group name", PW + "group g any X1\ngroup g any X2\nquorum g\n"),
        ("group named like a witness", PW + "group X1 any X2\nquorum X1\n"),
        ("witness named like a group", PW + f"group g any X1\nwitness g {wvkey('Y1')}\nquorum g\n"),
        ("reserved none: witness", f"witness none {wvkey('X1')}\nquorum none\n"),
        ("reserved none: group", PW + "group none any X1\nquorum none\n"),
        ("none as a group member", PW + "group g any X1 none\nquorum g\n"),
        ("member listed twice", PW + "group g 2 X1 X1\nquorum g\n"),
        (
            "member of two groups (tlog-policy: each name is a member at most once)",
            PW + "group a any X1\ngroup b any X1 X2\ngroup c all a b\nquorum c\n",
        ),
        ("member listed twice with any", PW + "group g any X1 X2 X1\nquorum g\n"),
        ("k = 0", PW + "group g 0 X1 X2\nquorum g\n"),
        ("k > n", PW + "group g 3 X1 X2\nquorum g\n"),
        ("k negative", PW + "group g -1 X1 X2\nquorum g\n"),
        ("k with leading zero", PW + "group g 01 X1 X2\nquorum g\n"),
        ("k with plus sign", PW + "group g +1 X1 X2\nquorum g\n"),
        ("k not decimal", PW + "group g 1.0 X1 X2\nquorum g\n"),
        ("k in other digits", PW + "group g \u0661 X1 X2\nquorum g\n"),
        ("k uppercase keyword", PW + "group g ANY X1 X2\nquorum g\n"),
        ("group without members", PW + "group g any\nquorum none\n"),
        ("group without threshold", PW + "group g\nquorum none\n"),
        ("two quorum lines", PW + "quorum X1\nquorum X2\n"),
        ("two identical quorum lines", PW + "quorum none\nquorum none\n"),
        ("no quorum line", PW),
        ("empty file", ""),
        ("only comments", "# quorum none\n"),
        ("quorum without name", PW + "quorum\n"),
        ("quorum with two names", PW + "quorum X1 X2\n"),
        ("unknown keyword", PW + "witnesses X9 x\nquorum none\n"),
        ("keyword is case sensitive", PW + "Quorum none\n"),
        ("log without key", "log\nquorum none\n"),
        ("log with too many fields", f"log {LOG.verifier_key()} https://a/ extra\nquorum none\n"),
        ("witness without key", "witness W\nquorum none\n"),
        ("witness with too many fields", f"witness W {wvkey('X1')} https://a/ b\nquorum none\n"),
        ("bad vkey", "witness W not-a-key\nquorum none\n"),
        ("vkey with wrong key id", f"log {str(LOG.verifier_key())[:-50]}\nquorum none\n"),
        ("log with a witness key", f"log {wvkey('X1')}\nquorum none\n"),
        ("witness with a log key", f"witness W {LOG.verifier_key()}\nquorum none\n"),
        ("NUL", PW + "quorum none\n\x00"),
        ("SOH in a name", PW.replace("X1", "X\x011", 1) + "quorum none\n"),
        ("carriage return", PW.replace("\n", "\r\n") + "quorum none\r\n"),
        ("escape", f"# \x1b[31m\n{PW}quorum none\n"),
        ("DEL", f"# \x7f\n{PW}quorum none\n"),
        ("vertical tab", f"witness\x0bW {wvkey('X1')}\nquorum none\n"),
        ("form feed", f"\x0c\n{PW}quorum none\n"),
    ],
)
def test_policy_refusals(why: str, text: str) -> None:
    with pytest.raises(MalformedError):
        Policy.parse(text)


def test_policy_size_limit() -> None:
    with pytest.raises(MalformedError):
        Policy.parse(b"#" * (1 << 20) + b"\nquorum none\n")


# --- tlog-policy: evaluating checkpoints ----------------------------------------------------


def test_verify_checkpoint_quorum_met() -> None:
    policy = Policy.parse(spec_example_policy())
    signed = cosigned(["X1", "X3", "Y2"])
    verified = policy.verify_checkpoint(signed)
    assert verified.checkpoint == CHECKPOINT
    assert verified.log.vkey == LOG.verifier_key()
    assert verified.cosigners == {"X1": T0, "X3": T0 + 1, "Y2": T0 + 2}
    assert verified.raw == signed
    assert policy.verify_checkpoint(signed.encode()).checkpoint == CHECKPOINT


@pytest.mark.parametrize("names", [[], ["X1"], ["X1", "X2"], ["Y1", "Y2", "Y3"], ["X1", "Y1"]])
def test_verify_checkpoint_quorum_not_met(names: list[str]) -> None:
    policy = Policy.parse(spec_example_policy())
    with pytest.raises(VerificationError):
        policy.verify_checkpoint(cosigned(names))


def test_verify_checkpoint_invalid_cosignature_from_known_witness_rejects() -> None:
    policy = Policy.parse(spec_example_policy())
    signed = cosigned(["X1", "X2", "Y1", "Y2"])
    text, sigs = split(signed)
    # Y2's line is not needed for the quorum, but it is broken: the note is rejected.
    y2 = sigs[4]
    broken = Signature(y2.name, y2.key_id, y2.signature[:8] + bytes(64))
    with pytest.raises(VerificationError):
        policy.verify_checkpoint(sign_note(text, [], keep=[*sigs[:4], broken]))


def test_verify_checkpoint_unknown_witnesses_ignored() -> None:
    policy = Policy.parse(spec_example_policy())
    stranger = Ed25519Signer("stranger.example", seed(99), SIG_COSIGNATURE_V1)
    signed = sign_checkpoint(
        CHECKPOINT,
        [LOG, CosignatureSigner(stranger, clock=lambda: 1.0), cosigner("X1"), cosigner("X2")],
    )
    text, sigs = split(signed)
    junk = Signature("junk.example", 0x01020304, b"\x00" * 72)
    with_junk = sign_note(text, [cosigner("Y3")], keep=[*sigs, junk])
    verified = policy.verify_checkpoint(with_junk)
    assert set(verified.cosigners) == {"X1", "X2", "Y3"}
    # Unknown witnesses do not count toward the quorum.
    only_strangers = sign_checkpoint(
        CHECKPOINT, [LOG, CosignatureSigner(stranger, clock=lambda: 1.0)]
    )
    with pytest.raises(VerificationError):
        policy.verify_checkpoint(only_strangers)


def test_verify_checkpoint_witness_key_under_other_name_does_not_count() -> None:
    """Cosignatures are matched by key name and key ID, not by the policy's witness name."""
    renamed = Ed25519Signer("renamed.example", WITNESS_KEYS["Y1"].seed, SIG_COSIGNATURE_V1)
    policy = Policy.parse(spec_example_policy())
    signed = sign_checkpoint(
        CHECKPOINT, [LOG, cosigner("X1"), cosigner("X2"), CosignatureSigner(renamed)]
    )
    with pytest.raises(VerificationError):
        policy.verify_checkpoint(signed)


def test_verify_checkpoint_log_must_be_listed_and_match_origin() -> None:
    policy = Policy.parse(spec_example_policy())
    by_other_log = cosigned(["X1", "X2", "Y1"], Checkpoint(LOG2.name, TREE.size, TREE.root()), LOG2)
    with pytest.raises(VerificationError):
        policy.verify_checkpoint(by_other_log)
    wrong_origin = cosigned(["X1", "X2", "Y1"], Checkpoint("example.com/elsewhere", 1, bytes(32)))
    with pytest.raises(VerificationError):
        policy.verify_checkpoint(wrong_origin)
    # A second listed log is accepted.
    both = Policy.parse(spec_example_policy().replace("\n", f"\nlog {LOG2.verifier_key()}\n", 1))
    assert len(both.logs) == 2
    assert both.verify_checkpoint(by_other_log).log.vkey == LOG2.verifier_key()


def test_verify_checkpoint_without_logs() -> None:
    policy = Policy.parse(_witness_lines("X1") + "quorum none\n")
    with pytest.raises(VerificationError):
        policy.verify_checkpoint(cosigned([]))


def test_verify_checkpoint_quorum_none() -> None:
    policy = Policy.parse(f"log {LOG.verifier_key()}\nquorum none\n")
    assert policy.verify_checkpoint(cosigned([])).cosigners == {}
    assert policy.verify_checkpoint(cosigned(["X1"])).cosigners == {}  # unknown witness


def test_verify_checkpoint_malformed_input() -> None:
    policy = Policy.parse(f"log {LOG.verifier_key()}\nquorum none\n")
    with pytest.raises(MalformedError):
        policy.verify_checkpoint(b"\xff" + cosigned([]).encode())
    bad_body = sign_note("example.com/log\n01\n" + ROOT_B64 + "\n", [LOG])
    with pytest.raises(MalformedError):
        policy.verify_checkpoint(bad_body)


# --- tlog-proof ------------------------------------------------------------------------------


def proof_for(index: int, names: list[str] | None = None, extra: bytes | None = None) -> TlogProof:
    signed = cosigned(["X1", "X2", "Y1"] if names is None else names)
    return make_proof(index, inclusion_proof(TREE, index, TREE.size), signed, extra)


def test_tlog_proof_format() -> None:
    p = proof_for(5, extra=b"age-v1.2.1")
    text = p.format()
    lines = text.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    assert lines[1] == "extra " + b64(b"age-v1.2.1")
    assert lines[2] == "index 5"
    assert lines[3 : 3 + len(p.proof)] == [b64(h) for h in p.proof]
    assert lines[3 + len(p.proof)] == ""
    assert text.endswith("\n\n" + p.checkpoint)
    no_extra = proof_for(5).format()
    assert no_extra.split("\n")[1] == "index 5"


@pytest.mark.parametrize("extra", [None, b"", b"\x00", b"some opaque data \xff"])
@pytest.mark.parametrize("index", [0, 1, 17, 36])
def test_tlog_proof_round_trip(extra: bytes | None, index: int) -> None:
    p = proof_for(index, extra=extra)
    text = p.format()
    parsed = TlogProof.parse(text)
    assert parsed == p
    assert TlogProof.parse(text.encode()) == p
    assert parsed.format() == text


def test_tlog_proof_with_no_hashes_round_trips() -> None:
    tree = MemoryTree()
    tree.append(b"only")
    signed = sign_checkpoint(Checkpoint(LOG.name, 1, tree.root()), [LOG])
    p = make_proof(0, [], signed)
    assert p.format().startswith("c2sp.org/tlog-proof@v1\nindex 0\n\n")
    assert TlogProof.parse(p.format()) == p
    policy = Policy.parse(f"log {LOG.verifier_key()}\nquorum none\n")
    verify_proof(p, tree.leaf_hash(0), policy)


def test_tlog_proof_verifies() -> None:
    policy = Policy.parse(spec_example_policy())
    for index in (0, 17, 36):
        p = TlogProof.parse(proof_for(index, extra=b"x").format())
        verified = verify_proof(p, TREE.leaf_hash(index), policy)
        assert verified.checkpoint == CHECKPOINT
        assert set(verified.cosigners) == {"X1", "X2", "Y1"}


def test_tlog_proof_refusals() -> None:
    policy = Policy.parse(spec_example_policy())
    p = proof_for(17)
    leaf = TREE.leaf_hash(17)
    # wrong leaf
    with pytest.raises(VerificationError):
        verify_proof(p, TREE.leaf_hash(16), policy)
    # wrong index
    for index in (16, 18, 36, 37, 1000):
        with pytest.raises(VerificationError):
            verify_proof(make_proof(index, p.proof, p.checkpoint), leaf, policy)
    # tampered proof hash
    for i in range(len(p.proof)):
        bad = list(p.proof)
        bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
        with pytest.raises(VerificationError):
            verify_proof(make_proof(17, bad, p.checkpoint), leaf, policy)
    # checkpoint by an unknown log
    other_cp = Checkpoint(LOG2.name, TREE.size, TREE.root())
    foreign = make_proof(17, p.proof, cosigned(["X1", "X2", "Y1"], other_cp, LOG2))
    with pytest.raises(VerificationError):
        verify_proof(foreign, leaf, policy)
    # quorum not met
    with pytest.raises(VerificationError):
        verify_proof(proof_for(17, ["X1", "X2"]), leaf, policy)
    # all good
    verify_proof(p, leaf, policy)


def test_tlog_proof_extra_is_not_authenticated_but_harmless() -> None:
    policy = Policy.parse(spec_example_policy())
    p = proof_for(3, extra=b"one")
    q = make_proof(3, p.proof, p.checkpoint, b"another")
    verify_proof(q, TREE.leaf_hash(3), policy)


GOOD_PROOF = proof_for(5).format()
HEAD, _, CP = GOOD_PROOF.partition("\n\n")
HASHES = HEAD.split("\n")[2:]


@pytest.mark.parametrize(
    "text",
    [
        "",
        CP,
        GOOD_PROOF.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
        GOOD_PROOF.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v1 ", 1),
        " " + GOOD_PROOF,
        GOOD_PROOF.replace("index 5", "index 05", 1),
        GOOD_PROOF.replace("index 5", "index -5", 1),
        GOOD_PROOF.replace("index 5", "index +5", 1),
        GOOD_PROOF.replace("index 5", "index  5", 1),
        GOOD_PROOF.replace("index 5", "index 5 ", 1),
        GOOD_PROOF.replace("index 5", "index\t5", 1),
        GOOD_PROOF.replace("index 5", "Index 5", 1),
        GOOD_PROOF.replace("index 5", f"index {2**63}", 1),
        GOOD_PROOF.replace("index 5", "index ５", 1),
        GOOD_PROOF.replace("index 5\n", "", 1),  # missing index
        GOOD_PROOF.replace("index 5", "index 5\nextra AAAA", 1),  # extra after index
        GOOD_PROOF.replace("index 5", "extra !!\nindex 5", 1),
        GOOD_PROOF.replace("index 5", "extra AAB=\nindex 5", 1),  # non-canonical base64
        GOOD_PROOF.replace("index 5", "extra\nindex 5", 1),
        GOOD_PROOF.replace(HASHES[0], HASHES[0][:-4], 1),  # short hash
        GOOD_PROOF.replace(HASHES[0], HASHES[0].rstrip("="), 1),
        GOOD_PROOF.replace(HASHES[0], HASHES[0] + "AAAA", 1),
        GOOD_PROOF.replace(HASHES[0], HASHES[0] + " ", 1),
        GOOD_PROOF.replace("\n\n", "\n", 1),  # no blank line
        HEAD + "\n\n",  # no checkpoint
        HEAD + "\n\n" + CP.replace("\n37\n", "\n037\n", 1),  # bad checkpoint body
        HEAD + "\n\n" + CP.split("\n\n")[0] + "\n",  # checkpoint without signatures
        HEAD.replace("index 5", "index 5\n" + "\n".join([HASHES[0]] * 65)) + "\n\n" + CP,
    ],
)
def test_tlog_proof_malformed(text: str) -> None:
    with pytest.raises(MalformedError):
        TlogProof.parse(text)


def test_tlog_proof_malformed_bytes() -> None:
    with pytest.raises(MalformedError):
        TlogProof.parse(b"\xff\xfe" + GOOD_PROOF.encode())


def test_tlog_proof_64_hashes_parse() -> None:
    head = "c2sp.org/tlog-proof@v1\nindex 0\n" + "\n".join([HASHES[0]] * 64)
    assert len(TlogProof.parse(head + "\n\n" + CP).proof) == 64


def test_vkey_of_log_matches_signer() -> None:
    assert VerifierKey.parse(str(LOG.verifier_key())) == LOG.verifier_key()

"""Fuzzing every parser: the only allowed outcomes are a value or an OvertError.

Inputs are random bytes/text, grammar-shaped token soup, and mutations (byte
flips, insertions, deletions, truncation, duplication) of valid inputs. When a
parser accepts something, it must also round-trip through its formatter, which
catches parsers that are lenient in ways their formatters are not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overt.crypto.dsse import Envelope, sign_envelope
from overt.crypto.intoto import Statement, Subject
from overt.crypto.keys import SIG_COSIGNATURE_V1, Ed25519Signer, VerifierKey, ed25519_verifier
from overt.crypto.note import Signature, open_note, sign_note, split
from overt.errors import OvertError
from overt.tlog.checkpoint import Checkpoint, sign_checkpoint
from overt.tlog.cosignature import CosignatureSigner, CosignatureVerifier
from overt.tlog.merkle import MemoryTree, inclusion_proof
from overt.tlog.policy import Policy
from overt.tlog.proof import TlogProof, make_proof
from overt.tlog.tiles import Tile, decode_bundle, encode_bundle

T = TypeVar("T")

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def seed(n: int) -> bytes:
    return hashlib.sha256(b"fuzz key %d" % n).digest()


LOG = Ed25519Signer("log.example/fuzz", seed(1))
OTHER = Ed25519Signer("other.example", seed(2))
W1 = Ed25519Signer("w1.example", seed(3), SIG_COSIGNATURE_V1)
W2 = Ed25519Signer("w2.example", seed(4), SIG_COSIGNATURE_V1)
STRANGER = Ed25519Signer("stranger.example", seed(5), SIG_COSIGNATURE_V1)


def at(t: int) -> Callable[[], float]:
    return lambda: float(t)


TREE = MemoryTree()
TREE.extend([b"fuzz entry %d" % i for i in range(21)])
CHECKPOINT = Checkpoint(LOG.name, TREE.size, TREE.root(), ("ext line",))

# A valid signed note: one known signer and one unknown one.
NOTE_TEXT = "fuzz me\n\nwith a blank line inside\n"
SIGNED_NOTE = sign_note(NOTE_TEXT, [LOG, OTHER])
NOTE_VERIFIERS = [ed25519_verifier(LOG.verifier_key())]

# A cosigned checkpoint: log + two required witnesses + one unknown witness.
COSIGNED = sign_checkpoint(
    CHECKPOINT,
    [
        LOG,
        CosignatureSigner(W1, at(1_700_000_001)),
        CosignatureSigner(STRANGER, at(1_700_000_002)),
        CosignatureSigner(W2, at(1_700_000_003)),
    ],
)
POLICY_TEXT = (
    "# fuzz policy\n"
    f"log {LOG.verifier_key()} https://log.example/\n"
    f"witness W1 {W1.verifier_key()}\n"
    f"\twitness W2 {W2.verifier_key()}  https://w2.example/\n"
    "group both all W1 W2\n"
    "group top any both\n"
    "quorum top\n"
)
POLICY = Policy.parse(POLICY_TEXT)
PROOF_TEXT = make_proof(
    7, inclusion_proof(TREE, 7, TREE.size), COSIGNED, extra=b"extra data"
).format()
BUNDLE = encode_bundle([b"", b"a", b"hello world", bytes(range(256)), b"\x00" * 300])
ENVELOPE = sign_envelope("application/x-fuzz", b'{"a": [1, 2, "three"]}', [LOG, OTHER]).to_bytes()
STATEMENT = Statement(
    [Subject("artifact.tar.gz", {"sha256": hashlib.sha256(b"x").hexdigest()})],
    "https://slsa.dev/provenance/v1",
    {"builder": {"id": "https://overt.example/conveyor"}, "n": [1, 2.5, None, True]},
).to_bytes()
VKEY = str(W1.verifier_key())
PRIVATE = LOG.encode_private()
TILE_PATHS = ["tile/0/x001/x234/067.p/8", "tile/entries/000", "tile/3/x999/001.p/255"]

assert open_note(SIGNED_NOTE, NOTE_VERIFIERS).text == NOTE_TEXT
assert POLICY.verify_checkpoint(COSIGNED).checkpoint == CHECKPOINT
assert TlogProof.parse(PROOF_TEXT).format() == PROOF_TEXT


def outcome(fn: Callable[..., T], *args: Any) -> T | None:
    """Run a parser: a value or an OvertError are fine, anything else fails the test."""
    try:
        return fn(*args)
    except OvertError:
        return None


# --- strategies ------------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "xor", "insert", "delete", "truncate", "dup", "ascii"]))
        n = len(data)
        if op == "flip" and n:
            i = draw(st.integers(0, n - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "xor" and n:
            i = draw(st.integers(0, n - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif op == "ascii" and n:
            i = draw(st.integers(0, n - 1))
            data[i] = ord(draw(st.sampled_from(" \t\n+/=-0129aAzZ#.\u00ff"[:-1] + "\x00")))
        elif op == "insert":
            i = draw(st.integers(0, n))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and n:
            i = draw(st.integers(0, n - 1))
            data[i : i + draw(st.integers(1, 16))] = b""
        elif op == "truncate":
            del data[draw(st.integers(0, n)) :]
        elif op == "dup" and n:
            i = draw(st.integers(0, n - 1))
            j = draw(st.integers(i, min(n, i + 64)))
            data[j:j] = data[i:j]
    return bytes(data)


def as_text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def inputs(valid: bytes, max_size: int = 400) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=max_size),
        st.text(max_size=max_size).map(lambda s: s.encode("utf-8")),
        mutated(valid),
        mutated(valid),
        mutated(valid),
    )


def text_inputs(valid: str, max_size: int = 400) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=max_size),
        mutated(valid.encode("utf-8")).map(as_text),
        mutated(valid.encode("utf-8")).map(as_text),
    )


def soup(tokens: list[str], seps: str = " \n") -> st.SearchStrategy[str]:
    """Token soup shaped like the format, to get past the first checks more often."""
    token = st.sampled_from(tokens)
    return st.lists(st.tuples(token, st.sampled_from(list(seps))), max_size=40).map(
        lambda items: "".join(t + s for t, s in items)
    )


# --- signed notes -----------------------------------------------------------------------------

NOTE_TOKENS = [
    "fuzz me",
    "",
    "\n",
    "\u2014",
    "\u2014 ",
    LOG.name,
    OTHER.name,
    "AAAA",
    "AAAAAAA=",
    *(ln[len("\u2014 ") :] for ln in SIGNED_NOTE.split("\n") if ln.startswith("\u2014")),
    *SIGNED_NOTE.split("\n"),
]


@FUZZ
@given(st.one_of(inputs(SIGNED_NOTE.encode()), soup(NOTE_TOKENS).map(str.encode)))
def test_fuzz_note_split_bytes(data: bytes) -> None:
    got = outcome(split, data)
    if got is not None:
        text, sigs = got
        assert text + "\n" + "".join(s.line() for s in sigs) == data.decode("utf-8")


@FUZZ
@given(st.one_of(text_inputs(SIGNED_NOTE), soup(NOTE_TOKENS)))
def test_fuzz_note_split_and_open_text(message: str) -> None:
    got = outcome(split, message)
    note = outcome(open_note, message, NOTE_VERIFIERS)
    if got is None:
        assert note is None
        return
    text, sigs = got
    assert text + "\n" + "".join(s.line() for s in sigs) == message
    if note is not None:
        assert note.text == text
        assert len(note.verified) + len(note.unverified) <= len(sigs)
        assert note.verified


@FUZZ
@given(inputs(SIGNED_NOTE.encode()))
def test_fuzz_open_note_bytes(data: bytes) -> None:
    note = outcome(open_note, data, NOTE_VERIFIERS)
    if note is not None:
        assert note.text == NOTE_TEXT  # only the genuine text carries LOG's signature


# --- keys -------------------------------------------------------------------------------------


@FUZZ
@given(
    st.one_of(
        text_inputs(VKEY),
        text_inputs(str(LOG.verifier_key())),
        soup(["w1.example", "+", "00000000", VKEY.split("+", 2)[2], "ab", "="], seps=" +"),
    )
)
def test_fuzz_verifier_key_parse(text: str) -> None:
    vk = outcome(VerifierKey.parse, text)
    if vk is not None:
        assert str(vk) == text.strip()
        assert VerifierKey.parse(str(vk)) == vk


@FUZZ
@given(text_inputs(PRIVATE))
def test_fuzz_private_key_parse(text: str) -> None:
    signer = outcome(Ed25519Signer.parse_private, text)
    if signer is not None:
        assert signer.encode_private() == text.strip()


# --- checkpoints, policies, proofs --------------------------------------------------------------

CHECKPOINT_TOKENS = [
    LOG.name,
    "0",
    "1",
    "01",
    "21",
    str(2**63 - 1),
    str(2**63),
    CHECKPOINT.text().split("\n")[2],
    "AAAA",
    "ext",
    "",
    "\u2014",
]


@FUZZ
@given(
    st.one_of(
        text_inputs(CHECKPOINT.text()),
        soup(CHECKPOINT_TOKENS, seps="\n\n\n "),
    )
)
def test_fuzz_checkpoint_parse(text: str) -> None:
    cp = outcome(Checkpoint.parse, text)
    if cp is not None:
        assert cp.text() == text
        assert Checkpoint.parse(cp.text()) == cp


POLICY_TOKENS = [
    "log",
    "witness",
    "group",
    "quorum",
    "none",
    "any",
    "all",
    "0",
    "1",
    "2",
    "3",
    "01",
    "W1",
    "W2",
    "both",
    "g",
    "#",
    str(LOG.verifier_key()),
    str(W1.verifier_key()),
    str(W2.verifier_key()),
    "https://x/",
    "\u00a0",
    "\t",
]


@FUZZ
@given(st.one_of(inputs(POLICY_TEXT.encode(), 1200), soup(POLICY_TOKENS).map(str.encode)))
def test_fuzz_policy_parse(data: bytes) -> None:
    policy = outcome(Policy.parse, data)
    if policy is not None:
        # Through bytes: format() of a policy with non-UTF-8 octets cannot be parsed as
        # str (see test_policy_format_round_trip_with_non_utf8_octets).
        assert Policy.parse(policy.format().encode("utf-8", "surrogateescape")) == policy
        if policy.logs:
            outcome(policy.verify_checkpoint, COSIGNED)


@FUZZ
@given(inputs(PROOF_TEXT.encode(), 1500))
def test_fuzz_tlog_proof_parse(data: bytes) -> None:
    proof = outcome(TlogProof.parse, data)
    if proof is not None:
        assert proof.format() == data.decode("utf-8")
        assert TlogProof.parse(proof.format()) == proof
    text_proof = outcome(TlogProof.parse, as_text(data))
    if text_proof is not None:
        assert TlogProof.parse(text_proof.format()) == text_proof


# --- tiles and bundles -----------------------------------------------------------------------


@FUZZ
@given(
    st.one_of(
        st.text(max_size=60),
        st.text(alphabet="tile/entries0123456789x.p", max_size=40),
        st.sampled_from(TILE_PATHS).flatmap(lambda p: mutated(p.encode()).map(as_text)),
    )
)
def test_fuzz_tile_parse_path(path: str) -> None:
    tile = outcome(Tile.parse_path, path)
    if tile is not None:
        assert tile.path() == path


@FUZZ
@given(inputs(BUNDLE, 2000), st.one_of(st.none(), st.integers(0, 300)))
def test_fuzz_decode_bundle(data: bytes, width: int | None) -> None:
    entries = outcome(decode_bundle, data, width)
    if entries is not None:
        assert encode_bundle(entries) == data
        assert width is None or len(entries) == width


# --- DSSE and in-toto ----------------------------------------------------------------------------

JSON_TOKENS = [
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "1",
    "-0",
    "1e999",
    "true",
    '""',
    '"AAAA"',
    '"payload"',
    '"payloadType"',
    '"signatures"',
    '"sig"',
    '"keyid"',
    '"_type"',
    '"https://in-toto.io/Statement/v1"',
    '"subject"',
    '"digest"',
    '"name"',
    '"predicateType"',
    '"predicate"',
    '"sha256"',
    '"ab"',
    '"\\ud800"',
]


@FUZZ
@given(st.one_of(inputs(ENVELOPE, 1500), soup(JSON_TOKENS, seps=" ").map(str.encode)))
def test_fuzz_envelope_from_bytes(data: bytes) -> None:
    env = outcome(Envelope.from_bytes, data)
    if env is not None:
        assert Envelope.from_bytes(env.to_bytes()) == env


@FUZZ
@given(st.one_of(inputs(STATEMENT, 1500), soup(JSON_TOKENS, seps=" ").map(str.encode)))
def test_fuzz_statement_from_bytes(data: bytes) -> None:
    statement = outcome(Statement.from_bytes, data)
    if statement is not None:
        assert Statement.from_bytes(statement.to_bytes()) == statement


# --- single flipped bytes in signed material ----------------------------------------------------


def _line_span(message: str, name: str) -> tuple[int, int]:
    """Byte span of the signature line of key `name` (including its newline)."""
    raw = message.encode("utf-8")
    start = raw.index(("\n\u2014 " + name + " ").encode()) + 1
    return start, raw.index(b"\n", start) + 1


def _flips(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    for i in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            out.append((i, bytes(flipped)))
    return out


def _check_flipped_note(pos: int, flipped: bytes) -> None:
    unknown = _line_span(SIGNED_NOTE, OTHER.name)
    note = outcome(open_note, flipped, NOTE_VERIFIERS)
    if note is not None:
        assert note.text == NOTE_TEXT
        assert unknown[0] <= pos < unknown[1], f"flip at {pos} still verified"


def _check_flipped_checkpoint(pos: int, flipped: bytes) -> None:
    unknown = _line_span(COSIGNED, STRANGER.name)
    verified = outcome(POLICY.verify_checkpoint, flipped)
    if verified is not None:
        assert verified.checkpoint == CHECKPOINT
        assert set(verified.cosigners) == {"W1", "W2"}
        assert unknown[0] <= pos < unknown[1], f"flip at {pos} still verified"


def test_every_single_bit_flip_in_a_signed_note() -> None:
    survivors = 0
    for pos, flipped in _flips(SIGNED_NOTE.encode()):
        _check_flipped_note(pos, flipped)
        survivors += outcome(open_note, flipped, NOTE_VERIFIERS) is not None
    assert survivors > 0  # some flips in the unknown key's line are harmless


def test_every_single_bit_flip_in_a_cosigned_checkpoint() -> None:
    for pos, flipped in _flips(COSIGNED.encode()):
        _check_flipped_checkpoint(pos, flipped)


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_random_byte_change_in_signed_note_and_checkpoint(data: st.DataObject) -> None:
    for original, check in (
        (SIGNED_NOTE.encode(), _check_flipped_note),
        (COSIGNED.encode(), _check_flipped_checkpoint),
    ):
        pos = data.draw(st.integers(0, len(original) - 1))
        value = data.draw(st.integers(0, 255).filter(lambda v, p=pos, o=original: v != o[p]))
        changed = bytearray(original)
        changed[pos] = value
        check(pos, bytes(changed))


def test_flipped_checkpoint_as_str_input() -> None:
    """Flips that keep the note valid UTF-8, passed as str: same guarantees."""
    for pos, flipped in _flips(COSIGNED.encode())[::7]:
        try:
            text = flipped.decode("utf-8")
        except UnicodeDecodeError:
            continue
        verified = outcome(POLICY.verify_checkpoint, text)
        if verified is not None:
            assert verified.checkpoint == CHECKPOINT
            start, end = _line_span(COSIGNED, STRANGER.name)
            assert start <= pos < end


# --- str inputs that are not valid Unicode ------------------------------------------------------


LONE_SURROGATE = "\udcff"  # what surrogateescape decoding of the byte 0xFF produces
_sig_block = SIGNED_NOTE[len(NOTE_TEXT) + 1 :]


@pytest.mark.parametrize(
    "call",
    [
        lambda: open_note("fuzz" + LONE_SURROGATE + "\n\n" + _sig_block, NOTE_VERIFIERS),
        lambda: POLICY.verify_checkpoint(COSIGNED.replace("ext line", "ext" + LONE_SURROGATE)),
        # A surrogate escape (U+DC80..U+DCFF) stands for an opaque octet, which
        # tlog-policy allows; any other lone surrogate is not text.
        lambda: Policy.parse("# \ud800\nquorum none\n"),
        lambda: VerifierKey.parse(VKEY.replace("w1.example", "w1" + LONE_SURROGATE, 1)),
    ],
    ids=["open_note", "Policy.verify_checkpoint", "Policy.parse", "VerifierKey.parse"],
)
def test_str_with_lone_surrogate_is_an_overt_error(call: Callable[[], Any]) -> None:
    """BUG: these accept `str` but encode it to UTF-8 without catching UnicodeEncodeError,
    so a str holding a lone surrogate (as produced by surrogateescape decoding, e.g. of
    file names or command-line arguments) escapes as UnicodeEncodeError, not OvertError."""
    with pytest.raises(OvertError):
        call()


def test_signature_line_round_trip_sanity() -> None:
    _, sigs = split(SIGNED_NOTE)
    assert [s.name for s in sigs] == [LOG.name, OTHER.name]
    assert isinstance(sigs[0], Signature)
    assert CosignatureVerifier(W1.verifier_key()).name == "w1.example"

"""The customer's trust policy (TOML): what it accepts, what it refuses, how it explains itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from overt.crypto.keys import SIG_COSIGNATURE_V1, Ed25519Signer
from overt.errors import MalformedError
from overt.policy.trust import TrustPolicy, load_policy, parse_policy
from overt.tlog.checkpoint import Checkpoint, sign_checkpoint
from overt.tlog.cosignature import CosignatureSigner
from overt.tlog.hashing import EMPTY_ROOT
from update_fixtures import cli, flat


@dataclass(frozen=True)
class Keys:
    log: Ed25519Signer
    witnesses: tuple[Ed25519Signer, ...]
    conveyor: str
    rebuilders: tuple[str, ...]
    reviewer: str

    @property
    def log_vkey(self) -> str:
        return str(self.log.verifier_key())

    def witness_vkey(self, i: int) -> str:
        return str(self.witnesses[i].verifier_key())


@pytest.fixture(scope="module")
def keys() -> Keys:
    def vkey(name: str) -> str:
        return str(Ed25519Signer.generate(name).verifier_key())

    return Keys(
        Ed25519Signer.generate("example.com/acme/releases"),
        tuple(Ed25519Signer.generate(f"w{i}.example", SIG_COSIGNATURE_V1) for i in (1, 2, 3)),
        vkey("conveyor.acme.example"),
        (vkey("rebuilder.lucerne.example"), vkey("rebuilder.basel.example")),
        vkey("reviewer.example/alice"),
    )


def text(
    keys: Keys,
    *,
    log: str | None = None,
    witnesses: str | None = None,
    conveyors: str | None = None,
    rebuilders: str | None = None,
    reviews: str | None = None,
    top: str = "",
    rest: str = "",
) -> str:
    """A valid policy (2 of 3 witnesses, 1 of 2 rebuilders), with any section replaced."""
    default_witnesses = "quorum = 2\nmax_checkpoint_age_hours = 24\n" + "".join(
        f'[[witnesses.witness]]\nname = "w{i + 1}"\nkey = "{keys.witness_vkey(i)}"\n'
        f'url = "https://w{i + 1}.example/"\n'
        for i in range(3)
    )
    rebuilder_keys = ", ".join(f'"{k}"' for k in keys.rebuilders)
    sections = {
        "log": log
        if log is not None
        else f'key = "{keys.log_vkey}"\nurl = "https://log.acme.example/releases"\n',
        "witnesses": witnesses if witnesses is not None else default_witnesses,
        "conveyors": conveyors if conveyors is not None else f'keys = ["{keys.conveyor}"]\n',
        "rebuilders": rebuilders
        if rebuilders is not None
        else f"keys = [{rebuilder_keys}]\nrequired = 1\n",
        "reviews": reviews
        if reviews is not None
        else f'keys = ["{keys.reviewer}"]\nrequired = 0\nscope = "critical"\n',
    }
    return top + "".join(f"[{name}]\n{body}\n" for name, body in sections.items()) + rest


def one_witness(keys: Keys) -> str:
    return f'[[witnesses.witness]]\nname = "a"\nkey = "{keys.witness_vkey(0)}"\n'


def refused(policy_text: str) -> str:
    with pytest.raises(MalformedError) as info:
        parse_policy(policy_text)
    return str(info.value)


# --- valid policies ------------------------------------------------------------------


def test_inline_witnesses_with_quorum(keys: Keys) -> None:
    policy = parse_policy(text(keys))
    assert policy.log_key == keys.log_vkey
    assert policy.origin == "example.com/acme/releases"
    assert policy.log_url == "https://log.acme.example/releases"
    assert sorted(policy.tlog_policy.witnesses) == ["w1", "w2", "w3"]
    assert policy.tlog_policy.quorum_met({"w1", "w3"})
    assert not policy.tlog_policy.quorum_met({"w2"})
    assert policy.max_checkpoint_age_s == 24 * 3600
    assert policy.conveyor_keys == (keys.conveyor,)
    assert policy.rebuilder_keys == keys.rebuilders
    assert policy.reviewer_keys == (keys.reviewer,)
    products = policy.channel("products")
    assert (products.rebuilders_required, products.reviews_required) == (1, 0)
    assert products.review_scope == "critical"
    assert not products.rule_audit
    assert policy.channel("rules").rule_audit  # the rules channel audits rules by default


def test_checkpoints_are_accepted_only_with_the_quorum(keys: Keys) -> None:
    policy = parse_policy(text(keys))
    checkpoint = Checkpoint("example.com/acme/releases", 0, EMPTY_ROOT)
    signed = sign_checkpoint(checkpoint, [keys.log])
    w1, w2, _ = (CosignatureSigner(w) for w in keys.witnesses)
    assert sorted(
        policy.tlog_policy.verify_checkpoint(
            sign_checkpoint(checkpoint, [keys.log, w1, w2])
        ).cosigners
    ) == ["w1", "w2"]
    with pytest.raises(Exception, match="quorum"):
        policy.tlog_policy.verify_checkpoint(sign_checkpoint(checkpoint, [keys.log, w1]))
    with pytest.raises(Exception, match="quorum"):
        policy.tlog_policy.verify_checkpoint(signed)


def test_tlog_policy_file_relative_to_the_policy(keys: Keys, tmp_path: Path) -> None:
    (tmp_path / "releases.tlog-policy").write_text(
        f"log {keys.log_vkey}\n"
        f"witness a {keys.witness_vkey(0)}\nwitness b {keys.witness_vkey(1)}\n"
        "group both all a b\nquorum both\n"
    )
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(
        text(
            keys,
            witnesses='tlog_policy = "releases.tlog-policy"\n',
            rest='[updates]\nurl = "https://updates.acme.example/"\nroot = "root.json"\n',
        )
    )
    policy = load_policy(policy_file)
    assert policy.tlog_policy.quorum == "both"
    assert sorted(policy.tlog_policy.witnesses) == ["a", "b"]
    assert policy.max_checkpoint_age_s is None
    assert policy.updates_url == "https://updates.acme.example/"
    assert policy.updates_root == tmp_path / "root.json"
    assert policy.source == policy_file


def test_tlog_policy_file_must_list_the_log_and_exist(keys: Keys, tmp_path: Path) -> None:
    other = Ed25519Signer.generate("example.com/other").verifier_key()
    (tmp_path / "other.tlog-policy").write_text(f"log {other}\nquorum none\n")
    (tmp_path / "p.toml").write_text(text(keys, witnesses='tlog_policy = "other.tlog-policy"\n'))
    with pytest.raises(MalformedError, match=r"witnesses\.tlog_policy: .* does not list the log"):
        load_policy(tmp_path / "p.toml")
    (tmp_path / "p.toml").write_text(text(keys, witnesses='tlog_policy = "missing"\n'))
    with pytest.raises(MalformedError, match=r"witnesses\.tlog_policy: .*missing does not exist"):
        load_policy(tmp_path / "p.toml")
    both = 'tlog_policy = "other.tlog-policy"\nquorum = 1\n' + one_witness(keys)
    (tmp_path / "p.toml").write_text(text(keys, witnesses=both))
    with pytest.raises(MalformedError, match="not both"):
        load_policy(tmp_path / "p.toml")


def test_no_witnesses_means_no_cosignature_required(keys: Keys) -> None:
    policy = parse_policy(text(keys, witnesses=""))
    assert policy.tlog_policy.witnesses == {}
    assert policy.tlog_policy.quorum == "none"
    signed = sign_checkpoint(Checkpoint("example.com/acme/releases", 0, EMPTY_ROOT), [keys.log])
    assert policy.tlog_policy.verify_checkpoint(signed).cosigners == {}
    assert any("need no witness cosignatures" in line for line in policy.explain())
    # quorum = 0 with witnesses listed: their cosignatures are checked but none is required.
    zero = text(keys, witnesses="quorum = 0\n" + one_witness(keys))
    assert parse_policy(zero).tlog_policy.quorum == "none"


def test_channel_overrides(keys: Keys) -> None:
    policy = parse_policy(
        text(
            keys,
            rest="[channels.rules]\nrebuilders_required = 0\nreviews_required = 1\n"
            'review_scope = "full"\nflagged_rules_need_approval = false\n'
            "[channels.products]\nrebuilders_required = 2\n",
        )
    )
    rules = policy.channel("rules")
    assert (rules.rebuilders_required, rules.reviews_required, rules.review_scope) == (0, 1, "full")
    assert not rules.rule_audit
    products = policy.channel("products")
    assert (products.rebuilders_required, products.review_scope) == (2, "critical")
    with pytest.raises(MalformedError, match="channel 'firmware' is not in the policy"):
        policy.channel("firmware")


def test_explain_in_plain_words(keys: Keys) -> None:
    policy = parse_policy(
        text(
            keys,
            rest='[channels.rules]\nreviews_required = 1\n[updates]\nurl = "https://u.example/"\n',
        )
    )
    lines = policy.explain()
    said = "\n".join(lines)
    assert lines[0].startswith("Releases must be logged in example.com/acme/releases")
    assert "quorum 'policy-quorum' (witnesses: w1, w2, w3)" in said
    assert "at most 1 day(s) old" in said
    assert "1 trusted conveyor key(s): conveyor.acme.example" in said
    assert "Channel 'products': 1 of the 2 trusted rebuilders must report PASSED" in said
    assert "no source review is required" in said
    assert "Channel 'rules'" in said and "1 critical review(s) by trusted reviewers" in said
    assert "rule-set statement must be logged" in said
    assert "asking https://log.acme.example/releases for proofs" in said
    assert "TUF repository at https://u.example/" in said


# --- invalid policies: each refused, naming the field ------------------------------------

INVALID = {
    "unknown top-level field": (dict(top="witness = 1\n"), "witness is not a policy field"),
    "unknown log field": (dict(log='keys = "x"\n'), "log.keys is not a policy field"),
    "misspelt requirement": (
        dict(rebuilders="keys = []\nrequried = 0\n"),
        "rebuilders.requried is not a policy field",
    ),
    "log key missing": (dict(log='url = "https://x.example"\n'), "log.key must be a non-empty"),
    "bad log key": (dict(log='key = "example.com+00000000+AAAA"\n'), "log.key:"),
    "bad conveyor key": (dict(conveyors='keys = ["nope"]\n'), "conveyors.keys[0]:"),
    "conveyor key twice": (None, "conveyors.keys lists a key twice"),
    "no conveyor key": (dict(conveyors="keys = []\n"), "conveyors.keys must be a non-empty list"),
    "bad rebuilder key": (dict(rebuilders="keys = [1]\nrequired = 0\n"), "rebuilders.keys[0]"),
    "bad reviewer key": (dict(reviews='keys = ["x+y+z"]\n'), "reviews.keys[0]:"),
    "witness key of the wrong type": (None, "a witness key must be a cosignature"),
    "witness without key": (
        dict(witnesses='quorum = 0\n[[witnesses.witness]]\nname = "a"\n'),
        "witnesses.witness[0].key must be a non-empty string",
    ),
    "unknown witness field": (None, "witnesses.witness[0].pubkey is not a policy field"),
    "witness not a list": (dict(witnesses="witness = 3\n"), "witnesses.witness must be a list"),
    "quorum above witnesses": (None, "witnesses.quorum is 4 but only 3 witnesses are listed"),
    "negative quorum": (None, "witnesses.quorum must be a whole number"),
    "age not a number": (
        dict(witnesses='max_checkpoint_age_hours = "24"\n'),
        "witnesses.max_checkpoint_age_hours must be a whole number",
    ),
    "required rebuilders above keys": (
        dict(rebuilders="keys = []\nrequired = 1\n"),
        "channel 'products' needs 1 rebuilder(s) but rebuilders.keys lists 0",
    ),
    "channel rebuilders above keys": (
        dict(rest="[channels.rules]\nrebuilders_required = 3\n"),
        "channel 'rules' needs 3 rebuilder(s) but rebuilders.keys lists 2",
    ),
    "required reviews above keys": (
        dict(reviews="keys = []\nrequired = 1\n"),
        "needs 1 review(s) but reviews.keys lists 0",
    ),
    "bool as a count": (
        dict(rebuilders="keys = []\nrequired = true\n"),
        "rebuilders.required must be a whole number",
    ),
    "bad channel field": (
        dict(rest="[channels.rules]\nreviewers_required = 1\n"),
        "channels.rules.reviewers_required is not a policy field",
    ),
    "misspelt channel": (
        dict(rest="[channels.product]\nreviews_required = 0\n"),
        "channels.product is not a channel",
    ),
    "channel not a table": (
        dict(rest="[channels]\nrules = 1\n"),
        "[channels.rules] must be a table",
    ),
    "bad channel count": (
        dict(rest="[channels.products]\nreviews_required = -1\n"),
        "channels.products.reviews_required must be a whole number",
    ),
    "bad flag": (
        dict(rest='[channels.rules]\nflagged_rules_need_approval = "yes"\n'),
        "channels.rules.flagged_rules_need_approval must be true or false",
    ),
    "bad review scope": (
        dict(reviews='keys = []\nscope = "most"\n'),
        "reviews.scope must be one of overview, critical, full",
    ),
    "bad channel review scope": (
        dict(rest='[channels.rules]\nreview_scope = "all"\n'),
        "channels.rules.review_scope must be one of overview, critical, full",
    ),
    "unknown updates field": (
        dict(rest='[updates]\nroots = "r"\n'),
        "updates.roots is not a policy",
    ),
    "empty updates url": (dict(rest='[updates]\nurl = ""\n'), "updates.url must be a non-empty"),
    "conveyors not a table": (dict(rest=""), "[conveyors] must be a table"),
    "version": (dict(top="version = 2\n"), "version must be 1"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_field_is_refused_by_name(keys: Keys, case: str) -> None:
    overrides, phrase = INVALID[case]
    w = [keys.witness_vkey(i) for i in range(3)]
    witness = '[[witnesses.witness]]\nname = "{}"\nkey = "{}"\n'
    special = {
        "conveyor key twice": dict(conveyors=f'keys = ["{keys.conveyor}", "{keys.conveyor}"]\n'),
        "witness key of the wrong type": dict(
            witnesses="quorum = 1\n" + witness.format("a", keys.conveyor)
        ),
        "unknown witness field": dict(
            witnesses="quorum = 1\n" + witness.format("a", w[0]) + 'pubkey = "x"\n'
        ),
        "quorum above witnesses": dict(
            witnesses="quorum = 4\n" + "".join(witness.format(f"w{i}", k) for i, k in enumerate(w))
        ),
        "negative quorum": dict(witnesses="quorum = -1\n" + witness.format("a", w[0])),
    }
    kwargs = special.get(case, overrides or {})
    policy_text = text(keys, **kwargs)  # type: ignore[arg-type]
    if case == "conveyors not a table":
        policy_text = policy_text.replace(f'[conveyors]\nkeys = ["{keys.conveyor}"]\n', "")
    assert phrase in refused(policy_text)


def test_not_toml_and_not_utf8(tmp_path: Path) -> None:
    assert refused("[log\n").startswith("policy: ")
    bad = tmp_path / "p.toml"
    bad.write_bytes(b"\xff\xfe[log]\n")
    with pytest.raises(MalformedError, match="not UTF-8"):
        load_policy(bad)


# --- overt policy check -----------------------------------------------------------------


def test_policy_check_explains_a_valid_policy(keys: Keys, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(text(keys))
    code, stdout, stderr = cli("policy", "check", policy_file)
    assert code == 0, stderr
    said = flat(stdout)
    assert "valid. It requires that:" in said
    for line in parse_policy(text(keys)).explain():
        assert flat(line) in said


def test_policy_check_refuses_an_invalid_policy(keys: Keys, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(text(keys, rest="[channels.rules]\nreviewers_required = 1\n"))
    code, stdout, stderr = cli("policy", "check", policy_file)
    assert code == 2
    assert "channels.rules.reviewers_required is not a policy field" in flat(stderr)
    assert "valid" not in stdout
    code, _, stderr = cli("policy", "check", tmp_path / "missing.toml")
    assert code == 2
    assert "missing.toml" in flat(stderr)


def test_trust_policy_keys_are_verifiers(keys: Keys) -> None:
    policy: TrustPolicy = parse_policy(text(keys))
    assert [v.name for v in policy.conveyors()] == ["conveyor.acme.example"]
    assert [v.name for v in policy.rebuilders()] == [
        "rebuilder.lucerne.example",
        "rebuilder.basel.example",
    ]
    assert [v.name for v in policy.reviewers()] == ["reviewer.example/alice"]

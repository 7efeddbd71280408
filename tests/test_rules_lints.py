"""The rule audit's lints: every espionage-style sample is flagged at its lint's severity,
the malware-looking benign samples are not high, and the anchor logic reads conditions as
formulas (an `or` or a `not` does not anchor anything)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from overt.rules.lints import (
    HIGH,
    LINTS,
    Auditor,
    RuleContext,
    lint_paths,
    lint_rule,
    worst,
)
from overt.rules.parse import Finding, Rule, parse_file, parse_text

SAMPLES = Path(__file__).resolve().parent / "rules_samples"


def sample_contexts() -> dict[str, RuleContext]:
    doc = json.loads((SAMPLES / "contexts.json").read_text(encoding="utf-8"))
    return {
        name: RuleContext(
            c.get("action", "detect"), c.get("notify", True), tuple(c.get("audience", ["all"]))
        )
        for name, c in doc.items()
    }


def sample_watchlist() -> tuple[str, ...]:
    lines = (SAMPLES / "watchlist.txt").read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def sample_rules(kind: str) -> list[Rule]:
    rules: list[Rule] = []
    for path in sorted((SAMPLES / kind).glob("*.yar")):
        found, problems = parse_file(path)
        assert problems == [], problems
        rules.extend(found)
    return rules


@pytest.fixture(scope="module")
def sample_findings() -> dict[str, list[Finding]]:
    findings = lint_paths([SAMPLES], sample_contexts(), sample_watchlist(), compile=True)
    errors = [f for f in findings if f.severity == "error"]
    assert errors == [], "the samples must compile"
    by_rule: dict[str, list[Finding]] = {}
    for f in findings:
        by_rule.setdefault(f.rule or "", []).append(f)
    return by_rule


ESPIONAGE = [r for r in sample_rules("espionage") if "expect" in r.meta]
BENIGN = [r for r in sample_rules("benign") if "expect" in r.meta]


def test_samples_cover_every_lint_family() -> None:
    expected = {e.split(":")[0] for r in ESPIONAGE for e in r.meta["expect"].split()}
    assert expected >= {
        "marking",
        "document-target",
        "identifier",
        "watchlist",
        "upload-sample",
        "silent",
        "narrow-audience",
        "provenance",
        "broad",
    }
    assert len([r for r in ESPIONAGE if "marking:high" in r.meta["expect"]]) >= 20


@pytest.mark.parametrize("rule", ESPIONAGE, ids=lambda r: r.name)
def test_espionage_sample_is_flagged(rule: Rule, sample_findings: dict[str, list[Finding]]) -> None:
    got = {(f.lint, f.severity) for f in sample_findings.get(rule.name, [])}
    for expected in rule.meta["expect"].split():
        lint, severity = expected.split(":")
        assert (lint, severity) in got, f"{rule.name}: expected {expected}, got {sorted(got)}"


@pytest.mark.parametrize("rule", BENIGN, ids=lambda r: r.name)
def test_benign_sample_is_not_high(rule: Rule, sample_findings: dict[str, list[Finding]]) -> None:
    findings = sample_findings.get(rule.name, [])
    expect = rule.meta["expect"]
    assert not [f for f in findings if f.severity in HIGH], findings
    if expect != "none-high":
        got = {(f.lint, f.severity) for f in findings}
        assert tuple(expect.split(":")) in got, got


def test_every_finding_names_a_documented_lint(sample_findings: dict[str, list[Finding]]) -> None:
    for findings in sample_findings.values():
        for f in findings:
            assert f.lint in LINTS
            assert f.severity in ("error", "high", "medium", "low")
    for lint in LINTS.values():
        assert lint.explanation.endswith(".") and len(lint.explanation) > 60


def one(text: str) -> Rule:
    rules, problems = parse_text(text)
    assert problems == [] and len(rules) == 1
    return rules[0]


def severity_of(findings: list[Finding], lint: str) -> str | None:
    return worst(f for f in findings if f.lint == lint)


SECRET_STRINGS = 'strings: $s = "TOP SECRET" $mz = "MZ" $m = "AutoOpen"'


@pytest.mark.parametrize(
    ("condition", "severity"),
    [
        ("$s", "high"),
        ("$mz at 0 and $s", "medium"),  # only executables carrying the words
        ("$mz at 0 or $s", "high"),  # the `or` anchors nothing
        ("not ($mz at 0) and $s", "high"),
        ("uint16(0) == 0x5A4D and $s", "medium"),
        ("uint16(0) != 0x5A4D and $s", "high"),
        ("pe.is_pe and $s", "medium"),
        ("not pe.is_pe and $s", "high"),
        ("$m and $s", "medium"),  # a macro document
        ("any of ($m, $s)", "high"),  # ... or any file with the marking
        ("all of ($m, $s)", "medium"),
        ("2 of ($m, $s, $mz)", "high"),  # $s and $mz without an offset
        ("$s and not $s", "high"),
    ],
)
def test_anchors_are_read_as_a_formula(condition: str, severity: str) -> None:
    # The `or (... and false)` only makes every string used, as YARA requires.
    rule = one(
        f'import "pe"\nrule R {{ {SECRET_STRINGS} '
        f"condition: {condition} or ($mz and $m and false) }}"
    )
    assert severity_of(lint_rule(rule), "marking") == severity


def test_helper_and_global_rules_anchor() -> None:
    text = """
private rule IsPE { condition: uint16(0) == 0x5A4D }
rule UsesHelper { strings: $s = "TOP SECRET" condition: IsPE and $s }
"""
    rules, _ = parse_text(text)
    by_name = {r.name: r for r in rules}
    assert severity_of(lint_rule(by_name["UsesHelper"], rules=by_name), "marking") == "medium"
    # Without the other rules of the file the helper is unknown: assume the worst.
    assert severity_of(lint_rule(by_name["UsesHelper"]), "marking") == "high"
    gated = (
        "global rule OnlyPE { condition: uint16(0) == 0x5A4D }\n"
        'rule S { strings: $s = "NOFORN" condition: $s }'
    )
    rules, _ = parse_text(gated)
    by_name = {r.name: r for r in rules}
    assert severity_of(lint_rule(by_name["S"], rules=by_name), "marking") == "medium"


def test_marking_words_need_word_boundaries() -> None:
    for harmless in ("desktopsecretary", "client_secret", "Unclassified", "SecretKeySpec"):
        rule = one(f'rule R {{ strings: $s = "{harmless}" condition: $s }}')
        assert severity_of(lint_rule(rule), "marking") is None, harmless


def test_actions_decide_the_damage() -> None:
    unanchored = one(
        'rule R { meta: author = "a" reference = "b" strings: $s = "Quarterly" condition: $s }'
    )
    anchored = one(
        'rule R { meta: author = "a" reference = "b" strings: $s = "Quarterly" '
        "condition: uint16(0) == 0x5A4D and $s }"
    )
    upload = RuleContext(action="upload-sample")
    assert lint_rule(unanchored) == []
    assert severity_of(lint_rule(unanchored, upload), "upload-sample") == "high"
    assert severity_of(lint_rule(anchored, upload), "upload-sample") is None
    assert severity_of(lint_rule(unanchored, RuleContext(notify=False)), "silent") == "high"
    assert severity_of(lint_rule(anchored, RuleContext(notify=False)), "silent") == "low"
    narrow = RuleContext(audience=("customer:x",))
    assert severity_of(lint_rule(unanchored, narrow), "narrow-audience") == "medium"
    assert severity_of(lint_rule(anchored, narrow), "narrow-audience") == "low"
    narrow_upload = RuleContext("upload-sample", True, ("customer:x",))
    assert severity_of(lint_rule(anchored, narrow_upload), "narrow-audience") == "high"


def test_marking_with_upload_is_high_even_when_anchored() -> None:
    rule = one('rule R { strings: $m = "Document_Open" $s = "NOFORN" condition: $m and $s }')
    assert severity_of(lint_rule(rule), "marking") == "medium"
    assert severity_of(lint_rule(rule, RuleContext(action="upload-sample")), "marking") == "high"


def test_identifiers_rise_with_documents() -> None:
    alone = one('rule R { strings: $e = "someone@example-ngo.org" condition: $e }')
    in_docs = one(
        'rule R { strings: $e = "someone@example-ngo.org" '
        "condition: uint32(0) == 0x46445025 and $e }"
    )
    c2 = one('rule R { strings: $d = "update.evil-c2.ru" condition: uint16(0) == 0x5A4D and $d }')
    assert severity_of(lint_rule(alone), "identifier") == "medium"
    assert severity_of(lint_rule(in_docs), "identifier") == "high"
    assert severity_of(lint_rule(c2), "identifier") is None


def test_watchlist_is_the_reviewers() -> None:
    rule = one('rule R { strings: $s = "Project-Nightjar budget" condition: $s }')
    assert severity_of(lint_rule(rule), "watchlist") is None
    assert severity_of(lint_rule(rule, watchlist=("NIGHTJAR",)), "watchlist") == "high"
    auditor = Auditor(("nightjar",))
    assert severity_of(auditor.lint(rule), "watchlist") == "high"


def test_unreadable_condition_is_audited_conservatively() -> None:
    rule = Rule(
        name="R",
        file="f",
        line=1,
        tags=(),
        meta={"author": "a", "reference": "b"},
        strings=(),
        condition="(((",
        imports=(),
        text="",
        sha256="",
    )
    findings = lint_rule(rule)
    assert severity_of(findings, "condition") == "low"

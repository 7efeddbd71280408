"""Reading YARA files: rules, strings, conditions and line numbers, and bad files that
give error findings instead of exceptions."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overt.rules.parse import (
    MAX_FILE_BYTES,
    Cond,
    Finding,
    RuleString,
    SyntaxProblem,
    collect_rule_files,
    hex_segments,
    parse_condition,
    parse_file,
    parse_text,
    regex_samples,
    split_source,
    text_bytes,
)

SAMPLE = r"""import "pe"

// a comment with { braces } and "quotes"
private global rule Helper : tagA tagB {
   meta:
      author = "Someone \"quoted\""
      hash = "aaa"
      hash = "bbb"
      score = -5
      active = true
   strings:
      $t = "text \x41\n" nocase wide
      $h = { 4D 5A ?? [2-4] ( 90 | 91 ) 4d5a } // comment
      $r = /ab[c-e]+\/x}/is private
      $ = "anon" xor(0x01-0xff)
      $b = "b64" base64("!@#$%^&*(){}[].,|ABCDEFGHIJ\x09LMNOPQRSTUVWXYZabcdefghijklmnopqrstu")
   condition:
      /* block
         comment */ uint16(0) == 0x5A4D and
      any of them   // trailing
}

rule Second { condition: Helper and filename matches /\.docx?$/i }
"""


def test_parse_reads_every_part(tmp_path: Path) -> None:
    path = tmp_path / "a.yar"
    path.write_text(SAMPLE, encoding="utf-8")
    rules, findings = parse_file(path, "shown.yar")
    assert findings == []
    helper, second = rules
    assert (helper.name, helper.file, helper.line) == ("Helper", "shown.yar", 4)
    assert helper.flags == ("private", "global")
    assert helper.tags == ("tagA", "tagB")
    assert helper.meta == {
        "author": 'Someone "quoted"',
        "hash": "aaa\nbbb",
        "score": "-5",
        "active": "true",
    }
    assert helper.imports == ("pe",)
    t, h, r, anon, b = helper.strings
    assert t == RuleString("$t", "text", r"text \x41\n", ("nocase", "wide"), 12)
    assert h.kind == "hex" and h.value == "4D 5A ?? [2-4] ( 90 | 91 ) 4D 5A"
    assert (
        r.kind == "regex"
        and r.value == r"ab[c-e]+\/x}"
        and r.modifiers
        == (
            "nocase",
            "dotall",
            "private",
        )
    )
    assert anon.identifier == "$" and anon.modifiers == ("xor(0x01-0xff)",)
    assert b.modifiers[0].startswith('base64("')
    assert helper.condition == "uint16(0) == 0x5A4D and any of them"
    assert second.line == 23 and second.condition == r"Helper and filename matches /\.docx?$/i"


def test_rule_text_is_normalised_and_hashed() -> None:
    crlf = "rule A {  \r\n  condition:\t\r\n    true   \r\n}\r\n"
    (rule,), findings = parse_text(crlf)
    assert findings == []
    assert rule.text == "rule A {\n  condition:\n    true\n}"
    assert rule.sha256 == hashlib.sha256(rule.text.encode()).hexdigest()
    (same,), _ = parse_text("rule A {\n  condition:\n    true\n}\n")
    assert same.sha256 == rule.sha256


def test_byte_readings_of_strings() -> None:
    assert text_bytes(r"A\x00B\"\\\n") == b'A\x00B"\\\n'
    assert text_bytes("Grüße") == "Grüße".encode()
    assert hex_segments("54 00 4F ?? 50 [1-2] 41 ( 42 | 43 ) 44 ~45 46") == [
        b"T\x00O",
        b"P",
        b"ABD",
        b"F",
    ]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"T.?O.?P.?S.?E.?C.?R.?E.?T", "TOPSECRET"),
        (r"[Tt][Oo][Pp]\s*[Ss]ecret", "TOP Secret"),
        (r"\x54\x4f\x50", "TOP"),
        (r"(?:NO|no)FORN", "NOFORN"),
    ],
)
def test_regex_samples(pattern: str, expected: str) -> None:
    assert expected in regex_samples(pattern)


def test_regex_samples_of_alternatives_and_junk() -> None:
    assert set(regex_samples("(ab|cd)e")) == {"abe", "cde"}
    assert regex_samples("(" * 5000 + "a" + ")" * 5000) == []  # too deep: nothing, no crash
    assert regex_samples("[unclosed") == []
    many = regex_samples("(a|b)(c|d)(e|f)(g|h)(i|j)(k|l)(m|n)", limit=16)
    assert 0 < len(many) <= 16


def test_condition_structure() -> None:
    tree = parse_condition(
        "uint16(0) == 0x5A4D or not ($a and 2 of ($b*, $c)) or for any i in (1..#a): (@a[i] < 10)"
    )
    assert tree.op == "or"
    first, negated, loop = tree.args
    assert first.op == "atom" and [t.text for t in first.tokens][:2] == ["uint16", "("]
    assert negated.op == "not" and negated.args[0].op == "and"
    of = negated.args[0].args[1]
    assert (of.op, of.quant, of.items) == ("of", "2", ("$b*", "$c"))
    assert loop.op == "atom"
    assert parse_condition("50% of them").quant == "50%"
    assert parse_condition("(filesize - 10) > 5").op == "atom"
    assert parse_condition("true") == Cond("true")
    with pytest.raises(SyntaxProblem):
        parse_condition("(" * 1000 + "true" + ")" * 1000)


def _errors(text: str) -> list[Finding]:
    _rules, findings = parse_text(text, "bad.yar")
    assert all(f.severity == "error" for f in findings)
    return findings


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('rule A {\n strings:\n  $a = "x\n condition: $a }', 3, "unterminated"),
        ("rule A {\n  condition:\n}\n", 3, "empty condition"),
        ("rule A {\n strings:\n  $a = { 4D 5X }\n condition: $a\n}", 3, "invalid hex"),
        ("rule A {\n meta:\n  a = b\n condition: true\n}", 3, "meta a"),
        ("rule A {\n condition: true\n", 1, "not closed"),
        ("rule A { condition: true }\ngarbage here\n", 2, "unexpected text"),
        ("rule A { condition: true }\n}\n", 2, "outside any rule"),
        ("rule A { condition: true }\n/* never closed\n", 2, "unterminated comment"),
        ('rule A {\n strings:\n  $a = "x"\n  $b "y"\n condition: all of them\n}', 4, "'='"),
        ("rule A {\n strings:\n  $a = /ab/q\n condition: $a\n}", 3, "regex flag"),
    ],
)
def test_syntax_errors_have_a_line(text: str, line: int, words: str) -> None:
    findings = _errors(text)
    assert findings, "expected an error finding"
    assert findings[0].line == line, findings
    assert findings[0].lint == "syntax" and words in findings[0].message
    assert findings[0].file == "bad.yar"


def test_one_bad_rule_does_not_hide_the_others() -> None:
    text = (
        "rule Good1 { condition: true }\n"
        "rule Bad {\n strings: $a = \n condition: $a }\n"
        "rule Good2 { condition: false }\n"
    )
    rules, findings = parse_text(text)
    assert [r.name for r in rules] == ["Good1", "Good2"]
    assert [(f.rule, f.line) for f in findings] == [("Bad", 4)]  # where the value should be


def test_include_is_an_error() -> None:
    _, findings = parse_text('include "other.yar"\nrule A { condition: true }\n')
    assert [f.lint for f in findings] == ["include"]


def test_not_utf8_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yar"
    path.write_bytes(
        b'rule A { condition: true }\nrule B {\n strings: $a = "caf\xe9"\n condition: $a }\n'
    )
    rules, findings = parse_file(path)
    assert rules == []
    (finding,) = findings
    assert (finding.lint, finding.line, finding.severity) == ("encoding", 3, "error")
    assert "0xe9" in finding.message


def test_huge_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.yar"
    with open(path, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    rules, findings = parse_file(path)
    assert rules == [] and [f.lint for f in findings] == ["size"]


def test_collect_rule_files(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    for name in ("b/z.yara", "a.yar", "b/a.YAR", "notes.txt"):
        (tmp_path / name).write_text("rule A { condition: true }")
    found = collect_rule_files([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.yar", "b/a.YAR", "b/z.yara"]
    assert collect_rule_files([tmp_path / "notes.txt"]) == [tmp_path / "notes.txt"]
    with pytest.raises(FileNotFoundError):
        collect_rule_files([tmp_path / "missing.yar"])


def test_split_matches_full_parse_on_regex_and_hex_with_braces() -> None:
    text = (
        'rule A { strings: $a = /x{2}"}/ $b = { 41 // } in a comment\n 42 }\n'
        ' condition: $a and $b and "}" == "}" }\n'
        "rule B { condition: true }"
    )
    split = split_source(text, "t")
    assert [s.name for s in split.rules] == ["A", "B"] and split.findings == []
    rules, findings = parse_text(text)
    assert findings == [] and rules[0].strings[1].value == "41 42"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet='rule{}:$="/\\*()ab \n\tx0', max_size=200))
def test_parser_never_raises(text: str) -> None:
    rules, findings = parse_text(text)
    for finding in findings:
        assert finding.severity == "error" and finding.line >= 0
    for rule in rules:
        with contextlib.suppress(SyntaxProblem):
            parse_condition(rule.condition)

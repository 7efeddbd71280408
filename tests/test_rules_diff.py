"""Diffs of rule sets: added, removed and changed rules (also by deployment alone), their
text diffs, and how the audit's findings changed."""

from __future__ import annotations

from pathlib import Path

from overt.rules.diff import RuleChange, diff_rules
from overt.rules.lints import RuleContext
from overt.rules.parse import Finding

META = 'meta: author = "a" reference = "b"'
KEEP = f'rule Keep {{ {META} strings: $a = "mutex-77" condition: uint16(0) == 0x5A4D and $a }}\n'
GONE = f'rule Gone {{ {META} strings: $a = "old-family" condition: uint16(0) == 0x5A4D and $a }}\n'
TURNED_OLD = f"""rule Turned {{
   {META}
   strings:
      $a = "evil-beacon"
   condition:
      uint16(0) == 0x5A4D and $a
}}
"""
TURNED_NEW = f"""rule Turned {{
   {META}
   strings:
      $a = "TOP SECRET" wide
   condition:
      $a
}}
"""
NEW = (
    f'rule Fresh {{ {META} strings: $a = "fresh-family" condition: uint16(0) == 0x5A4D and $a }}\n'
)


def sets(tmp_path: Path, old: str, new: str) -> tuple[Path, Path]:
    (tmp_path / "old").mkdir(parents=True)
    (tmp_path / "new").mkdir(parents=True)
    (tmp_path / "old" / "rules.yar").write_text(old, encoding="utf-8")
    (tmp_path / "new" / "rules.yar").write_text(new, encoding="utf-8")
    return tmp_path / "old", tmp_path / "new"


def by_name(changes: list[RuleChange]) -> dict[str, RuleChange]:
    return {c.name: c for c in changes}


def test_added_removed_changed(tmp_path: Path) -> None:
    old, new = sets(tmp_path, KEEP + GONE + TURNED_OLD, KEEP + TURNED_NEW + NEW)
    changes = diff_rules([old], [new])
    assert [(c.name, c.status) for c in changes] == [
        ("Fresh", "added"),
        ("Gone", "removed"),
        ("Turned", "changed"),
    ]
    fresh, gone, turned = changes
    assert fresh.old is None and fresh.new is not None and fresh.findings_before == []
    assert gone.new is None and gone.old is not None and gone.findings_after == []
    assert '-      $a = "evil-beacon"' in turned.text_diff
    assert '+      $a = "TOP SECRET" wide' in turned.text_diff
    assert turned.text_diff.startswith(f"--- {old / 'rules.yar'}\n+++ {new / 'rules.yar'}")
    assert [f.lint for f in turned.findings_before] == []
    assert [(f.lint, f.severity) for f in turned.findings_after] == [("marking", "high")]
    assert "+rule Fresh" in fresh.text_diff and "-rule Gone" in gone.text_diff


def test_whitespace_at_line_ends_is_no_change(tmp_path: Path) -> None:
    old, new = sets(tmp_path, KEEP, KEEP.replace("{ ", "{   \n ").replace("\n", "  \r\n"))
    assert len(diff_rules([old], [new])) == 1  # a new line break is a change...
    old2, new2 = sets(tmp_path / "x", KEEP, KEEP.replace("\n", "   \r\n"))
    assert diff_rules([old2], [new2]) == []  # ...trailing blanks and CRLF are not


def test_a_new_deployment_is_a_change(tmp_path: Path) -> None:
    plain = TURNED_OLD.replace("uint16(0) == 0x5A4D and ", "")
    old, new = sets(tmp_path, plain, plain)
    upload = {"Turned": RuleContext(action="upload-sample", audience=("customer:acme",))}
    (change,) = diff_rules([old], [new], None, upload)
    assert change.status == "changed" and change.text_diff == ""
    assert change.context_before == RuleContext()
    assert change.context_after == upload["Turned"]
    assert {(f.lint, f.severity) for f in change.findings_after} >= {
        ("upload-sample", "high"),
        ("narrow-audience", "high"),
    }
    assert change.to_json()["context_after"] == {
        "action": "upload-sample",
        "notify": True,
        "audience": ["customer:acme"],
    }


def test_broken_rules_and_files(tmp_path: Path) -> None:
    broken = 'rule Turned { strings: $a = "x condition: $a }\n'
    old, new = sets(tmp_path, TURNED_OLD, broken)
    (new / "latin.yar").write_bytes(b'rule L { strings: $a = "\xe9" condition: $a }')
    problems: list[Finding] = []
    (change,) = diff_rules([old], [new], problems=problems)
    assert change.status == "changed" and change.new is None
    assert [f.lint for f in change.findings_after] == ["syntax"]
    assert [(Path(p.file).name, p.lint) for p in problems] == [("latin.yar", "encoding")]


def test_same_name_in_two_files(tmp_path: Path) -> None:
    old, new = sets(tmp_path, KEEP, KEEP)
    (new / "other.yar").write_text(KEEP.replace("mutex-77", "mutex-78"), encoding="utf-8")
    changes = diff_rules([old], [new])
    assert [c.status for c in changes] == ["added", "added", "removed"]
    assert {c.name for c in changes} == {
        f"{new / 'other.yar'}:Keep",
        f"{new / 'rules.yar'}:Keep",
        "Keep",
    }


def test_helper_rules_are_read_when_needed(tmp_path: Path) -> None:
    helper = "private rule IsPE { condition: uint16(0) == 0x5A4D }\n"
    old = helper + f'rule Use {{ {META} strings: $a = "x1y2z3" condition: IsPE and $a }}\n'
    new = helper + f'rule Use {{ {META} strings: $a = "TOP SECRET" condition: IsPE and $a }}\n'
    old_dir, new_dir = sets(tmp_path, old, new)
    (change,) = diff_rules([old_dir], [new_dir])
    assert [(f.lint, f.severity) for f in change.findings_after] == [("marking", "medium")]

"""Compiling with yara-x in a child process: errors with file and line, a time limit that
stops a pathological file without losing the others, and serialised rules for scanning."""

from __future__ import annotations

import io
import time
from pathlib import Path

import yara_x

from overt.rules.compile import CompileJob, compile_files, compile_rules_text
from overt.rules.lints import lint_paths


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def slow_rules(n: int = 2000) -> str:
    """Valid YARA that takes yara-x seconds to compile: thousands of wide, nocase regexes."""
    strings = "\n".join(
        f"  $s{i} = /[a-z]{{{i % 7 + 3},300}}Q{i:06d}[0-9a-f]{{2,300}}/ nocase wide ascii"
        for i in range(n)
    )
    return f"rule Slow {{\n strings:\n{strings}\n condition: any of them\n}}\n"


def test_compile_errors_have_file_and_line(tmp_path: Path) -> None:
    good = write(tmp_path / "good.yar", "rule Good { condition: true }\n")
    bad = write(
        tmp_path / "bad.yar",
        'rule A { condition: true }\n\nrule B {\n strings: $a = "x"\n condition: $a and nope\n}\n',
    )
    module = write(tmp_path / "module.yar", "rule M {\n condition: pe.is_pe\n}\n")
    findings = compile_files([good, bad, module])
    assert [(f.file, f.line, f.lint, f.severity) for f in findings] == [
        (str(bad), 5, "compile", "error"),
        (str(module), 2, "compile", "error"),
    ]
    assert "unknown identifier `nope`" in findings[0].message
    assert 'import "pe"' in findings[1].message  # yara-x's hint is kept


def test_external_variables_of_file_scanners_are_defined(tmp_path: Path) -> None:
    rules = write(
        tmp_path / "ext.yar",
        'rule E { condition: filename == "a.docx" or extension == ".pdf"\n'
        ' or filepath contains "x" }',
    )
    assert compile_files([rules]) == []


def test_unreadable_files_are_findings_not_crashes(tmp_path: Path) -> None:
    latin = tmp_path / "latin.yar"
    latin.write_bytes(b'rule A { strings: $a = "caf\xe9" condition: $a }')
    findings = compile_files([latin])
    assert [(f.lint, f.line) for f in findings] == [("encoding", 1)]


def test_a_pathological_file_is_stopped_and_the_rest_compiled(tmp_path: Path) -> None:
    first = write(tmp_path / "a_first.yar", "rule First { condition: bad_identifier }\n")
    slow = write(tmp_path / "b_slow.yar", slow_rules())
    after = write(tmp_path / "c_after.yar", "rule After { condition: also_bad }\n")
    started = time.monotonic()
    findings = compile_files([first, slow, after], timeout_s=0.7)
    elapsed = time.monotonic() - started
    assert [(Path(f.file).name, f.lint) for f in findings] == [
        ("a_first.yar", "compile"),
        ("b_slow.yar", "compile-timeout"),
        ("c_after.yar", "compile"),  # compiled by a fresh child after the kill
    ]
    assert "longer than 0.7 s" in findings[1].message
    assert elapsed < 10


def test_lint_paths_reports_timeouts_and_names_rules_of_compile_errors(tmp_path: Path) -> None:
    write(
        tmp_path / "x.yar",
        'rule Fine { meta: author = "a" reference = "b" condition: uint16(0) == 0x5A4D }\n'
        'rule Broken { meta: author = "a" reference = "b" condition:\n'
        " uint16(0) == undefined_thing\n}\n",
    )
    findings = [f for f in lint_paths([tmp_path]) if f.severity == "error"]
    assert [(f.rule, f.line, f.lint) for f in findings] == [("Broken", 3, "compile")]


def test_compile_rules_text_gives_loadable_rules() -> None:
    blob = compile_rules_text(
        {
            "one": 'rule One { strings: $a = "needle" condition: $a }',
            "two": "rule Two { condition: true }",
        }
    )
    assert isinstance(blob, bytes)
    rules = yara_x.Rules.deserialize_from(io.BytesIO(blob))
    hits = {r.identifier for r in yara_x.Scanner(rules).scan(b"a needle").matching_rules}
    assert hits == {"One", "Two"}
    errors = compile_rules_text({"bad": "rule Bad { condition: nope }"})
    assert isinstance(errors, list) and errors[0].file == "bad" and errors[0].line == 1


def test_job_can_be_cancelled(tmp_path: Path) -> None:
    slow = write(tmp_path / "slow.yar", slow_rules())
    job = CompileJob([slow], timeout_s=60)
    job.cancel()
    assert job.result() == []  # nothing more to wait for

"""`overt rules ...` as a reviewer runs it: the JSON interface of lint, exit codes 0/1/2,
explain, test against a benign corpus, and diff."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from overt.cli.main import app
from test_rules_scan import make_benign_corpus

SAMPLES = Path(__file__).resolve().parent / "rules_samples"
KEYS = ["rule", "file", "line", "lint", "severity", "message"]
runner = CliRunner()


def overt(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["rules", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_lint_json_is_the_acceptance_interface() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "overt.cli",
            "rules",
            "lint",
            "--json",
            str(SAMPLES / "espionage" / "markings.yar"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    findings = json.loads(proc.stdout)
    assert isinstance(findings, list) and findings
    for finding in findings:
        assert list(finding) == KEYS
        assert isinstance(finding["line"], int) and finding["line"] > 0
        assert finding["severity"] in ("error", "high", "medium", "low")
        assert finding["file"] == str(SAMPLES / "espionage" / "markings.yar")
    assert {
        "rule": "Marking_Plain_Top_Secret",
        "lint": "marking",
        "severity": "high",
    }.items() <= next(f for f in findings if f["rule"] == "Marking_Plain_Top_Secret").items()


def test_lint_exit_codes(tmp_path: Path) -> None:
    code, out, _ = overt("lint", "--json", SAMPLES / "benign")
    assert code == 0 and all(f["severity"] not in ("high", "error") for f in json.loads(out))
    clean = tmp_path / "clean.yar"
    clean.write_text(
        'rule Clean { meta: author = "a" reference = "b" strings: $a = "mutex-9f3e" '
        "condition: uint16(0) == 0x5A4D and $a }\n",
        encoding="utf-8",
    )
    assert overt("lint", "--json", clean)[:2] == (0, "[]\n")
    broken = tmp_path / "broken.yar"
    broken.write_text("rule Broken {\n condition:\n}\n", encoding="utf-8")
    code, out, _ = overt("lint", "--json", broken)
    assert code == 1 and json.loads(out)[0]["lint"] == "syntax" and json.loads(out)[0]["line"] == 3
    code, out, err = overt("lint", "--json", clean, tmp_path / "missing.yar")
    assert code == 2 and out == "" and "missing.yar" in err
    (tmp_path / "empty").mkdir()
    code, _, err = overt("lint", tmp_path / "empty")
    assert code == 2 and "nothing was audited" in err
    dangling = tmp_path / "dangling.yar"
    dangling.symlink_to(tmp_path / "nowhere.yar")
    assert overt("lint", dangling)[0] == 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads unreadable files")
def test_lint_unreadable_file_is_exit_2(tmp_path: Path) -> None:
    locked = tmp_path / "locked.yar"
    locked.write_text("rule A { condition: true }", encoding="utf-8")
    locked.chmod(0)
    assert overt("lint", locked)[0] == 2


def test_lint_table_watchlist_and_no_compile(tmp_path: Path) -> None:
    code, out, _ = overt(
        "lint",
        "--no-compile",
        "--watchlist",
        SAMPLES / "watchlist.txt",
        SAMPLES / "espionage" / "identifiers.yar",
    )
    assert code == 1
    assert "identifiers.yar" in out and "watchlist" in out and "Ident_Watchlist_Code_Name" in out
    assert "rules in 1 files" in out and "high or error" in out
    bad = tmp_path / "watch.txt"
    bad.write_text("ok term\nx\n", encoding="utf-8")
    assert overt("lint", "--watchlist", bad, SAMPLES / "benign")[0] == 2


def test_lint_reads_the_manifest_of_a_directory(tmp_path: Path) -> None:
    (tmp_path / "r.yar").write_text(
        'rule Grab { meta: author = "a" reference = "b" strings: $a = "Quarterly" condition: $a }',
        encoding="utf-8",
    )
    code, out, _ = overt("lint", "--json", "--no-compile", tmp_path)
    assert code == 0 and json.loads(out) == []
    (tmp_path / "ruleset.toml").write_text(
        '[ruleset]\nname = "acme"\n\n[rules.Grab]\naction = "upload-sample"\n', encoding="utf-8"
    )
    code, out, _ = overt("lint", "--json", "--no-compile", tmp_path)
    assert code == 1 and [f["lint"] for f in json.loads(out)] == ["upload-sample"]


def test_explain() -> None:
    code, out, _ = overt("explain")
    assert code == 0 and "marking" in out and "upload-sample" in out
    code, out, _ = overt("explain", "identifier")
    assert code == 0 and "C:\\Users\\name" in out
    code, _, err = overt("explain", "nope")
    assert code == 2 and "no lint" in err


def test_test_against_a_benign_corpus(tmp_path: Path) -> None:
    corpus = make_benign_corpus(tmp_path / "corpus")
    code, out, _ = overt("test", SAMPLES / "benign", "--corpus", corpus, "--json")
    assert code == 0 and json.loads(out) == {"matches": [], "uploads": [], "problems": []}
    rules = tmp_path / "set"
    rules.mkdir()
    (rules / "grab.yar").write_text(
        'rule Grab { strings: $a = "Invoice number" condition: $a }\n'
        'rule Look { strings: $a = "Board minutes" condition: $a }\n',
        encoding="utf-8",
    )
    (rules / "ruleset.toml").write_text(
        '[ruleset]\nname = "acme"\n\n[rules.Grab]\naction = "upload-sample"\n', encoding="utf-8"
    )
    code, out, _ = overt("test", rules, "--corpus", corpus, "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["matches"] == [
        {"rule": "Grab", "file": "docs/invoice.pdf", "action": "upload-sample"}
    ]
    assert doc["uploads"] == ["docs/invoice.pdf"]
    code, out, _ = overt("test", rules, "--corpus", corpus)
    assert code == 1 and "would be uploaded" in out
    assert overt("test", rules, "--corpus", tmp_path / "nothing")[0] == 2


def test_diff(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    meta = 'meta: author = "a" reference = "b"'
    (tmp_path / "old" / "r.yar").write_text(
        f'rule A {{ {meta} strings: $a = "beacon-x1" condition: uint16(0) == 0x5A4D and $a }}\n',
        encoding="utf-8",
    )
    (tmp_path / "new" / "r.yar").write_text(
        f'rule A {{ {meta} strings: $a = "NOFORN" condition: $a }}\n'
        f'rule B {{ {meta} strings: $a = "beacon-x2" condition: uint16(0) == 0x5A4D and $a }}\n',
        encoding="utf-8",
    )
    code, out, _ = overt("diff", tmp_path / "old", tmp_path / "new", "--json")
    assert code == 1
    changes = json.loads(out)["changes"]
    assert [(c["name"], c["status"]) for c in changes] == [("A", "changed"), ("B", "added")]
    assert changes[0]["findings_after"][0]["lint"] == "marking"
    code, out, _ = overt("diff", tmp_path / "old", tmp_path / "new")
    assert code == 1 and "new finding" in out and "1 added, 0 removed, 1 changed" in out
    assert overt("diff", tmp_path / "old", tmp_path / "old")[0] == 0
    assert overt("diff", tmp_path / "old", tmp_path / "missing")[0] == 2

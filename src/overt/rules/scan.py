"""Running a rule set over a corpus of ordinary files: what would it match, and do?

The static lints judge what a rule *can* match; this shows what it *does*
match on files nobody would call malware (documents, images, clean
programs), and what its deployment would do with them: a rule that matches a
benign document and is deployed with action "upload-sample" would copy that
document to the vendor.

Rules are compiled in a child process with a time limit (compile.py); each
file's scan has its own time limit (yara-x's scanner timeout), so neither a
pathological rule nor a pathological file can hang the caller. A file whose
scan times out or cannot be read is reported in `problems`, not skipped in
silence.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from overt.errors import MalformedError
from overt.rules.compile import DEFAULT_TIMEOUT_S, compile_rules_text
from overt.rules.lints import RuleContext
from overt.rules.parse import Finding, collect_rule_files, read_source


@dataclass(frozen=True)
class Match:
    rule: str
    file: str  # relative to the corpus, with / separators
    action: str  # what the rule's deployment does on a match


def scan_corpus(
    rule_files: list[Path],
    corpus: Path,
    contexts: Mapping[str, RuleContext] | None = None,
    timeout_s: float = 10,
    problems: list[Finding] | None = None,
    compile_timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[Match]:
    """Every (rule, file) match over the corpus, sorted by file then rule.

    Raises MalformedError when the rules do not compile (there is nothing to
    run) or the corpus is not a directory. Files whose scan timed out or
    failed are appended to `problems` as error findings (lint "scan").
    """
    import yara_x

    if not corpus.is_dir():
        raise MalformedError(f"{corpus}: the corpus must be a directory")
    sources: dict[str, str] = {}
    for path in collect_rule_files(rule_files):
        text, bad = read_source(path, str(path))
        if text is None:
            raise MalformedError(bad[0].message if bad else f"{path}: cannot be read")
        sources[str(path)] = text
    if not sources:
        raise MalformedError("no rule files (.yar, .yara) to test")
    compiled = compile_rules_text(sources, compile_timeout_s)
    if isinstance(compiled, list):
        shown = "; ".join(f"{f.file}:{f.line}: {f.message}" for f in compiled[:3])
        more = f" (and {len(compiled) - 3} more)" if len(compiled) > 3 else ""
        raise MalformedError(f"the rules do not compile, so they cannot be tested: {shown}{more}")
    rules = yara_x.Rules.deserialize_from(io.BytesIO(compiled))
    scanner = yara_x.Scanner(rules)
    scanner.set_timeout(max(1, math.ceil(timeout_s)))
    contexts = contexts or {}
    matches: list[Match] = []
    for path, relative in _corpus_files(corpus):
        scanner.set_global("filename", path.name)
        scanner.set_global("filepath", str(path.absolute()))
        scanner.set_global("extension", path.suffix.lower())
        try:
            results = scanner.scan_file(str(path))
        except yara_x.TimeoutError:
            _problem(problems, relative, f"scanning took longer than {timeout_s:g} s: stopped")
            continue
        except (yara_x.ScanError, OSError) as exc:
            _problem(problems, relative, f"could not be scanned: {exc}")
            continue
        for rule in results.matching_rules:
            action = contexts.get(rule.identifier, RuleContext()).action
            matches.append(Match(rule.identifier, relative, action))
    return sorted(matches, key=lambda m: (m.file, m.rule))


def _problem(problems: list[Finding] | None, file: str, message: str) -> None:
    if problems is not None:
        problems.append(Finding(None, file, 0, "scan", "error", message))


def _corpus_files(corpus: Path) -> Iterator[tuple[Path, str]]:
    """Regular files under the corpus, sorted; symbolic links are not followed."""
    for root, dirs, files in os.walk(corpus):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                continue
            yield path, path.relative_to(corpus).as_posix()

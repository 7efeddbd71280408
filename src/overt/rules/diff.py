"""What changed between two versions of a rule set, rule by rule, and what the audit says.

A reviewer reads a rule release as a diff: which rules were added, removed or
changed, the change itself, and whether it raised a finding (a rule that used
to look for a malware family and now looks for "TOP SECRET"). A rule whose
text is unchanged but whose deployment changed (now "upload-sample", or now
silent, or for fewer customers) is changed too: its findings may differ.

Rules are matched by name (a name used twice in one set is told apart by its
file). Only the rules that differ are fully parsed and linted, so a diff of
two large sets costs little more than reading them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from overt.rules.lints import Auditor, RuleContext, sort_findings
from overt.rules.parse import (
    Finding,
    Rule,
    RuleSource,
    collect_rule_files,
    parse_rule,
    split_file,
)

ADDED, REMOVED, CHANGED = "added", "removed", "changed"


@dataclass(frozen=True)
class RuleChange:
    name: str
    status: str  # added | removed | changed
    old: Rule | None  # None when added, or when the old version did not parse
    new: Rule | None
    text_diff: str  # unified diff of the normalised rule texts ("" when only the context changed)
    findings_before: list[Finding]
    findings_after: list[Finding]
    context_before: RuleContext | None = None
    context_after: RuleContext | None = None

    def to_json(self) -> dict[str, object]:
        def where(rule: Rule | None) -> dict[str, object] | None:
            if rule is None:
                return None
            return {"file": rule.file, "line": rule.line, "sha256": rule.sha256}

        def context(c: RuleContext | None) -> dict[str, object] | None:
            if c is None:
                return None
            return {"action": c.action, "notify": c.notify, "audience": list(c.audience)}

        return {
            "name": self.name,
            "status": self.status,
            "old": where(self.old),
            "new": where(self.new),
            "context_before": context(self.context_before),
            "context_after": context(self.context_after),
            "text_diff": self.text_diff,
            "findings_before": [f.to_json() for f in self.findings_before],
            "findings_after": [f.to_json() for f in self.findings_after],
        }


class _Side:
    """One version of the rule set: its rules by name, read but not yet parsed."""

    def __init__(self, paths: list[Path], problems: list[Finding] | None) -> None:
        self.by_key: dict[str, RuleSource] = {}
        self.by_file: dict[str, dict[str, RuleSource]] = {}
        sources: list[RuleSource] = []
        for path in collect_rule_files(paths):
            split = split_file(path, str(path))
            if problems is not None:
                problems.extend(split.findings)
            sources.extend(split.rules)
            self.by_file[str(path)] = {s.name: s for s in split.rules}
        counts: dict[str, int] = {}
        for source in sources:
            counts[source.name] = counts.get(source.name, 0) + 1
        for source in sources:
            key = source.name if counts[source.name] == 1 else f"{source.file}:{source.name}"
            self.by_key.setdefault(key, source)
        self._parsed: dict[int, Rule | Finding] = {}

    def parse(self, source: RuleSource) -> Rule | Finding:
        key = id(source)
        if key not in self._parsed:
            self._parsed[key] = parse_rule(source)
        return self._parsed[key]

    def neighbours(self, source: RuleSource) -> Mapping[str, Rule]:
        return _LazyRules(self, self.by_file.get(source.file, {}))


class _LazyRules(Mapping[str, Rule]):
    """The rules of one file, parsed only when a condition refers to one."""

    def __init__(self, side: _Side, sources: dict[str, RuleSource]) -> None:
        self._side = side
        self._sources = sources

    def __getitem__(self, name: str) -> Rule:
        parsed = self._side.parse(self._sources[name])
        if not isinstance(parsed, Rule):
            raise KeyError(name)
        return parsed

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)

    def values(self) -> list[Rule]:  # type: ignore[override]
        # Only global rules matter when all are asked for (they gate the file's rules).
        return [self[n] for n, s in self._sources.items() if "global" in s.flags]


def diff_rules(
    old_paths: list[Path],
    new_paths: list[Path],
    old_contexts: Mapping[str, RuleContext] | None = None,
    new_contexts: Mapping[str, RuleContext] | None = None,
    watchlist: tuple[str, ...] = (),
    problems: list[Finding] | None = None,
) -> list[RuleChange]:
    """Added, removed and changed rules, by name, each with its findings before and after.

    File-level problems (not UTF-8, too large, text between rules) go to
    `problems` when given.
    """
    old = _Side(old_paths, problems)
    new = _Side(new_paths, problems)
    old_contexts = old_contexts or {}
    new_contexts = new_contexts or {}
    auditor = Auditor(watchlist)
    changes: list[RuleChange] = []
    for key in sorted(old.by_key.keys() | new.by_key.keys()):
        before = old.by_key.get(key)
        after = new.by_key.get(key)
        name = (after or before).name  # type: ignore[union-attr]
        ctx_before = old_contexts.get(name, RuleContext()) if before else None
        ctx_after = new_contexts.get(name, RuleContext()) if after else None
        if before and after and before.sha256 == after.sha256 and ctx_before == ctx_after:
            continue
        status = CHANGED if before and after else (ADDED if after else REMOVED)
        old_rule, findings_before = _audit(old, before, ctx_before, auditor)
        new_rule, findings_after = _audit(new, after, ctx_after, auditor)
        changes.append(
            RuleChange(
                name=key,
                status=status,
                old=old_rule,
                new=new_rule,
                text_diff=_text_diff(before, after),
                findings_before=findings_before,
                findings_after=findings_after,
                context_before=ctx_before,
                context_after=ctx_after,
            )
        )
    return changes


def _audit(
    side: _Side, source: RuleSource | None, context: RuleContext | None, auditor: Auditor
) -> tuple[Rule | None, list[Finding]]:
    if source is None or context is None:
        return None, []
    parsed = side.parse(source)
    if not isinstance(parsed, Rule):
        return None, [parsed]
    return parsed, sort_findings(auditor.lint(parsed, context, side.neighbours(source)))


def _text_diff(before: RuleSource | None, after: RuleSource | None) -> str:
    if before is not None and after is not None and before.sha256 == after.sha256:
        return ""
    lines = difflib.unified_diff(
        before.text.splitlines() if before else [],
        after.text.splitlines() if after else [],
        fromfile=before.file if before else "/dev/null",
        tofile=after.file if after else "/dev/null",
        lineterm="",
    )
    return "\n".join(lines)

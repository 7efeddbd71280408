"""The rule-set manifest: what each rule does when it matches, and for whom (docs/rules.md).

`ruleset.toml` sits at the root of a rule set's source, next to its rule files:

    [ruleset]
    name = "acme-detections"

    [defaults]                  # for every rule not listed below
    action = "detect"           # detect | quarantine | upload-sample
    notify = true               # whether the user is told when it matches
    audience = ["all"]          # or e.g. ["region:AU", "segment:government"]

    [rules.Suspicious_Macro_Dropper]
    action = "upload-sample"

The audience is part of every release statement: a rule set aimed at fewer
than all customers is logged and counted like any other, never hidden.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overt.errors import MalformedError
from overt.rules.lints import RuleContext

MANIFEST_FILE = "ruleset.toml"
ACTIONS = ("detect", "quarantine", "upload-sample")
EVERYONE = "all"
_AUDIENCE = re.compile(r"all|(region|country|segment|customer):[A-Za-z0-9._-]{1,64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class Manifest:
    name: str
    defaults: RuleContext = field(default_factory=RuleContext)
    rules: dict[str, RuleContext] = field(default_factory=dict)

    def context(self, rule: str) -> RuleContext:
        return self.rules.get(rule, self.defaults)

    def contexts(self) -> Mapping[str, RuleContext]:
        """Every rule's deployment: those listed, and the defaults for any other name."""
        return _Contexts(self)


class _Contexts(Mapping[str, RuleContext]):
    def __init__(self, manifest: Manifest) -> None:
        self._manifest = manifest

    def __getitem__(self, name: str) -> RuleContext:
        return self._manifest.context(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)

    def __iter__(self) -> Iterator[str]:
        return iter(self._manifest.rules)

    def __len__(self) -> int:
        return len(self._manifest.rules)


def targeted(context: RuleContext) -> bool:
    """Is the rule aimed at fewer than all customers?"""
    return tuple(context.audience) != (EVERYONE,)


def _context(doc: Any, where: str, base: RuleContext) -> RuleContext:
    if not isinstance(doc, dict):
        raise MalformedError(f"{where} must be a table")
    extra = sorted(set(doc) - {"action", "notify", "audience"})
    if extra:
        raise MalformedError(f"{where}.{extra[0]} is not a rule setting (action, notify, audience)")
    action = doc.get("action", base.action)
    if action not in ACTIONS:
        raise MalformedError(f"{where}.action must be one of {', '.join(ACTIONS)}")
    notify = doc.get("notify", base.notify)
    if not isinstance(notify, bool):
        raise MalformedError(f"{where}.notify must be true or false")
    audience = doc.get("audience", list(base.audience))
    if not isinstance(audience, list) or not audience:
        raise MalformedError(f"{where}.audience must be a non-empty list")
    for i, item in enumerate(audience):
        if not isinstance(item, str) or not _AUDIENCE.fullmatch(item):
            raise MalformedError(
                f'{where}.audience[{i}] must be "all" or region:/country:/segment:/customer:NAME'
            )
    if EVERYONE in audience and len(audience) > 1:
        raise MalformedError(f'{where}.audience: "all" cannot be combined with other audiences')
    return RuleContext(action, notify, tuple(sorted(audience)))


def parse_manifest(text: str, where: str = MANIFEST_FILE) -> Manifest:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MalformedError(f"{where}: {exc}") from exc
    extra = sorted(set(doc) - {"ruleset", "defaults", "rules"})
    if extra:
        raise MalformedError(f"{where}: unknown table [{extra[0]}] (ruleset, defaults, rules)")
    ruleset = doc.get("ruleset")
    if not isinstance(ruleset, dict) or not isinstance(ruleset.get("name"), str):
        raise MalformedError(f"{where}: ruleset.name is missing")
    if not _NAME.fullmatch(ruleset["name"]):
        raise MalformedError(f"{where}: ruleset.name may hold letters, digits and . _ - only")
    defaults = _context(doc.get("defaults", {}), f"{where}: defaults", RuleContext())
    rules_doc = doc.get("rules", {})
    if not isinstance(rules_doc, dict):
        raise MalformedError(f"{where}: [rules] must be a table of rule names")
    rules = {
        name: _context(body, f"{where}: rules.{name}", defaults) for name, body in rules_doc.items()
    }
    return Manifest(ruleset["name"], defaults, rules)


def load_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise MalformedError(f"{directory}: no {MANIFEST_FILE} (the rule-set manifest)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError(f"{path}: not UTF-8") from exc
    return parse_manifest(text, str(path))

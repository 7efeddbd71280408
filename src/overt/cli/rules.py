"""`overt rules`: audit YARA rule sets before they reach customers' machines.

    overt rules lint PATH... [--json] [--watchlist FILE] [--no-compile]
    overt rules explain [LINT_ID]
    overt rules test RULES... --corpus DIR [--json]
    overt rules diff OLD NEW [--json]
    overt rules release RELEASE_DIR --conveyor DIR --log LOG
    overt rules approve RELEASE_DIR --key KEY --rule NAME... --justification TEXT --log LOG

Exit codes: 0 nothing serious, 1 a finding of severity high or error (lint),
a rule matched a benign file (test) or a change brings a new high or error
finding (diff), 2 a path cannot be read or the input is unusable.

A directory given as PATH that holds a rule-set manifest (ruleset.toml) has
its rules audited as that manifest deploys them (action, notify, audience);
otherwise every rule counts as "detect", notified, for all customers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from overt.cli.common import EXIT_BAD_INPUT, EXIT_VERIFY_FAILED, err, fail, handle_errors, out
from overt.rules.diff import RuleChange, diff_rules
from overt.rules.lints import HIGH, LINTS, SEVERITIES, RuleContext, audit_paths
from overt.rules.parse import Finding
from overt.rules.scan import scan_corpus

app = typer.Typer(
    help="Audit detection rules (YARA): lint for espionage patterns, test on benign files, "
    "diff releases.",
    no_args_is_help=True,
)

SEVERITY_STYLE = {"error": "bold red", "high": "bold red", "medium": "yellow", "low": "dim"}


class _ManifestContexts(Mapping[str, RuleContext]):
    """Deployment of each rule from the manifests found in the given directories."""

    def __init__(self, paths: list[Path]) -> None:
        from overt.rules.manifest import MANIFEST_FILE, load_manifest

        self._manifests = [
            load_manifest(p) for p in paths if p.is_dir() and (p / MANIFEST_FILE).is_file()
        ]

    def __bool__(self) -> bool:
        return bool(self._manifests)

    def __getitem__(self, name: str) -> RuleContext:
        for manifest in self._manifests:
            if name in manifest.rules:
                return manifest.rules[name]
        if self._manifests:
            return self._manifests[0].defaults
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter({n for m in self._manifests for n in m.rules})

    def __len__(self) -> int:
        return len(set(self))


def _contexts(paths: list[Path]) -> Mapping[str, RuleContext] | None:
    contexts = _ManifestContexts(paths)
    return contexts if contexts else None


def read_watchlist(path: Path) -> tuple[str, ...]:
    """One term per line; blank lines and lines starting with # are ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(f"{path}: no such watch-list file")
    except UnicodeDecodeError:
        fail(f"{path}: the watch list is not UTF-8")
    terms = tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
    short = [t for t in terms if len("".join(c for c in t if c.isalnum())) < 3]
    if short:
        fail(f"{path}: watch-list term {short[0]!r} is too short (at least 3 letters or digits)")
    return terms


def _severity(severity: str) -> Text:
    return Text(severity, style=SEVERITY_STYLE.get(severity, ""))


def _counts(findings: list[Finding]) -> str:
    parts = [
        f"{sum(1 for f in findings if f.severity == s)} {s}"
        for s in SEVERITIES
        if any(f.severity == s for f in findings)
    ]
    return ", ".join(parts) if parts else "none"


@app.command()
@handle_errors
def lint(
    paths: list[Path] = typer.Argument(..., help="Rule files, or directories of .yar/.yara."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as a JSON array."),
    watchlist: Path | None = typer.Option(
        None, "--watchlist", help="File of terms no rule may search for, one per line."
    ),
    no_compile: bool = typer.Option(
        False, "--no-compile", help="Do not compile the rules with yara-x (faster)."
    ),
) -> None:
    """Audit rules for espionage patterns; exit 1 if any finding is high or error."""
    terms = read_watchlist(watchlist) if watchlist is not None else ()
    audit = audit_paths(paths, _contexts(paths), terms, compile=not no_compile)
    if audit.files == 0:
        fail("no rule files (.yar, .yara) in the given paths: nothing was audited")
    findings = audit.findings
    if as_json:
        print(json.dumps([f.to_json() for f in findings], indent=2, ensure_ascii=False))
    else:
        _print_findings(findings)
        serious = sum(1 for f in findings if f.severity in HIGH)
        out.print(
            f"{audit.rules} rules in {audit.files} files: {len(findings)} findings "
            f"({_counts(findings)})"
            + (f"; [bold red]{serious} high or error[/]" if serious else "; nothing high"),
            soft_wrap=True,
        )
    if any(f.severity in HIGH for f in findings):
        raise typer.Exit(EXIT_VERIFY_FAILED)


def _print_findings(findings: list[Finding]) -> None:
    by_file: dict[str, list[Finding]] = {}
    for finding in findings:
        by_file.setdefault(finding.file, []).append(finding)
    for file, group in by_file.items():
        table = Table(title=file, title_justify="left", show_lines=True)
        table.add_column("line", justify="right", no_wrap=True)
        table.add_column("severity", no_wrap=True)
        table.add_column("lint", no_wrap=True)
        table.add_column("rule: finding", ratio=1)
        for f in group:
            table.add_row(
                str(f.line),
                _severity(f.severity),
                f.lint,
                Text.assemble((f.rule or "(file)", "bold"), ": ", f.message),
            )
        out.print(table)


@app.command()
@handle_errors
def explain(
    lint_id: str | None = typer.Argument(None, help="A lint's id; all lints when omitted."),
) -> None:
    """What each lint looks for, and why it matters."""
    if lint_id is not None:
        found = LINTS.get(lint_id)
        if found is None:
            fail(f"no lint {lint_id!r}; the lints are: {', '.join(LINTS)}")
        out.print(f"[bold]{found.id}[/] ({found.severity}): {found.title}")
        out.print(found.explanation, markup=False, soft_wrap=False)
        return
    table = Table("lint", "severity", "what it means", show_lines=True)
    for item in LINTS.values():
        table.add_row(
            item.id,
            _severity(item.severity),
            Text.assemble((item.title, "bold"), "\n", item.explanation),
        )
    out.print(table)


@app.command("test")
@handle_errors
def test_rules(
    rules: list[Path] = typer.Argument(..., help="Rule files, or directories of .yar/.yara."),
    corpus: Path = typer.Option(..., "--corpus", help="Directory of benign files to scan."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    timeout: float = typer.Option(10.0, "--timeout", help="Time limit per scanned file (s)."),
) -> None:
    """Scan benign files: which rules match them, and what would they upload? Exit 1 on a match."""
    if not corpus.is_dir():
        fail(f"{corpus}: the corpus must be a directory", EXIT_BAD_INPUT)
    problems: list[Finding] = []
    matches = scan_corpus(rules, corpus, _contexts(rules), timeout, problems)
    uploads = [m for m in matches if m.action == "upload-sample"]
    if as_json:
        doc = {
            "matches": [{"rule": m.rule, "file": m.file, "action": m.action} for m in matches],
            "uploads": sorted({m.file for m in uploads}),
            "problems": [p.to_json() for p in problems],
        }
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        if matches:
            table = Table("rule", "benign file", "action", title="Rules matching benign files")
            for m in matches:
                style = "bold red" if m.action == "upload-sample" else ""
                table.add_row(m.rule, m.file, Text(m.action, style=style))
            out.print(table)
        for problem in problems:
            err.print(f"[yellow]{problem.file}:[/] {problem.message}", soft_wrap=True)
        rules_hit = len({m.rule for m in matches})
        files_hit = len({m.file for m in matches})
        out.print(
            f"{rules_hit} rules matched {files_hit} benign files"
            + (
                f"; [bold red]{len({m.file for m in uploads})} would be uploaded[/]"
                if uploads
                else ""
            )
            + (f"; {len(problems)} files could not be scanned" if problems else ""),
            soft_wrap=True,
        )
    if matches:
        raise typer.Exit(EXIT_VERIFY_FAILED)


@app.command()
@handle_errors
def diff(
    old: Path = typer.Argument(..., help="The earlier rule set: a file or a directory."),
    new: Path = typer.Argument(..., help="The later rule set: a file or a directory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    watchlist: Path | None = typer.Option(
        None, "--watchlist", help="File of terms no rule may search for, one per line."
    ),
) -> None:
    """Added, removed and changed rules, their text diffs and how their findings changed.

    Exit 1 when a change brings a high or error finding the rule did not have before.
    """
    terms = read_watchlist(watchlist) if watchlist is not None else ()
    problems: list[Finding] = []
    changes = diff_rules([old], [new], _contexts([old]), _contexts([new]), terms, problems)
    worse = [c for c in changes if _new_serious(c)]
    if as_json:
        doc = {
            "changes": [c.to_json() for c in changes],
            "problems": [p.to_json() for p in problems],
        }
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        for change in changes:
            _print_change(change)
        for problem in problems:
            err.print(
                f"[yellow]{problem.file}:{problem.line}:[/] {problem.message}", soft_wrap=True
            )
        counts = {
            s: sum(1 for c in changes if c.status == s) for s in ("added", "removed", "changed")
        }
        out.print(
            ", ".join(f"{n} {s}" for s, n in counts.items())
            + (f"; [bold red]{len(worse)} with new high or error findings[/]" if worse else ""),
            soft_wrap=True,
        )
    broken_now = [p for p in problems if p.severity in HIGH and _under(Path(p.file), new)]
    if worse or broken_now:
        raise typer.Exit(EXIT_VERIFY_FAILED)


def _under(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _new_serious(change: RuleChange) -> bool:
    before = {f.lint for f in change.findings_before if f.severity in HIGH}
    return any(f.severity in HIGH and f.lint not in before for f in change.findings_after)


def _print_change(change: RuleChange) -> None:
    style = {"added": "green", "removed": "red", "changed": "yellow"}[change.status]
    where = change.new or change.old
    out.print(
        f"[{style}]{change.status}[/] [bold]{change.name}[/]"
        + (f" ({where.file}:{where.line})" if where else ""),
        soft_wrap=True,
    )
    if (
        change.context_before
        and change.context_after
        and (change.context_before != change.context_after)
    ):
        b, a = change.context_before, change.context_after
        out.print(
            f"  deployment: {b.action}, notify={b.notify}, {','.join(b.audience)} -> "
            f"{a.action}, notify={a.notify}, {','.join(a.audience)}",
            markup=False,
            soft_wrap=True,
        )
    for line in change.text_diff.splitlines():
        colour = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
        out.print(Text("  " + line, style=colour), soft_wrap=True)
    before = {(f.lint, f.severity) for f in change.findings_before}
    after = {(f.lint, f.severity) for f in change.findings_after}
    for f in change.findings_after:
        if (f.lint, f.severity) not in before:
            out.print(
                Text.assemble("  new finding: ", _severity(f.severity), f" {f.lint}: {f.message}")
            )
    for f in change.findings_before:
        if (f.lint, f.severity) not in after:
            out.print(Text.assemble("  gone: ", _severity(f.severity), f" {f.lint}: {f.message}"))
    out.print()


@app.command()
@handle_errors
def release(
    release_dir: Path = typer.Argument(
        ..., help="A logged rule-set release built by the conveyor (CONVEYOR/releases/NAME/VER)."
    ),
    conveyor_dir: Path = typer.Option(..., "--conveyor", help="The conveyor directory (its key)."),
    log: str = typer.Option(..., "--log", help="The release log: a log directory or URL."),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="The log's write token, when --log is a URL."
    ),
    watchlist: Path | None = typer.Option(
        None, "--watchlist", help="Code names to flag, one per line (as for lint)."
    ),
) -> None:
    """Audit a built rule set and log its rule-set statement (every rule, provable).

    Exit status 0 when no rule is flagged; 1 when flagged rules hold the set back until a
    supervisor approves them ('overt rules approve'). A rule that does not compile blocks
    the release (nothing is logged, exit 2).
    """
    from overt.cli.conveyor import read_token
    from overt.conveyor.conveyor import Conveyor
    from overt.rules.release import release_ruleset

    signer = Conveyor(conveyor_dir).signer
    terms = read_watchlist(watchlist) if watchlist else ()
    ruleset, index = release_ruleset(release_dir, signer, log, read_token(token_file), terms)
    out.print(
        f"rule set {ruleset.name} {ruleset.version}: {len(ruleset.rules)} rules; "
        f"statement logged as entry {index}",
        soft_wrap=True,
    )
    targeted = ruleset.targeted
    if targeted:
        out.print(
            f"{len(targeted)} rule(s) aimed at fewer than all customers: "
            + ", ".join(f"{r.name} ({' '.join(r.audience)})" for r in targeted),
            soft_wrap=True,
            markup=False,
        )
    flagged = ruleset.flagged
    if not flagged:
        out.print("no rule is flagged: the set may be published")
        return
    table = Table("rule", "sha256", "findings", title="Held back until approved")
    for record in flagged:
        # Text, not markup: messages quote the rules' strings, which may hold "[/b]".
        table.add_row(
            record.name,
            record.sha256[:16] + "…",
            Text(
                "\n".join(f"{f['lint']} ({f['severity']}): {f['message']}" for f in record.findings)
            ),
        )
    out.print(table)
    raise typer.Exit(EXIT_VERIFY_FAILED)


@app.command()
@handle_errors
def approve(
    release_dir: Path = typer.Argument(..., help="The rule-set release (with ruleset.dsse.json)."),
    key: Path = typer.Option(..., "--key", help="The supervisor's private key file."),
    rules: list[str] = typer.Option(..., "--rule", help="A rule to approve (repeatable)."),
    justification: str = typer.Option(
        ..., "--justification", help="Why these rules are acceptable, in words (logged)."
    ),
    log: str = typer.Option(..., "--log", help="The release log: a log directory or URL."),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="The log's write token, when --log is a URL."
    ),
) -> None:
    """Approve flagged rules at their exact digests, with a justification, and log it."""
    from overt.cli.conveyor import read_token
    from overt.crypto.keyfile import read_private_key
    from overt.log.submit import add_entries
    from overt.rules.release import load_ruleset
    from overt.rules.statements import make_approval

    ruleset = load_ruleset(release_dir)
    envelope = make_approval(ruleset, rules, justification, read_private_key(key))
    added = add_entries(log, [envelope.to_bytes()], read_token(token_file))
    out.print(
        f"approved {', '.join(rules)} of {ruleset.name} {ruleset.version}; logged as entry "
        f"{added.indexes[0]}",
        soft_wrap=True,
    )

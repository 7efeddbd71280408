"""Auditing a built rule-set bundle and writing its rule-set statement (docs/rules.md).

A rule set is built by the conveyor like any product: its bundle is a
deterministic archive of the rule files and `ruleset.toml`, rebuilt by
supervisors. This module opens that bundle (as untrusted input), parses,
compiles and lints every rule with the manifest's action and audience, and
produces the rule-set statement (overt.rules.statements). A rule that does not
parse or compile blocks the release.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath

from overt.conveyor.conveyor import read_release
from overt.crypto.dsse import Envelope, verify_envelope
from overt.crypto.intoto import PAYLOAD_TYPE, Statement, Subject
from overt.crypto.keys import Ed25519Signer, Ed25519Verifier
from overt.durable import atomic_write
from overt.errors import MalformedError, OvertError, VerificationError
from overt.log.submit import add_entries
from overt.rules.compile import compile_files
from overt.rules.lints import Auditor
from overt.rules.manifest import MANIFEST_FILE, Manifest, parse_manifest
from overt.rules.parse import Finding, Rule, parse_file
from overt.rules.statements import APPROVAL_TYPE, RULESET_TYPE, RuleRecord, RuleSet, unapproved
from overt.tlog.tiles import MAX_ENTRY_SIZE

RULE_SUFFIXES = (".yar", ".yara")
RULESET_ARCHIVES = (".tar.gz", ".tgz", ".tar")
MAX_BUNDLE_MEMBERS = 100_000
MAX_MEMBER_BYTES = 64 * 1024 * 1024
MAX_EXTRACTED_BYTES = 256 * 1024 * 1024  # the manifest and rule files together


class RuleSetBlocked(OvertError):
    """The rule set cannot be released: a rule does not parse or compile, names repeat, or
    the statement would not fit in a log entry. Nothing is logged."""


def _wanted(path: PurePosixPath) -> bool:
    return path.name == MANIFEST_FILE or path.suffix.lower() in RULE_SUFFIXES


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract the manifest and the rule files, never outside `dest` (a bundle is untrusted).

    A member that could reach outside the archive's directory (an absolute path,
    "..", a link or a device), appears twice or is too large refuses the whole
    bundle: the scanner must never receive a rule this audit did not read.
    """
    total = 0
    seen: set[PurePosixPath] = set()
    try:
        with tarfile.open(archive) as tf:
            for count, member in enumerate(tf):
                if count >= MAX_BUNDLE_MEMBERS:
                    raise MalformedError(f"{archive.name}: more than {MAX_BUNDLE_MEMBERS} members")
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts:
                    raise MalformedError(
                        f"{archive.name}: member {member.name!r} points outside the archive"
                    )
                if member.isdir():
                    continue
                if path in seen:
                    raise MalformedError(f"{archive.name}: member {member.name!r} appears twice")
                seen.add(path)
                if not member.isfile():
                    raise MalformedError(
                        f"{archive.name}: member {member.name!r} is a link or a special file; "
                        "a rule-set bundle holds regular files only"
                    )
                if member.size > MAX_MEMBER_BYTES:
                    raise MalformedError(
                        f"{archive.name}: {member.name} is too large ({member.size:,} bytes)"
                    )
                if not _wanted(path):
                    continue
                total += member.size
                if total > MAX_EXTRACTED_BYTES:
                    raise MalformedError(
                        f"{archive.name}: its rule files hold more than "
                        f"{MAX_EXTRACTED_BYTES:,} bytes"
                    )
                stream = tf.extractfile(member)
                if stream is None:
                    continue
                target = dest / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(stream.read())
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise MalformedError(f"{archive.name}: not a readable tar archive: {exc}") from exc


def audit_bundle(
    archive: Path, watchlist: Sequence[str] = ()
) -> tuple[Manifest, list[tuple[Rule, list[Finding]]], list[Finding]]:
    """(manifest, each rule with its findings, errors) for a built rule-set bundle."""
    with tempfile.TemporaryDirectory(prefix="overt-ruleset-") as tmp:
        root = Path(tmp)
        _safe_extract(archive, root)
        manifests = sorted(root.rglob(MANIFEST_FILE))
        if not manifests:
            raise MalformedError(f"{archive.name}: the bundle holds no {MANIFEST_FILE}")
        if len(manifests) > 1:
            shown = ", ".join(m.relative_to(root).as_posix() for m in manifests)
            raise MalformedError(f"{archive.name}: more than one {MANIFEST_FILE} ({shown})")
        base = manifests[0].parent
        try:
            text = manifests[0].read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedError(f"{archive.name}: {MANIFEST_FILE} is not UTF-8") from exc
        manifest = parse_manifest(text, MANIFEST_FILE)
        files = sorted(
            p for p in root.rglob("*") if p.suffix.lower() in RULE_SUFFIXES and p.is_file()
        )
        outside = [p for p in files if not p.is_relative_to(base)]
        if outside:
            # The statement must list every rule customers receive.
            raise MalformedError(
                f"{archive.name}: {outside[0].relative_to(root).as_posix()} is not under the "
                f"directory of {MANIFEST_FILE}, so its rules would not be audited"
            )
        if not files:
            raise MalformedError(f"{archive.name}: the bundle holds no .yar or .yara files")
        errors: list[Finding] = []
        found: list[tuple[Rule, list[Finding]]] = []
        auditor = Auditor(watchlist)
        for path in files:
            rules, problems = parse_file(path, path.relative_to(base).as_posix())
            errors.extend(problems)
            # A rule may be anchored through another rule of its file (e.g. IsPE).
            by_name = {r.name: r for r in rules}
            for rule in rules:
                found.append((rule, auditor.lint(rule, manifest.context(rule.name), by_name)))
        for problem in compile_files(files):
            # Report files as the bundle names them, not by the temporary path.
            shown = problem.file
            if shown.startswith(str(base)):
                shown = Path(shown).relative_to(base).as_posix()
            errors.append(replace(problem, file=shown))
        return manifest, found, errors


def ruleset_statement(
    archive: Path, version: str, provenance_entry: bytes, watchlist: Sequence[str] = ()
) -> RuleSet:
    """Audit a built bundle; raise RuleSetBlocked when a rule does not parse or compile."""
    manifest, found, errors = audit_bundle(archive, watchlist)
    if errors:
        first = errors[0]
        raise RuleSetBlocked(
            f"{len(errors)} rule error(s); the first: {first.file}:{first.line}: {first.message}"
        )
    names = [rule.name for rule, _ in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuleSetBlocked(f"rule names must be unique; repeated: {', '.join(duplicates)}")
    records = []
    for rule, findings in sorted(found, key=lambda item: item[0].name):
        context = manifest.context(rule.name)
        records.append(
            RuleRecord(
                name=rule.name,
                sha256=rule.sha256,
                file=rule.file,
                tags=tuple(rule.tags),
                action=context.action,
                notify=context.notify,
                audience=tuple(context.audience),
                findings=tuple(
                    {"lint": f.lint, "severity": f.severity, "message": f.message} for f in findings
                ),
            )
        )
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    return RuleSet(
        manifest.name,
        version,
        Subject(archive.name, {"sha256": digest}),
        hashlib.sha256(provenance_entry).hexdigest(),
        tuple(records),
    )


RULESET_FILE = "ruleset.dsse.json"


class RuleSetHeld(VerificationError):
    """Flagged rules have no approval: the rule set may not be published."""

    def __init__(self, missing: Sequence[RuleRecord]) -> None:
        detail = "; ".join(
            f"{r.name} ({', '.join(sorted({f['lint'] for f in r.findings}))})" for r in missing
        )
        super().__init__(
            f"held back: {len(missing)} flagged rule(s) have no approval by a trusted "
            f"reviewer: {detail}"
        )
        self.missing = list(missing)


def release_ruleset(
    release_dir: Path,
    signer: Ed25519Signer,
    log: str,
    token: str | None = None,
    watchlist: Sequence[str] = (),
) -> tuple[RuleSet, int]:
    """Audit a built, logged rule-set release; sign and log its rule-set statement.

    The statement is logged even when rules are flagged: what a vendor tried to
    ship, and to whom, is public either way. Returns it with its log index.
    """
    name, version, files, provenance_entry, _ = read_release(release_dir)
    archives = [n for n in files if n.endswith(RULESET_ARCHIVES)]
    if len(archives) != 1:
        raise MalformedError(
            f"{name} {version}: a rule-set release has exactly one archive, found {len(archives)}"
        )
    ruleset = ruleset_statement(release_dir / archives[0], version, provenance_entry, watchlist)
    entry = ruleset.statement().sign([signer]).to_bytes()
    if len(entry) > MAX_ENTRY_SIZE:
        raise RuleSetBlocked(
            f"{name} {version}: the rule-set statement of {len(ruleset.rules)} rules is "
            f"{len(entry):,} bytes, and a log entry holds at most {MAX_ENTRY_SIZE:,} (about 130 "
            "rules without findings): release the rules as several smaller rule sets"
        )
    added = add_entries(log, [entry], token)
    # Written once logged: a statement next to the release is one customers can be shown.
    atomic_write(release_dir / RULESET_FILE, entry)
    return ruleset, added.indexes[0]


def load_ruleset(release_dir: Path) -> RuleSet:
    path = release_dir / RULESET_FILE
    if not path.is_file():
        raise MalformedError(f"{release_dir}: no {RULESET_FILE}; run 'overt rules release' first")
    return RuleSet.from_statement(Statement.from_envelope(Envelope.from_bytes(path.read_bytes())))


def check_approved(
    entries: Sequence[bytes],
    provenance_sha256: str,
    artifact_sha256: str,
    conveyors: Sequence[Ed25519Verifier],
    reviewers: Sequence[Ed25519Verifier],
) -> RuleSet:
    """The gate before publishing: the release's logged statement, every flagged rule approved.

    `entries` are the logged attestations about the provenance. Raises
    RuleSetHeld (or VerificationError when there is no trusted statement).
    """
    statements = []
    approvals = []
    for entry in entries:
        try:
            envelope = Envelope.from_bytes(entry)
            statement = Statement.from_envelope(envelope)
        except MalformedError:
            continue
        if statement.predicate_type == RULESET_TYPE:
            try:
                verify_envelope(envelope, conveyors, payload_type=PAYLOAD_TYPE)
                ruleset = RuleSet.from_statement(statement)
            except (MalformedError, VerificationError):
                continue
            if (
                ruleset.provenance_sha256 == provenance_sha256
                and ruleset.bundle.digest.get("sha256") == artifact_sha256
            ):
                statements.append(ruleset)
        elif statement.predicate_type == APPROVAL_TYPE:
            approvals.append(entry)
    if not statements:
        raise VerificationError("no rule-set statement signed by a trusted conveyor is logged")
    # Every statement about this bundle counts (as for customers): a later one
    # cannot drop a finding an earlier one recorded.
    missing: dict[tuple[str, str], RuleRecord] = {}
    for ruleset in statements:
        for record in unapproved(ruleset, approvals, reviewers):
            missing.setdefault((record.name, record.sha256), record)
    if missing:
        raise RuleSetHeld(list(missing.values()))
    return statements[-1]

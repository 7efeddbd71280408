"""The dashboard: server-rendered pages over a deployment directory (no JavaScript).

    GET  /                              the overview (logs, witnesses, monitor alerts)
    GET  /dashboard/releases            every release in the logs, with its badges and links
    GET  /dashboard/log/<name>/entry/<i>  one entry, decoded, its inclusion proof verified
    GET  /dashboard/log/<name>?hash=H   look an entry up by leaf hash or SHA-256 of its bytes
    GET  /dashboard/rules               rule-set releases, findings, targeting, diffs
    GET  /dashboard/data                the vault: regions, objects, accesses, relocations
    GET|POST /dashboard/customer/<id>   a customer's verified access history (token: their
                                        pseudonym key, hex); 403 without it

Everything is read from the directory when a page is asked for, so the app may
be created before the parts exist. Pages read the checkpoint and the tiles they
need; scans over whole logs (releases, hash lookup, access counts) are done
incrementally and kept in memory per log, extended as the log grows (each new
checkpoint checked consistent with the one scanned). Nothing is written to the
deployment.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from overt import __version__
from overt.conveyor.provenance import PROVENANCE_TYPE, Provenance
from overt.crypto.dsse import Envelope, verify_envelope
from overt.crypto.intoto import Statement
from overt.crypto.keys import Ed25519Verifier, ed25519_verifier
from overt.errors import OvertError
from overt.log.remote import open_source
from overt.monitor.config import load_monitor_config
from overt.monitor.state import MonitorState
from overt.policy.bundle import REVIEW_TYPE
from overt.rebuild.vsa import VSA_TYPE
from overt.rules.statements import APPROVAL_TYPE, RULESET_TYPE, RuleSet, input_digest
from overt.tlog.checkpoint import Checkpoint, open_checkpoint
from overt.tlog.client import DictMemory, LogClient
from overt.tlog.hashing import leaf_hash
from overt.tlog.merkle import verify_inclusion
from overt.tlog.policy import Policy
from overt.vault.events import open_entry
from overt.vault.history import access_history
from overt.vault.relocate import relocation_batches
from overt.vault.residency import ResidencyPolicy
from overt.witness.store import WitnessStore

MAX_SHOWN = 64 * 1024  # bytes of an entry shown on its page
RESULT_LINKS = ("vsa.dsse.json", "report.html", "diffoscope.html", "report.txt", "build.log")

_env = Environment(
    loader=PackageLoader("overt.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _utc(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    try:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return str(value)


_env.filters["utc"] = _utc


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------- log access


@dataclass(frozen=True)
class LogRef:
    """A log of the deployment: a release log or a vault access log."""

    name: str  # as in the URL: "releases", or "access-ch-zurich"
    kind: str  # "release" or "access"
    dir: Path
    policy_file: Path  # the customer's tlog-policy for it (may not exist)
    served: str  # where create_app serves its tiles: "/logs/releases"


def _client(log: LogRef, memory: DictMemory | None = None) -> LogClient:
    source = open_source(str(log.dir))
    if source.vkey is None:
        raise OvertError(f"{log.dir}: no log.vkey")
    return LogClient(source.fetch, log_key=ed25519_verifier(source.vkey), memory=memory)


def _load_policy(path: Path) -> Policy | None:
    try:
        return Policy.parse(path.read_bytes())
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------- incremental scans


@dataclass
class Attestation:
    index: int
    kind: str  # "vsa", "review", "ruleset", "approval"
    subject_digest: str | None  # inputAttestations[0] sha256: the provenance it is about
    signer: str | None  # a known key that verified, else None
    result: str = ""  # VSA: PASSED/FAILED; review: verdict
    scope: str = ""
    ruleset: RuleSet | None = None


@dataclass
class Release:
    index: int
    name: str
    version: str
    sha256: str
    builder: str
    jurisdiction: str
    signer: str | None
    subjects: list[tuple[str, str]]


@dataclass
class ReleaseScan:
    releases: list[Release] = field(default_factory=list)
    attestations: list[Attestation] = field(default_factory=list)
    # First 8 bytes of the leaf hash and of the entry's SHA-256 -> index.
    hashes: dict[int, int] = field(default_factory=dict)


@dataclass
class AccessScan:
    justifications: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    legal: Counter[tuple[str, str]] = field(default_factory=Counter)
    refused: int = 0
    policy_statements: int = 0
    unverified: int = 0


@dataclass
class _Scanned:
    memory: DictMemory
    size: int
    state: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


class Scanner:
    """One incremental scan per (log, kind), extended to each new checkpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scans: dict[tuple[str, str], _Scanned] = {}

    def get(
        self,
        log: LogRef,
        kind: str,
        make: Callable[[], Any],
        step: Callable[[Any, int, bytes], None],
    ) -> tuple[Any, int]:
        key = (str(log.dir), kind)
        with self._lock:
            scanned = self._scans.get(key)
            if scanned is None:
                scanned = self._scans[key] = _Scanned(DictMemory(), 0, make())
        with scanned.lock:
            client = _client(log, scanned.memory)
            try:
                checkpoint = client.update()  # consistent with what was scanned, or refused
            except OvertError:
                with self._lock:
                    self._scans.pop(key, None)
                raise
            for index, entry in client.entries(scanned.size, checkpoint.size):
                step(scanned.state, index, entry)
                scanned.size = index + 1
            return scanned.state, scanned.size


# ---------------------------------------------------------------- the deployment


class Deployment:
    def __init__(self, root: Path, rebuilders: tuple[str, ...]) -> None:
        self.root = root
        self.mounted_rebuilders = rebuilders
        self.scanner = Scanner()

    # The parts, read on each call.

    def logs(self) -> list[LogRef]:
        found: list[LogRef] = []
        customer = self.root / "customer"
        logs_dir = self.root / "logs"
        if logs_dir.is_dir():
            for p in sorted(logs_dir.iterdir()):
                if (p / "tiles" / "checkpoint").is_file():
                    found.append(
                        LogRef(
                            p.name,
                            "release",
                            p,
                            customer / f"{p.name}.tlog-policy",
                            f"/logs/{p.name}",
                        )
                    )
        access = self.root / "vault" / "logs"
        if access.is_dir():
            for p in sorted(access.iterdir()):
                if (p / "tiles" / "checkpoint").is_file():
                    found.append(
                        LogRef(
                            f"access-{p.name}",
                            "access",
                            p,
                            customer / "access-logs.tlog-policy",
                            f"/access-logs/{p.name}",
                        )
                    )
        return found

    def log(self, name: str) -> LogRef | None:
        return next((log for log in self.logs() if log.name == name), None)

    def _keys(self, pattern: str, vkey: str) -> list[tuple[str, Ed25519Verifier]]:
        keys = []
        for d in sorted(self.root.glob(pattern)):
            try:
                keys.append((d.name, ed25519_verifier((d / vkey).read_text().strip())))
            except (OSError, OvertError):
                continue
        return keys

    def rebuilder_keys(self) -> list[tuple[str, Ed25519Verifier]]:
        return self._keys("rebuilders/*", "rebuilder.vkey")

    def conveyor_keys(self) -> list[tuple[str, Ed25519Verifier]]:
        return self._keys("conveyor*", "conveyor.vkey")

    # Scans.

    def release_scan(self, log: LogRef) -> tuple[ReleaseScan, int]:
        rebuilders = self.rebuilder_keys()
        conveyors = self.conveyor_keys()
        state, size = self.scanner.get(
            log,
            "releases",
            ReleaseScan,
            lambda s, i, e: _scan_release(s, i, e, rebuilders, conveyors),
        )
        assert isinstance(state, ReleaseScan)
        return state, size

    def access_scan(self, log: LogRef, vault_key: Ed25519Verifier) -> tuple[AccessScan, int]:
        state, size = self.scanner.get(
            log, "access", AccessScan, lambda s, i, e: _scan_access(s, e, vault_key)
        )
        assert isinstance(state, AccessScan)
        return state, size


def _signer(envelope: Envelope, keys: list[tuple[str, Ed25519Verifier]]) -> str | None:
    for name, key in keys:
        try:
            verify_envelope(envelope, [key])
        except OvertError:
            continue
        return name
    return None


def _scan_release(
    state: ReleaseScan,
    index: int,
    entry: bytes,
    rebuilders: list[tuple[str, Ed25519Verifier]],
    conveyors: list[tuple[str, Ed25519Verifier]],
) -> None:
    digest = hashlib.sha256(entry).digest()
    state.hashes[int.from_bytes(digest[:8], "big")] = index
    state.hashes[int.from_bytes(leaf_hash(entry)[:8], "big")] = index
    if not entry.startswith(b"{") or b"payloadType" not in entry:
        return
    try:
        envelope = Envelope.from_bytes(entry)
        statement = Statement.from_envelope(envelope)
    except OvertError:
        return
    kind = statement.predicate_type
    pred = statement.predicate
    if kind == PROVENANCE_TYPE:
        try:
            provenance = Provenance.from_statement(statement)
        except OvertError:
            return
        state.releases.append(
            Release(
                index=index,
                name=provenance.recipe.name,
                version=provenance.recipe.version,
                sha256=digest.hex(),
                builder=provenance.builder_id,
                jurisdiction=provenance.jurisdiction or "",
                signer=_signer(envelope, conveyors),
                subjects=[(s.name, str(s.digest.get("sha256", ""))) for s in statement.subjects],
            )
        )
        return
    about = input_digest(pred)
    if kind == VSA_TYPE:
        state.attestations.append(
            Attestation(
                index,
                "vsa",
                about,
                _signer(envelope, rebuilders),
                result=str(pred.get("verificationResult", "")),
            )
        )
    elif kind == REVIEW_TYPE:
        state.attestations.append(
            Attestation(
                index,
                "review",
                about,
                None,
                result=str(pred.get("verdict", "")),
                scope=str(pred.get("scope", "")),
            )
        )
    elif kind == RULESET_TYPE:
        try:
            ruleset = RuleSet.from_statement(statement)
        except OvertError:
            return
        state.attestations.append(
            Attestation(index, "ruleset", about, _signer(envelope, conveyors), ruleset=ruleset)
        )
    elif kind == APPROVAL_TYPE:
        rules = pred.get("rules")
        state.attestations.append(
            Attestation(
                index,
                "approval",
                about,
                None,
                result=", ".join(sorted(rules)) if isinstance(rules, dict) else "",
            )
        )


def _scan_access(state: AccessScan, entry: bytes, vault_key: Ed25519Verifier) -> None:
    try:
        what, doc = open_entry(entry, vault_key)
    except OvertError:
        state.unverified += 1
        return
    if what == "policy":
        state.policy_statements += 1
        return
    justification = str(doc.get("justification") or "(none)")
    state.justifications[justification] += 1
    state.actions[str(doc.get("action", "?"))] += 1
    if doc.get("outcome", "allowed") != "allowed":
        state.refused += 1
    if justification == "LEGAL_REQUEST":
        key = (str(doc.get("requester_country") or "?"), str(doc.get("outcome", "?")))
        state.legal[key] += 1


# ---------------------------------------------------------------- views


class NotFoundPage(OvertError):
    """Rendered as a 404 page."""


def _overview(dep: Deployment) -> dict[str, Any]:
    logs = []
    witnesses = []
    stores: list[tuple[str, WitnessStore]] = []
    for d in sorted((dep.root / "witnesses").glob("*/witness.db")):
        try:
            stores.append((d.parent.name, WitnessStore(d)))
        except OvertError:
            continue
    try:
        for log in dep.logs():
            logs.append(_log_summary(log, stores))
        for name, store in stores:
            witnesses.append({"name": name, "logs": len(store.logs())})
    finally:
        for _, store in stores:
            store.close()
    return {"logs": logs, "witnesses": witnesses, **_monitor(dep.root / "monitor")}


def _log_summary(log: LogRef, stores: list[tuple[str, WitnessStore]]) -> dict[str, Any]:
    out: dict[str, Any] = {"ref": log, "error": None}
    try:
        raw = (log.dir / "tiles" / "checkpoint").read_text(encoding="utf-8")
        vkey = (log.dir / "log.vkey").read_text(encoding="utf-8").strip()
        checkpoint = open_checkpoint(raw, ed25519_verifier(vkey)).checkpoint
    except (OSError, UnicodeDecodeError, OvertError) as exc:
        out["error"] = f"the checkpoint does not verify: {exc}"
        return out
    out["checkpoint"] = checkpoint
    out["root"] = b64(checkpoint.root_hash)
    policy = _load_policy(log.policy_file)
    out["policy"] = log.policy_file.name if policy else None
    out["cosigners"] = None
    out["policy_error"] = None
    if policy is not None:
        try:
            out["cosigners"] = sorted(policy.verify_checkpoint(raw).cosigners)
        except OvertError as exc:
            out["policy_error"] = str(exc)
    views = []
    for name, store in stores:
        for view in store.logs():
            if view.origin != checkpoint.origin:
                continue
            views.append({"witness": name, **_agreement(checkpoint, view.size, view.root)})
    out["witnesses"] = views
    return out


def _agreement(checkpoint: Checkpoint, size: int, root: bytes | None) -> dict[str, Any]:
    if size == checkpoint.size:
        state = "agrees" if root == checkpoint.root_hash else "DISAGREES"
    elif size < checkpoint.size:
        state = "behind"
    else:
        state = "AHEAD of the log"
    return {"size": size, "state": state, "ok": state in ("agrees", "behind")}


def _monitor(root: Path) -> dict[str, Any]:
    if not (root / "monitor.db").is_file():
        return {"monitor": None, "alerts": []}
    try:
        configs = load_monitor_config(root / "monitor.toml")
        state = MonitorState(root / "monitor.db")
    except OvertError as exc:
        return {"monitor": {"error": str(exc), "logs": []}, "alerts": []}
    try:
        logs = [state.log(cfg.name) for cfg in configs]
        alerts = state.alerts(50)
    finally:
        state.close()
    return {"monitor": {"error": None, "logs": logs}, "alerts": alerts}


def _releases(dep: Deployment) -> dict[str, Any]:
    rebuilders = [name for name, _ in dep.rebuilder_keys()]
    sections = []
    for log in dep.logs():
        if log.kind != "release":
            continue
        scan, size = dep.release_scan(log)
        witnessed = _witnessed(log)
        by_digest: dict[str | None, list[Attestation]] = {}
        for a in scan.attestations:
            by_digest.setdefault(a.subject_digest, []).append(a)
        rows = []
        for rel in scan.releases:
            about = by_digest.get(rel.sha256, [])
            vsas = [a for a in about if a.kind == "vsa"]
            passed = {a.signer for a in vsas if a.result == "PASSED" and a.signer}
            rulesets = [a.ruleset for a in about if a.kind == "ruleset" and a.ruleset]
            rows.append(
                {
                    "release": rel,
                    "witnessed": witnessed is True,
                    "reproduced": (len(passed), len(rebuilders)),
                    "failed": [a for a in vsas if a.result != "PASSED"],
                    "vsas": vsas,
                    "reviews": [a for a in about if a.kind == "review"],
                    "rulesets": rulesets,
                    "flagged": sum(len(r.flagged) for r in rulesets),
                    "provenance_url": _release_file(dep, rel, "provenance.dsse.json"),
                    "results": _results(dep, rel.index),
                }
            )
        sections.append(
            {
                "log": log,
                "size": size,
                "rows": rows,
                "witnessed": witnessed,
                "rebuilders": rebuilders,
            }
        )
    return {"sections": sections}


def _witnessed(log: LogRef) -> bool | str | None:
    """True if the current checkpoint meets the customer's policy; the reason if not."""
    policy = _load_policy(log.policy_file)
    if policy is None:
        return None
    try:
        policy.verify_checkpoint((log.dir / "tiles" / "checkpoint").read_bytes())
    except (OSError, OvertError) as exc:
        return str(exc)
    return True


def _release_file(dep: Deployment, rel: Release, name: str) -> str | None:
    """The conveyor's copy of a release file, if it is the logged one."""
    if (
        "/" in rel.name
        or "/" in rel.version
        or rel.name in ("", ".", "..")
        or rel.version
        in (
            "",
            ".",
            "..",
        )
    ):
        return None
    path = dep.root / "conveyor" / "releases" / rel.name / rel.version / name
    try:
        if name == "provenance.dsse.json" and hashlib.sha256(path.read_bytes()).hexdigest() != (
            rel.sha256
        ):
            return None
    except OSError:
        return None
    if not path.is_file():
        return None
    return "/releases/" + "/".join(urllib.parse.quote(p) for p in (rel.name, rel.version, name))


def _results(dep: Deployment, index: int) -> list[dict[str, Any]]:
    out = []
    for name in dep.mounted_rebuilders:
        d = dep.root / "rebuilders" / name / "results" / str(index)
        files = [
            {"name": f, "url": f"/rebuilders/{name}/results/{index}/{f}"}
            for f in RESULT_LINKS
            if (d / f).is_file()
        ]
        if files:
            out.append({"rebuilder": name, "files": files})
    return out


def _entry(dep: Deployment, log: LogRef, index: int) -> dict[str, Any]:
    client = _client(log)
    checkpoint = client.update()
    if not 0 <= index < checkpoint.size:
        raise NotFoundPage(f"log {log.name} has no entry {index} (size {checkpoint.size})")
    entry = client.entry(index)  # checked against its verified leaf tile
    proof = client.inclusion_proof(index)
    verify_inclusion(leaf_hash(entry), index, checkpoint.size, proof, checkpoint.root_hash)
    return {
        "log": log,
        "index": index,
        "checkpoint": checkpoint,
        "root": b64(checkpoint.root_hash),
        "proof": [h.hex() for h in proof],
        "leaf_hash": leaf_hash(entry).hex(),
        "sha256": hashlib.sha256(entry).hexdigest(),
        "length": len(entry),
        **_decode(entry),
    }


def _decode(entry: bytes) -> dict[str, Any]:
    shown = entry[:MAX_SHOWN]
    out: dict[str, Any] = {"truncated": len(entry) > MAX_SHOWN, "envelope": None}
    try:
        value = json.loads(entry)
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict) and "payloadType" in value:
        try:
            envelope = Envelope.from_json(value)
        except OvertError:
            envelope = None
        if envelope is not None:
            out["envelope"] = {
                "payload_type": envelope.payload_type,
                "keyids": [s.keyid for s in envelope.signatures],
            }
            try:
                statement = json.loads(envelope.payload)
                out["kind"] = "DSSE envelope"
                out["predicate_type"] = (
                    statement.get("predicateType") if isinstance(statement, dict) else None
                )
                out["text"] = json.dumps(statement, indent=2, ensure_ascii=False)[:MAX_SHOWN]
            except (ValueError, RecursionError):
                out["kind"] = "DSSE envelope (payload not JSON)"
                out["text"] = _text(envelope.payload[:MAX_SHOWN])
            return out
    if value is not None:
        out["kind"] = "JSON"
        out["text"] = json.dumps(value, indent=2, ensure_ascii=False)[:MAX_SHOWN]
        return out
    out["kind"] = "text" if _is_text(shown) else "binary (hex)"
    out["text"] = _text(shown)
    return out


def _is_text(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\n\t\r" for c in text)


def _text(data: bytes) -> str:
    if _is_text(data):
        return data.decode("utf-8")
    return "\n".join(data[i : i + 32].hex(" ") for i in range(0, len(data), 32))


def _lookup(dep: Deployment, log: LogRef, hash_hex: str) -> int | None:
    try:
        wanted = bytes.fromhex(hash_hex.strip())
    except ValueError:
        return None
    if len(wanted) != 32:
        return None
    scan, _ = (
        dep.release_scan(log)
        if log.kind == "release"
        else dep.scanner.get(
            log, "releases", ReleaseScan, lambda s, i, e: _scan_release(s, i, e, [], [])
        )
    )
    index = scan.hashes.get(int.from_bytes(wanted[:8], "big"))
    if index is None:
        return None
    entry = _client(log).entry(index)
    if wanted in (leaf_hash(entry), hashlib.sha256(entry).digest()):
        return int(index)
    return None


def _rules(dep: Deployment) -> dict[str, Any]:
    sets = []
    for log in dep.logs():
        if log.kind != "release":
            continue
        scan, _ = dep.release_scan(log)
        approvals: dict[str | None, list[Attestation]] = {}
        for a in scan.attestations:
            if a.kind == "approval":
                approvals.setdefault(a.subject_digest, []).append(a)
        releases = {r.sha256: r for r in scan.releases}
        previous: dict[str, RuleSet] = {}
        for a in scan.attestations:
            if a.kind != "ruleset" or a.ruleset is None:
                continue
            rs = a.ruleset
            before = previous.get(rs.name)
            sets.append(
                {
                    "log": log,
                    "index": a.index,
                    "ruleset": rs,
                    "signer": a.signer,
                    "provenance": releases.get(a.subject_digest or ""),
                    "approvals": approvals.get(a.subject_digest, []),
                    "previous": before,
                    "diff": _rule_diff(before, rs) if before else None,
                }
            )
            previous[rs.name] = rs
    return {"sets": sets}


def _rule_diff(before: RuleSet, after: RuleSet) -> dict[str, list[str]]:
    old = {r.name: r.sha256 for r in before.rules}
    new = {r.name: r.sha256 for r in after.rules}
    return {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "changed": sorted(n for n in set(old) & set(new) if old[n] != new[n]),
    }


def _vault_key(root: Path) -> Ed25519Verifier:
    return ed25519_verifier((root / "vault.vkey").read_text(encoding="utf-8").strip())


def _data(dep: Deployment) -> dict[str, Any]:
    vault = dep.root / "vault"
    if not (vault / "residency.toml").is_file():
        return {"vault": None}
    policy = ResidencyPolicy.load(vault / "residency.toml")
    vault_key = _vault_key(vault)
    access = {log.dir.name: log for log in dep.logs() if log.kind == "access"}
    regions = []
    legal: Counter[tuple[str, str]] = Counter()
    for region in policy.regions:
        counts = _object_counts(vault / "regions" / region / "meta.db")
        row: dict[str, Any] = {"name": region, "counts": counts, "total": sum(counts.values())}
        log = access.get(region)
        if log is not None:
            scan, size = dep.access_scan(log, vault_key)
            row.update(log=log, size=size, scan=scan)
            legal.update(scan.legal)
        regions.append(row)
    countries = sorted(policy.countries.items())
    reports = []
    for p in sorted((dep.root / "relocation").glob("*-report.json")) + sorted(
        (vault / "relocation").glob("*-report.json")
    ):
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict):
            batches_doc = doc.get("batches")
            problems = doc.get("problems")
            reports.append(
                {
                    "file": p.name,
                    "batches": len(batches_doc) if isinstance(batches_doc, list) else "?",
                    "verified": doc.get("verified") is True,
                    "witnessed": doc.get("witnessed") is True,
                    "problems": [str(x) for x in problems] if isinstance(problems, list) else [],
                }
            )
    try:
        batches = relocation_batches(vault)
    except (OvertError, sqlite3.Error):
        batches = []
    return {
        "vault": vault,
        "regions": regions,
        "countries": countries,
        "legal": sorted(legal.items()),
        "batches": batches,
        "reports": reports,
    }


def _object_counts(meta: Path) -> dict[str, int]:
    """Live objects by country, read from the region's metadata without opening the store."""
    if not meta.is_file():
        return {}
    db = sqlite3.connect(f"{meta.as_uri()}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT country, COUNT(*) FROM objects WHERE erased IS NULL GROUP BY country"
        ).fetchall()
    except sqlite3.Error:
        return {}
    finally:
        db.close()
    return {str(c): int(n) for c, n in rows}


def _customer_key(vault: Path, customer: str) -> bytes | None:
    """The customer's pseudonym key, read-only (never made here)."""
    path = vault / "secrets" / "customers.db"
    if not path.is_file():
        return None
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT key FROM customers WHERE id = ?", (customer,)).fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return bytes(row[0]) if row else None


def _check_token(vault: Path, customer: str, token: str) -> bytes | None:
    key = _customer_key(vault, customer)
    try:
        given = bytes.fromhex(token.strip())
    except ValueError:
        given = b""
    if key is None or not given:
        hmac.compare_digest(b"\0" * 32, given)  # the same work either way
        return None
    return key if hmac.compare_digest(key, given) else None


def _customer(dep: Deployment, customer: str, key: bytes) -> dict[str, Any]:
    vault = dep.root / "vault"
    policy = _load_policy(dep.root / "customer" / "access-logs.tlog-policy")
    regions = list(ResidencyPolicy.load(vault / "residency.toml").regions)
    events = access_history(vault, regions, customer, key, _vault_key(vault), policy)
    return {"customer": customer, "events": events, "policy": policy is not None}


# ---------------------------------------------------------------- the router


def _render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    template = _env.get_template(name)
    return HTMLResponse(template.render(version=__version__, **context), status_code=status)


def _error(status: int, title: str, message: str) -> HTMLResponse:
    return _render("error.html", status, title=title, message=message)


def dashboard_router(deployment: Path, rebuilders: tuple[str, ...] = ()) -> APIRouter:
    dep = Deployment(deployment, rebuilders)
    router = APIRouter()

    def guarded(fn: Callable[[], HTMLResponse]) -> HTMLResponse:
        try:
            return fn()
        except NotFoundPage as exc:
            return _error(404, "Not found", str(exc))
        except OvertError as exc:
            return _error(502, "The deployment does not verify", str(exc))

    @router.get("/", response_class=HTMLResponse)
    def overview() -> HTMLResponse:
        return guarded(lambda: _render("overview.html", page="overview", **_overview(dep)))

    @router.get("/dashboard", include_in_schema=False)
    @router.get("/dashboard/", include_in_schema=False)
    def dashboard_root() -> Response:
        return RedirectResponse("/", status_code=307)

    @router.get("/dashboard/releases", response_class=HTMLResponse)
    def releases() -> HTMLResponse:
        return guarded(lambda: _render("releases.html", page="releases", **_releases(dep)))

    @router.get("/dashboard/log/{name}", response_class=HTMLResponse)
    def log_lookup(name: str, hash: str = "") -> Response:
        log = dep.log(name)
        if log is None:
            return _error(404, "Not found", f"no log named {name!r}")
        if not hash:
            return _render("lookup.html", page="log", log=log, logs=dep.logs(), hash="")

        def find() -> HTMLResponse:
            index = _lookup(dep, log, hash)
            if index is None:
                return _render(
                    "lookup.html", 404, page="log", log=log, logs=dep.logs(), hash=hash[:200]
                )
            return _render("entry.html", page="log", **_entry(dep, log, index))

        return guarded(find)

    @router.get("/dashboard/log/{name}/entry/{index}", response_class=HTMLResponse)
    def entry(name: str, index: str) -> HTMLResponse:
        log = dep.log(name)
        if log is None:
            return _error(404, "Not found", f"no log named {name!r}")
        if not index.isascii() or not index.isdigit() or len(index) > 19:
            return _error(404, "Not found", f"log {name} has no entry {index[:40]!r}")
        return guarded(lambda: _render("entry.html", page="log", **_entry(dep, log, int(index))))

    @router.get("/dashboard/rules", response_class=HTMLResponse)
    def rules() -> HTMLResponse:
        return guarded(lambda: _render("rules.html", page="rules", **_rules(dep)))

    @router.get("/dashboard/data", response_class=HTMLResponse)
    def data() -> HTMLResponse:
        return guarded(lambda: _render("data.html", page="data", **_data(dep)))

    def customer_page(customer: str, token: str) -> HTMLResponse:
        vault = dep.root / "vault"
        key = _check_token(vault, customer, token) if token else None
        if key is None:
            return _render(
                "customer.html",
                403,
                page="customer",
                customer=customer,
                refused=bool(token),
                events=None,
            )
        return guarded(
            lambda: _render("customer.html", page="customer", **_customer(dep, customer, key))
        )

    @router.get("/dashboard/customer/{customer}", response_class=HTMLResponse)
    def customer_get(customer: str, request: Request, token: str = "") -> HTMLResponse:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:]
        return customer_page(customer, token)

    @router.post("/dashboard/customer/{customer}", response_class=HTMLResponse)
    async def customer_post(customer: str, request: Request) -> HTMLResponse:
        body = await request.body()
        form = urllib.parse.parse_qs(body[:4096].decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0]
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(customer_page, customer, token)

    return router

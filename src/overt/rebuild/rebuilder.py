"""The supervisor's rebuilder: rebuild a logged release elsewhere and attest the result.

A rebuilder directory holds (docs/rebuild.md):

    rebuilder.toml            identity, the log it follows, the conveyor keys it accepts
    rebuilder.vkey            the key customers' policies list for this rebuilder
    secrets/rebuilder.key     its signing key; secrets/log-token when it adds over HTTP
    cache/toolchains/         its own toolchain environments
    work/                     rebuild directories (a fresh random one per rebuild)
    results/<index>/          per provenance log entry: vsa.dsse.json, report.txt/.html,
                              diffoscope.txt/.html, build.log, rebuilt/ (on failure)
    state/                    the watch queue and the last checkpoint it verified

A rebuild reads the provenance from the log (verified against a checkpoint),
checks it is signed by a conveyor key the rebuilder trusts, fetches the source
it names and checks the source digest, rebuilds with the recipe it records in a
different environment, compares every artifact and signs a VSA. Only a verdict
the rebuilder could reach is attested: a log it cannot read is an error, not a
FAILED verdict.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from overt import __version__
from overt.conveyor.build import Artifact, file_sha256, run_build
from overt.conveyor.provenance import Provenance, rfc3339
from overt.conveyor.runner import BuildError, Environment, namespaces_available
from overt.conveyor.source import SourceError, SourceMismatch, fetch_verified
from overt.conveyor.toolchain import ToolchainError
from overt.crypto.dsse import Envelope, verify_envelope
from overt.crypto.encoding import check_key_name
from overt.crypto.intoto import PAYLOAD_TYPE, Statement
from overt.crypto.keyfile import read_private_key, write_private_key
from overt.crypto.keys import Ed25519Signer, ed25519_verifier
from overt.durable import atomic_write
from overt.errors import MalformedError, OvertError, VerificationError
from overt.log.remote import FileMemory, open_source
from overt.log.submit import add_entries
from overt.rebuild.explain import (
    ArtifactDifference,
    compare_artifact,
    diffoscope_available,
    render_html,
    run_diffoscope,
)
from overt.rebuild.vsa import FAILED, PASSED, ArtifactCheck, VerificationSummary
from overt.tlog.client import LogClient

Step = Callable[[str], None]

# rebuilderd's status words: reproduced, not reproduced, could not be built.
GOOD = "GOOD"
BAD = "BAD"
FAIL = "FAIL"

VSA_FILE = "vsa.dsse.json"
REPORT_TEXT = "report.txt"
REPORT_HTML = "report.html"
DIFFOSCOPE_TEXT = "diffoscope.txt"
DIFFOSCOPE_HTML = "diffoscope.html"
BUILD_LOG = "build.log"
OUTCOME_FILE = "outcome.json"
# Files a results directory may hold, as served next to the VSA.
RESULT_FILES = (VSA_FILE, REPORT_TEXT, REPORT_HTML, DIFFOSCOPE_TEXT, DIFFOSCOPE_HTML, BUILD_LOG)

# Varied settings: a time zone far from UTC with a non-hour offset, the plain C
# locale, a host name of the rebuild's own.
VARIED_TZ = "Asia/Kathmandu"
VARIED_LOCALE = "C"


class RebuildError(OvertError):
    """The rebuild could not be attempted (log unreadable, entry not a provenance...)."""


class NotAProvenance(RebuildError):
    """The log entry is not a provenance signed by a trusted conveyor key."""


def init_rebuilder(
    root: Path,
    name: str,
    rebuilder_id: str,
    log: str,
    log_key: str,
    conveyor_keys: list[str],
    artifacts: str | None = None,
    token: str | None = None,
) -> str:
    """Create a rebuilder directory; return its verifier key."""
    check_key_name(name)
    if not rebuilder_id.startswith(("https://", "http://", "urn:")):
        raise MalformedError(f"--id must be a URI (https://... or urn:...), got {rebuilder_id!r}")
    ed25519_verifier(log_key)
    if not conveyor_keys:
        raise MalformedError("name at least one conveyor key (--conveyor-key) to rebuild for")
    for key in conveyor_keys:
        ed25519_verifier(key)
    if root.exists() and any(root.iterdir()):
        raise RebuildError(f"{root} is not empty; choose a new directory for the rebuilder")
    (root / "secrets").mkdir(parents=True, exist_ok=True)
    os.chmod(root / "secrets", 0o700)
    signer = Ed25519Signer.generate(name)
    write_private_key(root / "secrets" / "rebuilder.key", signer)
    if token is not None:
        atomic_write(root / "secrets" / "log-token", (token.strip() + "\n").encode(), 0o600)
    vkey = str(signer.verifier_key())
    atomic_write(root / "rebuilder.vkey", (vkey + "\n").encode())
    config: dict[str, Any] = {
        "id": rebuilder_id,
        "log": log,
        "log_key": log_key,
        "conveyor_keys": conveyor_keys,
    }
    lines = ["# Overt rebuilder", "[rebuilder]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in config.items()]
    if artifacts is not None:
        lines.append(f"artifacts = {json.dumps(artifacts)}")
    atomic_write(root / "rebuilder.toml", ("\n".join(lines) + "\n").encode())
    return vkey


def trust_conveyor(root: Path, vkey: str) -> None:
    """Also rebuild releases signed by this conveyor key (e.g. after the conveyor moved)."""
    ed25519_verifier(vkey)
    config_file = root / "rebuilder.toml"
    if not config_file.is_file():
        raise RebuildError(f"{root} is not a rebuilder directory; run 'overt rebuild init'")
    table = tomllib.loads(config_file.read_text(encoding="utf-8")).get("rebuilder", {})
    keys = list(table.get("conveyor_keys", []))
    if vkey in keys:
        return
    table["conveyor_keys"] = [*keys, vkey]
    lines = [
        "# Overt rebuilder",
        "[rebuilder]",
        *(f"{k} = {json.dumps(v)}" for k, v in table.items()),
    ]
    atomic_write(config_file, ("\n".join(lines) + "\n").encode())


@dataclass(frozen=True)
class Outcome:
    index: int
    product: str
    version: str
    status: str  # GOOD, BAD or FAIL
    reason: str
    summary: VerificationSummary
    envelope: Envelope
    results: Path
    differences: tuple[ArtifactDifference, ...] = ()
    vsa_index: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "product": self.product,
            "version": self.version,
            "status": self.status,
            "reason": self.reason,
            "vsa_index": self.vsa_index,
            "artifacts": [c.to_json() for c in self.summary.checks],
        }


class Rebuilder:
    def __init__(self, root: Path, cache: Path | None = None) -> None:
        """`cache` holds the toolchain environments (default ROOT/cache/toolchains)."""
        config_file = root / "rebuilder.toml"
        if not config_file.is_file():
            raise RebuildError(f"{root} is not a rebuilder directory; run 'overt rebuild init'")
        try:
            config = tomllib.loads(config_file.read_text(encoding="utf-8")).get("rebuilder", {})
        except tomllib.TOMLDecodeError as exc:
            raise MalformedError(f"{config_file}: {exc}") from exc
        for field in ("id", "log", "log_key"):
            if not isinstance(config.get(field), str):
                raise MalformedError(f"{config_file}: rebuilder.{field} must be a string")
        keys = config.get("conveyor_keys")
        if not isinstance(keys, list) or not keys:
            raise MalformedError(f"{config_file}: rebuilder.conveyor_keys must be a non-empty list")
        # Absolute: builds run in other directories and must find the toolchain.
        self.root = root.resolve()
        self.id: str = config["id"]
        self.log: str = config["log"]
        self.log_verifier = ed25519_verifier(config["log_key"])
        self.conveyor_verifiers = [ed25519_verifier(k) for k in keys]
        self.artifacts: str | None = config.get("artifacts")
        self.signer = read_private_key(root / "secrets" / "rebuilder.key")
        self.vkey = str(self.signer.verifier_key())
        self.cache = (cache or self.root / "cache" / "toolchains").resolve()
        token_file = root / "secrets" / "log-token"
        self.token = token_file.read_text().strip() if token_file.is_file() else None
        self._client: LogClient | None = None

    @property
    def client(self) -> LogClient:
        if self._client is None:
            source = open_source(self.log)
            memory = FileMemory(self.root / "state" / "checkpoints")
            self._client = LogClient(source.fetch, log_key=self.log_verifier, memory=memory)
        return self._client

    def results_dir(self, index: int) -> Path:
        return self.root / "results" / str(index)

    def read_provenance(self, entry: bytes) -> Provenance:
        """Parse a log entry as a provenance signed by a trusted conveyor; else NotAProvenance."""
        try:
            envelope = Envelope.from_bytes(entry)
            statement = Statement.from_envelope(envelope)
            provenance = Provenance.from_statement(statement)
        except MalformedError as exc:
            raise NotAProvenance(str(exc)) from exc
        try:
            verify_envelope(envelope, self.conveyor_verifiers, payload_type=PAYLOAD_TYPE)
        except VerificationError as exc:
            raise NotAProvenance(f"provenance not signed by a trusted conveyor key: {exc}") from exc
        return provenance

    def rebuild_index(
        self, index: int, step: Step = lambda _: None, submit: bool = True
    ) -> Outcome:
        """Rebuild the release whose provenance is log entry `index`."""
        client = self.client
        client.update()
        if index >= client.checkpoint.size:
            raise RebuildError(f"no entry {index}: the log has {client.checkpoint.size} entries")
        step(f"reading log entry {index}")
        entry = client.entry(index)
        outcome = self.rebuild(index, entry, step)
        if submit:
            outcome = self.submit(outcome, step)
        return outcome

    def submit(self, outcome: Outcome, step: Step = lambda _: None) -> Outcome:
        step(f"adding the {outcome.summary.result} verdict to the log")
        added = add_entries(self.log, [outcome.envelope.to_bytes()], self.token)
        record = json.loads((outcome.results / OUTCOME_FILE).read_text())
        record["vsa_index"] = added.indexes[0]
        atomic_write(outcome.results / OUTCOME_FILE, json.dumps(record, indent=2).encode())
        return replace(outcome, vsa_index=added.indexes[0])

    def rebuild(self, index: int, entry: bytes, step: Step = lambda _: None) -> Outcome:
        provenance = self.read_provenance(entry)
        recipe = provenance.recipe
        if recipe.build_path is not None and Path(recipe.build_path).exists():
            # As on the conveyor: a fixed path may hold anything; it is never deleted.
            raise RebuildError(
                f"build.path {recipe.build_path} already exists: remove it (it may be left over "
                "from an interrupted rebuild) or rebuild on another machine"
            )
        step(f"rebuilding {recipe.name} {recipe.version} (log entry {index})")
        results = self.results_dir(index)
        shutil.rmtree(results, ignore_errors=True)
        results.mkdir(parents=True)
        work = self.root / "work"
        work.mkdir(exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="rebuild-", dir=work))
        try:
            return self._rebuild(index, entry, provenance, results, scratch, step)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            if recipe.build_path is not None:
                shutil.rmtree(recipe.build_path, ignore_errors=True)

    def _environment(self, provenance: Provenance, scratch: Path) -> Environment:
        vary = provenance.recipe.vary
        recorded = provenance.environment
        # Always a fresh HOME of its own, never the operator's (it may hold secrets)
        # nor a path a provenance names; it differs from the conveyor's by its path.
        home = scratch / "home"
        hidden = [self.root / "secrets"]
        if not self.log.startswith(("http://", "https://")):
            hidden.append(Path(self.log).resolve() / "secrets")
        hostname = None
        if "hostname" in vary and namespaces_available():
            hostname = f"rebuild-{secrets.token_hex(4)}"
        return Environment(
            home=home,
            tz=VARIED_TZ if "tz" in vary else recorded.get("TZ", "UTC"),
            locale=VARIED_LOCALE if "locale" in vary else recorded.get("LC_ALL", "C.UTF-8"),
            hostname=hostname,
            hidden=tuple(hidden),
        )

    def _rebuild(
        self,
        index: int,
        entry: bytes,
        provenance: Provenance,
        results: Path,
        scratch: Path,
        step: Step,
    ) -> Outcome:
        recipe = provenance.recipe
        build_dir = (
            Path(recipe.build_path)
            if recipe.build_path
            else scratch / f"src-{secrets.token_hex(4)}"
        )
        env = self._environment(provenance, scratch)
        described = env.described() | {"buildPath": str(build_dir), "machine": socket.gethostname()}
        log = results / BUILD_LOG
        checks: list[ArtifactCheck] = [
            ArtifactCheck(s.name, s.digest["sha256"], None) for s in provenance.subjects
        ]

        def verdict(
            status: str, reason: str, differences: tuple[ArtifactDifference, ...] = ()
        ) -> Outcome:
            return self._attest(
                index, entry, provenance, status, reason, checks, described, results, differences
            )

        step(f"fetching the source {provenance.source.uri}")
        try:
            fetch_verified(provenance.source, build_dir)
        except SourceMismatch as exc:
            return verdict(BAD, f"tampered source ({exc.kind}): {exc}")
        except SourceError as exc:
            # An outage is no evidence against the vendor: nothing is attested, and
            # the watch queue tries again later.
            raise RebuildError(f"the source could not be fetched (will retry): {exc}") from exc
        if recipe.lock is not None:
            lock_file = build_dir / recipe.lock
            if not lock_file.is_file() or file_sha256(lock_file) != provenance.lock_sha256:
                return verdict(
                    BAD, f"tampered source: the lock {recipe.lock} differs from the one built"
                )
        try:
            built = run_build(
                recipe,
                build_dir,
                provenance.source,
                env,
                self.cache,
                log,
                step,
            )
        except ToolchainError as exc:
            # The rebuilder's own environment (no such Python here, index down).
            raise RebuildError(f"the toolchain could not be prepared here: {exc}") from exc
        except (BuildError, MalformedError) as exc:
            return verdict(FAIL, f"the rebuild failed: {exc}")
        rebuilt = {a.name: a for a in built.artifacts}
        checks = [
            ArtifactCheck(c.name, c.expected, rebuilt[c.name].sha256 if c.name in rebuilt else None)
            for c in checks
        ]
        extra = sorted(set(rebuilt) - {c.name for c in checks})
        step("comparing artifacts")
        originals = self._fetch_published(provenance, scratch, step)
        checks = [
            ArtifactCheck(
                c.name,
                c.expected,
                c.rebuilt,
                file_sha256(originals[c.name]) if c.name in originals else None,
            )
            for c in checks
        ]
        tampered = [c.name for c in checks if c.tampered]
        mismatched = [c for c in checks if not c.reproduced]
        if not mismatched and not extra and not tampered:
            count = "the artifact" if len(checks) == 1 else f"all {len(checks)} artifacts"
            return verdict(GOOD, f"{count} rebuilt bit for bit")
        differences = tuple(
            compare_artifact(
                c.name,
                c.expected,
                rebuilt[c.name].path if c.name in rebuilt else None,
                originals.get(c.name) if c.name in originals and not c.tampered else None,
            )
            for c in mismatched
        )
        self._keep_rebuilt([rebuilt[c.name] for c in mismatched if c.name in rebuilt], results)
        self._diffoscope(mismatched, rebuilt, originals, results, step)
        parts = []
        if tampered:
            parts.append(
                "tampered artifact: the published "
                + ", ".join(tampered)
                + " differs from the provenance (altered after the build)"
            )
        if mismatched:
            names = ", ".join(c.name for c in mismatched)
            verb = "differs" if len(mismatched) == 1 else "differ"
            parts.append(f"not reproducible: {names} {verb} from the provenance")
        if extra:
            parts.append(f"the rebuild produced artifacts the provenance omits: {', '.join(extra)}")
        return verdict(BAD, "; ".join(parts), differences)

    def _fetch_published(
        self, provenance: Provenance, scratch: Path, step: Step
    ) -> dict[str, Path]:
        """The vendor's published artifacts, when the rebuilder knows where they are."""
        if self.artifacts is None:
            return {}
        recipe = provenance.recipe
        found: dict[str, Path] = {}
        dest = scratch / "published"
        dest.mkdir()
        for subject in provenance.subjects:
            location = f"{self.artifacts.rstrip('/')}/{recipe.name}/{recipe.version}/{subject.name}"
            try:
                if location.startswith(("http://", "https://")):
                    resp = httpx.get(location, timeout=60, follow_redirects=True)
                    if resp.status_code != 200:
                        continue
                    (dest / subject.name).write_bytes(resp.content)
                else:
                    shutil.copyfile(location, dest / subject.name)
            except (OSError, httpx.HTTPError):
                step(f"the published {subject.name} is not available at {location}")
                continue
            found[subject.name] = dest / subject.name
        return found

    @staticmethod
    def _keep_rebuilt(artifacts: list[Artifact], results: Path) -> None:
        keep = results / "rebuilt"
        keep.mkdir(exist_ok=True)
        for artifact in artifacts:
            shutil.copyfile(artifact.path, keep / artifact.name)

    @staticmethod
    def _diffoscope(
        mismatched: list[ArtifactCheck],
        rebuilt: dict[str, Artifact],
        originals: dict[str, Path],
        results: Path,
        step: Step,
    ) -> None:
        pairs = [
            (originals[c.name], rebuilt[c.name].path)
            for c in mismatched
            if c.name in originals and c.name in rebuilt and not c.tampered
        ]
        if not pairs or not diffoscope_available():
            return
        step("explaining the difference with diffoscope")
        texts, pages = [], []
        for i, (original, rebuilt_path) in enumerate(pairs):
            text, page = results / f".diffoscope-{i}.txt", results / f".diffoscope-{i}.html"
            problem = run_diffoscope(original, rebuilt_path, text, page)
            texts.append(problem or text.read_text(errors="replace"))
            if page.is_file():
                pages.append(page.read_text(errors="replace"))
            text.unlink(missing_ok=True)
            page.unlink(missing_ok=True)
        atomic_write(results / DIFFOSCOPE_TEXT, "\n".join(texts).encode())
        if pages:
            atomic_write(results / DIFFOSCOPE_HTML, "\n".join(pages).encode())

    def _attest(
        self,
        index: int,
        entry: bytes,
        provenance: Provenance,
        status: str,
        reason: str,
        checks: list[ArtifactCheck],
        environment: dict[str, str],
        results: Path,
        differences: tuple[ArtifactDifference, ...],
    ) -> Outcome:
        recipe = provenance.recipe
        reports: list[dict[str, Any]] = []
        if status != GOOD:
            title = f"Rebuild of {recipe.name} {recipe.version} (log entry {index}): FAILED"
            lines = [title, "", f"reason: {reason}", f"rebuilder: {self.id}", ""]
            for difference in differences:
                lines.extend(difference.lines())
                lines.append("")
            if (results / BUILD_LOG).is_file() and status == FAIL:
                tail = (results / BUILD_LOG).read_text(errors="replace").splitlines()[-40:]
                lines += ["last lines of the build log:", *tail]
            text = "\n".join(lines) + "\n"
            atomic_write(results / REPORT_TEXT, text.encode())
            atomic_write(results / REPORT_HTML, render_html(title, text).encode())
            for name in (REPORT_TEXT, DIFFOSCOPE_TEXT):
                if (results / name).is_file():
                    reports.append(
                        {"name": name, "digest": {"sha256": file_sha256(results / name)}}
                    )
        summary = VerificationSummary(
            subjects=provenance.subjects,
            verifier_id=self.id,
            time_verified=rfc3339(time.time()),
            resource_uri=f"pkg:generic/{recipe.name}@{recipe.version}",
            provenance={
                "uri": f"tlog://{self.client.checkpoint.origin}#{index}",
                "digest": {"sha256": hashlib.sha256(entry).hexdigest()},
            },
            result=PASSED if status == GOOD else FAILED,
            reason=reason,
            checks=tuple(checks),
            environment=environment,
            reports=tuple(reports),
            verifier_version=__version__,
        )
        envelope = summary.statement().sign([self.signer])
        atomic_write(results / VSA_FILE, envelope.to_bytes())
        record = {
            "index": index,
            "product": recipe.name,
            "version": recipe.version,
            "status": status,
            "reason": reason,
            "vsa_index": None,
        }
        atomic_write(results / OUTCOME_FILE, json.dumps(record, indent=2).encode())
        return Outcome(
            index,
            recipe.name,
            recipe.version,
            status,
            reason,
            summary,
            envelope,
            results,
            differences,
        )

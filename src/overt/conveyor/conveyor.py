"""The vendor's build conveyor: build a release, sign its provenance, log it.

A conveyor directory holds (docs/conveyor.md):

    conveyor.toml             builder id and key name
    conveyor.vkey             the verifier key customers and rebuilders trust
    secrets/conveyor.key      the signing key (0600)
    cache/toolchains/<key>/   virtual environments, one per (Python, lock)
    work/<product>/           the build directory of the product being built
    releases/<product>/<version>/
        <artifacts>           the files customers install
        provenance.dsse.json  DSSE envelope of the in-toto Statement (the log entry)
        build.log             everything the toolchain and the build printed
        release.json          where the provenance was logged

A release directory is written under a temporary name and renamed into place
complete, so a crash never leaves a half-written release behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overt import __version__
from overt.conveyor.build import Artifact, file_sha256, prepare_build_dir, run_build
from overt.conveyor.provenance import JURISDICTION, Provenance, rfc3339
from overt.conveyor.recipe import Recipe, load_recipe
from overt.conveyor.runner import Environment
from overt.conveyor.source import Export, export_project
from overt.crypto.dsse import Envelope
from overt.crypto.encoding import check_key_name
from overt.crypto.intoto import Subject
from overt.crypto.keyfile import read_private_key, write_private_key
from overt.crypto.keys import Ed25519Signer
from overt.durable import atomic_write, fsync_dir
from overt.errors import MalformedError, OvertError, VerificationError
from overt.log.submit import add_entries, check_target

Step = Callable[[str], None]

PROVENANCE_FILE = "provenance.dsse.json"
BUILD_LOG = "build.log"
RELEASE_FILE = "release.json"


class ConveyorError(OvertError):
    """The conveyor cannot do what was asked (not initialised, release exists...)."""


def init_conveyor(root: Path, name: str, builder_id: str, jurisdiction: str | None = None) -> str:
    """Create a conveyor directory; return its verifier key."""
    check_key_name(name)
    if jurisdiction is not None and not JURISDICTION.fullmatch(jurisdiction):
        raise MalformedError(
            f"--jurisdiction must be an ISO 3166 country code like CH, got {jurisdiction!r}"
        )
    if not builder_id.startswith(("https://", "http://", "urn:")):
        raise MalformedError(
            f"--builder-id must be a URI (https://... or urn:...), got {builder_id!r}"
        )
    if root.exists() and any(root.iterdir()):
        raise ConveyorError(f"{root} is not empty; choose a new directory for the conveyor")
    (root / "secrets").mkdir(parents=True, exist_ok=True)
    os.chmod(root / "secrets", 0o700)
    signer = Ed25519Signer.generate(name)
    write_private_key(root / "secrets" / "conveyor.key", signer)
    vkey = str(signer.verifier_key())
    atomic_write(root / "conveyor.vkey", (vkey + "\n").encode())
    config = f"# Overt build conveyor\n[conveyor]\nbuilder_id = {json.dumps(builder_id)}\n"
    if jurisdiction is not None:
        config += f"jurisdiction = {json.dumps(jurisdiction)}\n"
    atomic_write(root / "conveyor.toml", config.encode())
    return vkey


@dataclass(frozen=True)
class Release:
    directory: Path
    provenance: Provenance
    envelope: Envelope
    artifacts: tuple[Artifact, ...]
    log_index: int | None
    uncommitted: bool  # the working copy had changes that were not built

    @property
    def envelope_path(self) -> Path:
        return self.directory / PROVENANCE_FILE


class Conveyor:
    def __init__(self, root: Path, cache: Path | None = None) -> None:
        """`cache` holds the toolchain environments (default ROOT/cache/toolchains)."""
        config_file = root / "conveyor.toml"
        if not config_file.is_file():
            raise ConveyorError(f"{root} is not a conveyor directory; run 'overt conveyor init'")
        try:
            config = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise MalformedError(f"{config_file}: {exc}") from exc
        table = config.get("conveyor", {})
        builder_id = table.get("builder_id")
        if not isinstance(builder_id, str) or not builder_id:
            raise MalformedError(f"{config_file}: conveyor.builder_id must be a non-empty string")
        jurisdiction = table.get("jurisdiction")
        if jurisdiction is not None and not (
            isinstance(jurisdiction, str) and JURISDICTION.fullmatch(jurisdiction)
        ):
            raise MalformedError(f"{config_file}: conveyor.jurisdiction must be a code like CH")
        self.jurisdiction: str | None = jurisdiction
        # Set when the conveyor moved ('overt conveyor move'): its key builds nothing more.
        self.retired: str | None = table.get("retired")
        # Absolute: builds run in other directories and must find the toolchain.
        self.root = root.resolve()
        self.builder_id = builder_id
        self.signer = read_private_key(root / "secrets" / "conveyor.key")
        self.vkey = str(self.signer.verifier_key())
        self.cache = (cache or self.root / "cache" / "toolchains").resolve()

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    def build(
        self,
        project: Path,
        commit: str | None = None,
        log: str | None = None,
        token: str | None = None,
        step: Step = lambda _: None,
    ) -> Release:
        """Build the project's recipe at `commit` (default HEAD) and log its provenance."""
        if self.retired is not None:
            raise ConveyorError(
                f"this conveyor's key was retired on {self.retired} (the conveyor moved); "
                "build with the new conveyor"
            )
        outer = load_recipe(project)
        if log is not None:
            check_target(log, token)
        work = self.root / "work"
        work.mkdir(exist_ok=True)
        staging = work / f".release-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            return self._build(outer, project, commit, log, token, step, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _build(
        self,
        outer: Recipe,
        project: Path,
        commit: str | None,
        log: str | None,
        token: str | None,
        step: Step,
        staging: Path,
    ) -> Release:
        build_dir = Path(outer.build_path) if outer.build_path else self.root / "work" / outer.name
        prepare_build_dir(build_dir, owned=outer.build_path is None)
        step(f"exporting the source of {project}")
        exported = export_project(project, outer.source, build_dir, commit)
        recipe = self._recipe_of(outer, exported)
        target = self.releases / recipe.name / recipe.version
        if target.exists():
            raise ConveyorError(
                f"release {recipe.name} {recipe.version} was already built ({target}); "
                "raise product.version to build a new release"
            )
        build_log = staging / BUILD_LOG
        hidden = [self.root / "secrets"]
        if log is not None and not log.startswith(("http://", "https://")):
            hidden.append(Path(log).resolve() / "secrets")  # a log on this machine
        env = Environment(home=self.root / "work" / "home", hidden=tuple(hidden))
        result = run_build(
            recipe,
            build_dir,
            exported.source,
            env,
            self.cache,
            build_log,
            step,
        )
        for artifact in result.artifacts:
            shutil.copyfile(artifact.path, staging / artifact.name)
        provenance = Provenance(
            subjects=tuple(Subject(a.name, {"sha256": a.sha256}) for a in result.artifacts),
            recipe=recipe,
            source=exported.source,
            toolchain=tuple(result.toolchain.descriptors()),
            builder_id=self.builder_id,
            jurisdiction=self.jurisdiction,
            invocation_id=f"urn:uuid:{uuid.uuid4()}",
            started_on=rfc3339(result.started),
            finished_on=rfc3339(result.finished),
            # Passed-through variables are named, never their values: the
            # provenance is public and they may hold credentials.
            environment={
                k: "(passed through)" if k in recipe.env else v for k, v in result.variables.items()
            },
            byproducts=(
                {"name": BUILD_LOG, "digest": {"sha256": file_sha256(build_log)}},
                {"name": "overt", "uri": f"pkg:pypi/overt@{__version__}"},
            ),
        )
        step("signing the provenance")
        envelope = provenance.statement().sign([self.signer])
        atomic_write(staging / PROVENANCE_FILE, envelope.to_bytes())
        atomic_write(staging / RELEASE_FILE, _release_json(provenance))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, target)
        fsync_dir(target.parent)
        shutil.rmtree(build_dir, ignore_errors=True)
        artifacts = tuple(
            Artifact(a.name, target / a.name, a.sha256, a.size) for a in result.artifacts
        )
        index = None
        if log is not None:
            step(f"adding the provenance to the release log {log}")
            index = publish(target, log, token)
        return Release(target, provenance, envelope, artifacts, index, exported.uncommitted)

    @staticmethod
    def _recipe_of(outer: Recipe, exported: Export) -> Recipe:
        """The recipe to build: the committed one, unless the recipe names its source."""
        if outer.source.git is not None:
            return outer
        inner = load_recipe(exported.tree)
        if inner.source.git is not None:
            raise MalformedError("the recipe in the source names another source (source.git)")
        return inner


def publish(release_dir: Path, log: str, token: str | None) -> int:
    """Add a built release's provenance to the log and record where it landed."""
    envelope = (release_dir / PROVENANCE_FILE).read_bytes()
    added = add_entries(log, [envelope], token)
    index = added.indexes[0]
    record = json.loads((release_dir / RELEASE_FILE).read_text())
    record["log"] = {"target": log, "index": index, "size": added.size}
    atomic_write(release_dir / RELEASE_FILE, json.dumps(record, indent=2, sort_keys=True).encode())
    return index


def read_release(release_dir: Path) -> tuple[str, str, dict[str, bytes], bytes, int]:
    """(name, version, artifact files, provenance entry, log index) of a conveyor release."""
    try:
        record = json.loads((release_dir / RELEASE_FILE).read_text(encoding="utf-8"))
        name, version = str(record["product"]), str(record["version"])
        artifacts = dict(record["artifacts"])
        log = record.get("log")
    except FileNotFoundError as exc:
        raise MalformedError(f"{release_dir}: not a conveyor release (no {RELEASE_FILE})") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedError(f"{release_dir / RELEASE_FILE}: malformed: {exc}") from exc
    if not isinstance(log, dict) or not isinstance(log.get("index"), int):
        raise MalformedError(
            f"{release_dir}: the release is not logged yet; add {PROVENANCE_FILE} to the "
            "release log first"
        )
    files: dict[str, bytes] = {}
    for artifact, digest in sorted(artifacts.items()):
        data = (release_dir / artifact).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise VerificationError(
                f"{release_dir / artifact} does not match the digest recorded at build time"
            )
        files[artifact] = data
    return name, version, files, (release_dir / PROVENANCE_FILE).read_bytes(), log["index"]


def _release_json(provenance: Provenance) -> bytes:
    doc: dict[str, Any] = {
        "product": provenance.recipe.name,
        "version": provenance.recipe.version,
        "artifacts": {s.name: s.digest["sha256"] for s in provenance.subjects},
        "source": provenance.source.uri,
        "commit": provenance.source.commit,
        "log": None,
    }
    return json.dumps(doc, indent=2, sort_keys=True).encode()

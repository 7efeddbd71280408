"""The vendor's update repository: TUF 1.0 metadata built from logged releases (docs/updates.md).

Written with python-tuf's Metadata API, so any TUF client can consume it, and
laid out for a plain static web server:

    REPO/metadata/N.root.json        every root version (clients walk the chain)
    REPO/metadata/N.targets.json     top-level targets: overt/index.json, delegations
    REPO/metadata/N.products.json    delegated role for products/*/*/* (its own key)
    REPO/metadata/N.rules.json       delegated role for rules/*/*/* (its own key)
    REPO/metadata/N.snapshot.json
    REPO/metadata/timestamp.json
    REPO/targets/<dir>/<sha256>.<name>   consistent-snapshot target files

The signing keys live apart from what is served, in KEYS/<role>.pem (0600).
Each product release contributes its artifacts and its transparency bundle
(`bundle.json`, a target of its own, named in each artifact's `custom` field)
under `products/<name>/<version>/`; `overt/index.json` lists the current
release of every product so clients know what to fetch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from overt.durable import atomic_write
from overt.errors import MalformedError, OvertError

TOP_ROLES = ("root", "targets", "snapshot", "timestamp")
CHANNEL_ROLES = ("products", "rules")
INDEX_TARGET = "overt/index.json"
BUNDLE_NAME = "bundle.json"
# Days until each role's metadata expires; the timestamp is the freshness
# guarantee and must be re-signed (`overt updates refresh`) before a day passes.
DEFAULT_EXPIRY_DAYS = {
    "root": 365,
    "targets": 90,
    "products": 90,
    "rules": 90,
    "snapshot": 7,
    "timestamp": 1,
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_SERIALIZER = JSONSerializer(compact=False)


class RepositoryError(OvertError):
    """The update repository cannot do what was asked."""


@dataclass(frozen=True)
class ReleaseFiles:
    """One release to publish: its channel, identity, files and transparency bundle."""

    channel: str
    name: str
    version: str
    files: dict[str, bytes]  # artifact file name -> contents
    bundle: bytes
    log_index: int


def _expiry(role: str, days: dict[str, int]) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days[role])).replace(microsecond=0)


class Repository:
    def __init__(self, repo: Path, keys: Path, expiry_days: dict[str, int] | None = None) -> None:
        if not (repo / "metadata").is_dir():
            raise RepositoryError(f"{repo} is not an update repository; run 'overt updates init'")
        self.repo = repo
        self.keys = keys
        self.days = {**DEFAULT_EXPIRY_DAYS, **(expiry_days or {})}

    @property
    def metadata(self) -> Path:
        return self.repo / "metadata"

    def signer(self, role: str) -> CryptoSigner:
        path = self.keys / f"{role}.pem"
        try:
            key = load_pem_private_key(path.read_bytes(), None)
        except FileNotFoundError as exc:
            raise RepositoryError(f"the {role} key is not in {self.keys}") from exc
        return CryptoSigner(key)

    def version(self, role: str) -> int:
        if role == "timestamp":
            return (
                Metadata[Timestamp].from_file(str(self.metadata / "timestamp.json")).signed.version
            )
        found = [
            int(p.name.split(".", 1)[0])
            for p in self.metadata.glob(f"*.{role}.json")
            if p.name.split(".", 1)[0].isdigit()
        ]
        if not found:
            raise RepositoryError(f"no {role} metadata in {self.metadata}")
        return max(found)

    def load(self, role: str) -> Metadata[Any]:
        name = "timestamp.json" if role == "timestamp" else f"{self.version(role)}.{role}.json"
        return Metadata.from_file(str(self.metadata / name))

    def _write(self, role: str, md: Metadata[Any], signers: list[CryptoSigner]) -> None:
        md.signatures.clear()
        for signer in signers:
            md.sign(signer, append=True)
        data = md.to_bytes(_SERIALIZER)
        if role == "timestamp":
            atomic_write(self.metadata / "timestamp.json", data)
        else:
            atomic_write(self.metadata / f"{md.signed.version}.{role}.json", data)

    def _bump(self, role: str, md: Metadata[Any]) -> None:
        md.signed.version += 1
        md.signed.expires = _expiry(role, self.days)

    def _snapshot_and_timestamp(self, changed: list[str]) -> None:
        snapshot = self.load("snapshot")
        for role in changed:
            snapshot.signed.meta[f"{role}.json"] = MetaFile(version=self.version(role))
        self._bump("snapshot", snapshot)
        self._write("snapshot", snapshot, [self.signer("snapshot")])
        self._resign_timestamp()

    def refresh(self) -> int:
        """Re-sign the timestamp, and every other online role past half its lifetime.

        Run it more often than the timestamp expires (e.g. hourly from cron). The
        targets, delegated and snapshot roles are re-signed when half of their
        validity has passed, so a repository that publishes rarely never lets
        them expire; the root (offline key) is only reported. Returns the
        timestamp's version.
        """
        now = datetime.now(UTC)
        changed = []
        for role in ("targets", *CHANNEL_ROLES):
            md = self.load(role)
            if md.signed.expires - now < timedelta(days=self.days[role]) / 2:
                self._bump(role, md)
                self._write(role, md, [self.signer(role)])
                changed.append(role)
        snapshot = self.load("snapshot")
        if changed or snapshot.signed.expires - now < timedelta(days=self.days["snapshot"]) / 2:
            for role in changed:
                snapshot.signed.meta[f"{role}.json"] = MetaFile(version=self.version(role))
            self._bump("snapshot", snapshot)
            self._write("snapshot", snapshot, [self.signer("snapshot")])
        return self._resign_timestamp()

    def root_expires(self) -> datetime:
        expires: datetime = self.load("root").signed.expires
        return expires

    def _resign_timestamp(self) -> int:
        timestamp = self.load("timestamp")
        timestamp.signed.snapshot_meta = MetaFile(version=self.version("snapshot"))
        self._bump("timestamp", timestamp)
        self._write("timestamp", timestamp, [self.signer("timestamp")])
        return int(timestamp.signed.version)

    def _store_target(self, path: str, data: bytes) -> TargetFile:
        target = TargetFile.from_data(path, data, ["sha256"])
        digest = target.hashes["sha256"]
        directory, _, name = path.rpartition("/")
        dest = self.repo / "targets" / directory / f"{digest}.{name}"
        if not dest.exists():
            atomic_write(dest, data)
        return target

    def publish(self, releases: list[ReleaseFiles]) -> list[str]:
        """Add releases as targets of their channels' roles; return the target paths."""
        if not releases:
            raise MalformedError("nothing to publish")
        for release in releases:
            if release.channel not in CHANNEL_ROLES:
                raise MalformedError(f"channel must be one of {', '.join(CHANNEL_ROLES)}")
        roles = {c: self.load(c) for c in {r.channel for r in releases}}
        index = self.index()
        published = []
        for release in releases:
            for value in (release.name, release.version):
                if not _NAME.fullmatch(value):
                    raise MalformedError(f"{value!r} cannot be part of a target path")
            base = f"{release.channel}/{release.name}/{release.version}"
            bundle_path = f"{base}/{BUNDLE_NAME}"
            md = roles[release.channel]
            md.signed.targets[bundle_path] = self._store_target(bundle_path, release.bundle)
            names = []
            for name, data in sorted(release.files.items()):
                if not _NAME.fullmatch(name) or name == BUNDLE_NAME:
                    raise MalformedError(f"artifact name {name!r} cannot be a target")
                target = self._store_target(f"{base}/{name}", data)
                target.unrecognized_fields["custom"] = {
                    "overt": {"bundle": bundle_path, "log_index": release.log_index}
                }
                md.signed.targets[target.path] = target
                names.append(target.path)
                published.append(target.path)
            index.setdefault(release.channel, {})[release.name] = {
                "version": release.version,
                "targets": names,
                "bundle": bundle_path,
                "log_index": release.log_index,
            }
        for channel, md in roles.items():
            self._bump(channel, md)
            self._write(channel, md, [self.signer(channel)])
        targets = self.load("targets")
        data = json.dumps(index, indent=1, sort_keys=True).encode()
        targets.signed.targets[INDEX_TARGET] = self._store_target(INDEX_TARGET, data)
        self._bump("targets", targets)
        self._write("targets", targets, [self.signer("targets")])
        self._snapshot_and_timestamp(["targets", *roles])
        return published

    def index(self) -> dict[str, dict[str, Any]]:
        """The current `overt/index.json` (what clients install)."""
        targets = self.load("targets")
        info = targets.signed.targets.get(INDEX_TARGET)
        if info is None:
            return {}
        digest = info.hashes["sha256"]
        data = (self.repo / "targets" / "overt" / f"{digest}.index.json").read_bytes()
        loaded: dict[str, dict[str, Any]] = json.loads(data)
        return loaded

    def rotate(self, role: str) -> str:
        """Replace a role's key; a new root version announces it. Returns the new key id.

        A new root is signed by the old and the new root keys, so clients that
        trust the old root accept it (TUF 1.0, "Update the root role").
        """
        if role not in (*TOP_ROLES, *CHANNEL_ROLES):
            raise MalformedError(f"role must be one of {', '.join((*TOP_ROLES, *CHANNEL_ROLES))}")
        old_root_signer = self.signer("root")
        new_key = Ed25519PrivateKey.generate()
        new_signer = CryptoSigner(new_key)
        retired = self.keys / "retired"
        retired.mkdir(exist_ok=True)
        if role in CHANNEL_ROLES:
            targets = self.load("targets")
            delegations = targets.signed.delegations
            assert delegations is not None and delegations.roles is not None
            delegated = delegations.roles[role]
            for keyid in list(delegated.keyids):
                targets.signed.revoke_key(keyid, role)
            targets.signed.add_key(new_signer.public_key, role)
            self._retire(role, retired)
            _write_key(self.keys / f"{role}.pem", new_key)
            md = self.load(role)
            self._bump(role, md)
            self._write(role, md, [new_signer])
            self._bump("targets", targets)
            self._write("targets", targets, [self.signer("targets")])
            self._snapshot_and_timestamp(["targets", role])
            return str(new_signer.public_key.keyid)
        root = self.load("root")
        for keyid in list(root.signed.roles[role].keyids):
            root.signed.revoke_key(keyid, role)
        root.signed.add_key(new_signer.public_key, role)
        self._bump("root", root)
        self._retire(role, retired)
        _write_key(self.keys / f"{role}.pem", new_key)
        signers = [old_root_signer, new_signer] if role == "root" else [old_root_signer]
        self._write("root", root, signers)
        if role in ("targets", "snapshot"):
            md = self.load(role)
            self._bump(role, md)
            self._write(role, md, [new_signer])
            if role == "targets":
                self._snapshot_and_timestamp(["targets"])
            else:
                self._resign_timestamp()
        elif role == "timestamp":
            self._resign_timestamp()
        return str(new_signer.public_key.keyid)

    def _retire(self, role: str, retired: Path) -> None:
        current = self.keys / f"{role}.pem"
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        dest, n = retired / f"{role}-{stamp}.pem", 1
        while dest.exists():  # two rotations within a second must not lose a key
            n += 1
            dest = retired / f"{role}-{stamp}-{n}.pem"
        shutil.move(str(current), str(dest))


def _write_key(path: Path, key: Ed25519PrivateKey) -> None:
    atomic_write(path, CryptoSigner(key).private_bytes, mode=0o600)


def init_repository(repo: Path, keys: Path, expiry_days: dict[str, int] | None = None) -> str:
    """Create keys and version 1 of every role; return the sha256 of 1.root.json."""
    if (repo / "metadata").exists():
        raise RepositoryError(f"{repo} already holds an update repository")
    if keys.exists() and any(keys.iterdir()):
        raise RepositoryError(f"{keys} is not empty; choose a new directory for the keys")
    days = {**DEFAULT_EXPIRY_DAYS, **(expiry_days or {})}
    keys.mkdir(parents=True, exist_ok=True)
    os.chmod(keys, 0o700)
    signers: dict[str, CryptoSigner] = {}
    for role in (*TOP_ROLES, *CHANNEL_ROLES):
        key = Ed25519PrivateKey.generate()
        _write_key(keys / f"{role}.pem", key)
        signers[role] = CryptoSigner(key)
    (repo / "metadata").mkdir(parents=True)
    (repo / "targets").mkdir(parents=True, exist_ok=True)

    root = Root(expires=_expiry("root", days), consistent_snapshot=True)
    for role in TOP_ROLES:
        root.add_key(signers[role].public_key, role)
    delegated = {
        # TUF path patterns match segment by segment: CHANNEL/NAME/VERSION/FILE.
        name: DelegatedRole(name, [signers[name].public_key.keyid], 1, True, [f"{name}/*/*/*"])
        for name in CHANNEL_ROLES
    }
    targets = Targets(
        expires=_expiry("targets", days),
        delegations=Delegations(
            {signers[n].public_key.keyid: signers[n].public_key for n in CHANNEL_ROLES}, delegated
        ),
    )
    snapshot = Snapshot(expires=_expiry("snapshot", days))
    snapshot.meta["targets.json"] = MetaFile(version=1)
    for name in CHANNEL_ROLES:
        snapshot.meta[f"{name}.json"] = MetaFile(version=1)
    timestamp = Timestamp(expires=_expiry("timestamp", days), snapshot_meta=MetaFile(version=1))
    documents: list[tuple[str, Metadata[Any]]] = [
        ("root", Metadata(root)),
        ("targets", Metadata(targets)),
        *((n, Metadata(Targets(expires=_expiry(n, days)))) for n in CHANNEL_ROLES),
        ("snapshot", Metadata(snapshot)),
        ("timestamp", Metadata(timestamp)),
    ]
    for role, md in documents:
        md.sign(signers[role])
        data = md.to_bytes(_SERIALIZER)
        name = "timestamp.json" if role == "timestamp" else f"1.{role}.json"
        atomic_write(repo / "metadata" / name, data)
    return hashlib.sha256((repo / "metadata" / "1.root.json").read_bytes()).hexdigest()

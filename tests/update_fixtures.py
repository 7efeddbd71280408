"""One small deployment for the policy, verifier and update-channel tests, built once per worker.

`update_world(tmp_path_factory)` makes, under one deployment directory D:

* a release log (`D/logs/releases`) that publishes a checkpoint only once both
  witnesses (`D/witnesses/w1`, `w2`) cosigned it, all served over HTTP by
  `BackgroundServer(create_app(D, ...))` on 127.0.0.1;
* a conveyor that built `examples/detection-db` twice (2024.5.0 = "v1",
  2024.5.1 = "v2") and `examples/clock-stamped` ("clock"), all logged;
* a rebuilder whose verdicts are logged: PASSED for v1 and v2, FAILED for clock;
* an approving review of v1, signed by `world.reviewer` and logged;
* a TUF repository (`D/updates`, served at `/updates/`) written by `overt
  updates init` and `overt updates publish`: v1 first (a copy of that state
  is kept in `D/repos/v1-only`), then v2;
* `world.early_bundle`, v1's bundle taken when the log held 2 entries (for gossip).

The log, in order: 0 v1 provenance, 1 v1 VSA, 2 v1 review, 3 v2 provenance,
4 v2 VSA, 5 clock provenance, 6 clock VSA (FAILED).

Tests never change the world: attacks work on copies (`copy_repo`) and on
bundles made in memory; `D/repos/` is served at `/repos/` for those copies.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from overt.cli.main import app
from overt.conveyor.conveyor import Conveyor, Release, init_conveyor
from overt.crypto.intoto import Statement, Subject
from overt.crypto.keyfile import read_private_key
from overt.crypto.keys import Ed25519Signer, ed25519_verifier
from overt.crypto.note import split
from overt.log.config import LogConfig
from overt.log.log import init_log, set_witness_policy
from overt.log.remote import directory_fetcher
from overt.log.submit import add_entries
from overt.policy.bundle import REVIEW_TYPE, Bundle, Logged, assemble_bundle, index_attestations
from overt.policy.trust import TrustPolicy, parse_policy
from overt.rebuild.rebuilder import Outcome, Rebuilder, init_rebuilder
from overt.tlog.checkpoint import Checkpoint, sign_checkpoint
from overt.tlog.client import LogClient
from overt.tlog.cosignature import CosignatureSigner
from overt.tlog.hashing import leaf_hash
from overt.tlog.merkle import MemoryTree, inclusion_proof
from overt.tlog.proof import TlogProof
from overt.updates.repository import Repository
from overt.web.app import create_app
from overt.web.server import BackgroundServer
from overt.witness.witness import Witness, init_witness
from release_fixtures import LATER_DATE, commit_all, example_repo, toolchain_caches

ORIGIN = "updates.example/acme/releases"
WITNESSES = ("w1", "w2")
PRODUCT = "detection-db"
V1, V2 = "2024.5.0", "2024.5.1"


def cli(*args: str | Path) -> tuple[int, str, str]:
    """Run `overt ARGS` in-process: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"overt crashed: {result.exception!r}\n{result.stderr}")
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stdout, result.stderr


def flat(text: str) -> str:
    return " ".join(text.split())


@dataclass(repr=False)
class UpdateWorld:
    root: Path
    base: str
    server: BackgroundServer
    log_dir: Path
    log_vkey: str
    witness_vkeys: dict[str, str]
    conveyor: Conveyor
    rebuilder_vkey: str
    reviewer: Ed25519Signer
    releases: dict[str, Release] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    early_bundle: Bundle | None = None
    review_index: int = -1

    def __repr__(self) -> str:
        return f"UpdateWorld({self.root}, {self.base})"

    # --- places ---------------------------------------------------------------

    @property
    def log_url(self) -> str:
        return f"{self.base}/logs/releases"

    @property
    def tiles(self) -> Path:
        return self.log_dir / "tiles"

    @property
    def repo(self) -> Path:
        return self.root / "updates"

    @property
    def keys(self) -> Path:
        return self.root / "update-keys"

    @property
    def repo_url(self) -> str:
        return f"{self.base}/updates"

    @property
    def root_json(self) -> Path:
        return self.repo / "metadata" / "1.root.json"

    def release_dir(self, name: str) -> Path:
        return self.releases[name].directory

    def artifact(self, name: str) -> tuple[str, bytes]:
        """(file name, contents) of a release's only artifact."""
        (art,) = self.releases[name].artifacts
        return art.name, art.path.read_bytes()

    # --- keys an attacker (or a test) may hold ------------------------------------

    def log_signer(self) -> Ed25519Signer:
        return read_private_key(self.log_dir / "secrets" / "log.key")

    def witness_signers(self) -> list[CosignatureSigner]:
        return [
            CosignatureSigner(read_private_key(self.root / "witnesses" / n / "secrets/witness.key"))
            for n in WITNESSES
        ]

    def conveyor_signer(self) -> Ed25519Signer:
        return self.conveyor.signer

    # --- the log ---------------------------------------------------------------------

    def client(self) -> LogClient:
        return LogClient(directory_fetcher(self.tiles), log_key=ed25519_verifier(self.log_vkey))

    def entries(self) -> list[bytes]:
        return [e for _, e in self.client().entries()]

    def signed_checkpoint(self) -> str:
        return (self.tiles / "checkpoint").read_text()

    def bundle(self, name: str) -> Bundle:
        """The release's bundle against the log's current (final) checkpoint."""
        client = self.client()
        index = self.releases[name].log_index
        assert index is not None
        return assemble_bundle(client, index, index_attestations(client.entries()))

    def forged_tree(self, entries: Sequence[bytes]) -> tuple[MemoryTree, str]:
        """A tree of `entries` under the log's key and origin, cosigned by both witnesses.

        What a log that holds its own key and colludes with (or stole the keys
        of) the witnesses could show one customer: a split view.
        """
        tree = MemoryTree()
        tree.extend(entries)
        checkpoint = Checkpoint(ORIGIN, tree.size, tree.root())
        signed = sign_checkpoint(checkpoint, [self.log_signer()])
        return tree, sign_checkpoint(checkpoint, self.witness_signers(), split(signed)[1])

    # --- policies ---------------------------------------------------------------------

    def policy_text(
        self,
        *,
        witnesses: str | None = None,
        max_age_hours: int | None = 24,
        conveyor_keys: list[str] | None = None,
        rebuilder_keys: list[str] | None = None,
        rebuilders_required: int = 1,
        reviewer_keys: list[str] | None = None,
        channels: str = "",
        log_url: bool = True,
        root: str | None = None,
    ) -> str:
        """A customer policy trusting this world (both witnesses, the conveyor, the rebuilder)."""
        lines = ["[log]", f'key = "{self.log_vkey}"']
        if log_url:
            lines.append(f'url = "{self.log_url}"')
        lines += ["", "[witnesses]"]
        if max_age_hours is not None:
            lines.append(f"max_checkpoint_age_hours = {max_age_hours}")
        if witnesses is None:
            lines.append("quorum = 2")
            for name, vkey in self.witness_vkeys.items():
                lines += [
                    "[[witnesses.witness]]",
                    f'name = "{name}"',
                    f'key = "{vkey}"',
                    f'url = "{self.base}/witnesses/{name}"',
                ]
        else:
            lines.append(witnesses)
        conveyors = conveyor_keys if conveyor_keys is not None else [self.conveyor.vkey]
        rebuilders = rebuilder_keys if rebuilder_keys is not None else [self.rebuilder_vkey]
        reviewers = reviewer_keys if reviewer_keys is not None else []
        lines += ["", "[conveyors]", f"keys = {_toml_list(conveyors)}"]
        lines += ["", "[rebuilders]", f"keys = {_toml_list(rebuilders)}"]
        lines.append(f"required = {rebuilders_required}")
        lines += ["", "[reviews]", f"keys = {_toml_list(reviewers)}"]
        if root is not None:
            lines += ["", "[updates]", f'url = "{self.repo_url}"', f'root = "{root}"']
        return "\n".join(lines) + "\n" + channels

    def policy(self, **kwargs: object) -> TrustPolicy:
        return parse_policy(self.policy_text(**kwargs))  # type: ignore[arg-type]

    def customer(self, where: Path, **kwargs: object) -> Path:
        """A customer directory: policy.toml naming root.json (the repository's first root)."""
        where.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.root_json, where / "root.json")
        policy = where / "policy.toml"
        policy.write_text(self.policy_text(root="root.json", **kwargs))  # type: ignore[arg-type]
        return policy

    # --- repositories -------------------------------------------------------------------

    def copy_repo(self, source: str = "updates") -> tuple[Repository, str]:
        """A copy of a repository with its keys, served at the returned URL."""
        name = uuid.uuid4().hex[:12]
        dest = self.root / "repos" / name
        src_repo = self.repo if source == "updates" else self.root / "repos" / source / "updates"
        src_keys = self.keys if source == "updates" else self.root / "repos" / source / "keys"
        shutil.copytree(src_repo, dest / "updates")
        shutil.copytree(src_keys, dest / "keys")
        return Repository(dest / "updates", dest / "keys"), f"{self.base}/repos/{name}/updates"


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def review_statement(release: Release, provenance: bytes, verdict: str, scope: str) -> Statement:
    """A source review of a release, about its provenance envelope."""
    return Statement(
        [Subject(a.name, {"sha256": a.sha256}) for a in release.artifacts],
        REVIEW_TYPE,
        {
            "reviewer": {"id": "https://reviews.example.org/alice"},
            "inputAttestations": [
                {"name": "provenance", "digest": {"sha256": hashlib.sha256(provenance).hexdigest()}}
            ],
            "verdict": verdict,
            "scope": scope,
        },
    )


def proven(tree: MemoryTree, index: int, entry: bytes, checkpoint: str) -> Logged:
    """`entry` as logged at `index` of `tree`, under `checkpoint`."""
    assert tree.leaf_hash(index) == leaf_hash(entry)
    return Logged(
        entry, TlogProof(index, tuple(inclusion_proof(tree, index, tree.size)), checkpoint)
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


_WORLD: list[UpdateWorld] = []


def update_world(factory: pytest.TempPathFactory) -> UpdateWorld:
    if not _WORLD:
        _WORLD.append(_build(factory))
    return _WORLD[0]


def deployment(
    factory: pytest.TempPathFactory, directory: str = "update-world"
) -> tuple[UpdateWorld, Rebuilder]:
    """A world with nothing built yet: the log and both witnesses served over HTTP, the
    conveyor, rebuilder r1 (returned) and the reviewer, laid out as described above."""
    # One toolchain for both: these worlds test what is done with verdicts, not rebuilds.
    cache, _ = toolchain_caches(factory)
    root = factory.mktemp(directory)
    log_dir = root / "logs" / "releases"
    log_vkey = init_log(log_dir, LogConfig(origin=ORIGIN))
    witness_vkeys = {}
    for name in WITNESSES:
        wdir = root / "witnesses" / name
        witness_vkeys[name] = init_witness(wdir, f"witness.example/{name}")
        witness = Witness(wdir)
        try:
            witness.add_log(ORIGIN, [log_vkey])
        finally:
            witness.close()
    (root / "repos").mkdir()
    server = BackgroundServer(
        create_app(root, witnesses=WITNESSES, static=("updates", "repos")), "127.0.0.1", 0
    )
    base = server.start()
    set_witness_policy(
        log_dir,
        (
            f"log {log_vkey}\n"
            + "".join(f"witness {n} {k} {base}/witnesses/{n}\n" for n, k in witness_vkeys.items())
            + f"group both all {' '.join(WITNESSES)}\nquorum both\n"
        ).encode(),
    )
    init_conveyor(root / "conveyor", "conveyor.updates.example", "https://conveyor.example.com/u")
    conveyor = Conveyor(root / "conveyor", cache=cache)
    rebuilder_vkey = init_rebuilder(
        root / "rebuilders" / "r1",
        "rebuilder.example.org/r1",
        "https://rebuilder.example.org/r1",
        str(log_dir),
        log_vkey,
        [conveyor.vkey],
        artifacts=str(conveyor.releases),
    )
    rebuilder = Rebuilder(root / "rebuilders" / "r1", cache=cache)
    world = UpdateWorld(
        root,
        base,
        server,
        log_dir,
        log_vkey,
        witness_vkeys,
        conveyor,
        rebuilder_vkey,
        Ed25519Signer.generate("reviewer.example.org/alice"),
    )
    return world, rebuilder


def _build(factory: pytest.TempPathFactory) -> UpdateWorld:
    world, rebuilder = deployment(factory)
    root, conveyor, log_dir = world.root, world.conveyor, world.log_dir
    log = str(log_dir)

    def build(name: str, project: Path) -> None:
        release = conveyor.build(project, log=log)
        assert release.log_index is not None
        world.releases[name] = release

    def rebuild(name: str) -> None:
        index = world.releases[name].log_index
        assert index is not None
        world.outcomes[name] = rebuilder.rebuild_index(index)

    project = example_repo(PRODUCT, root / "src" / PRODUCT)
    build("v1", project)  # entry 0
    rebuild("v1")  # entry 1
    world.early_bundle = world.bundle("v1")
    v1 = world.releases["v1"]
    review = review_statement(v1, v1.envelope.to_bytes(), "approved", "full")
    world.review_index = add_entries(log, [review.sign([world.reviewer]).to_bytes()]).indexes[0]
    toml = project / "overt.toml"
    toml.write_text(toml.read_text().replace(V1, V2))
    commit_all(project, V2, date=LATER_DATE)
    build("v2", project)  # entry 3
    rebuild("v2")  # entry 4
    build("clock", example_repo("clock-stamped", root / "src" / "clock-stamped"))  # entry 5
    rebuild("clock")  # entry 6
    assert world.outcomes["v1"].summary.passed and world.outcomes["v2"].summary.passed
    assert not world.outcomes["clock"].summary.passed
    assert [r.log_index for r in world.releases.values()] == [0, 3, 5]

    # The vendor's update channel, made with the commands a vendor runs.
    code, _, stderr = cli("updates", "init", world.repo, "--keys", world.keys)
    assert code == 0, stderr
    publish = ("updates", "publish", world.repo, "--keys", world.keys, "--log", log_dir)
    code, _, stderr = cli(*publish, world.release_dir("v1"))
    assert code == 0, stderr
    shutil.copytree(world.repo, root / "repos" / "v1-only" / "updates")
    shutil.copytree(world.keys, root / "repos" / "v1-only" / "keys")
    code, _, stderr = cli(*publish, world.release_dir("v2"))
    assert code == 0, stderr
    return world

"""Update channel benchmark: offline bundle verification, and `overt update` against plain TUF.

Fixture (untimed, no real builds): a release log (init_log, `--filler` unrelated
entries first so proofs have a realistic depth), two witnesses (init_witness)
that cosign its checkpoint in-process through `Witness.add_checkpoint` (the
tlog-witness request the log's integrator would send them over HTTP); the
cosigned note is written as the log's published checkpoint, as a log with that
witness policy publishes it. For each of P products: a SLSA provenance (Recipe,
Source, a python + build-lock + pins toolchain) signed by a conveyor Ed25519
key, and two PASSED VSAs signed by two rebuilder keys, all logged; a bundle per
product from assemble_bundle/index_attestations against the cosigned
checkpoint. The customer's TrustPolicy (parse_policy/load_policy) trusts the
log, both witnesses (quorum 2, max age 24 h), the conveyor and both rebuilders
with `required = 2`.

1. Offline verification (issue target: <= 2 ms median) of product 0's bundle
   (1 provenance + 2 VSAs, checkpoint with 2 cosignatures): verify_release
   (memory=None, no prover) on the parsed bundle, and Bundle.from_bytes +
   verify_release, timed per call. Peer: the bare cryptography, `cryptography`'s
   Ed25519PublicKey.verify on pre-loaded keys and pre-built messages, for the 6
   signatures that must be checked (provenance, log, 2 cosignatures, 2 VSAs);
   also for the verifications verify_release actually performs, counted by
   wrapping the verifiers' verify methods during one untimed call. The steps of
   verify_release are then timed alone through the same public calls it makes
   (per-check cost), times how often one verification makes each.
2. `overt update` of P products (issue target: the transparency checks add < 50 %
   on top of TUF): a TUF repository (init_repository, one Repository.publish of
   P ReleaseFiles: one artifact of `--artifact-kib` KiB + its bundle each),
   served with Starlette StaticFiles on uvicorn (as the demo serves
   `/updates/`) from a child process, with the log's tiles at `/log/`. Timed
   from an empty state and install directory each run:
     - peer, "ngclient": tuf.ngclient.Updater (same config and bootstrap root)
       refresh, then get_targetinfo + download_target for overt/index.json and
       every product's artifact and bundle (the same bytes overt fetches);
     - "overt": UpdateClient(policy, url, install, state).update() with the
       customer policy as the demo writes it (log URL for consistency proofs,
       gossip on);
     - "overt, no log URL": the same policy without [log] url.
   After an untimed warm-up round, R rounds run every variant, the order
   rotating; medians. The overhead is (overt median - ngclient median) /
   ngclient median. Each round then adds one instrumented run per overt
   variant (module functions of overt.updates.client wrapped with timers,
   UpdateClient subclassed to time _updater/refresh/_fetch; not part of the
   headline figures): where the time goes, and the transparency checks proper
   (Bundle.from_bytes + verify_release) as a share of the ngclient time.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from tuf.ngclient import Updater, UpdaterConfig

import overt.updates.client as update_client
from common import (
    HOST,
    ChildServer,
    OtherLoad,
    console,
    finish,
    fmt_ratio,
    fmt_us,
    free_port,
    fs_type,
    nearest_rank,
    print_table,
    self_cpu_s,
    summarize_ns,
    verdict,
    write_results,
)
from overt.conveyor.provenance import Provenance, rfc3339
from overt.conveyor.recipe import Recipe
from overt.conveyor.source import Source
from overt.crypto.dsse import Envelope, verify_envelope
from overt.crypto.intoto import PAYLOAD_TYPE, Statement, Subject
from overt.crypto.keys import Ed25519Signer, Ed25519Verifier
from overt.crypto.note import split
from overt.durable import atomic_write
from overt.log.config import LogConfig
from overt.log.log import Log, init_log
from overt.log.remote import directory_fetcher
from overt.policy.bundle import Bundle, assemble_bundle, index_attestations
from overt.policy.trust import TrustPolicy, load_policy, parse_policy
from overt.policy.verify import verify_release
from overt.rebuild.vsa import PASSED, ArtifactCheck, VerificationSummary
from overt.tlog.checkpoint import Checkpoint, open_checkpoint
from overt.tlog.client import LogClient
from overt.tlog.cosignature import CosignatureVerifier, cosignature_message
from overt.tlog.hashing import leaf_hash
from overt.tlog.merkle import verify_inclusion
from overt.tlog.policy import Policy
from overt.tlog.witness import AddCheckpointRequest
from overt.updates.client import UpdateClient
from overt.updates.repository import INDEX_TARGET, ReleaseFiles, Repository, init_repository
from overt.witness.witness import Witness, init_witness

THIS_FILE = Path(__file__).resolve()
ORIGIN = "bench.overt.example/releases"
WITNESSES = ("witness-a", "witness-b")
CONVEYOR = "conveyor.bench.overt.example"
REBUILDERS = ("rebuilder.bench.overt.example/r1", "rebuilder.bench.overt.example/r2")
VERSION = "1.0.0"
TARGET_VERIFY_MS = 2.0  # verify_release median
TARGET_OVERHEAD_PCT = 50.0  # overt update over plain ngclient
NEEDED_ED25519 = 6  # provenance, log signature, 2 cosignatures, 2 VSAs

VARIANTS = ("ngclient", "overt", "overt_offline")
VARIANT_LABELS = {
    "ngclient": "plain ngclient (peer)",
    "overt": "overt update",
    "overt_offline": "overt update, no log URL",
}
PEER_VERIFY_NOTE = (
    "peer: cryptography's Ed25519PublicKey.verify on keys loaded once and messages built "
    "once (DSSE PAE, checkpoint text, cosignature/v1 messages): the bare signature "
    "checks, without parsing, policy or proofs"
)
PEER_UPDATE_NOTE = (
    "peer (ngclient): tuf.ngclient.Updater from an empty metadata directory with the same "
    "bootstrap root and UpdaterConfig(prefix_targets_with_hash=True), refresh(), then "
    "get_targetinfo + download_target for overt/index.json and each product's artifact and "
    "bundle.json, into an empty download directory: the same requests and bytes as overt"
)
BREAKDOWN = (
    ("tuf_metadata", "TUF: Updater() + refresh (root, timestamp, snapshot, targets)"),
    ("tuf_targets", "TUF: get_targetinfo + download (index, artifacts, bundles)"),
    ("bundle_parse", "transparency: Bundle.from_bytes"),
    ("verify", "transparency: verify_release (incl. gossip memory)"),
    ("log_client", "log client per product: http_fetcher (new httpx.Client)"),
    ("install", "install: atomic_write of artifact + installed.json (fsync)"),
    ("other", "other (sha256 of artifacts, bookkeeping)"),
)


@dataclass(frozen=True)
class Config:
    quick: bool
    products: int
    rounds: int
    iterations: int
    component_iterations: int
    artifact_kib: int
    filler: int
    seed: int
    parts: tuple[str, ...]
    workdir: Path | None


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(
        prog="bench_updates", description="Update channel: bundle verification, overt update"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--products", type=int, help="products in the repository (default 100)")
    parser.add_argument("--rounds", type=int, help="timed update rounds (default 7)")
    parser.add_argument("--iterations", type=int, help="verify_release calls timed (default 3000)")
    parser.add_argument("--artifact-kib", type=int, default=16, help="artifact size (KiB)")
    parser.add_argument("--filler", type=int, help="log entries before the releases (10,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-verify", action="store_true", help="skip part 1")
    parser.add_argument("--skip-update", action="store_true", help="skip part 2")
    parser.add_argument("--workdir", type=Path, help="where to make the temporary directories")
    args = parser.parse_args(list(argv))
    quick = args.quick
    products = args.products or (20 if quick else 100)
    rounds = args.rounds or (2 if quick else 7)
    iterations = args.iterations or (300 if quick else 3000)
    if min(products, rounds, iterations, args.artifact_kib) < 1:
        parser.error("--products, --rounds, --iterations and --artifact-kib must be >= 1")
    parts = tuple(
        p for p, skip in (("verify", args.skip_verify), ("update", args.skip_update)) if not skip
    )
    if not parts:
        parser.error("nothing to run")
    return Config(
        quick=quick,
        products=products,
        rounds=rounds,
        iterations=iterations,
        component_iterations=max(50, iterations // 3),
        artifact_kib=args.artifact_kib,
        filler=args.filler if args.filler is not None else (1000 if quick else 10_000),
        seed=args.seed,
        parts=parts,
        workdir=args.workdir,
    )


# --- fixture: log, witnesses, signed provenance and VSAs, bundles --------------------


@dataclass
class Product:
    name: str
    artifact: str
    data: bytes
    sha256: str
    index: int  # log index of the provenance
    provenance: bytes  # the logged DSSE envelope
    vsas: list[bytes] = field(default_factory=list)
    bundle: Bundle | None = None
    bundle_bytes: bytes = b""


@dataclass
class World:
    log_dir: Path
    log_vkey: str
    witness_keys: dict[str, str]  # policy name -> cosignature vkey
    conveyor: Ed25519Signer
    rebuilders: list[Ed25519Signer]
    products: list[Product]
    checkpoint: str  # the cosigned checkpoint every bundle is proven against
    log_size: int
    setup_s: float

    def tlog_policy(self) -> Policy:
        lines = [f"log {self.log_vkey}"]
        lines += [f"witness {n} {k}" for n, k in self.witness_keys.items()]
        lines += [f"group all-witnesses all {' '.join(self.witness_keys)}", "quorum all-witnesses"]
        return Policy.parse("\n".join(lines) + "\n")

    def policy_text(self, log_url: str | None = None, updates_url: str | None = None) -> str:
        """The customer's policy.toml: every key of the fixture, 2 rebuilders required."""
        log = [f'key = "{self.log_vkey}"'] + ([f'url = "{log_url}"'] if log_url else [])
        witnesses = "".join(
            f'\n[[witnesses.witness]]\nname = "{n}"\nkey = "{k}"\n'
            for n, k in self.witness_keys.items()
        )
        rebuilders = ", ".join(f'"{r.verifier_key()}"' for r in self.rebuilders)
        text = (
            "[log]\n" + "\n".join(log) + "\n\n[witnesses]\nquorum = 2\n"
            "max_checkpoint_age_hours = 24\n" + witnesses + "\n[conveyors]\n"
            f'keys = ["{self.conveyor.verifier_key()}"]\n\n[rebuilders]\n'
            f"keys = [{rebuilders}]\nrequired = 2\n"
        )
        if updates_url:
            text += f'\n[updates]\nurl = "{updates_url}"\nroot = "root.json"\n'
        return text


def _provenance(
    name: str, artifact: str, sha256: str, rng: random.Random, now: float
) -> Provenance:
    """A provenance shaped like the conveyor's for a hash-locked Python build."""
    pins = [
        {
            "name": pkg,
            "uri": f"pkg:pypi/{pkg}@{ver}",
            "annotations": {"allowedSha256": [rng.randbytes(32).hex()]},
        }
        for pkg, ver in (("setuptools", "75.1.0"), ("wheel", "0.44.0"), ("build", "1.2.2"))
    ]
    return Provenance(
        subjects=(Subject(artifact, {"sha256": sha256}),),
        recipe=Recipe(
            name,
            VERSION,
            ("python -m build --no-isolation --outdir dist .",),
            ("dist/*",),
            "3.11",
            lock="build-requirements.txt",
        ),
        source=Source(
            f"git+https://git.bench.overt.example/{name}.git",
            rng.randbytes(32).hex(),
            1_700_000_000,
            rng.randbytes(20).hex(),
            rng.randbytes(20).hex(),
        ),
        toolchain=(
            {"name": "python", "uri": "pkg:generic/python@3.11.7"},
            {
                "name": "build-lock",
                "uri": "build-requirements.txt",
                "digest": {"sha256": rng.randbytes(32).hex()},
            },
            *pins,
        ),
        builder_id=f"https://{CONVEYOR}/zurich",
        invocation_id=f"urn:uuid:{rng.randbytes(16).hex()}",
        started_on=rfc3339(now - 90),
        finished_on=rfc3339(now - 30),
        environment={"SOURCE_DATE_EPOCH": "1700000000", "TZ": "UTC", "LC_ALL": "C.UTF-8"},
        byproducts=({"name": "build.log", "digest": {"sha256": rng.randbytes(32).hex()}},),
    )


def _vsa(
    product: Product, provenance: Provenance, rebuilder: int, now: float
) -> VerificationSummary:
    return VerificationSummary(
        subjects=provenance.subjects,
        verifier_id=f"https://{REBUILDERS[rebuilder]}",
        time_verified=rfc3339(now),
        resource_uri=f"pkg:generic/{product.name}@{VERSION}",
        provenance={
            "uri": f"tlog://{ORIGIN}#{product.index}",
            "digest": {"sha256": hashlib.sha256(product.provenance).hexdigest()},
        },
        result=PASSED,
        reason="all 1 artifact(s) reproduced bit for bit",
        checks=(ArtifactCheck(product.artifact, product.sha256, product.sha256),),
        environment={"buildPath": f"/tmp/rebuild-{rebuilder}", "tz": "Pacific/Chatham"},
        verifier_version="0.1.0",
    )


def build_world(work: Path, products: int, filler: int, artifact_kib: int, seed: int) -> World:
    t0 = time.perf_counter()
    rng = random.Random(seed)
    log_dir = work / "log"
    log_vkey = init_log(log_dir, LogConfig(origin=ORIGIN))
    witnesses: dict[str, Witness] = {}
    witness_keys: dict[str, str] = {}
    for name in WITNESSES:
        wdir = work / "witnesses" / name
        witness_keys[name] = init_witness(wdir, f"witness.bench.overt.example/{name}")
        witnesses[name] = Witness(wdir)
        witnesses[name].add_log(ORIGIN, [log_vkey])
    conveyor = Ed25519Signer.generate(CONVEYOR)
    rebuilders = [Ed25519Signer.generate(name) for name in REBUILDERS]
    now = time.time()
    made: list[Product] = []
    provenances: list[Provenance] = []
    for i in range(products):
        name = f"product-{i:03d}"
        artifact = f"{name}-{VERSION}.tar.gz"
        data = rng.randbytes(artifact_kib * 1024)
        sha = hashlib.sha256(data).hexdigest()
        provenance = _provenance(name, artifact, sha, rng, now)
        entry = provenance.statement().sign([conveyor]).to_bytes()
        made.append(Product(name, artifact, data, sha, -1, entry))
        provenances.append(provenance)
    with Log(log_dir) as log:
        if filler:
            log.add([b"unrelated entry %d " % i + rng.randbytes(100) for i in range(filler)])
        indexes, _ = log.add([p.provenance for p in made])
        for p, provenance, index in zip(made, provenances, indexes, strict=True):
            p.index = index
            for r, signer in enumerate(rebuilders):
                statement = _vsa(p, provenance, r, now).statement()
                p.vsas.append(statement.sign([signer]).to_bytes())
        log.add([v for p in made for v in p.vsas])
        signed = log.signed_checkpoint().decode()
    # The witnesses cosign in-process: the same add-checkpoint request the log's
    # integrator sends over HTTP (tlog-witness), old size 0 as for a new log.
    text, log_sigs = split(signed)
    cosigs = []
    for witness in witnesses.values():
        cosigs += witness.add_checkpoint(AddCheckpointRequest(0, (), signed).format().encode())
        witness.close()
    note = text + "\n" + "".join(s.line() for s in [*log_sigs, *cosigs])
    # Published as a log with this witness policy publishes it: log line, then cosignatures.
    atomic_write(log_dir / "tiles" / "checkpoint", note.encode())
    world = World(log_dir, log_vkey, witness_keys, conveyor, rebuilders, made, note, 0, 0.0)
    client = LogClient(directory_fetcher(log_dir / "tiles"), policy=world.tlog_policy())
    world.log_size = client.update().size
    attestations = index_attestations(client.entries())
    for p in made:
        p.bundle = assemble_bundle(client, p.index, attestations)
        p.bundle_bytes = p.bundle.to_bytes()
        if len(p.bundle.attestations) != len(rebuilders):
            raise RuntimeError(f"{p.name}: bundle has {len(p.bundle.attestations)} attestations")
    world.setup_s = time.perf_counter() - t0
    return world


# --- timing helpers ------------------------------------------------------------------


def timed_series(
    funcs: dict[str, Callable[[], object]], iterations: int, block: int = 50
) -> dict[str, list[int]]:
    """Per-call ns of each function, `iterations` calls each, interleaved in blocks.

    The functions take turns a block at a time, the order rotating, so drift in
    the machine's speed (other load, frequency) reaches all of them alike.
    """
    names = list(funcs)
    for fn in funcs.values():  # warm caches and lazily built state
        for _ in range(10):
            fn()
    samples: dict[str, list[int]] = {n: [] for n in names}
    gc.collect()
    done, turn = 0, 0
    clock = time.perf_counter_ns
    while done < iterations:
        n = min(block, iterations - done)
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            fn, out = funcs[name], samples[name]
            for _ in range(n):
                t0 = clock()
                fn()
                out.append(clock() - t0)
        done += n
        turn += 1
    return samples


def summarize_s(samples: Sequence[float]) -> dict[str, Any]:
    """summarize_ns of wall seconds, plus p90 and the samples."""
    ns = sorted(round(s * 1e9) for s in samples)
    out: dict[str, Any] = summarize_ns(ns)
    out["p90_us"] = nearest_rank(ns, 90) / 1000
    out["samples_s"] = [round(s, 6) for s in samples]
    return out


def fmt_s(seconds: float) -> str:
    return f"{seconds:,.3f} s"


# --- part 1: offline verification ------------------------------------------------------


@dataclass(frozen=True)
class Ed25519Call:
    role: str
    public: bytes
    message: bytes  # exactly what Ed25519 checks (cosignature/v1 message for witnesses)
    signature: bytes
    valid: bool


def _role(world: World, name: str) -> str:
    if name == ORIGIN:
        return "log"
    if name == CONVEYOR:
        return "conveyor"
    if name in REBUILDERS:
        return "rebuilder"
    return "witness"


def record_ed25519(world: World, call: Callable[[], object]) -> list[Ed25519Call]:
    """Every Ed25519 verification `call` makes, by wrapping the two verifier classes."""
    calls: list[Ed25519Call] = []
    plain, cosig = Ed25519Verifier.verify, CosignatureVerifier.verify

    def plain_wrapper(self: Ed25519Verifier, message: bytes, signature: bytes) -> bool:
        valid = plain(self, message, signature)
        role = _role(world, self.name)
        calls.append(Ed25519Call(role, self.vkey.public, message, signature, valid))
        return valid

    def cosig_wrapper(self: CosignatureVerifier, message: bytes, signature: bytes) -> bool:
        valid = cosig(self, message, signature)
        stamp = int.from_bytes(signature[:8], "big")
        msg = cosignature_message(message, stamp)
        calls.append(Ed25519Call("witness", self.vkey.public, msg, signature[8:], valid))
        return valid

    Ed25519Verifier.verify = plain_wrapper  # type: ignore[method-assign]
    CosignatureVerifier.verify = cosig_wrapper  # type: ignore[method-assign]
    try:
        call()
    finally:
        Ed25519Verifier.verify = plain  # type: ignore[method-assign]
        CosignatureVerifier.verify = cosig  # type: ignore[method-assign]
    return calls


def bare_verifier(calls: Sequence[Ed25519Call]) -> Callable[[], None]:
    """The same Ed25519 checks with `cryptography` alone: keys loaded, messages built."""
    prepared = [
        (Ed25519PublicKey.from_public_bytes(c.public), c.signature, c.message, c.valid)
        for c in calls
    ]

    def run() -> None:
        for key, signature, message, valid in prepared:
            try:
                key.verify(signature, message)
            except InvalidSignature:
                if valid:
                    raise
            else:
                if not valid:
                    raise RuntimeError("a signature the verifier refused verified")

    return run


def components(
    world: World, product: Product, policy: TrustPolicy
) -> list[tuple[str, str, int, Callable[[], object]]]:
    """verify_release's steps, each through the same public calls it makes.

    (key, label, calls per verify_release, function).
    """
    bundle = product.bundle
    assert bundle is not None
    raw = bundle.provenance.proof.checkpoint
    checkpoint = Checkpoint.parse(split(raw)[0])
    items = [bundle.provenance, *bundle.attestations]
    envelope = Envelope.from_bytes(bundle.provenance.entry)

    def provenance_signature() -> object:
        env = Envelope.from_bytes(bundle.provenance.entry)
        return verify_envelope(env, policy.conveyors(), payload_type=PAYLOAD_TYPE)

    def provenance_parse() -> object:
        provenance = Provenance.from_statement(Statement.from_envelope(envelope))
        return next(s for s in provenance.subjects if s.name == product.artifact)

    def log_signature() -> object:
        return open_checkpoint(raw, Ed25519Verifier(policy.log_key))

    def witness_quorum() -> object:
        return policy.tlog_policy.verify_checkpoint(raw)

    def inclusion() -> None:
        for item in items:
            verify_inclusion(
                leaf_hash(item.entry),
                item.proof.index,
                checkpoint.size,
                item.proof.proof,
                checkpoint.root_hash,
            )

    def attestations() -> None:
        rebuilders = policy.rebuilders()
        policy.reviewers()
        for item in bundle.attestations:
            env = Envelope.from_bytes(item.entry)
            statement = Statement.from_envelope(env)
            verify_envelope(env, rebuilders, payload_type=PAYLOAD_TYPE)
            VerificationSummary.from_statement(statement)

    return [
        (
            "provenance_signature",
            "provenance signature: DSSE parse, conveyor keys, Ed25519",
            1,
            provenance_signature,
        ),
        (
            "provenance_parse",
            "artifact digest: in-toto statement + SLSA provenance parse",
            1,
            provenance_parse,
        ),
        ("log_signature", "logged: open_checkpoint with the log key", 2, log_signature),
        (
            "witness_quorum",
            "witnessed: tlog-policy verify_checkpoint (log + 2 cosignatures)",
            1,
            witness_quorum,
        ),
        ("inclusion", f"inclusion proofs ×{len(items)}: leaf hash + path", 1, inclusion),
        (
            "attestations",
            f"{len(bundle.attestations)} VSAs: parse, rebuilder keys, Ed25519, summary",
            1,
            attestations,
        ),
    ]


def part_verify(cfg: Config, world: World) -> tuple[dict[str, Any], bool]:
    product = world.products[0]
    bundle = product.bundle
    assert bundle is not None
    policy = parse_policy(world.policy_text(), "bench policy")
    name, sha = product.artifact, product.sha256

    decision = verify_release(name, sha, bundle, policy)
    wrong = verify_release(name, "0" * 64, bundle, policy)
    ok = (
        decision.accepted
        and len(decision.checks) == 8
        and not wrong.accepted
        and wrong.reason.startswith("artifact digest")
    )
    checks = [c.name for c in decision.checks]
    performed = record_ed25519(world, lambda: verify_release(name, sha, bundle, policy))
    needed: dict[tuple[bytes, bytes], Ed25519Call] = {}
    for c in performed:
        if c.valid:
            needed.setdefault((c.public, c.signature), c)
    by_role: dict[str, dict[str, int]] = {}
    for c in performed:
        row = by_role.setdefault(c.role, {"performed": 0, "failed": 0, "distinct_valid": 0})
        row["performed"] += 1
        row["failed"] += 0 if c.valid else 1
    for c in needed.values():
        by_role[c.role]["distinct_valid"] += 1
    ok = ok and len(needed) == NEEDED_ED25519

    console.print(
        f"1. verify_release: {len(bundle.attestations)} VSAs, checkpoint size {world.log_size} "
        f"with {len(world.witness_keys)} cosignatures, bundle {len(product.bundle_bytes):,} "
        f"bytes; {cfg.iterations:,} calls per variant, interleaved..."
    )
    funcs: dict[str, Callable[[], object]] = {
        "verify": lambda: verify_release(name, sha, bundle, policy),
        "from_bytes": lambda: verify_release(
            name, sha, Bundle.from_bytes(product.bundle_bytes), policy
        ),
        "bare_needed": bare_verifier(list(needed.values())),
        "bare_performed": bare_verifier(performed),
    }
    load = OtherLoad()
    samples = timed_series(funcs, cfg.iterations)
    others = load.stop()
    summary = {k: summarize_ns(v) for k, v in samples.items()}

    steps = components(world, product, policy)
    console.print(f"   per-check cost: {cfg.component_iterations:,} calls of each step...")
    step_samples = timed_series({k: fn for k, _, _, fn in steps}, cfg.component_iterations)
    step_rows = []
    verify_median = summary["verify"]["median_us"]
    for key, label, calls, _ in steps:
        s = summarize_ns(step_samples[key])
        step_rows.append(
            {
                "step": key,
                "label": label,
                "calls_per_verify": calls,
                **s,
                "total_median_us": s["median_us"] * calls,
                "share_of_verify": s["median_us"] * calls / verify_median,
            }
        )
    attributed = sum(r["total_median_us"] for r in step_rows)

    peer = summary["bare_needed"]["median_us"]
    ratio = verify_median / peer
    rows = []
    labels = {
        "verify": "verify_release (parsed bundle)",
        "from_bytes": "Bundle.from_bytes + verify_release",
        "bare_needed": f"peer: bare Ed25519 ×{len(needed)} (needed)",
        "bare_performed": f"bare Ed25519 ×{len(performed)} (as performed)",
    }
    for key in ("verify", "from_bytes", "bare_needed", "bare_performed"):
        s = summary[key]
        target = key in ("verify", "from_bytes")
        passed = s["median_us"] / 1000 <= TARGET_VERIFY_MS if key == "verify" else None
        rows.append(
            [
                labels[key],
                fmt_us(s["median_us"]),
                fmt_us(s["p99_us"]),
                fmt_us(s["min_us"]),
                fmt_ratio(s["median_us"] / peer),
                f"<= {TARGET_VERIFY_MS:g} ms" if key == "verify" else "",
                verdict(passed) if target else "",
            ]
        )
    print_table(
        "1. Offline verification of one bundle: 1 provenance + 2 VSAs, checkpoint with 2 "
        "cosignatures",
        ["", "median", "p99", "min", "× peer", "target", "overt"],
        rows,
        caption=f"{cfg.iterations:,} calls each, interleaved in blocks of 50; "
        f"checks: {', '.join(checks)}",
    )
    roles = ", ".join(
        f"{role} {r['performed']}"
        + (f" ({r['failed']} with the wrong key)" if r["failed"] else "")
        + (
            f" ({r['performed'] - r['failed'] - r['distinct_valid']} repeated)"
            if r["performed"] - r["failed"] > r["distinct_valid"]
            else ""
        )
        for role, r in by_role.items()
    )
    step_table = [
        [
            r["label"],
            fmt_us(r["median_us"]),
            str(r["calls_per_verify"]),
            fmt_us(r["total_median_us"]),
            f"{r['share_of_verify']:.0%}",
        ]
        for r in step_rows
    ]
    step_table.append(
        [
            "rest (whole - steps): channel rule, fresh, consistent view, decision",
            "",
            "",
            fmt_us(verify_median - attributed),
            f"{(verify_median - attributed) / verify_median:.0%}",
        ]
    )
    step_table.append(
        [
            f"of which bare Ed25519 (×{len(performed)}, as verify_release performs them)",
            "",
            "",
            fmt_us(summary["bare_performed"]["median_us"]),
            f"{summary['bare_performed']['median_us'] / verify_median:.0%}",
        ]
    )
    print_table(
        "Per-check cost: each step of verify_release timed alone (median)",
        ["step", "median", "calls per\nverify", "× calls", "share of\nverify"],
        step_table,
        caption=f"Ed25519 verifications per verify_release: {len(performed)} ({roles}); "
        f"distinct signatures to check: {len(needed)}",
    )
    console.print(
        f"verify_release is {fmt_ratio(ratio)} the bare Ed25519 floor "
        f"({fmt_us(peer)}); {PEER_VERIFY_NOTE}. Other processes used {others:.2f} cores."
    )
    result = {
        "fixture": {
            "attestations": len(bundle.attestations),
            "cosignatures": len(world.witness_keys),
            "checkpoint_size": world.log_size,
            "inclusion_proof_hashes": len(bundle.provenance.proof.proof),
            "bundle_bytes": len(product.bundle_bytes),
            "provenance_bytes": len(product.provenance),
            "vsa_bytes": [len(v) for v in product.vsas],
            "checks": checks,
            "rebuilders_required": 2,
        },
        "iterations": cfg.iterations,
        "verify_release": summary["verify"],
        "from_bytes_then_verify_release": summary["from_bytes"],
        "peer": {
            "description": PEER_VERIFY_NOTE,
            "ed25519_checks": len(needed),
            **summary["bare_needed"],
        },
        "bare_ed25519_as_performed": {
            "ed25519_checks": len(performed),
            **summary["bare_performed"],
        },
        "ratio_to_peer": ratio,
        "ed25519_per_verify": {
            "performed": len(performed),
            "needed": len(needed),
            "by_role": by_role,
        },
        "steps": step_rows,
        "steps_attributed_us": attributed,
        "wrong_digest_refused_by": wrong.reason.split(":", 1)[0],
        "other_processes_cores": others,
    }
    return result, ok


# --- part 2: overt update against plain ngclient ----------------------------------------


class StaticServer(ChildServer):
    """The TUF repository at /updates/ and the log's tiles at /log/, from a child process."""

    ready_path = "/updates/metadata/1.root.json"

    def __init__(self, repo: Path, tiles: Path, logfile: Path) -> None:
        port = free_port()
        cmd = [sys.executable, str(THIS_FILE), "--child", "serve", "--port", str(port)]
        cmd += ["--repo", str(repo), "--tiles", str(tiles)]
        super().__init__(cmd, logfile, port)


def child_serve(port: int, repo: Path, tiles: Path) -> int:
    """Starlette StaticFiles on uvicorn, as the demo's app mounts /updates/."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    app = Starlette(
        routes=[
            Mount("/updates", app=StaticFiles(directory=repo), name="updates"),
            Mount("/log", app=StaticFiles(directory=tiles), name="log"),
        ]
    )
    uvicorn.run(app, host=HOST, port=port, log_level="warning")
    return 0


def child_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_updates --child")
    parser.add_argument("kind", choices=("serve",))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--tiles", type=Path, required=True)
    a = parser.parse_args(list(argv))
    return child_serve(a.port, a.repo, a.tiles)


class Timers:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t0
                self.calls[key] = self.calls.get(key, 0) + 1

        return timed


@contextlib.contextmanager
def instrumented(timers: Timers) -> Iterator[None]:
    """Wrap the functions overt.updates.client calls with timers, restored afterwards."""
    names = ("verify_release", "atomic_write", "http_fetcher", "Bundle")
    saved = {n: getattr(update_client, n) for n in names}
    update_client.verify_release = timers.wrap("verify", saved["verify_release"])
    update_client.atomic_write = timers.wrap("install", saved["atomic_write"])
    update_client.http_fetcher = timers.wrap("log_client", saved["http_fetcher"])
    update_client.Bundle = SimpleNamespace(  # type: ignore[assignment]
        from_bytes=timers.wrap("bundle_parse", Bundle.from_bytes)
    )
    try:
        yield
    finally:
        for n, value in saved.items():
            setattr(update_client, n, value)


class TimedUpdateClient(UpdateClient):
    """UpdateClient with its TUF calls timed (metadata refresh, target fetches)."""

    def __init__(self, timers: Timers, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timers = timers

    def _updater(self) -> Updater:
        updater = self.timers.wrap("tuf_metadata", super()._updater)()
        updater.refresh = self.timers.wrap("tuf_metadata", updater.refresh)  # type: ignore[method-assign]
        return updater  # type: ignore[no-any-return]

    def _fetch(self, updater: Updater, path: str) -> bytes:
        return self.timers.wrap("tuf_targets", super()._fetch)(updater, path)  # type: ignore[no-any-return]


@dataclass
class Sample:
    wall_s: float
    cpu_s: float
    server_cpu_s: float
    phases: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)


class UpdateBench:
    def __init__(
        self,
        work: Path,
        world: World,
        server: StaticServer,
        policies: dict[str, TrustPolicy],
        root: bytes,
    ) -> None:
        self.work = work
        self.world = world
        self.server = server
        self.policies = policies
        self.root = root
        self.counter = 0
        self.errors: list[str] = []

    def _fresh(self, kind: str) -> Path:
        self.counter += 1
        path = self.work / "runs" / f"{kind}-{self.counter:03d}"
        path.mkdir(parents=True)
        return path

    def overt(self, variant: str, timers: Timers | None = None) -> Sample:
        run = self._fresh(variant)
        state, install = run / "state", run / "install"
        install.mkdir()
        args = (self.policies[variant], f"{self.server.url}/updates", install, state)
        client = UpdateClient(*args) if timers is None else TimedUpdateClient(timers, *args)
        context = contextlib.nullcontext() if timers is None else instrumented(timers)
        gc.collect()
        server0, cpu0 = self.server.cpu_s(), self_cpu_s()
        t0 = time.perf_counter()
        with context:
            report = client.update()
        wall = time.perf_counter() - t0
        sample = Sample(wall, self_cpu_s() - cpu0, self.server.cpu_s() - server0)
        statuses = [o.status for o in report.outcomes]
        if statuses != ["installed"] * len(self.world.products):
            reasons = [o.reason for o in report.outcomes if o.status != "installed"]
            self.errors.append(f"{variant}: {statuses.count('installed')} installed; {reasons[:3]}")
        for p in self.world.products:
            path = install / p.name / p.artifact
            if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != p.sha256:
                self.errors.append(f"{variant}: {path} missing or wrong")
                break
        if timers is not None:
            sample.phases = dict(timers.seconds)
            sample.phases["other"] = wall - sum(timers.seconds.values())
            sample.calls = dict(timers.calls)
        shutil.rmtree(run)
        return sample

    def ngclient(self) -> Sample:
        run = self._fresh("ngclient")
        metadata, downloads = run / "tuf", run / "downloads"
        base = f"{self.server.url}/updates"
        gc.collect()
        server0, cpu0 = self.server.cpu_s(), self_cpu_s()
        t0 = time.perf_counter()
        metadata.mkdir()
        downloads.mkdir()
        updater = Updater(
            metadata_dir=str(metadata),
            metadata_base_url=f"{base}/metadata/",
            target_dir=str(downloads),
            target_base_url=f"{base}/targets/",
            config=UpdaterConfig(prefix_targets_with_hash=True),
            bootstrap=self.root,
        )
        updater.refresh()
        t1 = time.perf_counter()
        info = updater.get_targetinfo(INDEX_TARGET)
        assert info is not None
        index = json.loads(Path(updater.download_target(info)).read_bytes())
        fetched: dict[str, str] = {}
        for channel in sorted(index):
            for product in sorted(index[channel]):
                entry = index[channel][product]
                for path in (entry["bundle"], *entry["targets"]):
                    info = updater.get_targetinfo(path)
                    if info is None:
                        raise RuntimeError(f"{path} is not a target")
                    fetched[path] = updater.download_target(info)
        wall = time.perf_counter() - t0
        sample = Sample(wall, self_cpu_s() - cpu0, self.server.cpu_s() - server0)
        sample.phases = {"tuf_metadata": t1 - t0, "tuf_targets": wall - (t1 - t0)}
        for p in self.world.products:
            local = fetched.get(f"products/{p.name}/{VERSION}/{p.artifact}")
            bundle = fetched.get(f"products/{p.name}/{VERSION}/bundle.json")
            if (
                local is None
                or bundle is None
                or hashlib.sha256(Path(local).read_bytes()).hexdigest() != p.sha256
                or Path(bundle).read_bytes() != p.bundle_bytes
            ):
                self.errors.append(f"ngclient: {p.name} not downloaded intact")
                break
        shutil.rmtree(run)
        return sample


def variant_summary(samples: list[Sample], products: int) -> dict[str, Any]:
    wall = summarize_s([s.wall_s for s in samples])
    return {
        "wall": wall,
        "per_product_ms_median": wall["median_us"] / 1000 / products,
        "cpu_s_median": statistics.median(s.cpu_s for s in samples),
        "server_cpu_s_median": statistics.median(s.server_cpu_s for s in samples),
    }


def phase_medians(samples: list[Sample]) -> dict[str, float]:
    names = sorted({k for s in samples for k in s.phases})
    return {n: statistics.median(s.phases.get(n, 0.0) for s in samples) for n in names}


def part_update(cfg: Config, world: World, work: Path) -> tuple[dict[str, Any], bool]:
    n = len(world.products)
    repo, keys = work / "updates", work / "update-keys"
    init_repository(repo, keys)
    releases = [
        ReleaseFiles("products", p.name, VERSION, {p.artifact: p.data}, p.bundle_bytes, p.index)
        for p in world.products
    ]
    t0 = time.perf_counter()
    published = Repository(repo, keys).publish(releases)
    publish_s = time.perf_counter() - t0
    repo_bytes = sum(f.stat().st_size for f in repo.rglob("*") if f.is_file())
    customer = work / "customer"
    customer.mkdir()
    root = (repo / "metadata" / "1.root.json").read_bytes()
    atomic_write(customer / "root.json", root)

    server = StaticServer(repo, world.log_dir / "tiles", work / "server.log")
    try:
        server.wait_ready()
        updates_url = f"{server.url}/updates"
        policies = {}
        for variant, log_url in (("overt", f"{server.url}/log"), ("overt_offline", None)):
            path = customer / f"policy-{variant}.toml"
            atomic_write(path, world.policy_text(log_url, updates_url).encode())
            policies[variant] = load_policy(path)
        bench = UpdateBench(work, world, server, policies, root)
        run: dict[str, Callable[[], Sample]] = {
            "ngclient": bench.ngclient,
            "overt": lambda: bench.overt("overt"),
            "overt_offline": lambda: bench.overt("overt_offline"),
        }
        console.print(
            f"2. update of {n} products ({len(published)} artifacts of {cfg.artifact_kib} KiB "
            f"+ {n} bundles; repository {repo_bytes / 1e6:,.1f} MB, published in "
            f"{fmt_s(publish_s)}), served by {server.url}; warm-up round (untimed)..."
        )
        for v in VARIANTS:
            run[v]()
        samples: dict[str, list[Sample]] = {v: [] for v in VARIANTS}
        timed: dict[str, list[Sample]] = {"overt": [], "overt_offline": []}
        console.print(
            f"   {cfg.rounds} timed round(s), each also with one instrumented run per overt "
            "variant (after the timed runs, not in the figures above the breakdown)..."
        )
        load = OtherLoad(server.proc.pid)
        for r in range(cfg.rounds):
            order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
            for v in order:
                samples[v].append(run[v]())
            for v in timed:
                timed[v].append(bench.overt(v, Timers()))
            console.print(
                f"   round {r + 1}: "
                + ", ".join(f"{v} {samples[v][-1].wall_s:.3f} s" for v in VARIANTS)
                + " (instrumented: "
                + ", ".join(f"{v} {timed[v][-1].wall_s:.3f} s" for v in timed)
                + ")"
            )
        others = load.stop()
    finally:
        server.stop()

    results = {v: variant_summary(samples[v], n) for v in VARIANTS}
    peer = results["ngclient"]["wall"]["median_us"] / 1e6
    breakdown = {
        "ngclient": phase_medians(samples["ngclient"]),
        **{v: phase_medians(s) for v, s in timed.items()},
    }
    calls = {v: s[0].calls for v, s in timed.items()}
    targets: dict[str, dict[str, Any]] = {}
    rows = []
    for v in VARIANTS:
        r = results[v]
        median = r["wall"]["median_us"] / 1e6
        cells = [
            VARIANT_LABELS[v],
            fmt_s(median),
            fmt_s(r["wall"]["p90_us"] / 1e6),
            f"{r['per_product_ms_median']:,.1f} ms",
            f"{r['cpu_s_median']:,.2f} s",
            f"{r['server_cpu_s_median']:,.2f} s",
        ]
        if v == "ngclient":
            rows.append([*cells, "", "", ""])
            continue
        pct = (median - peer) / peer * 100
        r["overhead_pct"] = pct
        ok = pct < TARGET_OVERHEAD_PCT
        targets[f"{v}_overhead_pct"] = {"target": TARGET_OVERHEAD_PCT, "value": pct, "pass": ok}
        rows.append([*cells, f"{pct:+,.0f} %", f"< {TARGET_OVERHEAD_PCT:g} %", verdict(ok)])
    print_table(
        f"2. Update of {n} products from an empty state: overt update vs plain ngclient",
        [
            "client",
            "median",
            "p90",
            "per\nproduct",
            "client\nCPU",
            "server\nCPU",
            "over\nngclient",
            "target",
            "overt",
        ],
        rows,
        caption=f"{cfg.rounds} timed round(s) after a warm-up, variants rotating; "
        f"{cfg.artifact_kib} KiB artifacts, bundles of ~{len(world.products[0].bundle_bytes):,} "
        "bytes; CPU: this process (client) and the server process, per update. overt update: "
        "the customer policy as the demo writes it (\\[log] url for consistency proofs, gossip "
        "on); no log URL: the same without \\[log] url",
    )
    b_rows = []
    for key, label in BREAKDOWN:
        cells = [label]
        for v in ("overt", "overt_offline", "ngclient"):
            value = breakdown[v].get(key)
            cells.append("" if value is None else fmt_s(value))
        cells.append(str(calls["overt"].get(key, "")))
        b_rows.append(cells)
    b_rows.append(
        [
            "wall (these runs)",
            *(fmt_s(statistics.median(s.wall_s for s in timed[v])) for v in timed),
            fmt_s(peer),
            "",
        ]
    )
    print_table(
        "Where an update's time goes (instrumented runs, medians)",
        ["", "overt", "overt, no\nlog URL", "ngclient\n(timed runs)", "calls\n(overt)"],
        b_rows,
    )
    transparency = {
        v: (breakdown[v].get("verify", 0.0) + breakdown[v].get("bundle_parse", 0.0)) for v in timed
    }
    for v, t in transparency.items():
        pct = t / peer * 100
        targets[f"{v}_transparency_checks_pct"] = {
            "target": TARGET_OVERHEAD_PCT,
            "value": pct,
            "pass": pct < TARGET_OVERHEAD_PCT,
            "what": "Bundle.from_bytes + verify_release time (instrumented runs) / ngclient",
        }
    notes = [
        PEER_UPDATE_NOTE + ".",
        "Transparency checks proper (Bundle.from_bytes + verify_release), from the "
        "instrumented runs: "
        + ", ".join(
            f"{VARIANT_LABELS[v]} {fmt_s(t)} = {t / peer:.0%} of ngclient "
            f"({t / n * 1000:.2f} ms per product)"
            for v, t in transparency.items()
        )
        + ".",
        f"Other processes used {others:.2f} cores during the timed rounds"
        + (" (well above 0: the figures are noisy)." if others > 0.25 else "."),
    ]
    for note in notes:
        console.print(note)
    out = {
        "config": {
            "products": n,
            "artifact_kib": cfg.artifact_kib,
            "bundle_bytes": len(world.products[0].bundle_bytes),
            "targets_published": len(published),
            "repository_bytes": repo_bytes,
            "publish_s": publish_s,
            "rounds": cfg.rounds,
            "instrumented_runs": "one per overt variant per round, after its timed runs",
            "server": "Starlette StaticFiles on uvicorn.run, child process",
            "order": "one untimed warm-up round, then rounds with the variant order rotating",
        },
        "peer": {"description": PEER_UPDATE_NOTE, **results["ngclient"]},
        "overt": {v: results[v] for v in VARIANTS if v != "ngclient"},
        "breakdown_median_s": breakdown,
        "breakdown_calls": calls,
        "transparency_checks_s": transparency,
        "transparency_checks_pct_of_ngclient": {v: t / peer * 100 for v, t in transparency.items()},
        "targets": targets,
        "errors": bench.errors,
        "other_processes_cores": others,
    }
    return out, not bench.errors


# --- main ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv or [])
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    cfg = parse_args(argv)
    products = cfg.products if "update" in cfg.parts else 1
    console.print(
        f"bench_updates: {', '.join(cfg.parts)}; {products} product(s), log with "
        f"{cfg.filler:,} other entries"
    )
    started = time.perf_counter()
    data: dict[str, Any] = {}
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-updates-", dir=cfg.workdir) as tmp:
        work = Path(tmp)
        fstype = fs_type(work)
        console.print(f"work directory {work} ({fstype})")
        console.print("0. fixture: log, witnesses, provenance + VSAs, bundles (untimed)...")
        world = build_world(work, products, cfg.filler, cfg.artifact_kib, cfg.seed)
        console.print(
            f"   {world.log_size:,} log entries, checkpoint cosigned by "
            f"{len(world.witness_keys)} witnesses, {len(world.products)} bundle(s) "
            f"in {fmt_s(world.setup_s)}"
        )
        if "verify" in cfg.parts:
            data["verify"], good = part_verify(cfg, world)
            ok = ok and good
        if "update" in cfg.parts:
            data["update"], good = part_update(cfg, world, work)
            ok = ok and good

    targets: dict[str, dict[str, Any]] = {}
    if "verify" in data:
        median_ms = data["verify"]["verify_release"]["median_us"] / 1000
        targets["verify_median_ms"] = {
            "target": TARGET_VERIFY_MS,
            "value": median_ms,
            "pass": median_ms <= TARGET_VERIFY_MS,
        }
    if "update" in data:
        targets.update(data["update"].pop("targets"))
    path = write_results(
        "updates",
        {
            "config": {
                "parts": list(cfg.parts),
                "products": products,
                "iterations": cfg.iterations,
                "component_iterations": cfg.component_iterations,
                "log_filler_entries": cfg.filler,
                "artifact_kib": cfg.artifact_kib,
                "seed": cfg.seed,
                "filesystem": fstype,
                "timer": "time.perf_counter_ns per verify call; time.perf_counter per update",
            },
            **data,
            "targets": targets,
            "correctness_ok": ok,
            "wall_seconds": time.perf_counter() - started,
        },
        quick=cfg.quick,
    )
    for name, t in targets.items():
        console.print(
            f"target {name}: {t['value']:,.2f} (target {t['target']:g}) {verdict(t['pass'])}"
        )
    if cfg.quick:
        console.print("[yellow]--quick: small sizes, figures are a smoke test only.[/]")
    return finish(path, ok, started)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

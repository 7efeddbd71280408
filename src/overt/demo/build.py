"""Build the sample deployment that `overt demo` shows.

Everything is made with the same public APIs a real deployment uses; the demo
only chooses names and sample data. Each step reports what it did through
`say`, so the command line can explain it and tests can check it.

Layout (docs/demo.md):

    D/logs/releases/          the release log's data directory
        log.vkey              its verifier key (public)
        secrets/log.key       its private key (0600)
        entries.jsonl         the sample entries, one per line
        tiles/                checkpoint, tile/..., tile/entries/... (C2SP tlog-tiles)
    D/witnesses/<name>/       witness.key (0600) and witness.vkey
    D/customer/
        releases.tlog-policy  the customer's C2SP tlog-policy
        proofs/               entry files and their .tlog-proof files
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from overt.crypto.keyfile import write_private_key
from overt.crypto.keys import SIG_COSIGNATURE_V1, Ed25519Signer, ed25519_verifier
from overt.crypto.note import split
from overt.errors import OvertError, VerificationError
from overt.log.files import atomic_write
from overt.log.tilewriter import write_growth
from overt.tlog.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from overt.tlog.cosignature import CosignatureSigner
from overt.tlog.hashing import leaf_hash
from overt.tlog.merkle import MemoryTree, inclusion_proof
from overt.tlog.policy import Policy
from overt.tlog.proof import TlogProof, verify_proof
from overt.tlog.tiles import Tile, TileHashReader

MARKER = ".overt-demo"
ORIGIN = "demo.overt.example/releases"
WITNESSES = ("zurich", "geneva", "lausanne")
QUORUM = 2
SAMPLE_ENTRIES = 1000
PROVEN_INDEX = 42

Say = Callable[[str, str], None]


@dataclass
class DemoResult:
    root: Path
    log_vkey: str
    checkpoint: Checkpoint
    proof_file: Path
    entry_file: Path
    policy_file: Path
    checks: list[str] = field(default_factory=list)


class DemoDirError(OvertError):
    """The target directory holds something that is not an earlier demo."""


def prepare_dir(root: Path) -> None:
    """Create `root`, replacing an earlier demo but never anything else."""
    if root.exists():
        if not root.is_dir():
            raise DemoDirError(f"{root} exists and is not a directory")
        if any(root.iterdir()):
            if not (root / MARKER).exists():
                raise DemoDirError(
                    f"{root} is not empty and was not made by 'overt demo'; "
                    "choose another --dir or empty it"
                )
            shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("made by 'overt demo'; safe to delete\n")


def sample_entries(count: int) -> list[bytes]:
    """Release records of a fictional antivirus product, one JSON object each."""
    entries = []
    for i in range(count):
        version = f"24.{i // 100}.{i % 100}"
        artifact = f"acme-av-{version}-linux-x86_64.tar.gz"
        record = {
            "type": "demo/release",
            "product": "acme-av",
            "version": version,
            "artifact": artifact,
            "sha256": hashlib.sha256(artifact.encode()).hexdigest(),
        }
        entries.append(json.dumps(record, sort_keys=True, separators=(",", ":")).encode())
    return entries


def _new_key(directory: Path, filename: str, name: str, sig_type: int) -> Ed25519Signer:
    signer = Ed25519Signer.generate(name, sig_type)
    directory.mkdir(parents=True, exist_ok=True)
    write_private_key(directory / filename, signer)
    return signer


def build(root: Path, say: Say) -> DemoResult:
    prepare_dir(root)
    log_dir = root / "logs" / "releases"
    tiles_dir = log_dir / "tiles"

    # 1. Keys: the vendor's log key and three independent witnesses' keys.
    log_key = _new_key(log_dir / "secrets", "log.key", ORIGIN, 0x01)
    log_vkey = str(log_key.verifier_key())
    (log_dir / "log.vkey").write_text(log_vkey + "\n")
    say("keys", f"log key for origin {ORIGIN}: {log_vkey}")
    witnesses: list[CosignatureSigner] = []
    for name in WITNESSES:
        wdir = root / "witnesses" / name
        key = _new_key(
            wdir, "witness.key", f"witness.demo.overt.example/{name}", SIG_COSIGNATURE_V1
        )
        (wdir / "witness.vkey").write_text(f"{key.verifier_key()}\n")
        witnesses.append(CosignatureSigner(key))
        say("keys", f"witness {name}: {key.verifier_key()}")

    # 2. The log: sample entries, their tiles and entry bundles.
    entries = sample_entries(SAMPLE_ENTRIES)
    (log_dir / "entries.jsonl").write_bytes(b"".join(e + b"\n" for e in entries))
    tree = MemoryTree()
    tree.extend(entries)
    files = write_growth(tiles_dir, tree, lambda a, b: entries[a:b], 0, tree.size)
    say("log", f"{tree.size} release records logged; {files} tiles and entry bundles written")

    # 3. Checkpoint: signed by the log, then cosigned by each witness.
    checkpoint = Checkpoint(ORIGIN, tree.size, tree.root())
    signed = sign_checkpoint(checkpoint, [log_key])
    _, log_sig = split(signed)
    cosigned = sign_checkpoint(checkpoint, witnesses, keep=log_sig)
    atomic_write(tiles_dir / "checkpoint", cosigned.encode())
    say("checkpoint", f"size {checkpoint.size}, root {checkpoint.text().split(chr(10))[2]}")
    say("witness", f"cosigned by {', '.join(WITNESSES)} (cosignature/v1)")

    # 4. The customer's trust policy: this log, the three witnesses, 2 of 3.
    policy_text = (
        f"# Trust the demo release log only if {QUORUM} of {len(WITNESSES)} witnesses cosign.\n"
        f"log {log_vkey}\n"
        + "".join(
            f"witness {n} {w.verifier_key()}\n" for n, w in zip(WITNESSES, witnesses, strict=True)
        )
        + f"group demo-witnesses {QUORUM} {' '.join(WITNESSES)}\n"
        + "quorum demo-witnesses\n"
    )
    policy = Policy.parse(policy_text)
    customer = root / "customer"
    policy_file = customer / "releases.tlog-policy"
    atomic_write(policy_file, policy_text.encode())
    say("customer", f"trust policy written to {policy_file.relative_to(root)}")

    # 5. A proof for one entry, computed the way a client does: from the
    # published checkpoint and only the tiles the proof needs.
    published = open_checkpoint(
        (tiles_dir / "checkpoint").read_bytes(), ed25519_verifier(log_key.verifier_key())
    )
    size = published.checkpoint.size

    def fetch(tiles: Sequence[Tile]) -> list[bytes]:
        return [(tiles_dir / t.path()).read_bytes() for t in tiles]

    reader = TileHashReader(size, fetch)
    proof = TlogProof(PROVEN_INDEX, tuple(inclusion_proof(reader, PROVEN_INDEX, size)), cosigned)
    proofs = customer / "proofs"
    entry_file = proofs / f"entry-{PROVEN_INDEX}.json"
    proof_file = proofs / f"entry-{PROVEN_INDEX}.tlog-proof"
    atomic_write(entry_file, entries[PROVEN_INDEX])
    atomic_write(proof_file, proof.format().encode())
    say(
        "proof",
        f"entry {PROVEN_INDEX}: proof computed from {reader.tiles_fetched} tiles "
        f"-> {proof_file.relative_to(root)}",
    )

    # 6. Verify it offline, as the customer would, and show a refusal.
    result = DemoResult(root, log_vkey, checkpoint, proof_file, entry_file, policy_file)
    parsed = TlogProof.parse(proof_file.read_bytes())
    verified = verify_proof(parsed, leaf_hash(entry_file.read_bytes()), policy)
    result.checks.append(f"log signature by {verified.log.vkey.name}")
    result.checks.append(f"cosigned by {len(verified.cosigners)} witnesses, quorum {QUORUM} met")
    result.checks.append(f"entry {PROVEN_INDEX} included at size {verified.checkpoint.size}")
    say("verify", "offline verification passed: " + "; ".join(result.checks))
    forged = entries[PROVEN_INDEX].replace(b"acme-av", b"acme-xx")
    try:
        verify_proof(parsed, leaf_hash(forged), policy)
    except VerificationError as exc:
        say("verify", f"a tampered copy of entry {PROVEN_INDEX} is refused: {exc}")
    else:
        raise VerificationError("demo self-check failed: a tampered entry verified")
    return result

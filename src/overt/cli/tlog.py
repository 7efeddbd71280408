"""`overt tlog`: verify Merkle proofs, checkpoints and tlog-proof files offline."""

from __future__ import annotations

import hashlib
from pathlib import Path

import typer

from overt.cli.common import fail, handle_errors, out, read_input, read_text, vkey_argument
from overt.crypto.encoding import b64decode_strict
from overt.crypto.keys import ed25519_verifier
from overt.tlog.checkpoint import Checkpoint, open_checkpoint
from overt.tlog.hashing import HASH_SIZE, leaf_hash
from overt.tlog.merkle import verify_consistency, verify_inclusion
from overt.tlog.policy import Policy
from overt.tlog.proof import TlogProof, verify_proof

app = typer.Typer(
    help="Verify transparency-log proofs offline: inclusion, consistency and tlog-proof files.",
    no_args_is_help=True,
)


def _hash_arg(value: str, what: str) -> bytes:
    """A hash given as base64 (as in checkpoints) or 64 hex digits."""
    value = value.strip()
    try:
        raw = bytes.fromhex(value) if len(value) == 2 * HASH_SIZE else b64decode_strict(value, what)
    except ValueError:
        fail(f"{what}: not base64 or hex: {value[:60]!r}")
    if len(raw) != HASH_SIZE:
        fail(f"{what}: {len(raw)} bytes, a SHA-256 hash is {HASH_SIZE}")
    return raw


def _proof_hashes(path: Path | None) -> list[bytes]:
    text = read_text(path, "proof")
    lines = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    return [_hash_arg(line, f"proof line {i}") for i, line in lines]


def _leaf(entry: Path | None, leaf_hash_b64: str | None) -> bytes:
    if (entry is None) == (leaf_hash_b64 is None):
        fail("give exactly one of --entry FILE or --leaf-hash HASH")
    if entry is not None:
        return leaf_hash(read_input(entry, "entry"))
    assert leaf_hash_b64 is not None
    return _hash_arg(leaf_hash_b64, "--leaf-hash")


def _tree(
    checkpoint: Path | None, log_key: str | None, size: int | None, root: str | None, which: str
) -> tuple[int, bytes]:
    """Tree size and root, from a verified checkpoint or given explicitly."""
    if checkpoint is not None:
        if log_key is None:
            fail(f"--{which}checkpoint needs --log-key to verify it")
        cp = open_checkpoint(
            read_text(checkpoint, "checkpoint"), ed25519_verifier(vkey_argument(log_key))
        )
        return cp.checkpoint.size, cp.checkpoint.root_hash
    if size is None or root is None:
        fail(f"give --{which}checkpoint, or both --{which}size and --{which}root")
    if size < 0:
        fail(f"--{which}size must not be negative")
    return size, _hash_arg(root, f"--{which}root")


@app.command("verify-inclusion")
@handle_errors
def verify_inclusion_cmd(
    index: int = typer.Option(..., "--index", min=0, help="Index of the entry in the log."),
    proof: Path | None = typer.Argument(
        None, help="Inclusion proof: one base64 hash per line, leaf side first (stdin if omitted)."
    ),
    entry: Path | None = typer.Option(None, "--entry", help="File holding the entry's bytes."),
    leaf_hash_b64: str | None = typer.Option(
        None, "--leaf-hash", help="The leaf hash SHA-256(0x00||entry), base64 or hex."
    ),
    size: int | None = typer.Option(None, "--size", help="Tree size."),
    root: str | None = typer.Option(None, "--root", help="Tree root hash, base64 or hex."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Take size and root from this signed checkpoint."
    ),
    log_key: str | None = typer.Option(None, "--log-key", help="Log verifier key."),
) -> None:
    """Check that an entry is at INDEX in the tree with the given size and root (RFC 9162)."""
    leaf = _leaf(entry, leaf_hash_b64)
    tree_size, tree_root = _tree(checkpoint, log_key, size, root, "")
    verify_inclusion(leaf, index, tree_size, _proof_hashes(proof), tree_root)
    out.print(f"OK: entry {index} is included in the tree of size {tree_size}")


@app.command("verify-consistency")
@handle_errors
def verify_consistency_cmd(
    proof: Path | None = typer.Argument(
        None, help="Consistency proof: one base64 hash per line (stdin if omitted)."
    ),
    old_size: int | None = typer.Option(None, "--old-size"),
    old_root: str | None = typer.Option(None, "--old-root"),
    new_size: int | None = typer.Option(None, "--new-size"),
    new_root: str | None = typer.Option(None, "--new-root"),
    old_checkpoint: Path | None = typer.Option(None, "--old-checkpoint"),
    new_checkpoint: Path | None = typer.Option(None, "--new-checkpoint"),
    log_key: str | None = typer.Option(
        None, "--log-key", help="Log verifier key, to verify checkpoints given as files."
    ),
) -> None:
    """Check that the new tree extends the old one without rewriting history (RFC 9162)."""
    o_size, o_root = _tree(old_checkpoint, log_key, old_size, old_root, "old-")
    n_size, n_root = _tree(new_checkpoint, log_key, new_size, new_root, "new-")
    verify_consistency(o_size, n_size, o_root, n_root, _proof_hashes(proof))
    out.print(f"OK: the tree of size {n_size} is consistent with the tree of size {o_size}")


@app.command("verify-proof")
@handle_errors
def verify_proof_cmd(
    proof_file: Path = typer.Argument(..., help="A c2sp.org/tlog-proof@v1 file."),
    policy_file: Path = typer.Option(
        ..., "--policy", help="C2SP tlog-policy file: trusted logs, witnesses and quorum."
    ),
    entry: Path | None = typer.Option(None, "--entry", help="File holding the logged entry."),
    leaf_hash_b64: str | None = typer.Option(None, "--leaf-hash", help="Leaf hash instead."),
) -> None:
    """Verify a tlog-proof offline: log signature, witness quorum and inclusion."""
    leaf = _leaf(entry, leaf_hash_b64)
    policy = Policy.parse(read_input(policy_file, "policy"))
    proof = TlogProof.parse(read_input(proof_file, "tlog-proof"))
    verified = verify_proof(proof, leaf, policy)
    cp: Checkpoint = verified.checkpoint
    out.print(f"OK: entry {proof.index} is in {cp.origin} at size {cp.size}", soft_wrap=True)
    out.print(f"  log signature: {verified.log.vkey.name}+{verified.log.vkey.key_id:08x}")
    for name, ts in sorted(verified.cosigners.items()):
        out.print(f"  cosigned by witness {name} at {ts}")
    out.print(f"  quorum: {policy.quorum}")
    out.print(
        f"  entry sha256: {hashlib.sha256(read_input(entry, 'entry')).hexdigest()}"
        if entry is not None
        else "  leaf hash given directly"
    )

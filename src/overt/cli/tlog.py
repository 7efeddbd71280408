"""`overt tlog`: verify Merkle proofs, checkpoints and tlog-proof files offline."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import typer

from overt.cli.common import fail, handle_errors, out, read_input, read_text, vkey_argument
from overt.crypto.encoding import b64decode_strict, b64encode
from overt.crypto.keys import ed25519_verifier
from overt.errors import VerificationError
from overt.log.remote import open_source
from overt.tlog.checkpoint import Checkpoint, open_checkpoint
from overt.tlog.client import LogClient
from overt.tlog.hashing import HASH_SIZE, leaf_hash
from overt.tlog.merkle import consistency_proof, verify_consistency, verify_inclusion
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


def _checkpoint_from(source: str) -> str:
    """A signed checkpoint from a file, or fetched from a URL."""
    if source.startswith(("http://", "https://")):
        try:
            resp = httpx.get(source, timeout=30)
        except httpx.HTTPError as exc:
            fail(f"{source}: {exc}")
        if resp.status_code != 200:
            fail(f"{source}: HTTP {resp.status_code}")
        return resp.text
    return read_text(Path(source), "checkpoint")


@app.command("compare")
@handle_errors
def compare_cmd(
    first: str = typer.Argument(..., help="A checkpoint: file, or URL (a log's or a witness's)."),
    second: str = typer.Argument(..., help="Another view of the same log's checkpoint."),
    log_key: str = typer.Option(..., "--log-key", help="The log's verifier key."),
    tiles: str | None = typer.Option(
        None,
        "--tiles",
        help="The log (URL or directory), to fetch the consistency proof when sizes differ.",
    ),
) -> None:
    """Do two views of a log agree? Exit 0 if consistent, 1 if they show a fork.

    Use it to compare what the log shows you with what a witness cosigned
    (GET <witness>/<sha256 of origin>/checkpoint) or what another customer saw.
    """
    verifier = ed25519_verifier(vkey_argument(log_key))
    a = open_checkpoint(_checkpoint_from(first), verifier).checkpoint
    b = open_checkpoint(_checkpoint_from(second), verifier).checkpoint
    out.print(f"first:  size {a.size}, root {b64encode(a.root_hash)}")
    out.print(f"second: size {b.size}, root {b64encode(b.root_hash)}")
    if a.size == b.size:
        if a.root_hash != b.root_hash:
            raise VerificationError(f"FORK: two different trees of size {a.size}")
        out.print("OK: the two views are identical")
        return
    small, large = (a, b) if a.size < b.size else (b, a)
    if tiles is None:
        fail("the sizes differ: give --tiles URL|DIR to fetch a consistency proof")
    src = open_source(tiles)
    client = LogClient(src.fetch, log_key=verifier)
    current = client.update()
    if current.size < large.size:
        raise VerificationError(
            f"the log now serves size {current.size}, smaller than a view of size {large.size}"
        )
    reader = client.tiles.hash_reader()
    for view in (small, large):
        if view.size == 0:
            continue
        proof = consistency_proof(reader, view.size, current.size)
        try:
            verify_consistency(view.size, current.size, view.root_hash, current.root_hash, proof)
        except VerificationError as exc:
            raise VerificationError(
                f"FORK: the view of size {view.size} is not in the log's tree: {exc}"
            ) from exc
    out.print(f"OK: size {small.size} and size {large.size} are consistent (one history)")

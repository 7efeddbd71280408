"""A tlog-witness: checks a log's new checkpoint against what it saw before, then cosigns.

Directory layout (docs/witness.md):

    DIR/witness.toml         the witness's name
    DIR/witness.vkey         its cosignature verifier key (type 0x04)
    DIR/secrets/witness.key  its private key (0600)
    DIR/witness.db           SQLite: the view of each log, every cosignature, refusals

`Witness.add_checkpoint` implements C2SP tlog-witness "add-checkpoint" and
raises `WitnessRefusal` carrying the status code the spec requires for each
refusal; the HTTP layer only translates.
"""

from __future__ import annotations

import os
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from overt.crypto.keyfile import read_private_key, write_private_key
from overt.crypto.keys import (
    SIG_COSIGNATURE_V1,
    SIG_ED25519,
    Ed25519Signer,
    Ed25519Verifier,
    VerifierKey,
    ed25519_verifier,
)
from overt.crypto.note import Signature, open_note, sign_note, split
from overt.durable import atomic_write
from overt.errors import MalformedError, OvertError, VerificationError
from overt.tlog.checkpoint import Checkpoint
from overt.tlog.cosignature import CosignatureSigner
from overt.tlog.hashing import EMPTY_ROOT
from overt.tlog.merkle import verify_consistency
from overt.tlog.witness import AddCheckpointRequest
from overt.witness.store import LogView, WitnessStore


class WitnessRefusal(OvertError):
    """add-checkpoint refused, with the HTTP status tlog-witness prescribes."""

    def __init__(self, status: int, message: str, size: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.size = size  # for 409: the witness's current size


class WitnessError(OvertError):
    pass


def init_witness(root: Path, name: str) -> str:
    """Create a witness directory; return its cosignature verifier key."""
    if (root / "witness.toml").exists():
        raise WitnessError(f"{root} already holds a witness")
    if root.exists() and any(root.iterdir()):
        raise WitnessError(f"{root} is not empty; choose a new directory for the witness")
    (root / "secrets").mkdir(parents=True, exist_ok=True)
    os.chmod(root / "secrets", 0o700)
    signer = Ed25519Signer.generate(name, SIG_COSIGNATURE_V1)
    write_private_key(root / "secrets" / "witness.key", signer)
    vkey = str(signer.verifier_key())
    atomic_write(root / "witness.vkey", (vkey + "\n").encode())
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    atomic_write(
        root / "witness.toml", f'# Overt witness\n[witness]\nname = "{escaped}"\n'.encode()
    )
    WitnessStore(root / "witness.db").close()
    return vkey


class Witness:
    def __init__(self, root: Path, clock: Callable[[], float] = time.time) -> None:
        if not (root / "witness.toml").exists():
            raise WitnessError(f"{root} is not a witness directory; run 'overt witness init'")
        try:
            config = tomllib.loads((root / "witness.toml").read_text())
        except tomllib.TOMLDecodeError as exc:
            raise MalformedError(f"{root / 'witness.toml'}: {exc}") from exc
        key = read_private_key(root / "secrets" / "witness.key")
        if config.get("witness", {}).get("name") != key.name:
            raise WitnessError("witness.toml's name does not match the witness key")
        self.root = root
        self.signer = CosignatureSigner(key, clock)
        self.vkey = key.verifier_key()
        self.store = WitnessStore(root / "witness.db")
        self._verifiers: dict[tuple[str, ...], list[Ed25519Verifier]] = {}

    def close(self) -> None:
        self.store.close()

    def add_log(self, origin: str, vkeys: list[str]) -> None:
        """Trust `origin`'s checkpoints signed by any of `vkeys` (Ed25519 note keys)."""
        parsed = [VerifierKey.parse(v) for v in vkeys]
        for v in parsed:
            if v.sig_type != SIG_ED25519:
                raise MalformedError(f"log key {v.name}: must be an Ed25519 (type 0x01) key")
        if not parsed:
            raise MalformedError("give at least one log key")
        self.store.add_log(origin, tuple(str(v) for v in parsed))

    def add_checkpoint(self, body: bytes) -> list[Signature]:
        """tlog-witness add-checkpoint: verify, check consistency, persist, cosign."""
        try:
            request = AddCheckpointRequest.parse(body)
        except MalformedError as exc:
            raise WitnessRefusal(400, f"malformed request: {exc}") from exc
        checkpoint = request.parsed
        assert checkpoint is not None
        view = self.store.log(checkpoint.origin)
        if view is None:
            raise WitnessRefusal(404, f"unknown log origin {checkpoint.origin!r}")
        verifiers = self._verifiers.get(view.vkeys)
        if verifiers is None:
            verifiers = self._verifiers[view.vkeys] = [ed25519_verifier(v) for v in view.vkeys]
        try:
            note = open_note(request.checkpoint, verifiers)
        except (VerificationError, MalformedError) as exc:
            raise WitnessRefusal(403, f"checkpoint signature: {exc}") from exc
        if request.old_size > checkpoint.size:
            raise WitnessRefusal(400, f"old size {request.old_size} exceeds {checkpoint.size}")
        try:
            with self.store.exclusive(checkpoint.origin) as record:
                current = self.store.view_for_update(checkpoint.origin)
                assert current is not None
                self._check(request, checkpoint, current)
                # Our own line replaces any earlier one of ours; the log's stay.
                signed = sign_note(note.text, [self.signer], keep=note.verified)
                _, sigs = split(signed)
                mine = [
                    s for s in sigs if (s.name, s.key_id) == (self.signer.name, self.signer.key_id)
                ]
                timestamp = int.from_bytes(mine[0].signature[:8], "big")
                record(checkpoint.size, checkpoint.root_hash, timestamp, signed)
        except WitnessRefusal as refusal:
            if refusal.status == 422:
                self.store.record_refusal(checkpoint.origin, 422, str(refusal), body.decode())
            raise
        return mine

    @staticmethod
    def _check(request: AddCheckpointRequest, checkpoint: Checkpoint, view: LogView) -> None:
        if request.old_size != view.size:
            raise WitnessRefusal(
                409,
                f"old size {request.old_size} is not this witness's size {view.size}",
                view.size,
            )
        if checkpoint.size == 0 and checkpoint.root_hash != EMPTY_ROOT:
            raise WitnessRefusal(422, "a checkpoint of size 0 must have the empty tree's root")
        if request.old_size == 0:
            if request.proof:
                raise WitnessRefusal(422, "old size is 0, so the consistency proof must be empty")
            return
        assert view.root is not None
        if request.old_size == checkpoint.size:
            if checkpoint.root_hash != view.root:
                raise WitnessRefusal(
                    422, f"a different root for size {checkpoint.size}: the log forked"
                )
            if request.proof:
                raise WitnessRefusal(422, "equal sizes need an empty consistency proof")
            return
        try:
            verify_consistency(
                request.old_size, checkpoint.size, view.root, checkpoint.root_hash, request.proof
            )
        except VerificationError as exc:
            raise WitnessRefusal(422, f"consistency proof: {exc}") from exc

    def latest(self, origin: str) -> str | None:
        """The latest checkpoint cosigned for `origin`, with the log's and our signatures."""
        view = self.store.log(origin)
        return None if view is None else view.checkpoint

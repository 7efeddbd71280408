"""The log side of tlog-witness: asking witnesses to cosign a new checkpoint.

For each witness in the log's tlog-policy (those with a URL), the log sends
``old <size the witness last cosigned>``, a consistency proof from that size,
and the signed checkpoint. A 409 answer tells the log the witness's real size;
the log retries once from there (tlog-witness, "add-checkpoint"). Witnesses are
asked in parallel with a short timeout, so a witness that is down delays
publication by at most the timeout, and only blocks it if the quorum cannot be
met without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from overt.crypto.note import Signature, open_note, split
from overt.errors import MalformedError, OvertError, VerificationError
from overt.tlog.checkpoint import Checkpoint
from overt.tlog.cosignature import CosignatureVerifier
from overt.tlog.policy import Policy
from overt.tlog.witness import AddCheckpointRequest, parse_size_body

log = logging.getLogger("overt.witness")

ProofFn = Callable[[int, int], Sequence[bytes]]  # (old size, new size) -> consistency proof


@dataclass
class Peer:
    name: str
    url: str
    verifier: CosignatureVerifier
    size: int = 0  # what we believe the witness last cosigned
    last_error: str | None = None
    cosigned: int = 0


@dataclass
class GatherResult:
    note: str  # the checkpoint with the log's and the witnesses' signatures
    cosigners: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


class Gatherer:
    def __init__(self, policy: Policy, timeout: float = 5.0) -> None:
        self.policy = policy
        self.peers = [
            Peer(w.name, w.url.rstrip("/"), CosignatureVerifier(w.vkey))
            for w in policy.witnesses.values()
            if w.url
        ]
        self._http = httpx.Client(timeout=timeout)
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, len(self.peers)), thread_name_prefix="cosign"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def gather(self, signed: str, checkpoint: Checkpoint, proof: ProofFn) -> GatherResult:
        """Ask every witness; return the note with all cosignatures obtained."""
        text, log_sigs = split(signed)
        futures = {
            p.name: self._pool.submit(self._ask, p, signed, checkpoint, proof) for p in self.peers
        }
        result = GatherResult(signed)
        cosigs: list[Signature] = []
        for name, fut in futures.items():
            try:
                cosigs.append(fut.result())
                result.cosigners.append(name)
            except OvertError as exc:
                result.errors[name] = str(exc)
        if cosigs:
            lines = "".join(s.line() for s in log_sigs + cosigs)
            result.note = text + "\n" + lines
        return result

    def _ask(self, peer: Peer, signed: str, checkpoint: Checkpoint, proof: ProofFn) -> Signature:
        try:
            sig = self._ask_once(peer, signed, checkpoint, proof)
        except OvertError as exc:
            peer.last_error = str(exc)
            raise
        peer.last_error = None
        peer.cosigned += 1
        return sig

    def _ask_once(
        self, peer: Peer, signed: str, checkpoint: Checkpoint, proof: ProofFn
    ) -> Signature:
        for _ in range(2):
            old = peer.size
            if old > checkpoint.size:
                raise VerificationError(
                    f"witness {peer.name} has cosigned size {old}, beyond this checkpoint "
                    f"({checkpoint.size}): was the log rolled back?"
                )
            hashes = proof(old, checkpoint.size) if 0 < old < checkpoint.size else ()
            body = AddCheckpointRequest(old, tuple(hashes), signed).format()
            try:
                resp = self._http.post(f"{peer.url}/add-checkpoint", content=body.encode())
            except httpx.HTTPError as exc:
                raise OvertError(f"witness {peer.name} unreachable: {exc}") from exc
            if resp.status_code == 409:
                try:
                    peer.size = parse_size_body(resp.content)
                except MalformedError as exc:
                    raise OvertError(f"witness {peer.name}: {exc}") from exc
                continue
            if resp.status_code != 200:
                reason = resp.text.strip()[:200]
                raise OvertError(f"witness {peer.name} refused: HTTP {resp.status_code} {reason}")
            sig = self._verify(peer, signed, resp.text)
            peer.size = checkpoint.size
            return sig
        raise OvertError(f"witness {peer.name} kept answering 409")

    @staticmethod
    def _verify(peer: Peer, signed: str, lines: str) -> Signature:
        """Keep only a valid cosignature by this witness's key from its answer."""
        text, _ = split(signed)
        try:
            note = open_note(text + "\n" + lines, [peer.verifier])
        except OvertError as exc:
            raise OvertError(f"witness {peer.name} answered an invalid cosignature: {exc}") from exc
        return note.verified[0]

    def quorum_met(self, cosigners: Sequence[str]) -> bool:
        return self.policy.quorum_met(set(cosigners))

"""Consistency proofs for gossip, read from a log's tiles.

The verifier remembers the newest checkpoint it accepted and refuses one that
does not extend it. The proof that one tree extends another is computed here
from the log's hash tiles; the tiles are not trusted: the proof is checked
against both signed roots by the verifier (RFC 9162, section 2.1.4.2), so a
log or mirror that serves wrong tiles only causes a refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from overt.tlog.merkle import consistency_proof
from overt.tlog.tiles import Tile, TileHashReader

Fetch = Callable[[str], bytes]


def consistency_prover(fetch: Fetch) -> Callable[[int, int], Sequence[bytes]]:
    """(old size, new size) -> the proof hashes, from the tiles at `fetch`."""

    def prove(old: int, new: int) -> Sequence[bytes]:
        def tiles(wanted: Sequence[Tile]) -> list[bytes]:
            return [fetch(t.path()) for t in wanted]

        return consistency_proof(TileHashReader(new, tiles), old, new)

    return prove

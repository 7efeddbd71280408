"""What a log needs from the storage of its sequencing state.

Two drivers implement it: `SQLiteStore` (embedded, DIR/state/sequence.db, one
process per log directory) and `PostgresStore` (several front ends sharing
one database). The log's configuration chooses (`database` in log.toml).
What differs between them, the log handles itself: the bulk path's
transaction, and, with PostgreSQL, which front end integrates
(`PostgresStore.try_lead`) and publishing under a fence (`PostgresStore.publish`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class SequenceStore(Protocol):
    # True when several processes may sequence into the store at once.
    shared: bool

    def close(self) -> None: ...

    def next_index(self) -> int:
        """The index the next new entry will get: every index below is taken, durably."""
        ...

    def published(self) -> tuple[int, bytes | None]:
        """Size and root hash of the last checkpoint recorded as published."""
        ...

    def sequence(self, leaf_hashes: Sequence[bytes], entries: Sequence[bytes]) -> list[int]:
        """Assign indexes durably; a duplicate (in the batch or the log) keeps its first index."""
        ...

    def reserve(self, leaf_hashes: Sequence[bytes]) -> tuple[list[int], list[int]]:
        """Bulk path: assign indexes in an open transaction, without storing the entries.

        Returns each entry's index and the batch positions of the new ones; the
        transaction ends with the driver's commit, or `rollback`.
        """
        ...

    def rollback(self) -> None:
        """End a `reserve` without keeping anything."""
        ...

    def lookup(self, leaf_hash: bytes) -> int | None:
        """The index of the entry with this leaf hash, if it was ever sequenced."""
        ...

    def pending(self, start: int, end: int) -> tuple[list[bytes], list[bytes]]:
        """Leaf hashes and entries [start, end) sequenced but not yet published."""
        ...

    def pending_entry(self, idx: int) -> bytes | None: ...

    def record_published(self, size: int, root: bytes) -> None:
        """Note a published checkpoint and drop the pending entries it covers."""
        ...

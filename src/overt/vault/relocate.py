"""Relocation: moving customer data to the region the residency policy now names, provably.

When a new policy version (policy_history.py) sends a country's data to another
region, `Relocator.run` moves every affected object, in batches of objects of
one customer, country and category with the same route. For each batch:

1. the batch (its object ids, and its two signed ``relocate`` access events,
   one for the region the data leaves and one for the region it enters) is
   written to the relocation journal, ``VAULT/relocation/journal.db``;
2. both events are appended to their regions' access logs (durably, before the
   data is touched): region, ``batch`` (count and Merkle root of the ids), the
   customer's pseudonym, and ``relocation`` (run, batch number, from, to, the
   policy version that requires the move, the country);
3. the source journals a ``relocate`` read of each object, decrypts it under its
   data key, and the destination seals it under a fresh data key wrapped by its
   own key-encryption key (same id, customer, country, category), journalled as
   ``relocate`` under its event;
4. every copy is read back from the destination, decrypted and compared with
   the original: nothing is destroyed unless every copy is exact;
5. a ``shred`` event is logged in the source region, then the source records are
   marked erased, their ciphertexts dropped and their data keys deleted from the
   region's keyring (secure_delete): the old copies, and every backup of them,
   are undecryptable.

Each step is recorded in the journal once done, and each is idempotent: an
event already in a log keeps its index when appended again (the journal keeps
the signed bytes), a copy already in the destination is verified rather than
made again, and shredding twice is shredding once. So a run killed at any point
resumes where it stopped (`overt vault relocate` again), loses no object, and
when it completes no object is readable in two regions. An object erased while
its batch was in flight is journalled as ``relocate-skip`` in both regions (it
is not copied), so the batch still reconciles with its events.

Limitation: an object cannot move back into a region that keeps its shredded
record (the record's id is taken); such a policy change stops the run with an
error naming the object.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from overt.durable import open_database
from overt.errors import OvertError
from overt.vault.events import AccessEvent, Actor, batch_root, pseudonym
from overt.vault.residency import ResidencyError, ResidencyPolicy

if TYPE_CHECKING:
    from overt.vault.vault import Vault

RELOCATOR = Actor("overt-relocate", "automated relocation", "vendor", "in-region")
DEFAULT_BATCH = 1000
MAX_BATCH = 10_000
JOURNAL = Path("relocation") / "journal.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    policy INTEGER NOT NULL,
    started INTEGER NOT NULL,
    finished INTEGER
);
CREATE TABLE IF NOT EXISTS batches (
    run TEXT NOT NULL,
    seq INTEGER NOT NULL,
    src TEXT NOT NULL,
    dst TEXT NOT NULL,
    customer TEXT NOT NULL,
    country TEXT NOT NULL,
    category TEXT NOT NULL,
    ids TEXT NOT NULL,
    root TEXT NOT NULL,
    out_entry BLOB NOT NULL,
    in_entry BLOB NOT NULL,
    out_index INTEGER,
    in_index INTEGER,
    skipped TEXT,
    shred_entry BLOB,
    shred_index INTEGER,
    state TEXT NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (run, seq)
);
"""

# planned: the batch and its two relocate events are saved; then both events are
#   logged (appending a saved entry again keeps its index), the batch copied and
#   every copy checked;
# verified: with the event indexes and the signed shred event saved; then the shred
#   event is logged and the old copies shredded;
# done: saved with the next batch (or the end of the run): a batch found
#   "verified" after a crash is finished again, which changes nothing twice.
STATES = ("planned", "verified", "done")


class RelocationError(OvertError):
    """The relocation cannot go on safely; nothing unverified was destroyed."""


@dataclass(frozen=True)
class Move:
    """Objects of one customer, country and category that must go from src to dst."""

    src: str
    dst: str
    country: str
    customer: str
    category: str
    ids: tuple[str, ...]
    size: int


@dataclass
class Plan:
    policy_version: int
    moves: list[Move] = field(default_factory=list)
    stranded: dict[str, int] = field(default_factory=dict)  # country -> objects with no region
    # Objects whose destination keeps a record of them already (they left it before).
    returning: list[str] = field(default_factory=list)

    @property
    def objects(self) -> int:
        return sum(len(m.ids) for m in self.moves)

    @property
    def bytes(self) -> int:
        return sum(m.size for m in self.moves)

    def batches(self, batch_size: int) -> int:
        return sum(-(-len(m.ids) // batch_size) for m in self.moves)

    def routes(self, batch_size: int = DEFAULT_BATCH) -> list[dict[str, Any]]:
        """Per (from, to, country): objects, bytes, customers and batches."""
        grouped: dict[tuple[str, str, str], list[Move]] = defaultdict(list)
        for move in self.moves:
            grouped[(move.src, move.dst, move.country)].append(move)
        return [
            {
                "from": src,
                "to": dst,
                "country": country,
                "objects": sum(len(m.ids) for m in moves),
                "bytes": sum(m.size for m in moves),
                "customers": len({m.customer for m in moves}),
                "batches": sum(-(-len(m.ids) // batch_size) for m in moves),
            }
            for (src, dst, country), moves in sorted(grouped.items())
        ]

    def to_json(self, batch_size: int = DEFAULT_BATCH) -> dict[str, Any]:
        return {
            "policy": self.policy_version,
            "objects": self.objects,
            "bytes": self.bytes,
            "batches": self.batches(batch_size),
            "routes": self.routes(batch_size),
            "stranded": self.stranded,
            "returning": len(self.returning),
        }

    def check(self) -> None:
        """Refuse, before anything is logged, a plan that cannot be carried out."""
        if self.stranded:
            listed = ", ".join(f"{n} in {c}" for c, n in sorted(self.stranded.items()))
            raise RelocationError(
                f"objects of customers with no region under policy version "
                f"{self.policy_version} ({listed}) cannot be relocated"
            )
        if self.returning:
            raise RelocationError(
                f"{len(self.returning)} objects (e.g. {self.returning[0]}) would move back into "
                "a region that keeps their shredded record; an object cannot return to a "
                "region it was relocated out of"
            )


def plan(vault: Vault, policy: ResidencyPolicy | None = None, version: int | None = None) -> Plan:
    """What must move for the stores to match `policy` (default: the one in force)."""
    target = policy if policy is not None else vault.policy
    result = Plan(version if version is not None else vault.policy_version)
    groups: dict[tuple[str, str, str, str, str], list[tuple[int, str, int]]] = defaultdict(list)
    for region in vault.policy.regions:
        store = vault.store(region)
        misplaced = []
        for country, count in store.live_countries().items():
            try:
                if target.region_for(country) != region:
                    misplaced.append(country)
            except ResidencyError:
                result.stranded[country] = result.stranded.get(country, 0) + count
        for obj in store.live_of(misplaced):
            home = target.region_for(obj.country)
            key = (region, home, obj.country, obj.customer, obj.category)
            groups[key].append((obj.created, obj.id, obj.size))
    for (src, dst, country, customer, category), objs in sorted(groups.items()):
        objs.sort()
        if dst in vault.policy.regions:
            ids = [i for _, i, _ in objs]
            for start in range(0, len(ids), 1000):
                result.returning.extend(vault.store(dst).fetch(ids[start : start + 1000]))
        result.moves.append(
            Move(
                src,
                dst,
                country,
                customer,
                category,
                tuple(i for _, i, _ in objs),
                sum(s for _, _, s in objs),
            )
        )
    return result


@dataclass
class Batch:
    run: str
    seq: int
    src: str
    dst: str
    customer: str
    country: str
    category: str
    ids: list[str]
    root: str
    out_entry: bytes
    in_entry: bytes
    out_index: int | None = None
    in_index: int | None = None
    skipped: list[str] = field(default_factory=list)
    shred_entry: bytes | None = None
    shred_index: int | None = None
    state: str = "planned"


_BATCH_COLUMNS = (
    "run, seq, src, dst, customer, country, category, ids, root, out_entry, in_entry, "
    "out_index, in_index, skipped, shred_entry, shred_index, state"
)


class RelocationJournal:
    """VAULT/relocation/journal.db: runs and their batches, every change synced."""

    def __init__(self, root: Path) -> None:
        path = root / JOURNAL
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = open_database(path, SCHEMA)

    def close(self) -> None:
        self._db.close()

    def unfinished_run(self) -> tuple[str, int] | None:
        row = self._db.execute(
            "SELECT id, policy FROM runs WHERE finished IS NULL ORDER BY started LIMIT 1"
        ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def start_run(self, policy: int) -> str:
        run = secrets.token_hex(6)
        self._db.execute(
            "INSERT INTO runs (id, policy, started) VALUES (?, ?, ?)",
            (run, policy, int(time.time())),
        )
        return run

    def runs(self) -> list[tuple[str, int, int, int | None]]:
        return [
            (str(r[0]), int(r[1]), int(r[2]), r[3])
            for r in self._db.execute("SELECT id, policy, started, finished FROM runs ORDER BY 3")
        ]

    def next_seq(self, run: str) -> int:
        row = self._db.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM batches WHERE run = ?", (run,)
        ).fetchone()
        return int(row[0]) + 1

    def batches(self, run: str, unfinished: bool = False) -> list[Batch]:
        where = " AND state != 'done'" if unfinished else ""
        rows = self._db.execute(
            f"SELECT {_BATCH_COLUMNS} FROM batches WHERE run = ?{where} ORDER BY seq", (run,)
        ).fetchall()
        return [
            Batch(
                str(r[0]),
                int(r[1]),
                str(r[2]),
                str(r[3]),
                str(r[4]),
                str(r[5]),
                str(r[6]),
                json.loads(r[7]),
                str(r[8]),
                bytes(r[9]),
                bytes(r[10]),
                r[11],
                r[12],
                json.loads(r[13]) if r[13] else [],
                None if r[14] is None else bytes(r[14]),
                r[15],
                str(r[16]),
            )
            for r in rows
        ]

    def add(self, batch: Batch, done: Batch | None = None) -> None:
        """Save a new batch, and mark an earlier one done, in one transaction."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if done is not None:
                self._mark_done(done)
            self._insert(batch)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def finish_run(self, run: str, done: Batch | None = None) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if done is not None:
                self._mark_done(done)
            self._db.execute("UPDATE runs SET finished = ? WHERE id = ?", (int(time.time()), run))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _mark_done(self, batch: Batch) -> None:
        batch.state = "done"
        self._db.execute(
            "UPDATE batches SET state = 'done', shred_index = ?, updated = ? "
            "WHERE run = ? AND seq = ?",
            (batch.shred_index, int(time.time()), batch.run, batch.seq),
        )

    def _insert(self, batch: Batch) -> None:
        self._db.execute(
            f"INSERT INTO batches ({_BATCH_COLUMNS}, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                batch.run,
                batch.seq,
                batch.src,
                batch.dst,
                batch.customer,
                batch.country,
                batch.category,
                json.dumps(batch.ids),
                batch.root,
                batch.out_entry,
                batch.in_entry,
                None,
                None,
                None,
                None,
                None,
                batch.state,
                int(time.time()),
            ),
        )

    def save_done(self, batch: Batch) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        self._mark_done(batch)
        self._db.execute("COMMIT")

    def save(self, batch: Batch) -> None:
        self._db.execute(
            "UPDATE batches SET out_index = ?, in_index = ?, skipped = ?, shred_entry = ?, "
            "shred_index = ?, state = ?, updated = ? WHERE run = ? AND seq = ?",
            (
                batch.out_index,
                batch.in_index,
                json.dumps(batch.skipped),
                batch.shred_entry,
                batch.shred_index,
                batch.state,
                int(time.time()),
                batch.run,
                batch.seq,
            ),
        )


def unfinished_run(root: Path) -> str | None:
    """The id of a relocation run that has not completed, if any."""
    if not (root / JOURNAL).exists():
        return None
    try:
        journal = RelocationJournal(root)
    except sqlite3.Error as exc:
        raise RelocationError(f"{root / JOURNAL}: {exc}") from exc
    try:
        run = journal.unfinished_run()
    finally:
        journal.close()
    return None if run is None else run[0]


@dataclass
class Progress:
    """Reported after each batch completes."""

    run: str
    batch: int
    src: str
    dst: str
    country: str
    objects: int  # in this batch
    done: int  # objects completed in this process so far
    total: int  # objects this process knows it must move
    seconds: float
    resumed: bool  # a batch an earlier, interrupted process had started


@dataclass
class RelocationResult:
    run: str
    policy_version: int
    batches: int = 0
    moved: int = 0
    skipped: int = 0
    resumed_batches: int = 0
    seconds: float = 0.0
    routes: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "policy": self.policy_version,
            "batches": self.batches,
            "moved": self.moved,
            "skipped": self.skipped,
            "resumed_batches": self.resumed_batches,
            "seconds": round(self.seconds, 3),
            "routes": [
                {"from": s, "to": d, "country": c, "objects": n}
                for (s, d, c), n in sorted(self.routes.items())
            ],
        }


class Relocator:
    def __init__(
        self,
        vault: Vault,
        batch_size: int = DEFAULT_BATCH,
        progress: Callable[[Progress], None] | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise RelocationError(f"a relocation batch holds 1 to {MAX_BATCH} objects")
        self.vault = vault
        self.batch_size = batch_size
        self.progress = progress
        self._last: Batch | None = None  # shredded, not yet saved as done

    def run(self) -> RelocationResult:
        """Move everything the policy in force requires, resuming an interrupted run."""
        vault = self.vault
        vault.reload_policy()
        if vault.pending_change() is not None:
            raise RelocationError(
                "a residency policy change is under way; finish it ('overt vault policy set') "
                "before relocating"
            )
        for region in vault.policy.regions:  # every log must take events: fail early
            try:
                vault.log(region)
            except OvertError as exc:
                raise RelocationError(
                    f"the access log of region {region} is unavailable ({exc}); nothing "
                    "was moved (with the SQLite driver, stop 'overt vault serve' first)"
                ) from exc
        journal = RelocationJournal(vault.root)
        started = time.perf_counter()
        self._last = None
        try:
            unfinished = journal.unfinished_run()
            todo: Plan | None = None
            if unfinished is None:
                todo = plan(vault)
                todo.check()
                if not todo.moves:
                    return RelocationResult("", vault.policy_version)
            run = unfinished[0] if unfinished else journal.start_run(vault.policy_version)
            result = RelocationResult(run, unfinished[1] if unfinished else vault.policy_version)
            leftover = journal.batches(run, unfinished=True)
            total = sum(len(b.ids) for b in leftover)
            for batch in leftover:
                self._finish(journal, batch, resumed=True)
                journal.save_done(batch)
                result.resumed_batches += 1
                self._count(result, batch, started, total, resumed=True)
            while True:
                todo = todo or plan(vault)
                todo.check()
                if not todo.moves:
                    break
                total = result.moved + result.skipped + todo.objects
                before = result.moved + result.skipped
                for move in todo.moves:
                    for start in range(0, len(move.ids), self.batch_size):
                        ids = list(move.ids[start : start + self.batch_size])
                        batch = self._prepare(journal, run, move, ids)
                        self._finish(journal, batch)
                        self._count(result, batch, started, total, resumed=False)
                if result.moved + result.skipped == before:
                    raise RelocationError("relocation made no progress; stopping")
                todo = None
            journal.finish_run(run, self._last)
            result.seconds = time.perf_counter() - started
            return result
        finally:
            journal.close()

    def _count(
        self, result: RelocationResult, batch: Batch, started: float, total: int, resumed: bool
    ) -> None:
        moved = len(batch.ids) - len(batch.skipped)
        result.batches += 1
        result.moved += moved
        result.skipped += len(batch.skipped)
        key = (batch.src, batch.dst, batch.country)
        result.routes[key] = result.routes.get(key, 0) + moved
        if self.progress is not None:
            self.progress(
                Progress(
                    batch.run,
                    batch.seq,
                    batch.src,
                    batch.dst,
                    batch.country,
                    len(batch.ids),
                    result.moved + result.skipped,
                    max(total, result.moved + result.skipped),
                    time.perf_counter() - started,
                    resumed,
                )
            )

    def _relocation(self, batch: Batch, policy: int) -> dict[str, Any]:
        return {
            "run": batch.run,
            "batch": batch.seq,
            "from": batch.src,
            "to": batch.dst,
            "policy": policy,
            "country": batch.country,
        }

    def _event(self, batch: Batch, region: str, action: str, **extra: Any) -> AccessEvent:
        vault = self.vault
        alias = pseudonym(vault.customers.key(batch.customer), batch.customer)
        relocation = self._relocation(batch, vault.policy_version)
        relocation.update(extra)
        return AccessEvent(
            region,
            action,
            RELOCATOR,
            "SYSTEM_OPERATION",
            f"relocation-{batch.run}",
            alias,
            batch.category,
            batch={"count": len(batch.ids), "root": batch.root},
            relocation=relocation,
        )

    def _prepare(self, journal: RelocationJournal, run: str, move: Move, ids: list[str]) -> Batch:
        batch = Batch(
            run,
            journal.next_seq(run),
            move.src,
            move.dst,
            move.customer,
            move.country,
            move.category,
            ids,
            batch_root(ids),
            b"",
            b"",
        )
        batch.out_entry = self.vault.sign_event(self._event(batch, move.src, "relocate"))
        batch.in_entry = self.vault.sign_event(self._event(batch, move.dst, "relocate"))
        journal.add(batch, done=self._last)
        self._last = batch
        return batch

    def _finish(self, journal: RelocationJournal, batch: Batch, resumed: bool = False) -> None:
        vault = self.vault
        if batch.state == "planned":
            # Logged in both regions (at once) before anything is touched.
            vault.log(batch.src)
            vault.log(batch.dst)  # opened here: the two appends run in two threads
            with ThreadPoolExecutor(1, thread_name_prefix="overt-relocate") as pool:
                out = pool.submit(vault.append_signed, batch.src, batch.out_entry)
                batch.in_index = vault.append_signed(batch.dst, batch.in_entry)
                batch.out_index = out.result()
            self._copy(batch)
            event = self._event(
                batch, batch.src, "shred", out_event=batch.out_index, in_event=batch.in_index
            )
            batch.shred_entry = vault.sign_event(event)
            batch.state = "verified"
            journal.save(batch)
        if batch.state == "verified":
            assert batch.shred_entry is not None
            batch.shred_index = vault.append_signed(batch.src, batch.shred_entry)
            vault.store(batch.src).shred(batch.ids, batch.shred_index, maybe_done=resumed)
            batch.state = "shredded"  # saved as done with the next batch

    def _copy(self, batch: Batch) -> None:
        """Copy the batch into its destination (what is not there yet) and check every copy."""
        assert batch.out_index is not None and batch.in_index is not None
        src = self.vault.store(batch.src)
        dst = self.vault.store(batch.dst)
        held = src.fetch(batch.ids)
        there = dst.fetch(batch.ids)
        to_copy: list[str] = []
        to_check: list[str] = []
        skipped: list[str] = []
        for object_id in batch.ids:
            mine = held.get(object_id)
            theirs = there.get(object_id)
            src_live = mine is not None and not mine[0].erased
            if theirs is not None:
                if theirs[0].write_event != batch.in_index:
                    raise RelocationError(
                        f"object {object_id} already has a record in {batch.dst} (it was "
                        f"relocated out of {batch.dst} before); an object cannot move back "
                        "into a region that keeps its shredded record"
                    )
                if src_live and not theirs[0].erased:
                    to_check.append(object_id)  # copied by an interrupted run
            elif src_live:
                to_copy.append(object_id)
            else:
                skipped.append(object_id)  # erased (by a logged erasure) meanwhile
        # The reads in the source are journalled before anything is decrypted (as
        # `RegionStore.record`: their events are durable; the rows become durable
        # with the shredding's commit).
        if to_copy or to_check:
            src.journal_many("relocate", to_copy + to_check, batch.out_index, synced=False)
        if skipped:
            src.journal_many("relocate-skip", skipped, batch.out_index, synced=False)
            dst.journal_many("relocate-skip", skipped, batch.in_index)
            dst.drop_keys(skipped)  # a copy a crash interrupted may have left its key
        originals = src.decrypt_many({i: held[i] for i in to_copy + to_check})
        if to_copy:
            dst.put_copies([(held[i][0], originals[i]) for i in to_copy], batch.in_index)
        copies = dst.decrypt_many(dst.fetch(to_copy + to_check))
        bad = [i for i in to_copy + to_check if copies.get(i) != originals[i]]
        if bad:
            raise RelocationError(
                f"the copies of {len(bad)} objects in {batch.dst} (e.g. {bad[0]}) do not match "
                f"their originals in {batch.src}; nothing of batch {batch.seq} was shredded"
            )
        batch.skipped = skipped


def relocation_batches(root: Path) -> list[Batch]:
    """Every batch of every run in the journal (for reports and tests)."""
    if not (root / JOURNAL).exists():
        return []
    journal = RelocationJournal(root)
    try:
        return [b for run, *_ in journal.runs() for b in journal.batches(run)]
    finally:
        journal.close()

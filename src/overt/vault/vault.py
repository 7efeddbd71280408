"""The vault: residency routing, the access gate, and the per-region stores and logs.

Every operation on customer data goes through `Vault._authorise`, the one
gate: it checks the actor and the justification, appends a signed access
event to the region's access log, and returns the event's index only once it
is durably sequenced. The store then acts, journalling that index. If the
access log cannot take the event, the access is refused (fail closed).

Directory (docs/vault.md):

    VAULT/residency.toml      where each customer's data must live (the version in force)
    VAULT/policies/           every version of it, and each version's logged statement
                              (policy_history.py)
    VAULT/relocation/         the relocation journal (relocate.py)
    VAULT/actors.toml         staff identities and what they may do
    VAULT/vault.toml          storage settings (optional): [vault] database = "postgresql://..."
                              keeps the regions' records and access logs in PostgreSQL
    VAULT/vault.vkey          the key access events are signed with (public)
    VAULT/secrets/vault.key   its private key (0600)
    VAULT/secrets/customers.db  each customer's pseudonym key (0600)
    VAULT/regions/<r>/        the region's store (ciphertexts, metadata, journal)
    VAULT/keyring/<r>/        the region's key-encryption key and wrapped data keys
    VAULT/logs/<r>/           the region's access log (an Overt log)
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from overt.crypto.keyfile import read_private_key, write_private_key
from overt.crypto.keys import Ed25519Signer, ed25519_verifier
from overt.durable import atomic_write, open_database
from overt.errors import MalformedError, OvertError
from overt.log.config import LogConfig
from overt.log.log import Log, init_log
from overt.vault.actors import SYSTEM, ActorEntry, load_actors
from overt.vault.events import JUSTIFICATIONS, AccessEvent, Actor, batch_root, pseudonym
from overt.vault.policy_history import PolicyHistory, policy_sha256
from overt.vault.residency import ResidencyError, ResidencyPolicy
from overt.vault.store import NewObject, RegionStore, StoredObject

if TYPE_CHECKING:
    from overt.vault.pg_meta import VaultDatabase

MAX_BATCH = 10_000


class AccessRefused(OvertError):
    """The gate refused an access; the reason says why (and it was logged when possible)."""


@dataclass(frozen=True)
class Stored:
    id: str
    region: str


VAULT_CONFIG = "vault.toml"


def vault_database(root: Path) -> str:
    """The PostgreSQL URL in VAULT/vault.toml, or "" (SQLite files in the vault)."""
    path = root / VAULT_CONFIG
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ""
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MalformedError(f"{path}: {exc}") from exc
    table = raw.get("vault")
    if not isinstance(table, dict) or set(table) - {"database"}:
        raise MalformedError(f"{path}: expected a [vault] table with only 'database'")
    database = table.get("database", "")
    if not isinstance(database, str):
        raise MalformedError(f"{path}: database must be a postgresql:// URL")
    if database:
        from overt.postgres import check_dsn

        check_dsn(database)
    return database


def init_vault(root: Path, residency: str, origin_prefix: str, database: str = "") -> str:
    """Create a vault: policy, signing key, and one access log per region.

    With `database` (a postgresql:// URL) the regions' records and the access
    logs' sequencing state live in PostgreSQL; the keyring stays in the vault.
    """
    if (root / "residency.toml").exists():
        raise OvertError(f"{root} already holds a vault")
    policy = ResidencyPolicy.parse(residency)
    signer = Ed25519Signer.generate(f"{origin_prefix}/vault")
    vkey = str(signer.verifier_key())
    if database:
        from overt.postgres import check_dsn
        from overt.vault.pg_meta import create_vault

        create_vault(check_dsn(database), vkey)
    (root / "secrets").mkdir(parents=True, exist_ok=True)
    os.chmod(root / "secrets", 0o700)
    write_private_key(root / "secrets" / "vault.key", signer)
    if database:
        escaped = database.replace("\\", "\\\\").replace('"', '\\"')
        atomic_write(
            root / VAULT_CONFIG,
            f'# Overt vault storage\n[vault]\ndatabase = "{escaped}"\n'.encode(),
        )
    atomic_write(root / "vault.vkey", (vkey + "\n").encode())
    atomic_write(root / "residency.toml", residency.encode())
    PolicyHistory(root).write_initial(residency)
    if not (root / "actors.toml").exists():
        atomic_write(
            root / "actors.toml", b"# Staff who may access customer data: [[actor]] tables\n"
        )
    for region in policy.regions:
        init_log(
            root / "logs" / region,
            LogConfig(origin=f"{origin_prefix}/access/{region}", database=database),
        )
    CustomerKeys(root / "secrets" / "customers.db").close()
    atomic_write(
        root / "secrets" / "ingest-token", (secrets.token_urlsafe(32) + "\n").encode(), 0o600
    )
    return vkey


class CustomerKeys:
    """Each customer's pseudonym key, made on first sight (give it to the customer)."""

    def __init__(self, path: Path) -> None:
        fresh = not path.exists()
        self._db = open_database(
            path, "CREATE TABLE IF NOT EXISTS customers (id TEXT PRIMARY KEY, key BLOB);"
        )
        if fresh:
            os.chmod(path, 0o600)
        self._cache: dict[str, bytes] = {}

    def key(self, customer: str) -> bytes:
        cached = self._cache.get(customer)
        if cached is not None:
            return cached
        row = self._db.execute("SELECT key FROM customers WHERE id = ?", (customer,)).fetchone()
        if row is not None:
            self._cache[customer] = bytes(row[0])
            return self._cache[customer]
        key = secrets.token_bytes(32)
        self._db.execute("INSERT OR IGNORE INTO customers (id, key) VALUES (?, ?)", (customer, key))
        return self.key(customer)

    def close(self) -> None:
        self._db.close()


def _check_customer(customer: str) -> None:
    if not customer or len(customer) > 200 or any(c < " " for c in customer):
        raise MalformedError("customer id must be 1 to 200 printable characters")


class Vault:
    def __init__(self, root: Path) -> None:
        if not (root / "residency.toml").exists():
            raise OvertError(f"{root} is not a vault; run 'overt vault init'")
        self.root = root
        self.policy = ResidencyPolicy.load(root / "residency.toml")
        self.policy_version = 1
        self._policy_problem = ""  # why writes are refused, if the policy is not as logged
        self._pending: tuple[int, ResidencyPolicy] | None = None  # a change under way
        self._policy_stamp: tuple[object, ...] = ()
        self._load_policy()
        self.actors: dict[str, ActorEntry] = load_actors(root / "actors.toml")
        self._signer = read_private_key(root / "secrets" / "vault.key")
        self.verifier = ed25519_verifier(self._signer.verifier_key())
        self._database: VaultDatabase | None = None
        database = vault_database(root)
        if database:
            from overt.vault.pg_meta import VaultDatabase

            self._database = VaultDatabase(database, str(self.verifier.vkey))
        self.customers = CustomerKeys(root / "secrets" / "customers.db")
        self._stores: dict[str, RegionStore] = {}
        self._logs: dict[str, Log] = {}
        self._regions_of: dict[str, str] = {}  # object id -> region, objects never move

    def close(self) -> None:
        for log in self._logs.values():
            # Events are durable once sequenced; if publishing fails now, the
            # next open publishes them.
            with contextlib.suppress(OvertError):
                log.integrate()
            log.close()
        for store in self._stores.values():
            store.close()
        if self._database is not None:
            self._database.close()
        self.customers.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the residency policy in force ----------------------------------

    def _stamp(self) -> tuple[object, ...]:
        """Changes whenever `overt vault policy set` (in any process) changes the policy."""
        stamp: list[object] = []
        for path in (self.root / "residency.toml", PolicyHistory(self.root).pending_file):
            try:
                st = os.stat(path)
                stamp.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                stamp.append(None)
        return tuple(stamp)

    def _load_policy(self) -> None:
        stamp = self._stamp()
        text = (self.root / "residency.toml").read_text(encoding="utf-8")
        history = PolicyHistory(self.root)
        current = history.current()
        self.policy = ResidencyPolicy.parse(text, str(self.root / "residency.toml"))
        self.policy_version = current.version
        self._policy_problem = ""
        if current.sha256 != policy_sha256(text):
            self._policy_problem = (
                f"{self.root / 'residency.toml'} is not policy version {current.version} as "
                "recorded in policies/ (changed by hand?); change the policy only with "
                "'overt vault policy set', which logs each version"
            )
        self._pending = None
        pending = history.pending_version()
        if pending is not None:
            try:
                self._pending = (pending, history.version(pending).policy)
            except OvertError as exc:
                self._policy_problem = f"policy version {pending} is pending but unreadable: {exc}"
        self._policy_stamp = stamp

    def pending_change(self) -> int | None:
        """The version a policy change under way (interrupted) is moving to, if any."""
        return None if self._pending is None else self._pending[0]

    def reload_policy(self) -> bool:
        """Re-read the residency policy if it changed since it was read; True if it did."""
        if self._stamp() == self._policy_stamp:
            return False
        self._load_policy()
        return True

    def _write_refusal(self, country: str, home: str) -> str:
        """Why a write for a customer in `country` to `home` must be refused now ("" if not)."""
        if self._policy_problem:
            return self._policy_problem
        if self._pending is not None:
            version, pending = self._pending
            try:
                moving_to = pending.region_for(country)
            except ResidencyError:
                moving_to = "no region"
            if moving_to != home:
                return (
                    f"the residency policy is changing (version {version}): customers in "
                    f"{country.upper()} move from {home} to {moving_to}; refusing to write "
                    f"their data to {home} until the change is complete"
                )
        return ""

    def former_regions(self, country: str) -> set[str]:
        """Regions that held the data of customers in `country` under earlier versions."""
        found = set()
        for version in PolicyHistory(self.root).versions():
            if version.version == self.policy_version:
                continue
            with contextlib.suppress(ResidencyError):
                found.add(version.policy.region_for(country))
        return found

    def sign_statement(self, doc: dict[str, object]) -> bytes:
        from overt.vault.events import sign_policy_statement

        return sign_policy_statement(dict(doc), self._signer)

    def sign_event(self, event: AccessEvent) -> bytes:
        return event.sign(self._signer)

    def append_signed(self, region: str, entry: bytes) -> int:
        """Durably sequence a signed entry (an existing one keeps its index); fail closed."""
        try:
            (index,) = self.log(region).sequence([entry])
        except (OvertError, OSError) as exc:
            raise AccessRefused(
                f"the access log of region {region} is unavailable ({exc}); refusing the access"
            ) from exc
        return index

    def store(self, region: str) -> RegionStore:
        if region not in self.policy.regions:
            raise ResidencyError(f"unknown region {region!r}")
        if region not in self._stores:
            meta = self._database.region(region) if self._database is not None else None
            self._stores[region] = RegionStore(self.root, region, meta)
        return self._stores[region]

    def log(self, region: str) -> Log:
        if region not in self._logs:
            self._logs[region] = Log(self.root / "logs" / region)
        return self._logs[region]

    # --- the gate --------------------------------------------------------

    def _append(self, event: AccessEvent) -> int:
        """Durably sequence an access event; refuse the access if the log cannot."""
        try:
            (index,) = self.log(event.region).sequence([event.sign(self._signer)])
        except (OvertError, OSError) as exc:
            raise AccessRefused(
                f"the access log of region {event.region} is unavailable ({exc}); "
                "refusing the access"
            ) from exc
        return index

    def _refuse(self, event: AccessEvent, reason: str) -> AccessRefused:
        """Log a refused access (if the log takes it) and return the error to raise."""
        event.outcome, event.reason = "refused", reason
        with contextlib.suppress(AccessRefused):
            self._append(event)
        return AccessRefused(reason)

    def _authorise(
        self,
        region: str,
        action: str,
        actor_name: str,
        justification: str,
        ticket: str,
        customer: str,
        category: str,
        objects: list[str],
        requester_country: str = "",
    ) -> tuple[int, Actor]:
        entry = self.actors.get(actor_name)
        actor = (
            entry.actor if entry else Actor(actor_name or "(none)", "unknown", "unknown", "unknown")
        )
        event = AccessEvent(
            region,
            action,
            actor,
            justification,
            ticket,
            customer,
            category,
            list(objects),
            requester_country=requester_country,
        )
        if entry is None:
            raise self._refuse(event, f"unknown actor {actor_name!r}")
        if not justification:
            raise self._refuse(event, "a justification code is required")
        if justification not in JUSTIFICATIONS:
            raise self._refuse(event, f"unknown justification {justification!r}")
        if justification not in entry.justifications:
            raise self._refuse(event, f"{actor_name} may not access data for {justification}")
        if not ticket:
            raise self._refuse(event, "a ticket reference is required")
        if justification == "LEGAL_REQUEST" and not requester_country:
            raise self._refuse(event, "a legal request must name the requesting country")
        return self._append(event), actor

    # --- operations ------------------------------------------------------

    def ingest(
        self,
        customer: str,
        country: str,
        category: str,
        contents: Sequence[bytes],
        region: str | None = None,
    ) -> list[Stored]:
        """Store data from a customer's products in its region; one event per batch."""
        _check_customer(customer)
        if not contents or len(contents) > MAX_BATCH:
            raise MalformedError(f"a batch holds 1 to {MAX_BATCH} objects")
        self.reload_policy()
        home = self.policy.region_for(country)
        self.policy.category(category)
        alias = pseudonym(self.customers.key(customer), customer)
        ids = [secrets.token_hex(12) for _ in contents]
        batch = {"count": len(ids), "root": batch_root(ids)}

        def write_event(where: str) -> AccessEvent:
            return AccessEvent(
                where, "write", SYSTEM, "SYSTEM_OPERATION", "ingest", alias, category, batch=batch
            )

        if region is not None and region != home:
            reason = (
                f"data of customers in {country.upper()} must stay in {home}; "
                f"refusing to store it in {region}"
            )
            if region in self.policy.regions and region in self.former_regions(country):
                # Data relocated out of `region`: its own log shows the refusal too.
                reason += f" (policy version {self.policy_version} moved it out of {region})"
                former = write_event(region)
                former.outcome, former.reason = "refused", reason
                with contextlib.suppress(AccessRefused):
                    self._append(former)
            raise self._refuse(write_event(home), reason)
        refusal = self._write_refusal(country, home)
        if refusal:
            raise self._refuse(write_event(home), refusal)
        index = self._append(write_event(home))
        # A policy change logged while this event was being sequenced wins: its
        # statement may precede the event in the log (policy_history.py writes
        # the pending marker before logging the statement).
        if self.reload_policy():
            try:
                refusal = self._write_refusal(country, home)
                if not refusal and self.policy.region_for(country) != home:
                    refusal = (
                        f"the residency policy changed to version {self.policy_version}: "
                        f"data of customers in {country.upper()} no longer goes to {home}"
                    )
            except ResidencyError as exc:
                refusal = str(exc)
            if refusal:
                raise self._refuse(write_event(home), refusal)
        self.store(home).put(
            [
                NewObject(i, customer, country.upper(), category, c)
                for i, c in zip(ids, contents, strict=True)
            ],
            index,
        )
        return [Stored(i, home) for i in ids]

    def locate(self, object_id: str) -> tuple[str, StoredObject]:
        """Where an object lives: its readable copy (a region it was relocated out of
        keeps a shredded record), else the erased record."""
        if "\x00" in object_id:  # no id has one, and PostgreSQL text cannot hold it
            raise AccessRefused(f"no object {object_id!r} in this vault")
        known = self._regions_of.get(object_id)
        if known is not None:
            obj = self.store(known).object(object_id)
            if obj is not None and not obj.erased:
                return known, obj
        erased: tuple[str, StoredObject] | None = None
        for region in self.policy.regions:
            obj = self.store(region).object(object_id)
            if obj is None:
                continue
            if obj.erased:
                erased = erased or (region, obj)
                continue
            if len(self._regions_of) < 1_000_000:
                self._regions_of[object_id] = region
            return region, obj
        if erased is not None:
            return erased
        raise AccessRefused(f"no object {object_id!r} in this vault")

    def read(
        self,
        object_id: str,
        actor: str,
        justification: str,
        ticket: str,
        requester_country: str = "",
        region: str | None = None,
    ) -> bytes:
        """A staff or process read: logged individually before the data is decrypted."""
        home, obj = self.locate(object_id)
        alias = pseudonym(self.customers.key(obj.customer), obj.customer)
        if region is not None and region != home:
            event = AccessEvent(
                home,
                "process",
                self.actors[actor].actor
                if actor in self.actors
                else Actor(actor, "unknown", "unknown", "unknown"),
                justification,
                ticket,
                alias,
                obj.category,
                [object_id],
            )
            raise self._refuse(
                event, f"object {object_id} must be processed in {home}, not in {region}"
            )
        if obj.erased:
            event = AccessEvent(
                home,
                "read",
                Actor(actor, "", "", ""),
                justification,
                ticket,
                alias,
                obj.category,
                [object_id],
            )
            raise self._refuse(event, f"object {object_id} was erased")
        index, _ = self._authorise(
            home,
            "read",
            actor,
            justification,
            ticket,
            alias,
            obj.category,
            [object_id],
            requester_country,
        )
        return self.store(home).read(object_id, index)

    def erase(self, object_id: str, actor: str, justification: str, ticket: str) -> None:
        home, obj = self.locate(object_id)
        if obj.erased:
            return
        alias = pseudonym(self.customers.key(obj.customer), obj.customer)
        index, _ = self._authorise(
            home, "erase", actor, justification, ticket, alias, obj.category, [object_id]
        )
        self.store(home).erase(object_id, index)
        # An interrupted relocation may have left a second readable copy: erase it too.
        for region in self.policy.regions:
            other = self.store(region).object(object_id) if region != home else None
            if other is not None and not other.erased:
                index, _ = self._authorise(
                    region, "erase", actor, justification, ticket, alias, obj.category, [object_id]
                )
                self.store(region).erase(object_id, index)

    def erase_customer(self, customer: str, actor: str, justification: str, ticket: str) -> int:
        count = 0
        for region in self.policy.regions:
            for obj in self.store(region).objects():
                if obj.customer == customer and not obj.erased:
                    self.erase(obj.id, actor, justification, ticket)
                    count += 1
        return count

    def publish(self) -> None:
        """Integrate every region's access log, so checkpoints cover every event so far
        (including events a crashed process sequenced but did not publish)."""
        for region in self.policy.regions:
            self.log(region).integrate()

"""PostgreSQL for scale-out: connecting, the schema, and its migrations.

One database can hold any number of logs (and vaults): every table is keyed
by the owning log's row in ``overt_log``. The schema is versioned: the table
``overt_schema`` holds one row per applied migration, and

* ``overt db migrate DSN`` (also run by ``overt log init --database`` and
  ``overt vault init --database``) applies the missing migrations, all in one
  transaction, serialised by an advisory lock so two migrators cannot race;
* every process that opens the database checks the version first and refuses a
  schema older than its own (run ``overt db migrate``) or newer (an older
  ``overt`` must not write to tables it does not understand).

Passwords do not belong in a DSN kept in a configuration file: use
``~/.pgpass`` (or ``PGPASSFILE``), which libpq reads by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from overt.errors import MalformedError, OvertError

# Advisory lock keys are (class, object) pairs of 32-bit integers; the class
# is ours ("OVRT"), the object a log's id, or 0 for migrations.
LOCK_CLASS = 0x4F565254
MIGRATION_LOCK = 0
DSN_PREFIXES = ("postgresql://", "postgres://")

# TCP keepalives, so that a front end (or the database) that vanishes without
# closing its connection is noticed within seconds: the integration lock of
# a dead integrator must be released for another front end to take over.
CONNECT_KWARGS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "connect_timeout": 10,
}


class DatabaseError(OvertError):
    """The PostgreSQL database cannot be used (unreachable, wrong schema, ...)."""


class SchemaError(DatabaseError):
    """The database's schema version is not the one this version of Overt uses."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "log sequencing state",
        """
        CREATE TABLE overt_log (
            id serial PRIMARY KEY,
            vkey text NOT NULL UNIQUE,
            origin text NOT NULL,
            -- the next index to assign; every index below it is durably taken
            next_index bigint NOT NULL DEFAULT 0,
            -- tiles written and synced up to here by the bulk path, maybe not
            -- yet covered by a published checkpoint
            integrated_size bigint NOT NULL DEFAULT 0,
            integrated_root bytea,
            created timestamptz NOT NULL DEFAULT now()
        );
        -- the last checkpoint published; its row is the integrators' fence
        CREATE TABLE overt_log_published (
            log_id integer PRIMARY KEY REFERENCES overt_log (id) ON DELETE CASCADE,
            size bigint NOT NULL DEFAULT 0,
            root bytea
        );
        -- sequenced entries not yet covered by a published checkpoint
        CREATE TABLE overt_log_pending (
            log_id integer NOT NULL,
            idx bigint NOT NULL,
            hash bytea NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (log_id, idx)
        );
        -- every entry ever sequenced, by leaf hash
        CREATE TABLE overt_log_dedup (
            log_id integer NOT NULL,
            hash bytea NOT NULL,
            idx bigint NOT NULL,
            PRIMARY KEY (log_id, hash)
        );
        """,
    ),
    Migration(
        2,
        "vault metadata",
        """
        CREATE TABLE overt_vault (
            id serial PRIMARY KEY,
            vkey text NOT NULL UNIQUE,
            created timestamptz NOT NULL DEFAULT now()
        );
        -- each region's objects, with their sealed contents (nonce || AES-GCM)
        CREATE TABLE overt_vault_object (
            vault_id integer NOT NULL REFERENCES overt_vault (id) ON DELETE CASCADE,
            region text NOT NULL,
            id text NOT NULL,
            customer text NOT NULL,
            country text NOT NULL,
            category text NOT NULL,
            size bigint NOT NULL,
            created bigint NOT NULL,
            sealed_sha256 text NOT NULL,
            write_event bigint NOT NULL,
            erased bigint,
            sealed bytea,
            PRIMARY KEY (vault_id, region, id)
        );
        CREATE INDEX overt_vault_object_by_customer
            ON overt_vault_object (vault_id, region, customer);
        CREATE INDEX overt_vault_object_by_event
            ON overt_vault_object (vault_id, region, write_event);
        -- every operation on an object, with the access event that authorised it
        CREATE TABLE overt_vault_journal (
            vault_id integer NOT NULL REFERENCES overt_vault (id) ON DELETE CASCADE,
            region text NOT NULL,
            seq bigserial NOT NULL,
            time bigint NOT NULL,
            op text NOT NULL,
            object text NOT NULL,
            event bigint,
            PRIMARY KEY (vault_id, region, seq)
        );
        """,
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version


def check_dsn(dsn: str) -> str:
    if not dsn.startswith(DSN_PREFIXES):
        raise MalformedError(f"database: {_redact(dsn)!r} is not a postgresql:// URL")
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise MalformedError(f"database: {_redact(dsn)}: {exc}") from exc
    return dsn


def _redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return dsn.split("@")[-1]
    if "password" in params:
        params["password"] = "***"
    return psycopg.conninfo.make_conninfo("", **params)


def connect(dsn: str, autocommit: bool = False) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(dsn, autocommit=autocommit, **CONNECT_KWARGS)
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL at {_redact(dsn)}: {exc}") from exc


def open_pool(dsn: str, name: str, max_size: int = 4) -> ConnectionPool:
    """A pool of connections, checked before each use (a restarted server is survived)."""

    def configure(conn: psycopg.Connection[Any]) -> None:
        conn.autocommit = False

    pool = ConnectionPool(
        dsn,
        min_size=1,
        max_size=max_size,
        kwargs=dict(CONNECT_KWARGS),
        configure=configure,
        check=ConnectionPool.check_connection,
        name=name,
        open=False,
    )
    try:
        pool.open(wait=True, timeout=15)
    except Exception as exc:  # PoolTimeout, OperationalError
        pool.close()
        raise DatabaseError(f"cannot connect to PostgreSQL at {_redact(dsn)}: {exc}") from exc
    return pool


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The database's schema version; 0 when Overt's tables were never created."""
    row = conn.execute("SELECT to_regclass('overt_schema') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM overt_schema").fetchone()
    return int(row[0]) if row else 0


def check_schema(conn: psycopg.Connection[Any]) -> None:
    """Refuse a database whose schema is not exactly the one this Overt uses."""
    version = schema_version(conn)
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.rollback()
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"the database's schema is version {version}, newer than this version of overt "
            f"supports ({SCHEMA_VERSION}); upgrade overt on this machine"
        )
    if version < SCHEMA_VERSION:
        raise SchemaError(
            f"the database's schema is version {version}; this version of overt needs "
            f"{SCHEMA_VERSION}: run 'overt db migrate' first"
        )


def migrate(dsn: str, progress: Callable[[Migration], None] | None = None) -> tuple[int, int]:
    """Create or upgrade Overt's schema; return (version before, version after)."""
    check_dsn(dsn)
    with connect(dsn) as conn:
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, MIGRATION_LOCK))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS overt_schema ("
                    " version integer PRIMARY KEY,"
                    " description text NOT NULL,"
                    " applied timestamptz NOT NULL DEFAULT now())"
                )
                before = schema_version(conn)
                if before > SCHEMA_VERSION:
                    raise SchemaError(
                        f"the database's schema is version {before}, newer than this version "
                        f"of overt knows ({SCHEMA_VERSION}); nothing was changed"
                    )
                for migration in MIGRATIONS:
                    if migration.version <= before:
                        continue
                    with conn.transaction():
                        conn.execute(migration.sql.encode())
                        conn.execute(
                            "INSERT INTO overt_schema (version, description) VALUES (%s, %s)",
                            (migration.version, migration.description),
                        )
                    if progress is not None:
                        progress(migration)
        except psycopg.Error as exc:
            raise DatabaseError(f"migration failed: {exc}") from exc
    return before, SCHEMA_VERSION

"""The PostgreSQL driver's own surface: `overt log init --database`, `overt db migrate`,
schema versions (a newer schema is refused), the configuration, and front ends
sharing one log in one process.

The schema tests make a database of their own (the run's shared one must keep
its schema); everything else uses the run's throwaway database.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from typer.testing import CliRunner

import drivers
from overt.cli.main import app
from overt.errors import MalformedError
from overt.log.config import LogConfig
from overt.log.log import Log, LogError, init_log
from overt.log.sqlite_store import StoreError
from overt.postgres import SCHEMA_VERSION, SchemaError, migrate, schema_version


def cli(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"overt crashed: {result.exception!r}\n{result.stderr}")
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def fresh_database(pg_database: str) -> Iterator[str]:
    """An empty database of this test's own (no schema), dropped afterwards."""
    admin = psycopg.connect(drivers.ADMIN_DSN, autocommit=True)
    name = f"overt_test_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    p = conninfo_to_dict(drivers.ADMIN_DSN)
    try:
        yield (
            f"postgresql://{p.get('user', 'postgres')}@{p.get('host', '127.0.0.1')}"
            f":{p.get('port', 5432)}/{name}"
        )
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_db_migrate_creates_then_finds_the_schema_up_to_date(fresh_database: str) -> None:
    code, out, err = cli("db", "migrate", fresh_database)
    assert code == 0, err
    assert "applied migration 1: log sequencing state" in out
    assert f"schema upgraded from version 0 to {SCHEMA_VERSION}" in out
    code, out, err = cli("db", "migrate", fresh_database)
    assert code == 0, err
    assert f"schema is up to date (version {SCHEMA_VERSION})" in out
    with psycopg.connect(fresh_database) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM overt_schema ORDER BY 1")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_migrations_from_two_processes_at_once_apply_once(fresh_database: str) -> None:
    results: list[tuple[int, int]] = []
    threads = [
        threading.Thread(target=lambda: results.append(migrate(fresh_database))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [(0, SCHEMA_VERSION)] + [(SCHEMA_VERSION, SCHEMA_VERSION)] * 3


def test_a_newer_schema_is_refused_by_logs_and_by_migrate(
    fresh_database: str, tmp_path: Path
) -> None:
    log_dir = tmp_path / "log"
    init_log(log_dir, LogConfig(origin="newer.example/log", database=fresh_database))
    with Log(log_dir) as log:
        assert log.sequence([b"before the upgrade"]) == [0]
    with psycopg.connect(fresh_database) as conn:
        conn.execute(
            "INSERT INTO overt_schema (version, description) VALUES (%s, 'from the future')",
            (SCHEMA_VERSION + 1,),
        )
    with pytest.raises(SchemaError, match="newer than this version of overt"):
        Log(log_dir)
    code, _, err = cli("log", "serve", log_dir, "--listen", "127.0.0.1:1")
    assert code == 2 and "newer than this version of overt" in err
    code, _, err = cli("db", "migrate", log_dir)
    assert code == 2 and "newer than this version of overt knows" in err
    # The refused log is free again: nothing kept the directory.
    with psycopg.connect(fresh_database) as conn:
        conn.execute("DELETE FROM overt_schema WHERE version > %s", (SCHEMA_VERSION,))
    with Log(log_dir) as log:
        assert log.sequenced_size() == 1


def test_an_older_schema_asks_for_a_migration(fresh_database: str, tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    init_log(log_dir, LogConfig(origin="older.example/log", database=fresh_database))
    with psycopg.connect(fresh_database) as conn:
        conn.execute("DELETE FROM overt_schema WHERE version = %s", (SCHEMA_VERSION,))
        assert schema_version(conn) == SCHEMA_VERSION - 1
    with pytest.raises(SchemaError, match="run 'overt db migrate' first"):
        Log(log_dir)
    code, _, err = cli("db", "migrate", log_dir)
    assert code == 2 and "migration failed" in err  # its tables exist: it was applied by hand


def test_sqlite_state_newer_than_this_overt_is_refused(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    init_log(log_dir, LogConfig(origin="sqlite-newer.example/log"))
    code, out, err = cli("db", "migrate", log_dir)
    assert code == 0 and "schema version 1" in out, err
    with sqlite3.connect(log_dir / "state" / "sequence.db") as db:
        db.execute("UPDATE meta SET value = 2 WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer than this version of overt"):
        Log(log_dir)


def test_init_with_the_acceptance_interface(tmp_path: Path, pg_database: str) -> None:
    """`overt log init DIR --origin O --database URL`, then the other commands on DIR."""
    log_dir = tmp_path / "log"
    code, out, err = cli(
        "log", "init", log_dir, "--origin", "cli.example/pg", "--database", pg_database
    )
    assert code == 0, err
    assert out.startswith("cli.example/pg+")
    assert 'driver = "postgresql"' in (log_dir / "log.toml").read_text()
    assert not (log_dir / "state" / "sequence.db").exists()
    entries = tmp_path / "entries.txt"
    entries.write_text("one\ntwo\none\n")
    code, out, err = cli("log", "add", log_dir, "--lines", entries)
    assert code == 0, err
    assert "3 entries added (2 distinct); checkpoint size 2" in out
    for command in (["status"], ["get", "1"], ["verify"], ["proof", "0"]):
        code, out, err = cli("log", command[0], log_dir, *command[1:])
        assert code == 0, (command, err)
    code, out, _ = cli("log", "get", log_dir, "1")
    assert out == "two"
    assert not (log_dir / "state" / "sequence.db").exists()


def test_init_refuses_an_unreachable_or_malformed_database(tmp_path: Path) -> None:
    code, _, err = cli(
        "log", "init", tmp_path / "a", "--origin", "x.example/a",
        "--database", "postgresql://postgres@127.0.0.1:1/nothing",
    )  # fmt: skip
    assert code == 2 and "cannot connect to PostgreSQL" in err
    assert not (tmp_path / "a").exists()
    code, _, err = cli(
        "log", "init", tmp_path / "b", "--origin", "x.example/b", "--database", "mysql://x"
    )
    assert code == 2 and "not a postgresql:// URL" in err


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"driver": "postgresql"}, "needs a postgresql:// URL"),
        ({"driver": "oracle"}, "driver: must be one of sqlite, postgresql"),
        ({"database": "sqlite:///x.db"}, "needs a postgresql:// URL"),
        ({"database": 5}, "database: must be a postgresql:// URL"),
    ],
)
def test_config_names_a_bad_driver_or_database(settings: dict[str, object], message: str) -> None:
    with pytest.raises(MalformedError, match=message):
        LogConfig(origin="x.example/log", **settings)  # type: ignore[arg-type]
    config = LogConfig(origin="x.example/log", database="postgresql://h/db")
    assert config.driver == "postgresql"
    assert LogConfig.from_toml(config.to_toml()) == config


def test_a_directory_copied_elsewhere_needs_its_database(
    tmp_path: Path, pg_database: str, fresh_database: str
) -> None:
    """The database row is found by the log's key: pointing a log at another database fails
    with a clear message instead of starting a second, empty history."""
    log_dir = tmp_path / "log"
    init_log(log_dir, LogConfig(origin="moved.example/log", database=pg_database))
    migrate(fresh_database)
    toml = log_dir / "log.toml"
    toml.write_text(toml.read_text().replace(pg_database, fresh_database))
    with pytest.raises(StoreError, match="holds no log with key"):
        Log(log_dir)


def test_two_front_ends_in_one_process_share_indexes(tmp_path: Path, pg_database: str) -> None:
    """Two Log objects on one directory (as two front ends): one index per entry, one
    integrator, and the follower sees what the integrator publishes."""
    log_dir = tmp_path / "log"
    init_log(log_dir, LogConfig(origin="two.example/log", database=pg_database))
    with Log(log_dir) as a, Log(log_dir) as b:
        assert a.sequence([b"x", b"y"]) == [0, 1]
        assert b.sequence([b"y", b"z", b"x"]) == [1, 2, 0]
        assert a.integrate().size == 3 and a.integrating
        assert b.integrate().size == 3 and not b.integrating  # follows the file
        assert b.entry(2) == b"z"
        # Through the follower: sequenced, then it waits for a's publication.
        threading.Timer(0.3, a.integrate).start()
        indexes, cp = b.add([b"w", b"x"])
        assert indexes == [3, 0] and cp.size == 4
        assert b.checkpoint == a.checkpoint
    with pytest.raises(LogError, match="in use"), drivers.log_held_elsewhere(log_dir):
        Log(log_dir)

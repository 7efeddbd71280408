"""Shared fixtures: the public test vectors in ../shared/testvectors.

The vectors live next to the project, not inside it, and are read through a
path relative to the project root. If they are missing the vector tests *fail*
(a skipped conformance suite looks like a passing one).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import drivers

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TESTVECTORS = PROJECT_ROOT.parent / "shared" / "testvectors"
MERKLE_KINDS = ("inclusion", "consistency")


def _require_vectors() -> Path:
    if not TESTVECTORS.is_dir():
        pytest.fail(
            f"test vectors not found at {TESTVECTORS} (expected ../shared/testvectors "
            "relative to the project root)",
            pytrace=False,
        )
    return TESTVECTORS


@pytest.fixture(scope="session")
def testvectors() -> Path:
    """The test-vector directory; fails the test if it is missing."""
    return _require_vectors()


@pytest.fixture(scope="session")
def note_vectors(testvectors: Path) -> dict[str, Any]:
    path = testvectors / "note" / "vectors.json"
    if not path.is_file():
        pytest.fail(f"missing {path}", pytrace=False)
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def merkle_vector_files(kind: str) -> list[Path]:
    root = TESTVECTORS / "merkle" / kind
    return sorted(root.rglob("*.json")) if root.is_dir() else []


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `<kind>_vector_file` with every Merkle vector file, one test id each.

    With no files (vectors missing) the test still gets one parameter, None,
    so it runs and fails instead of being skipped for an empty parameter set.
    """
    for kind in MERKLE_KINDS:
        name = f"{kind}_vector_file"
        if name not in metafunc.fixturenames:
            continue
        files = merkle_vector_files(kind)
        if files:
            base = TESTVECTORS / "merkle" / kind
            ids = [f.relative_to(base).as_posix() for f in files]
            metafunc.parametrize(name, files, ids=ids)
        else:
            metafunc.parametrize(name, [None], ids=["vectors-missing"])


# --- the storage drivers (see drivers.py) -------------------------------------


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test run (per xdist worker), with
    Overt's schema, dropped at the end. Fails, never skips, if the server is down."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from overt.postgres import migrate

    try:
        admin = psycopg.connect(drivers.ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {drivers.ADMIN_DSN} ({exc}); the PostgreSQL "
            "driver's tests need it (.ci/run starts it; or set OVERT_TEST_POSTGRES)",
            pytrace=False,
        )
    name = f"overt_test_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(drivers.ADMIN_DSN)
    dsn = (
        f"postgresql://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}"
        f":{params.get('port', 5432)}/{name}"
    )
    try:
        migrate(dsn)
        yield dsn
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session", params=drivers.DRIVERS)
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    """The driver under test: "" (SQLite) or the DSN of the throwaway PostgreSQL database."""
    dsn = "" if request.param == "sqlite" else str(request.getfixturevalue("pg_database"))
    drivers.DATABASE = dsn
    try:
        yield dsn
    finally:
        drivers.DATABASE = ""

"""The storage drivers the log and vault tests run against.

Test modules that create logs or vaults mark themselves with
``pytestmark = pytest.mark.usefixtures("database")``: each of their tests then
runs once per driver, and `DATABASE` holds the driver's database while it
runs: "" for the embedded SQLite driver, or the DSN of this test run's
throwaway PostgreSQL database (made by the `pg_database` fixture in conftest).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DRIVERS = ("sqlite", "postgresql")

# Where the tests find a PostgreSQL server to make their throwaway database in
# (.ci/run starts the machine's server; trust authentication, user postgres).
ADMIN_DSN = os.environ.get("OVERT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")

DATABASE = ""


def postgres() -> bool:
    return bool(DATABASE)


@contextmanager
def log_held_elsewhere(log_dir: Path) -> Iterator[None]:
    """Make a log unavailable to the code under test, as another process holding it alone
    would: its directory lock, taken exclusively (what an embedded log's writer, or
    `overt log set-witnesses`, does). Works the same with either driver."""
    from overt.log.log import LogPaths, _take_lock

    fd = _take_lock(LogPaths(log_dir))
    try:
        yield
    finally:
        os.close(fd)

"""`overt db`: the schema of the databases Overt keeps its state in."""

from __future__ import annotations

from pathlib import Path

import typer

from overt.cli.common import fail, handle_errors, out

app = typer.Typer(
    help="Create or upgrade the schema of Overt's PostgreSQL database (or a log's SQLite state).",
    no_args_is_help=True,
)


@app.command()
@handle_errors
def migrate(
    target: str = typer.Argument(
        ...,
        help="A PostgreSQL URL (postgresql://...), or a log directory (its configured "
        "database, or its SQLite state).",
    ),
) -> None:
    """Create Overt's tables, or apply the migrations a newer overt needs.

    Safe to run again, and from several machines at once (an advisory lock
    serialises them). Refuses a database whose schema is newer than this
    version of overt knows. Upgrade every front end's overt before migrating:
    front ends refuse to start against a schema they do not know.
    """
    from overt.postgres import SCHEMA_VERSION, check_dsn, migrate

    dsn = target
    if not target.startswith(("postgresql://", "postgres://")):
        from overt.log.config import load_config
        from overt.log.log import LogPaths

        paths = LogPaths(Path(target))
        if not paths.config.is_file():
            fail(f"{target}: neither a postgresql:// URL nor a log directory (no log.toml)")
        config = load_config(paths.config)
        if not config.database:
            _migrate_sqlite(paths.root)
            return
        dsn = config.database
    check_dsn(dsn)
    before, after = migrate(
        dsn, lambda m: out.print(f"applied migration {m.version}: {m.description}")
    )
    if before == after:
        out.print(f"schema is up to date (version {SCHEMA_VERSION})")
    else:
        out.print(f"schema upgraded from version {before} to {after}")


def _migrate_sqlite(root: Path) -> None:
    from overt.log.log import migrate_sqlite_state

    version = migrate_sqlite_state(root)
    out.print(f"{root}: SQLite state is up to date (schema version {version})")

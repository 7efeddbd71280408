"""Crash-safe state: every file Overt publishes, and the SQLite databases it keeps.

Every file a log publishes is written to a temporary name in the same
directory, fsynced, renamed over the final name and the directory fsynced, so a
reader (or a static web server) sees either the old file or the complete new
one, never a torn write, and a crash never leaves a published file half
written.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sqlite3
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes) -> None:
    """Write via a temporary name and rename, without an fsync of its own.

    For bulk writes (tiles) that are made durable together by one
    `sync_filesystem` before anything refers to them.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, path)


_libc: ctypes.CDLL | None = None


def sync_filesystem(path: Path) -> None:
    """Flush every pending write on the file system holding `path` (Linux syncfs).

    One syncfs after writing many tiles costs about as much as one fsync,
    where an fsync per tile would cost thousands. Falls back to sync().
    """
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    syncfs = getattr(_libc, "syncfs", None)
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs failed: {os.strerror(err)}", str(path))
    finally:
        os.close(fd)


def open_database(
    path: Path, schema: str, journal: str = "WAL", page_size: int | None = None
) -> sqlite3.Connection:
    """Open (or create) a SQLite state database for durable use.

    Autocommit (callers open their own transactions), usable from several
    threads behind the caller's lock, every commit synced (``synchronous=FULL``),
    and in WAL mode unless the caller needs a rollback journal (the vault's
    keyring, where old pages must not linger). Raises sqlite3.DatabaseError.
    """
    fresh = not path.exists()
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    if fresh and page_size is not None:
        db.execute(f"PRAGMA page_size={page_size}")
    mode = db.execute(f"PRAGMA journal_mode={journal}").fetchone()[0]
    if str(mode).upper() != journal.upper():
        db.close()
        raise sqlite3.DatabaseError(f"{path}: cannot switch SQLite to {journal} journal mode")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema)
    return db

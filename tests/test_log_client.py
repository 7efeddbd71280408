"""The verifying tlog-tiles client and `overt log verify` against real and forged logs.

Logs are written with the `Log` API, read back through a directory fetcher and
through a plain static web server (`python -m http.server`), then damaged in
every way a hostile server or a broken disk could damage them.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import drivers
from overt.crypto.keys import Ed25519Signer, Ed25519Verifier, ed25519_verifier
from overt.errors import MalformedError, OvertError, VerificationError
from overt.log.config import LogConfig
from overt.log.fsck import verify_log
from overt.log.log import Log, init_log
from overt.log.remote import (
    FetchError,
    FileMemory,
    directory_fetcher,
    http_fetcher,
    open_source,
)
from overt.tlog.checkpoint import open_checkpoint
from overt.tlog.client import DictMemory, LogClient
from overt.tlog.hashing import leaf_hash
from overt.tlog.merkle import MemoryTree, verify_inclusion
from overt.tlog.tiles import TILE_WIDTH, Tile, entry_bundle_tiles, tiles_for_size

ORIGIN = "example.com/overt/client-test"
N = 300  # one full level-0 tile, a partial one, and a partial level-1 tile
ROUNDS = ((0, 1), (1, 5), (5, 256), (256, N))

Fetch = Callable[[str], bytes]

# Each test runs on both storage drivers (tests/drivers.py).
pytestmark = pytest.mark.usefixtures("database")


def entry_bytes(i: int, tag: bytes = b"") -> bytes:
    return tag + b"release %d" % i


def verifier_of(log_dir: Path) -> Ed25519Verifier:
    return ed25519_verifier((log_dir / "log.vkey").read_text(encoding="utf-8").strip())


@dataclass
class BuiltLog:
    dir: Path
    entries: list[bytes]
    checkpoints: dict[int, bytes]  # signed checkpoint published at each size

    @property
    def tiles(self) -> Path:
        return self.dir / "tiles"

    @property
    def verifier(self) -> Ed25519Verifier:
        return verifier_of(self.dir)

    def tree(self) -> MemoryTree:
        tree = MemoryTree()
        tree.extend(self.entries)
        return tree


def build_log(
    root: Path, entries: list[bytes], rounds: tuple[tuple[int, int], ...] | None = None
) -> BuiltLog:
    init_log(root, LogConfig(origin=ORIGIN, database=drivers.DATABASE))
    built = BuiltLog(root, [], {0: (root / "tiles" / "checkpoint").read_bytes()})
    grow(built, entries, rounds)
    return built


def grow(
    built: BuiltLog, entries: list[bytes], rounds: tuple[tuple[int, int], ...] | None = None
) -> None:
    rounds = rounds or ((0, len(entries)),)
    with Log(built.dir) as log:
        for start, end in rounds:
            if end > start:
                log.add(entries[start:end])
                built.checkpoints[log.checkpoint.size] = log.signed_checkpoint()
    built.entries.extend(entries)


def same_key_log(original: BuiltLog, root: Path) -> BuiltLog:
    """A second, empty log under the same key and origin as `original`.

    Its own key is replaced by the original's, and its empty checkpoint by
    the original's empty checkpoint (the empty tree is the same for both).
    It keeps its state in SQLite whatever the driver under test: a log that
    forks from another is a separate installation, not a second front end.
    """
    init_log(root, LogConfig(origin=ORIGIN))
    (root / "secrets" / "log.key").write_bytes((original.dir / "secrets" / "log.key").read_bytes())
    (root / "log.vkey").write_bytes((original.dir / "log.vkey").read_bytes())
    (root / "tiles" / "checkpoint").write_bytes(original.checkpoints[0])
    return BuiltLog(root, [], {0: original.checkpoints[0]})


def memory_fetcher(files: dict[str, bytes]) -> Fetch:
    def fetch(path: str) -> bytes:
        try:
            return files[path]
        except KeyError as exc:
            raise FetchError(f"{path}: not found") from exc

    return fetch


def load_files(tiles: Path) -> dict[str, bytes]:
    return {
        p.relative_to(tiles).as_posix(): p.read_bytes()
        for p in tiles.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def current_tree_files(size: int) -> list[str]:
    """Every hash tile and entry bundle of a tree of `size` (what fsck must check)."""
    tiles = tiles_for_size(size)
    bundles = [Tile(0, t.index, t.width, entries=True) for t in tiles if t.level == 0]
    return [t.path() for t in tiles + bundles]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, database: str) -> BuiltLog:
    root = tmp_path_factory.mktemp("client") / "log"
    return build_log(root, [entry_bytes(i) for i in range(N)], ROUNDS)


# --- a static web server ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def static_server(directory: Path) -> Iterator[str]:
    """`python -m http.server` on a free 127.0.0.1 port serving `directory`."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, "http.server exited"
            try:
                if httpx.get(base + "checkpoint", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "http.server did not start"
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def fetcher_for(kind: str, tiles: Path) -> Iterator[Fetch]:
    if kind == "dir":
        yield directory_fetcher(tiles)
        return
    with static_server(tiles) as base, httpx.Client(timeout=10) as http:
        yield http_fetcher(base, http)


# --- reading a good log ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dir", "http"])
def test_client_reads_and_verifies(built: BuiltLog, kind: str) -> None:
    tree = built.tree()
    with fetcher_for(kind, built.tiles) as fetch:
        client = LogClient(fetch, log_key=built.verifier)
        cp = client.update()
        assert cp.origin == ORIGIN
        assert cp.size == N
        assert cp.root_hash == tree.root()
        assert list(client.entries()) == list(enumerate(built.entries))
        assert list(client.entries(250, 260)) == [(i, built.entries[i]) for i in range(250, 260)]
        assert list(client.entries(N, N)) == []
        for i in (0, 1, 4, 255, 256, N - 1):
            assert client.entry(i) == built.entries[i]
            proof = client.inclusion_proof(i)
            verify_inclusion(leaf_hash(built.entries[i]), i, N, proof, cp.root_hash)
            client.verify_entry(built.entries[i], i)
            with pytest.raises(VerificationError):
                client.verify_entry(built.entries[i] + b"!", i)
            with pytest.raises(VerificationError):
                client.verify_entry(built.entries[i], (i + 1) % N)
        with pytest.raises(MalformedError):
            list(client.entries(0, N + 1))
        with pytest.raises(MalformedError):
            client.entry(N)
        # Updating again at the same size is fine.
        assert client.update() == cp


def test_client_follows_a_growing_log_over_http(tmp_path: Path) -> None:
    log = build_log(tmp_path / "log", [entry_bytes(i) for i in range(10)])
    memory = DictMemory()
    with static_server(log.tiles) as base, httpx.Client(timeout=10) as http:
        fetch = http_fetcher(base, http)
        client = LogClient(fetch, log_key=log.verifier, memory=memory)
        assert client.update().size == 10
        grow(log, [entry_bytes(i) for i in range(10, 270)], ((0, 100), (100, 260)))
        later = LogClient(fetch, log_key=log.verifier, memory=memory)
        assert later.update().size == 270  # consistent with 10, verified
        assert list(later.entries(5, 15)) == [(i, log.entries[i]) for i in range(5, 15)]
        with pytest.raises(FetchError):
            fetch("tile/0/x999/000")


def test_fetchers_refuse_paths_outside_tlog_tiles(built: BuiltLog) -> None:
    fetch = directory_fetcher(built.tiles)
    for path in ("../log.toml", "../secrets/write-token", "tile/0/../../log.vkey", "log.vkey"):
        with pytest.raises(MalformedError):
            fetch(path)


# --- forged tiles and bundles ---------------------------------------------------------------


def _forged_copy(built: BuiltLog, tmp_path: Path, path: str, bit: int) -> Path:
    tiles = tmp_path / "forged-tiles"
    shutil.copytree(built.tiles, tiles)
    target = tiles / path
    target.write_bytes(flip(target.read_bytes(), bit))
    return tiles


@pytest.mark.parametrize(
    ("path", "bit"),
    [
        ("tile/0/000", 0),
        ("tile/0/000", 8 * 32 * 100 + 3),
        ("tile/0/000", 8 * 8192 - 1),
        ("tile/0/001.p/44", 7),
        ("tile/0/001.p/44", 8 * 44 * 32 - 1),
        ("tile/1/000.p/1", 100),
    ],
)
def test_forged_tile_is_detected_before_any_entry(
    built: BuiltLog, tmp_path: Path, path: str, bit: int
) -> None:
    tiles = _forged_copy(built, tmp_path, path, bit)
    client = LogClient(directory_fetcher(tiles), log_key=built.verifier)
    assert client.update().size == N  # the checkpoint itself is genuine
    returned = []
    with pytest.raises(VerificationError):
        for item in client.entries():
            returned.append(item)
    assert returned == []
    fresh = LogClient(directory_fetcher(tiles), log_key=built.verifier)
    with pytest.raises(VerificationError):
        fresh.inclusion_proof(0)
    fresh = LogClient(directory_fetcher(tiles), log_key=built.verifier)
    with pytest.raises(VerificationError):
        fresh.verify_entry(built.entries[0], 0)


def test_every_bit_of_the_edge_and_first_tiles_is_covered(built: BuiltLog) -> None:
    """Flip bits all over the hash tiles: reading entries must always fail verification."""
    files = load_files(built.tiles)
    for path in ("tile/0/000", "tile/0/001.p/44", "tile/1/000.p/1"):
        bits = len(files[path]) * 8
        for bit in range(0, bits, max(1, bits // 97)):
            forged = dict(files)
            forged[path] = flip(files[path], bit)
            client = LogClient(memory_fetcher(forged), log_key=built.verifier)
            with pytest.raises(VerificationError):
                next(client.entries())


def test_forged_entry_bundle_is_detected(built: BuiltLog, tmp_path: Path) -> None:
    # Flip a bit inside the data of entry 3 (not in a length prefix).
    offset = sum(2 + len(e) for e in built.entries[:3]) + 2 + 1
    tiles = _forged_copy(built, tmp_path, "tile/entries/000", offset * 8 + 2)
    client = LogClient(directory_fetcher(tiles), log_key=built.verifier)
    returned = []
    with pytest.raises(VerificationError, match="entry 3"):
        for item in client.entries():
            returned.append(item)
    assert returned == []
    # Entries of the other bundle are unaffected.
    assert list(client.entries(256, N)) == [(i, built.entries[i]) for i in range(256, N)]


def test_every_byte_of_an_entry_bundle_is_covered(built: BuiltLog) -> None:
    files = load_files(built.tiles)
    for path, first in (("tile/entries/000", 0), ("tile/entries/001.p/44", 256)):
        data = files[path]
        prefixes = set()
        pos = 0
        for e in built.entries[first : first + TILE_WIDTH]:
            prefixes.update((pos, pos + 1))
            pos += 2 + len(e)
        assert pos == len(data)
        for byte in range(0, len(data), 3):
            forged = dict(files)
            forged[path] = flip(data, byte * 8 + byte % 8)
            client = LogClient(memory_fetcher(forged), log_key=built.verifier)
            expected = (
                (VerificationError, MalformedError) if byte in prefixes else VerificationError
            )
            with pytest.raises(expected):
                list(client.entries(first, min(first + TILE_WIDTH, N)))


@pytest.mark.parametrize("path", ["tile/0/001.p/44", "tile/1/000.p/1"])
def test_partial_tile_not_hashing_to_the_root_is_detected(
    built: BuiltLog, tmp_path: Path, path: str
) -> None:
    """A well-formed partial tile from another tree (right length, wrong hashes)."""
    other = build_log(tmp_path / "other", [entry_bytes(i, b"other ") for i in range(N)])
    tiles = tmp_path / "tiles"
    shutil.copytree(built.tiles, tiles)
    (tiles / path).write_bytes((other.tiles / path).read_bytes())
    client = LogClient(directory_fetcher(tiles), log_key=built.verifier)
    with pytest.raises(VerificationError, match="root"):
        next(client.entries())
    client = LogClient(directory_fetcher(tiles), log_key=built.verifier)
    with pytest.raises(VerificationError):
        client.inclusion_proof(N - 1)


@pytest.mark.parametrize("path", ["tile/0/000", "tile/0/001.p/44", "tile/entries/000"])
def test_truncated_or_missing_tiles_are_refused(built: BuiltLog, path: str) -> None:
    files = load_files(built.tiles)
    for forged_data in (files[path][:-1], files[path] + b"\x00", b""):
        forged = {**files, path: forged_data}
        client = LogClient(memory_fetcher(forged), log_key=built.verifier)
        with pytest.raises((VerificationError, MalformedError)):
            list(client.entries())
    missing = {k: v for k, v in files.items() if k != path}
    client = LogClient(memory_fetcher(missing), log_key=built.verifier)
    with pytest.raises(OvertError):
        list(client.entries())


# --- checkpoints: keys, memory, forks ------------------------------------------------------


def test_checkpoint_signed_by_another_key_is_refused(built: BuiltLog, tmp_path: Path) -> None:
    impostor = build_log(tmp_path / "impostor", built.entries)  # same origin, same entries
    assert impostor.tree().root() == built.tree().root()
    client = LogClient(directory_fetcher(impostor.tiles), log_key=built.verifier)
    with pytest.raises(VerificationError):
        client.update()
    with pytest.raises(VerificationError):
        list(client.entries())


def test_tampered_checkpoint_text_is_refused(built: BuiltLog) -> None:
    files = load_files(built.tiles)
    signed = files["checkpoint"].decode()
    for old, new in ((f"\n{N}\n", f"\n{N - 1}\n"), (ORIGIN, ORIGIN + "x")):
        forged = {**files, "checkpoint": signed.replace(old, new, 1).encode()}
        client = LogClient(memory_fetcher(forged), log_key=built.verifier)
        with pytest.raises((VerificationError, MalformedError)):
            client.update()


def test_checkpoint_going_backwards_is_refused(built: BuiltLog, tmp_path: Path) -> None:
    tiles = tmp_path / "tiles"
    shutil.copytree(built.tiles, tiles)
    state = tmp_path / "state"
    fetch = directory_fetcher(tiles)
    client = LogClient(fetch, log_key=built.verifier, memory=FileMemory(state))
    assert client.update().size == N
    # The server restores an older (genuinely signed) checkpoint.
    (tiles / "checkpoint").write_bytes(built.checkpoints[256])
    with pytest.raises(VerificationError, match="backwards"):
        client.update()
    # The refusal survives the process: a new client with the same memory file.
    again = LogClient(fetch, log_key=built.verifier, memory=FileMemory(state))
    with pytest.raises(VerificationError, match="backwards"):
        again.update()
    # A client without that memory accepts the old checkpoint (it cannot know).
    assert LogClient(fetch, log_key=built.verifier).update().size == 256


def test_older_checkpoints_are_consistent_with_the_newest(built: BuiltLog) -> None:
    fetch = directory_fetcher(built.tiles)
    for size, signed in sorted(built.checkpoints.items()):
        memory = DictMemory()
        memory.store(ORIGIN, signed.decode())
        client = LogClient(fetch, log_key=built.verifier, memory=memory)
        assert client.update().size == N, size


@pytest.fixture()
def twins(tmp_path: Path) -> tuple[BuiltLog, BuiltLog]:
    """Two logs under one key: `a` with 20 entries, `b` empty so far."""
    a = build_log(tmp_path / "a", [entry_bytes(i) for i in range(20)])
    b = same_key_log(a, tmp_path / "b")
    return a, b


class Switch:
    """A fetcher whose server can be swapped, as a hostile mirror would."""

    def __init__(self, tiles: Path) -> None:
        self.fetch = directory_fetcher(tiles)

    def __call__(self, path: str) -> bytes:
        return self.fetch(path)


def test_same_size_different_tree_is_a_fork(twins: tuple[BuiltLog, BuiltLog]) -> None:
    a, b = twins
    grow(b, [entry_bytes(i, b"evil ") for i in range(20)])
    assert open_checkpoint(b.checkpoints[20], a.verifier).checkpoint.size == 20  # same key
    server = Switch(a.tiles)
    client = LogClient(server, log_key=a.verifier)
    assert client.update().size == 20
    server.fetch = directory_fetcher(b.tiles)
    with pytest.raises(VerificationError, match="fork"):
        client.update()
    # Still following a: the memory was not overwritten by the refused checkpoint.
    server.fetch = directory_fetcher(a.tiles)
    assert client.update().root_hash == a.tree().root()


@pytest.mark.parametrize("size", [21, 40, 300])
def test_larger_inconsistent_tree_is_refused(twins: tuple[BuiltLog, BuiltLog], size: int) -> None:
    a, b = twins
    # b shares a's first 19 entries but not the 20th, then grows further.
    entries = [*a.entries[:19], entry_bytes(19, b"evil ")]
    entries += [entry_bytes(i) for i in range(20, size)]
    grow(b, entries)
    server = Switch(a.tiles)
    client = LogClient(server, log_key=a.verifier)
    assert client.update().size == 20
    server.fetch = directory_fetcher(b.tiles)
    with pytest.raises(VerificationError, match="inconsistent"):
        client.update()
    with pytest.raises(VerificationError, match="inconsistent"):
        client.update()


def test_larger_consistent_tree_under_the_same_key_is_accepted(
    twins: tuple[BuiltLog, BuiltLog],
) -> None:
    a, b = twins
    grow(b, a.entries + [entry_bytes(i) for i in range(20, 30)])
    server = Switch(a.tiles)
    client = LogClient(server, log_key=a.verifier)
    assert client.update().size == 20
    server.fetch = directory_fetcher(b.tiles)
    assert client.update().size == 30


# --- overt log verify (fsck) ----------------------------------------------------------------


def test_verify_log_accepts_a_good_log(built: BuiltLog) -> None:
    report = verify_log(directory_fetcher(built.tiles), built.verifier)
    assert report.checkpoint.size == N
    assert report.entries == N
    assert report.tiles_checked >= len(tiles_for_size(N))


def test_verify_log_detects_a_flipped_bit_in_a_copy(built: BuiltLog, tmp_path: Path) -> None:
    tiles = _forged_copy(built, tmp_path, "tile/0/000", 12345)
    with pytest.raises(VerificationError):
        verify_log(directory_fetcher(tiles), built.verifier)
    tiles = tmp_path / "second"
    shutil.copytree(built.tiles, tiles)
    (tiles / "tile/entries/001.p/44").write_bytes(
        flip((tiles / "tile/entries/001.p/44").read_bytes(), 40)
    )
    with pytest.raises(VerificationError):
        verify_log(directory_fetcher(tiles), built.verifier)


@pytest.mark.parametrize("path", current_tree_files(N))
def test_verify_log_detects_a_flipped_bit_in_any_tile_or_bundle(built: BuiltLog, path: str) -> None:
    files = load_files(built.tiles)
    data = files[path]
    bits = len(data) * 8
    for bit in sorted({0, 1, 9, bits // 3, bits // 2 + 5, bits - 8, bits - 1}):
        forged = {**files, path: flip(data, bit)}
        with pytest.raises(VerificationError):
            verify_log(memory_fetcher(forged), built.verifier)


@pytest.mark.parametrize("path", current_tree_files(N))
def test_verify_log_detects_a_missing_tile(built: BuiltLog, path: str) -> None:
    files = load_files(built.tiles)
    del files[path]
    with pytest.raises(VerificationError, match=r"not found|missing"):
        verify_log(memory_fetcher(files), built.verifier)


def test_verify_log_detects_a_missing_tile_on_disk(built: BuiltLog, tmp_path: Path) -> None:
    tiles = tmp_path / "tiles"
    shutil.copytree(built.tiles, tiles)
    (tiles / "tile/1/000.p/1").unlink()
    with pytest.raises(VerificationError):
        verify_log(directory_fetcher(tiles), built.verifier)


def test_verify_log_at_an_older_checkpoint_and_with_a_foreign_key(built: BuiltLog) -> None:
    files = load_files(built.tiles)
    # A genuine older checkpoint over the current tiles describes a valid prefix.
    files["checkpoint"] = built.checkpoints[256]
    report = verify_log(memory_fetcher(files), built.verifier)
    assert report.checkpoint.size == 256
    foreign = ed25519_verifier(Ed25519Signer.generate(ORIGIN).verifier_key())
    with pytest.raises(VerificationError):
        verify_log(directory_fetcher(built.tiles), foreign)


def test_verify_log_detects_a_checkpoint_over_another_tree(
    twins: tuple[BuiltLog, BuiltLog],
) -> None:
    a, b = twins
    grow(b, [entry_bytes(i, b"evil ") for i in range(20)])
    files = load_files(a.tiles)
    files["checkpoint"] = b.checkpoints[20]  # same key and size, another tree
    with pytest.raises(VerificationError, match="root"):
        verify_log(memory_fetcher(files), a.verifier)


def test_verify_log_checks_older_partial_tiles_it_serves(built: BuiltLog) -> None:
    """Partial tiles kept for clients at older checkpoints are served too.

    fsck promises to find "anything a reader could be served"; a client that
    accepted the checkpoint of size 5 reads tile/0/000.p/5. A URL cannot be
    listed, so the caller names the older partial tiles it knows of.
    """
    files = load_files(built.tiles)
    partials = sorted(p for p in files if ".p/" in p)
    stale = [p for p in partials if p not in current_tree_files(N)]
    assert "tile/0/000.p/5" in stale
    assert "tile/entries/000.p/1" in stale
    report = verify_log(memory_fetcher(files), built.verifier, older_partials=partials)
    assert report.tiles_checked >= len(tiles_for_size(N)) + len(stale)
    undetected = []
    for path in stale:
        forged = {**files, path: flip(files[path], 3)}
        # A reader at that older size is served the damaged tile...
        older = Tile.parse_path(path)
        size = older.width if older.level == 0 else older.width * TILE_WIDTH
        at_size = {**forged, "checkpoint": built.checkpoints[size]}
        with pytest.raises((VerificationError, MalformedError)):
            list(LogClient(memory_fetcher(at_size), log_key=built.verifier).entries())
        # ...so verifying the log should find it.
        try:
            verify_log(memory_fetcher(forged), built.verifier, older_partials=partials)
        except VerificationError:
            continue
        undetected.append(path)
    assert undetected == [], f"verify_log accepts the log with a flipped bit in {undetected}"


def test_verify_log_finds_damaged_older_partials_in_a_directory(
    built: BuiltLog, tmp_path: Path
) -> None:
    tiles = _forged_copy(built, tmp_path, "tile/0/000.p/5", 17)
    source = open_source(str(tiles))
    assert "tile/0/000.p/5" in source.partial_tiles()
    verify_log(source.fetch, built.verifier)  # not listed: the current tree is fine
    with pytest.raises(VerificationError, match=r"000\.p/5"):
        verify_log(source.fetch, built.verifier, older_partials=source.partial_tiles())


def test_entry_bundle_paths_match_the_tiles() -> None:
    assert [t.path() for t in entry_bundle_tiles(0, N)] == [
        "tile/entries/000",
        "tile/entries/001.p/44",
    ]

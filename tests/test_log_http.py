"""The log's HTTP API as a client sees it: adds, auth, limits, reads, proofs, tiles, back-pressure.

Every app here runs with its lifespan (TestClient as a context manager), so the
sequencer and integrator threads are live. A response hook fails the test on
any HTTP 500: a client must never be able to make the server crash.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import drivers
from overt.crypto.keys import Ed25519Verifier, ed25519_verifier
from overt.log.config import LogConfig
from overt.log.log import Log, init_log
from overt.tlog.checkpoint import Checkpoint, open_checkpoint
from overt.tlog.hashing import leaf_hash
from overt.tlog.merkle import MemoryTree, verify_consistency, verify_inclusion
from overt.web.app import _lifespan, create_log_app
from overt.web.errors import install_error_handlers
from overt.web.log_api import MAX_BATCH, LogService, log_router

ORIGIN = "example.com/overt/http-test"

# Each test runs on both storage drivers (tests/drivers.py).
pytestmark = pytest.mark.usefixtures("database")


# --- helpers ---------------------------------------------------------------


def make_log(root: Path, **settings: Any) -> Path:
    settings.setdefault("integration_period_ms", 50)
    init_log(root, LogConfig(origin=ORIGIN, database=drivers.DATABASE, **settings))
    return root


def token_of(log_dir: Path) -> str:
    return (log_dir / "secrets" / "write-token").read_text(encoding="utf-8").strip()


def verifier_of(log_dir: Path) -> Ed25519Verifier:
    return ed25519_verifier((log_dir / "log.vkey").read_text(encoding="utf-8").strip())


def auth(log_dir: Path) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(log_dir)}"}


def _no_500(response: httpx.Response) -> None:
    if response.status_code == 500:
        response.read()
        raise AssertionError(
            f"HTTP 500 for {response.request.method} {response.request.url}: {response.text}"
        )


def guard(client: TestClient) -> TestClient:
    client.event_hooks["response"].append(_no_500)
    return client


@contextmanager
def serve(log_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_log_app(log_dir), raise_server_exceptions=False) as client:
        yield guard(client)


@contextmanager
def serve_service(log_dir: Path) -> Iterator[tuple[TestClient, LogService]]:
    """Like `serve`, but keeping a handle on the LogService (sequencer, log)."""
    service = LogService(Log(log_dir))
    app = FastAPI(lifespan=_lifespan([service]))
    install_error_handlers(app)
    app.include_router(log_router(service))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield guard(client), service


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def error_of(response: httpx.Response) -> str:
    doc = response.json()
    assert isinstance(doc, dict), doc
    assert isinstance(doc.get("error"), str) and doc["error"], doc
    return str(doc["error"])


def checkpoint_of(client: TestClient, log_dir: Path) -> Checkpoint:
    resp = client.get("/checkpoint")
    assert resp.status_code == 200
    return open_checkpoint(resp.content, verifier_of(log_dir)).checkpoint


def max_age(cache_control: str) -> int:
    m = re.search(r"max-age=(\d+)", cache_control)
    assert m is not None, cache_control
    return int(m.group(1))


# --- a populated log shared by the read-only tests ---------------------------

N_ENTRIES = 300  # a full level-0 tile, a partial one, and a level-1 tile


class Populated:
    def __init__(self, client: TestClient, log_dir: Path, entries: list[bytes]) -> None:
        self.client = client
        self.dir = log_dir
        self.entries = entries
        self.tree = MemoryTree()
        self.tree.extend(entries)
        # Signed checkpoints seen while the log grew, by size.
        self.snapshots: dict[int, str] = {}


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[Populated]:
    log_dir = make_log(tmp_path_factory.mktemp("populated") / "log")
    entries = [b"entry %d" % i for i in range(N_ENTRIES)]
    with serve(log_dir) as client:
        p = Populated(client, log_dir, entries)
        h = auth(log_dir)
        for i in range(5):
            resp = client.post("/add?wait=true", content=entries[i], headers=h)
            assert resp.status_code == 200, resp.text
            assert resp.json()["index"] == i
            text = client.get("/checkpoint").text
            p.snapshots[open_checkpoint(text, verifier_of(log_dir)).checkpoint.size] = text
        resp = client.post(
            "/add-batch?wait=true",
            json={"entries": [b64(e) for e in entries[5:]]},
            headers=h,
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["indexes"] == list(range(5, N_ENTRIES))
        assert resp.json()["size"] == N_ENTRIES
        text = client.get("/checkpoint").text
        p.snapshots[N_ENTRIES] = text
        yield p


# --- adding ------------------------------------------------------------------


def test_add_returns_index_and_the_same_entry_keeps_it(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path / "log")
    with serve(log_dir) as client:
        h = auth(log_dir)
        first = client.post("/add", content=b"alpha", headers=h)
        assert first.status_code == 200, first.text
        assert first.json() == {"index": 0}
        second = client.post("/add", content=b"beta", headers=h)
        assert second.json() == {"index": 1}
        again = client.post("/add", content=b"alpha", headers=h)
        assert again.status_code == 200
        assert again.json() == {"index": 0}
        # Also once alpha is integrated (dedup must then read the tiles).
        client.post("/add?wait=true", content=b"gamma", headers=h)
        assert client.post("/add", content=b"alpha", headers=h).json() == {"index": 0}
        assert client.post("/add", content=b"beta", headers=h).json() == {"index": 1}
        status = client.get("/status").json()
        assert status["sequenced"] == 3


def test_add_wait_returns_size_and_the_checkpoint_verifies(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path / "log")
    with serve(log_dir) as client:
        h = auth(log_dir)
        for i in range(3):
            resp = client.post("/add?wait=true", content=b"release %d" % i, headers=h)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["index"] == i
            assert isinstance(body["size"], int) and body["size"] >= i + 1
            cp = checkpoint_of(client, log_dir)
            assert cp.origin == ORIGIN
            assert cp.size >= body["size"]
        tree = MemoryTree()
        tree.extend([b"release %d" % i for i in range(3)])
        cp = checkpoint_of(client, log_dir)
        assert cp.size == 3
        assert cp.root_hash == tree.root()
        # A duplicate with wait answers at once with a covering size.
        dup = client.post("/add?wait=true", content=b"release 0", headers=h).json()
        assert dup == {"index": 0, "size": 3}


def test_add_batch_and_wait(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path / "log")
    with serve(log_dir) as client:
        h = auth(log_dir)
        resp = client.post("/add-batch", json={"entries": [b64(b"a"), b64(b"b")]}, headers=h)
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"indexes": [0, 1]}
        resp = client.post(
            "/add-batch?wait=true",
            json={"entries": [b64(b"c"), b64(b"a"), b64(b"")]},
            headers=h,
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["indexes"] == [2, 0, 3]
        assert body["size"] >= 4
        cp = checkpoint_of(client, log_dir)
        assert cp.size == 4
        tree = MemoryTree()
        tree.extend([b"a", b"b", b"c", b""])
        assert cp.root_hash == tree.root()


def test_duplicates_inside_one_batch_get_one_index(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path / "log")
    with serve(log_dir) as client:
        h = auth(log_dir)
        batch = [b"x", b"y", b"x", b"z", b"y", b"x"]
        resp = client.post(
            "/add-batch?wait=true", json={"entries": [b64(e) for e in batch]}, headers=h
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["indexes"] == [0, 1, 0, 2, 1, 0]
        assert resp.json()["size"] == 3
        # A second batch mixing known and new entries.
        resp = client.post(
            "/add-batch", json={"entries": [b64(b"z"), b64(b"w"), b64(b"w")]}, headers=h
        )
        assert resp.json()["indexes"] == [2, 3, 3]
        status = client.get("/status").json()
        assert status["sequenced"] == 4


# --- auth ----------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["/add", "/add-batch"])
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, 401),
        ("Basic dXNlcjpwYXNz", 401),
        ("Bearer", 401),
        ("Bearer ", 401),
        ("Token abc", 401),
        ("Bearer not-the-token", 403),
        ("Bearer {token}x", 403),
        ("{token}", 401),
        ("Basic {token}", 401),
    ],
)
def test_auth_is_required(tmp_path: Path, endpoint: str, header: str | None, expected: int) -> None:
    log_dir = make_log(tmp_path / "log")
    with serve(log_dir) as client:
        headers = (
            {} if header is None else {"Authorization": header.format(token=token_of(log_dir))}
        )
        body = b"entry" if endpoint == "/add" else json.dumps({"entries": [b64(b"e")]}).encode()
        resp = client.post(endpoint, content=body, headers=headers)
        assert resp.status_code == expected, resp.text
        error_of(resp)
        if expected == 401:
            assert resp.headers["www-authenticate"].lower().startswith("bearer")
        assert token_of(log_dir) not in resp.text
        assert client.get("/status").json()["sequenced"] == 0
        # The right token, scheme in any case, works.
        ok = client.post(
            endpoint, content=body, headers={"Authorization": f"bearer {token_of(log_dir)}"}
        )
        assert ok.status_code == 200, ok.text


def test_auth_is_checked_before_the_body_is_read(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path / "log", max_entry_size=100)
    with serve(log_dir) as client:
        resp = client.post("/add", content=b"x" * 1000)
        assert resp.status_code == 401


# --- size limits and Content-Length ---------------------------------------------


def test_oversized_entry_is_413_naming_the_limit(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path / "log", max_entry_size=100)
    with serve(log_dir) as client:
        h = auth(log_dir)
        resp = client.post("/add", content=b"x" * 101, headers=h)
        assert resp.status_code == 413
        assert "100" in error_of(resp)
        resp = client.post("/add", content=b"x" * 10_000, headers=h)
        assert resp.status_code == 413
        assert "100" in error_of(resp)
        ok = client.post("/add", content=b"x" * 100, headers=h)
        assert ok.status_code == 200
        assert ok.json() == {"index": 0}
        # In a batch too, with the offending entry's limit named.
        resp = client.post(
            "/add-batch", json={"entries": [b64(b"fine"), b64(b"y" * 101)]}, headers=h
        )
        assert resp.status_code == 413
        assert "100" in error_of(resp)
        assert client.get("/status").json()["sequenced"] == 1  # nothing of the batch added


@pytest.mark.parametrize(
    ("declared", "body", "expected"),
    [
        ("5", b"x" * 500, {413}),  # says small, sends more than the limit
        ("1000000000000", b"x" * 10, {413}),  # says huge
        (str(10**40), b"x" * 10, {413}),
        ("abc", b"x" * 10, {400}),
        ("-1", b"x" * 10, {400}),
        ("+5", b"x" * 10, {400}),
        ("1e3", b"x" * 10, {400}),
        ("", b"x" * 10, {400}),
        ("3", b"x" * 50, {200, 400}),  # says less than sent, under the limit
        ("80", b"x" * 50, {200, 400}),  # says more than sent, under the limit
    ],
)
def test_content_length_that_lies(
    tmp_path: Path, declared: str, body: bytes, expected: set[int]
) -> None:
    log_dir = make_log(tmp_path / "log", max_entry_size=100)
    with serve(log_dir) as client:
        headers = {**auth(log_dir), "Content-Length": declared}
        resp = client.post("/add", content=body, headers=headers)
        assert resp.status_code in expected, resp.text
        if resp.status_code != 200:
            message = error_of(resp)
            if resp.status_code == 413:
                assert "100" in message
        status = client.get("/status").json()
        assert status["sequenced"] == (1 if resp.status_code == 200 else 0)


# --- /add-batch bodies -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not json", "JSON"),
        (b"", "JSON"),
        (b"\xff\xfe\x00", "JSON"),
        (b'{"entries": ["AA=="]', "JSON"),
        (b"[]", "entries"),
        (b"null", "entries"),
        (b'"entries"', "entries"),
        (b"123", "entries"),
        (b"{}", "entries"),
        (b'{"entries": []}', "entries"),
        (b'{"entries": "AA=="}', "entries"),
        (b'{"entries": {"0": "AA=="}}', "entries"),
        (b'{"entries": null}', "entries"),
        (b'{"Entries": ["AA=="]}', "entries"),
        (b'{"entries": [1]}', "entries[0]"),
        (b'{"entries": [null]}', "entries[0]"),
        (b'{"entries": [["AA=="]]}', "entries[0]"),
        (b'{"entries": ["AA==", "@@@@"]}', "entries[1]"),
        (b'{"entries": ["AA==", "A"]}', "entries[1]"),
        (b'{"entries": ["AA==", "AA"]}', "entries[1]"),
        (b'{"entries": ["AA== "]}', "entries[0]"),
        (b'{"entries": ["\\u00e9AAA"]}', "entries[0]"),
        (b'{"entries": ["AA-_"]}', "entries[0]"),
    ],
)
def test_add_batch_rejects_bad_bodies(tmp_path: Path, body: bytes, needle: str) -> None:
    log_dir = make_log(tmp_path / "log")
    with serve(log_dir) as client:
        resp = client.post("/add-batch", content=body, headers=auth(log_dir))
        assert resp.status_code == 400, resp.text
        assert needle in error_of(resp)
        assert client.get("/status").json()["sequenced"] == 0


def test_add_batch_with_too_many_entries_is_413(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path / "log")
    with serve(log_dir) as client:
        body = {"entries": [b64(b"%d" % i) for i in range(MAX_BATCH + 1)]}
        resp = client.post("/add-batch", json=body, headers=auth(log_dir))
        assert resp.status_code == 413
        assert str(MAX_BATCH) in error_of(resp)
        assert client.get("/status").json()["sequenced"] == 0


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 100_000, id="deeply-nested-array"),
        pytest.param(b'{"entries": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", id="deep-in-entries"),
        pytest.param(b'{"entries": ' + b"1" * 5000 + b"}", id="5000-digit-number"),
        pytest.param(b'{"entries": ["AA=="], "n": ' + b"9" * 5000 + b"}", id="5000-digit-extra"),
    ],
)
def test_add_batch_pathological_json_is_400_not_500(tmp_path: Path, body: bytes) -> None:
    """Regression: these made json.loads raise RecursionError / ValueError, not JSONDecodeError.

    log_api.add_batch used to catch only JSONDecodeError and UnicodeDecodeError,
    so these bodies reached the catch-all handler and the client got HTTP 500.
    """
    log_dir = make_log(tmp_path / "log")
    with serve(log_dir) as client:
        resp = client.post("/add-batch", content=body, headers=auth(log_dir))
        assert resp.status_code == 400
        error_of(resp)


# --- /entry --------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 4, 5, 255, 256, 257, N_ENTRIES - 1])
def test_entry_with_proof_that_verifies(populated: Populated, index: int) -> None:
    resp = populated.client.get(f"/entry/{index}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["index"] == index
    assert body["integrated"] is True
    entry = unb64(body["entry"])
    assert entry == populated.entries[index]
    assert unb64(body["leaf_hash"]) == leaf_hash(entry)
    signed = open_checkpoint(body["checkpoint"], verifier_of(populated.dir)).checkpoint
    assert signed.size == body["size"] == N_ENTRIES
    proof = [unb64(h) for h in body["proof"]]
    verify_inclusion(leaf_hash(entry), index, signed.size, proof, signed.root_hash)


@pytest.mark.parametrize(
    ("path", "expected", "needle"),
    [
        ("/entry/abc", 400, "index"),
        ("/entry/1.5", 400, "index"),
        ("/entry/0x10", 400, "index"),
        ("/entry/%20", 400, "index"),
        ("/entry/-1", 400, "index"),
        ("/entry/-99999999999999999999999", 400, "index"),
        (f"/entry/{N_ENTRIES}", 404, str(N_ENTRIES)),
        ("/entry/99999", 404, ""),
        (f"/entry/{2**64}", 404, ""),
        (f"/entry/{10**40}", 404, ""),
    ],
)
def test_bad_and_unknown_entry_indexes(
    populated: Populated, path: str, expected: int, needle: str
) -> None:
    resp = populated.client.get(path)
    assert resp.status_code == expected, resp.text
    assert needle in error_of(resp)


def test_entry_not_yet_integrated(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path / "log", integration_period_ms=3_600_000)
    with serve_service(log_dir) as (client, service):
        h = auth(log_dir)
        assert client.post("/add", content=b"early", headers=h).json() == {"index": 0}
        body = client.get("/entry/0").json()
        assert body == {
            "index": 0,
            "entry": b64(b"early"),
            "leaf_hash": b64(leaf_hash(b"early")),
            "integrated": False,
        }
        looked = client.get("/lookup/" + leaf_hash(b"early").hex()).json()
        assert looked == {"index": 0, "integrated": False}
        assert client.get("/proof/inclusion?index=0").status_code == 404
        service.log.integrate()
        body = client.get("/entry/0").json()
        assert body["integrated"] is True
        assert client.get("/lookup/" + leaf_hash(b"early").hex()).json()["integrated"] is True


def test_entry_proof_matches_the_checkpoint_returned_with_it(tmp_path: Path) -> None:
    """Regression (race): /entry/N proved one tree size but returned a newer checkpoint.

    `log_api.entry` used to take `cp = log.checkpoint`, build the proof for
    cp.size, then read the *current* signed checkpoint file. If the integrator
    published in between (simulated here deterministically by publishing right
    after the proof is computed), the answer's "checkpoint" was for a larger
    tree than its "size" and "proof", so the proof did not verify against the
    checkpoint it came with.
    """
    log_dir = make_log(tmp_path / "log", integration_period_ms=3_600_000)
    with serve_service(log_dir) as (client, service):
        h = auth(log_dir)
        client.post("/add-batch", json={"entries": [b64(b"a"), b64(b"b"), b64(b"c")]}, headers=h)
        service.log.integrate()
        client.post("/add-batch", json={"entries": [b64(b"d"), b64(b"e")]}, headers=h)
        log = service.log
        original = log.inclusion_proof
        fired: list[bool] = []

        def proof_then_publish(index: int, size: int | None = None) -> list[bytes]:
            proof = original(index, size)
            if not fired:
                fired.append(True)
                log.integrate()  # the integrator thread publishing concurrently
            return proof

        log.inclusion_proof = proof_then_publish  # type: ignore[method-assign]
        body = client.get("/entry/1").json()
        assert fired, "the simulated concurrent publication did not happen"
        signed = open_checkpoint(body["checkpoint"], verifier_of(log_dir)).checkpoint
        proof = [unb64(p) for p in body["proof"]]
        assert signed.size == body["size"], "proof and checkpoint are for different tree sizes"
        verify_inclusion(leaf_hash(b"b"), 1, signed.size, proof, signed.root_hash)


def test_entry_read_during_publication_is_not_500(tmp_path: Path) -> None:
    """Regression (race): an entry read while a checkpoint was being published got HTTP 500.

    `Log.integrate` used to call `store.record_published` (which deletes the
    pending rows below the new size) *before* setting `Log._checkpoint`. A GET
    /entry/N for a just-integrated N arriving in that window saw
    N >= log.checkpoint.size, went to `store.pending_entry(N)`, found nothing
    and `Log.entry` raised LogError -> HTTP 500. The window is reproduced here
    deterministically by issuing the request from inside record_published.
    """
    log_dir = make_log(tmp_path / "log", integration_period_ms=3_600_000)
    with serve_service(log_dir) as (client, service):
        h = auth(log_dir)
        client.post("/add-batch", json={"entries": [b64(b"a"), b64(b"b")]}, headers=h)
        store = service.log._store
        seen: list[httpx.Response] = []

        def read() -> None:
            # a reader arriving before Log._checkpoint is updated
            client.event_hooks["response"].clear()
            seen.append(client.get("/entry/1"))
            guard(client)

        if drivers.postgres():
            # With PostgreSQL the pending rows go when the publication is
            # recorded, under the fence.
            pg = service.log._pg
            assert pg is not None
            publish = pg.publish

            def publish_then_read(base: Any, new: Any, write: Any) -> None:
                publish(base, new, write)
                read()

            pg.publish = publish_then_read  # type: ignore[method-assign]
        else:
            original = store.record_published

            def record_then_read(size: int, root: bytes) -> None:
                original(size, root)
                read()

            store.record_published = record_then_read  # type: ignore[method-assign]
        service.log.integrate()
        assert len(seen) == 1
        resp = seen[0]
        assert resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text}"
        assert unb64(resp.json()["entry"]) == b"b"


# --- /proof/inclusion and /proof/consistency ------------------------------------------


@pytest.mark.parametrize(
    ("index", "size"),
    [(0, None), (299, None), (256, None), (0, 1), (0, 5), (4, 5), (3, 300), (100, 257), (255, 256)],
)
def test_inclusion_proofs_verify(populated: Populated, index: int, size: int | None) -> None:
    query = f"index={index}" + ("" if size is None else f"&size={size}")
    resp = populated.client.get(f"/proof/inclusion?{query}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    tree_size = N_ENTRIES if size is None else size
    assert body["index"] == index
    assert body["size"] == tree_size
    entry = unb64(body["entry"])
    assert entry == populated.entries[index]
    assert unb64(body["leaf_hash"]) == leaf_hash(entry)
    proof = [unb64(h) for h in body["proof"]]
    verify_inclusion(leaf_hash(entry), index, tree_size, proof, populated.tree.root(tree_size))
    if size is None:
        cp = checkpoint_of(populated.client, populated.dir)
        verify_inclusion(leaf_hash(entry), index, cp.size, proof, cp.root_hash)


@pytest.mark.parametrize(
    ("old", "new"),
    [(1, None), (3, 5), (5, 300), (1, 2), (255, 256), (256, 300), (100, 299), (300, 300), (7, 7)],
)
def test_consistency_proofs_verify(populated: Populated, old: int, new: int | None) -> None:
    query = f"old={old}" + ("" if new is None else f"&new={new}")
    resp = populated.client.get(f"/proof/consistency?{query}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    new_size = N_ENTRIES if new is None else new
    assert body["old"] == old
    assert body["new"] == new_size
    proof = [unb64(h) for h in body["proof"]]
    tree = populated.tree
    verify_consistency(old, new_size, tree.root(old), tree.root(new_size), proof)


def test_consistency_between_published_checkpoints(populated: Populated) -> None:
    verifier = verifier_of(populated.dir)
    cps = sorted(
        (open_checkpoint(t, verifier).checkpoint for t in populated.snapshots.values()),
        key=lambda c: c.size,
    )
    assert len(cps) >= 2
    for old in cps:
        for new in cps:
            if not 0 < old.size <= new.size:
                continue
            resp = populated.client.get(f"/proof/consistency?old={old.size}&new={new.size}")
            assert resp.status_code == 200, resp.text
            proof = [unb64(h) for h in resp.json()["proof"]]
            verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)


@pytest.mark.parametrize(
    ("path", "expected", "needle"),
    [
        ("/proof/inclusion", {400}, "index"),
        ("/proof/inclusion?size=5", {400}, "index"),
        ("/proof/inclusion?index=", {400}, "index"),
        ("/proof/inclusion?index=abc", {400}, "index"),
        ("/proof/inclusion?index=-1", {400}, "index"),
        ("/proof/inclusion?index=0&size=0", {400}, "size"),
        ("/proof/inclusion?index=0&size=-3", {400}, "size"),
        ("/proof/inclusion?index=0&size=x", {400}, "size"),
        (f"/proof/inclusion?index=0&size={N_ENTRIES + 1}", {400}, "size"),
        (f"/proof/inclusion?index=0&size={2**70}", {400}, "size"),
        (f"/proof/inclusion?index={N_ENTRIES}", {404}, ""),
        ("/proof/inclusion?index=5&size=5", {404}, ""),
        (f"/proof/inclusion?index={2**70}&size=5", {404}, ""),
        ("/proof/consistency", {400}, "old"),
        ("/proof/consistency?new=5", {400}, "old"),
        ("/proof/consistency?old=x", {400}, "old"),
        ("/proof/consistency?old=-1", {400}, "old"),
        ("/proof/consistency?old=5&new=x", {400}, "new"),
        ("/proof/consistency?old=5&new=-1", {400}, "new"),
        ("/proof/consistency?old=6&new=5", {400}, ""),
        (f"/proof/consistency?old={N_ENTRIES + 1}", {400}, ""),
        (f"/proof/consistency?old=1&new={N_ENTRIES + 1}", {400}, ""),
        (f"/proof/consistency?old={2**70}&new={2**71}", {400}, ""),
    ],
)
def test_bad_proof_parameters(
    populated: Populated, path: str, expected: set[int], needle: str
) -> None:
    resp = populated.client.get(path)
    assert resp.status_code in expected, resp.text
    assert needle in error_of(resp)


def test_proofs_on_an_empty_log(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path / "log")
    with serve(log_dir) as client:
        assert client.get("/proof/inclusion?index=0").status_code == 404
        assert client.get("/proof/inclusion?index=0&size=1").status_code == 400
        resp = client.get("/proof/consistency?old=0&new=0")
        assert resp.status_code == 200
        assert resp.json()["proof"] == []
        assert client.get("/proof/consistency?old=0&new=1").status_code == 400
        assert client.get("/entry/0").status_code == 404


# --- /lookup ------------------------------------------------------------------------------


def test_lookup_by_hex_and_base64url(populated: Populated) -> None:
    for index in (0, 7, 299):
        h = leaf_hash(populated.entries[index])
        for text in (h.hex(), h.hex().upper(), base64.urlsafe_b64encode(h).decode()):
            resp = populated.client.get(f"/lookup/{text}")
            assert resp.status_code == 200, (text, resp.text)
            assert resp.json() == {"index": index, "integrated": True}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (leaf_hash(b"never logged").hex(), 404),
        (base64.urlsafe_b64encode(leaf_hash(b"never logged")).decode(), 404),
        ("zz", 400),
        ("abc", 400),
        ("g" * 64, 400),
        ("00" * 31, 400),
        ("00" * 33, 400),
        (base64.urlsafe_b64encode(b"\x00" * 31).decode(), 400),
        (base64.urlsafe_b64encode(b"\x00" * 33).decode(), 400),
        ("%C3%A9" * 20, 400),
        ("====", 400),
    ],
)
def test_lookup_unknown_and_malformed(populated: Populated, text: str, expected: int) -> None:
    resp = populated.client.get(f"/lookup/{text}")
    assert resp.status_code == expected, resp.text
    message = error_of(resp)
    if expected == 400:
        assert "leaf hash" in message


# --- /status ----------------------------------------------------------------------------------


def test_status_fields(populated: Populated) -> None:
    body = populated.client.get("/status").json()
    cp = checkpoint_of(populated.client, populated.dir)
    assert body["origin"] == ORIGIN
    assert body["size"] == cp.size == N_ENTRIES
    assert unb64(body["root"]) == cp.root_hash == populated.tree.root()
    assert body["sequenced"] == N_ENTRIES
    assert body["pool"] == 0
    assert body["pool_size"] == LogConfig(origin=ORIGIN).pool_size
    assert body["refused"] == 0
    assert body["vkey"] == (populated.dir / "log.vkey").read_text().strip()
    assert body["driver"] == ("postgresql" if drivers.postgres() else "sqlite")
    assert body["integrating"] is True  # the only front end


# --- tiles ------------------------------------------------------------------------------------


def test_checkpoint_content_type_and_caching(populated: Populated) -> None:
    resp = populated.client.get("/checkpoint")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"
    cache = resp.headers["cache-control"]
    assert "immutable" not in cache
    assert "no-cache" in cache or "no-store" in cache or max_age(cache) <= 60
    assert resp.content == (populated.dir / "tiles" / "checkpoint").read_bytes()


@pytest.mark.parametrize(
    ("path", "length", "full"),
    [
        ("tile/0/000", 256 * 32, True),
        ("tile/0/001.p/44", 44 * 32, False),
        ("tile/1/000.p/1", 32, False),
        ("tile/entries/000", None, True),
        ("tile/entries/001.p/44", None, False),
        ("tile/0/000.p/1", 32, False),  # kept for clients at the first checkpoint
    ],
)
def test_good_tile_paths(populated: Populated, path: str, length: int | None, full: bool) -> None:
    resp = populated.client.get("/" + path)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/octet-stream"
    assert resp.content == (populated.dir / "tiles" / path).read_bytes()
    if length is not None:
        assert len(resp.content) == length
    cache = resp.headers["cache-control"]
    if full:
        assert "immutable" in cache
        assert max_age(cache) >= 86400 * 30
    else:
        assert "immutable" not in cache
        assert max_age(cache) <= 60


@pytest.mark.parametrize(
    "path",
    [
        "/tile/0/00",
        "/tile/0/0000",
        "/tile/0/001.p/256",
        "/tile/0/001.p/0",
        "/tile/0/001.p/044",
        "/tile/0/001.p/",
        "/tile/0/001.p",
        "/tile/64/000",
        "/tile/01/000",
        "/tile/-1/000",
        "/tile/0/x000/001",
        "/tile/0/x1/001",
        "/tile/0/001/",
        "/tile/entries/000.p/0",
        "/tile/entries/abc",
        "/tile/0/%00",
        "/tile/0/000%2F..%2F..%2Fcheckpoint",
        "/tile/0/..%2F..%2Fsecrets%2Fwrite-token",
        "/tile/",
        "/tile/0",
        "/tile/0/",
        "/tile/x/000",
    ],
)
def test_malformed_tile_paths_are_400(populated: Populated, path: str) -> None:
    resp = populated.client.get(path)
    assert resp.status_code in (400, 404), resp.text
    if resp.status_code == 404:
        assert path in ("/tile/",), f"{path}: malformed path answered 404, not 400"
    assert token_of(populated.dir) not in resp.text


@pytest.mark.parametrize(
    "path",
    ["/tile/0/002", "/tile/0/005.p/7", "/tile/2/000.p/1", "/tile/entries/009", "/tile/1/x001/000"],
)
def test_missing_tiles_are_404(populated: Populated, path: str) -> None:
    resp = populated.client.get(path)
    assert resp.status_code == 404, resp.text


@pytest.mark.parametrize("groups", [10, 900])
def test_absurdly_large_tile_index_is_not_500(populated: Populated, groups: int) -> None:
    """Regression: a canonical tile path with ~900 index groups (> PATH_MAX) got HTTP 500.

    Tile.parse_path accepted any number of x-groups (an index far beyond any
    tree size up to 2**63), and web/tiles.py `tile` catches only
    FileNotFoundError/NotADirectoryError, so open() raising OSError(ENAMETOOLONG)
    escaped to the catch-all handler.
    """
    path = "/tile/0/x001/" + "x000/" * groups + "000"
    resp = populated.client.get(path)
    assert resp.status_code in (400, 404), resp.status_code
    resp = populated.client.get(path + ".p/5")
    assert resp.status_code in (400, 404), resp.status_code


def test_secrets_are_not_reachable(populated: Populated) -> None:
    token = token_of(populated.dir)
    for path in (
        "/secrets/write-token",
        "/../secrets/write-token",
        "/tile/../secrets/write-token",
        "/tile/0/../../secrets/write-token",
        "/tile/%2e%2e/%2e%2e/secrets/write-token",
        "/log.toml",
        "/state/sequence.db",
    ):
        resp = populated.client.get(path)
        assert resp.status_code in (400, 404), (path, resp.status_code)
        assert token not in resp.text


# --- back-pressure ------------------------------------------------------------------------------


def test_full_pool_is_503_with_retry_after(tmp_path: Path) -> None:
    log_dir = make_log(
        tmp_path / "log", pool_size=5, sequence_linger_ms=60_000, sequence_batch=100_000
    )
    with serve_service(log_dir) as (client, service):
        h = auth(log_dir)
        waiting = service.sequencer.submit_many([b"w%d" % i for i in range(5)])
        assert service.sequencer.pending() == 5
        resp = client.post("/add", content=b"sixth", headers=h)
        assert resp.status_code == 503, resp.text
        assert int(resp.headers["retry-after"]) >= 1
        assert "full" in error_of(resp)
        resp = client.post("/add-batch", json={"entries": [b64(b"seventh")]}, headers=h)
        assert resp.status_code == 503
        assert int(resp.headers["retry-after"]) >= 1
        status = client.get("/status").json()
        assert status["pool"] == 5
        assert status["pool_size"] == 5
        assert status["refused"] == 2
        assert not any(f.done() for f in waiting)
        # Shutting down sequences what is pooled: acknowledged adds are not lost.
        service.sequencer.stop()
        assert sorted(f.result(timeout=10) for f in waiting) == [0, 1, 2, 3, 4]
        resp = client.post("/add", content=b"late", headers=h)
        assert resp.status_code == 503
        assert "retry-after" in resp.headers
    with Log(log_dir) as log:
        assert log.checkpoint.size == 5


def test_full_pool_through_concurrent_http_adds(tmp_path: Path) -> None:
    log_dir = make_log(
        tmp_path / "log", pool_size=5, sequence_linger_ms=60_000, sequence_batch=100_000
    )
    with serve_service(log_dir) as (client, service):
        h = auth(log_dir)
        results: dict[int, httpx.Response] = {}

        def post(i: int) -> None:
            results[i] = client.post("/add", content=b"concurrent %d" % i, headers=h)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while service.sequencer.pending() < 5:
            assert time.monotonic() < deadline, "the five adds never reached the pool"
            time.sleep(0.01)
        resp = client.post("/add", content=b"one too many", headers=h)
        assert resp.status_code == 503
        assert int(resp.headers["retry-after"]) >= 1
        assert results == {}  # the five are still waiting for their batch
        service.sequencer.stop()  # flushes the pool
        for t in threads:
            t.join(timeout=20)
            assert not t.is_alive()
        assert all(r.status_code == 200 for r in results.values()), results
        assert sorted(r.json()["index"] for r in results.values()) == [0, 1, 2, 3, 4]

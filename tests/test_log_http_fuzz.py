"""Fuzzing the log's HTTP API: whatever a client sends, the server answers sanely.

Properties, checked on every response:

* the status is never 5xx (no pool pressure is set up here, so not even 503);
* every non-2xx JSON response is ``{"error": "<non-empty string>"}``;
* the published checkpoint (seen through /checkpoint and /status) never
  goes backwards.

And after each fuzzing run: the tiles still verify from scratch
(`verify_log`), every add the server acknowledged is in the log at the index
it was given, and the final checkpoint is consistent with every checkpoint
served during the run.
"""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import drivers
from overt.crypto.keys import Ed25519Verifier, ed25519_verifier
from overt.log.config import LogConfig
from overt.log.fsck import verify_log
from overt.log.log import Log, init_log
from overt.log.remote import directory_fetcher
from overt.tlog.checkpoint import open_checkpoint
from overt.tlog.client import DictMemory, LogClient
from overt.web.app import create_log_app

ORIGIN = "example.com/overt/fuzz"
MAX_ENTRY = 200

FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Each test runs on both storage drivers (tests/drivers.py).
pytestmark = pytest.mark.usefixtures("database")


# --- the log under test ----------------------------------------------------------


@dataclass
class Fuzzed:
    dir: Path
    client: TestClient
    token: str
    verifier: Ed25519Verifier
    tile_paths: list[str]
    sizes: list[int] = field(default_factory=list)  # checkpoint sizes seen, in order
    signed: dict[int, str] = field(default_factory=dict)  # a signed checkpoint per size
    acknowledged: dict[bytes, int] = field(default_factory=dict)
    responses: dict[int, int] = field(default_factory=dict)  # status -> count

    def check(self, resp: httpx.Response) -> None:
        where = f"{resp.request.method} {resp.request.url}"
        self.responses[resp.status_code] = self.responses.get(resp.status_code, 0) + 1
        assert resp.status_code < 500, f"{where}: HTTP {resp.status_code}: {resp.text[:300]}"
        ctype = resp.headers.get("content-type", "")
        has_body = resp.request.method != "HEAD"
        if not 200 <= resp.status_code < 300 and ctype.startswith("application/json") and has_body:
            doc = resp.json()
            assert isinstance(doc, dict), f"{where}: {doc!r}"
            assert isinstance(doc.get("error"), str) and doc["error"], f"{where}: {doc!r}"
        if resp.status_code == 200 and resp.request.method == "GET":
            path = resp.request.url.path
            if path == "/checkpoint":
                cp = open_checkpoint(resp.content, self.verifier).checkpoint
                self._saw(cp.size)
                self.signed.setdefault(cp.size, resp.text)
            elif path == "/status":
                self._saw(resp.json()["size"])

    def _saw(self, size: int) -> None:
        if self.sizes:
            assert size >= self.sizes[-1], f"checkpoint went backwards: {size} after {self.sizes}"
        self.sizes.append(size)

    def acknowledge(self, entry: bytes, index: int) -> None:
        known = self.acknowledged.setdefault(entry, index)
        assert known == index, f"entry {entry!r} got index {index}, earlier {known}"


def _make(root: Path, seed_entries: int) -> Path:
    init_log(
        root,
        LogConfig(
            origin=ORIGIN,
            integration_period_ms=20,
            max_entry_size=MAX_ENTRY,
            database=drivers.DATABASE,
        ),
    )
    if seed_entries:
        with Log(root) as log:
            # several publications, so older partial tiles exist too
            for start, end in ((0, 3), (3, 10), (10, 256), (256, seed_entries)):
                log.add([b"seed %d" % i for i in range(start, end)])
    return root


@pytest.fixture()
def fuzzed(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fuzzed]:
    seed = getattr(request, "param", 300)
    log_dir = _make(tmp_path / "log", seed)
    tiles = log_dir / "tiles"
    tile_paths = sorted(
        p.relative_to(tiles).as_posix()
        for p in tiles.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.name != "checkpoint"
    )
    token = (log_dir / "secrets" / "write-token").read_text().strip()
    verifier = ed25519_verifier((log_dir / "log.vkey").read_text().strip())
    seeded = {b"seed %d" % i: i for i in range(seed)}
    with TestClient(create_log_app(log_dir), raise_server_exceptions=False) as client:
        f = Fuzzed(log_dir, client, token, verifier, tile_paths, acknowledged=seeded)
        f.check(client.get("/checkpoint"))
        yield f
    final_checks(f)


def final_checks(f: Fuzzed) -> None:
    """After the server stopped: the log verifies and kept every acknowledged add."""
    fetch = directory_fetcher(f.dir / "tiles")
    report = verify_log(fetch, f.verifier)
    assert report.checkpoint.size >= max(f.sizes)
    assert report.entries == report.checkpoint.size
    for size, signed in sorted(f.signed.items()):
        if size == 0:
            continue
        memory = DictMemory()
        memory.store(ORIGIN, signed)
        client = LogClient(fetch, log_key=f.verifier, memory=memory)
        assert client.update().size == report.checkpoint.size  # consistency verified
    client = LogClient(fetch, log_key=f.verifier)
    entries = dict(client.entries())
    assert len(entries) == report.checkpoint.size
    for entry, index in f.acknowledged.items():
        assert entries.get(index) == entry, f"acknowledged entry {index} lost or changed"


# --- strategies --------------------------------------------------------------------

SAFE_TEXT = st.text(
    alphabet=string.ascii_letters + string.digits + "-_.~!*'()=+,;:@%$&/ ", max_size=12
)
ANY_TEXT = st.text(max_size=16)
HEADER_CHARS = [c for c in string.printable if c not in "\r\n\x0b\x0c"]  # no line breaks
HEADER_TEXT = st.text(alphabet=HEADER_CHARS, max_size=40)

NUMBERISH = st.one_of(
    st.integers(-3, 320).map(str),
    st.integers(-(2**80), 2**80).map(str),
    st.sampled_from(["", "0", "00", "01", "1.0", "1e3", "0x10", " 1", "+1", "-0", "NaN", "inf"]),
    SAFE_TEXT,
)


def _segment(text: str) -> str:
    return quote(text, safe="")


SEGMENT = st.one_of(
    st.sampled_from(
        [
            "tile",
            "entries",
            "0",
            "1",
            "2",
            "63",
            "64",
            "000",
            "001",
            "x001",
            "x000",
            ".p",
            "256",
            "checkpoint",
            "entry",
            "proof",
            "inclusion",
            "consistency",
            "lookup",
            "status",
            "add",
            "add-batch",
            "..",
            ".",
            "%2e%2e",
            "",
            "secrets",
            "write-token",
            "log.toml",
            "state",
        ]
    ),
    ANY_TEXT.map(_segment),
)

TILE_LEVEL = st.one_of(
    st.sampled_from(["0", "1", "2", "entries", "63", "64", "00", "01", "-1", "x", "", "entry"]),
    SAFE_TEXT.map(_segment),
)
TILE_GROUP = st.one_of(
    st.integers(0, 999).map(lambda n: f"{n:03d}"),
    st.integers(0, 999).map(lambda n: f"x{n:03d}"),
    st.sampled_from(["", "0", "00", "0000", "x1", "x", "xx001", "001.p", ".."]),
    SAFE_TEXT.map(_segment),
)
TILE_WIDTH = st.one_of(
    st.none(),
    st.integers(-1, 300).map(str),
    st.sampled_from(["", "044", "0", "256", "1/2", "a"]),
)


@st.composite
def tile_url(draw: st.DrawFn, tile_paths: list[str]) -> str:
    if tile_paths and draw(st.booleans()):
        return "/" + draw(st.sampled_from(tile_paths))
    level = draw(TILE_LEVEL)
    groups = draw(st.lists(TILE_GROUP, min_size=1, max_size=3))
    width = draw(TILE_WIDTH)
    return f"/tile/{level}/" + "/".join(groups) + ("" if width is None else f".p/{width}")


def query(keys: list[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.sampled_from(keys), NUMBERISH, max_size=len(keys))


@st.composite
def read_request(draw: st.DrawFn, tile_paths: list[str]) -> tuple[str, str, dict[str, str]]:
    kind = draw(st.sampled_from(["tile", "inclusion", "consistency", "entry", "lookup", "fixed"]))
    params: dict[str, str] = {}
    if kind == "tile":
        url = draw(tile_url(tile_paths))
    elif kind == "inclusion":
        url = "/proof/inclusion"
        params = draw(query(["index", "size", "junk"]))
    elif kind == "consistency":
        url = "/proof/consistency"
        params = draw(query(["old", "new", "junk"]))
    elif kind == "entry":
        url = "/entry/" + _segment(draw(NUMBERISH))
    elif kind == "lookup":
        raw = draw(st.binary(min_size=0, max_size=40))
        text = draw(
            st.one_of(
                st.just(raw.hex()),
                st.just(base64.urlsafe_b64encode(raw).decode()),
                st.just(base64.urlsafe_b64encode(raw).decode().rstrip("=")),
                st.just(base64.b64encode(raw).decode()),
                ANY_TEXT,
            )
        )
        url = "/lookup/" + _segment(text)
    else:
        url = draw(st.sampled_from(["/checkpoint", "/status", "/", "/docs", "/openapi.json"]))
    method = draw(st.sampled_from(["GET"] * 10 + ["HEAD", "POST", "DELETE"]))
    return method, url, params


def _json_value() -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
        st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode()),
    )
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=10,
    )


ENTRY = st.one_of(
    st.binary(max_size=40),
    st.binary(min_size=MAX_ENTRY - 2, max_size=MAX_ENTRY + 2),
    st.binary(max_size=MAX_ENTRY * 3),
)


@st.composite
def batch_body(draw: st.DrawFn) -> tuple[bytes, list[bytes] | None]:
    """A body for /add-batch and, if it is a well-formed batch, its entries."""
    kind = draw(st.sampled_from(["valid", "valid", "valid", "mixed", "json", "bytes"]))
    if kind == "valid":
        entries = draw(
            st.lists(ENTRY | st.sampled_from([b"seed 1", b"dup"]), min_size=1, max_size=6)
        )
        doc: Any = {"entries": [base64.b64encode(e).decode() for e in entries]}
        return json.dumps(doc).encode(), entries
    if kind == "mixed":
        items = draw(
            st.lists(
                st.one_of(
                    ENTRY.map(lambda e: base64.b64encode(e).decode()),
                    ENTRY.map(lambda e: base64.urlsafe_b64encode(e).decode()),
                    ENTRY.map(lambda e: base64.b64encode(e).decode().rstrip("=")),
                    _json_value(),
                ),
                max_size=5,
            )
        )
        return json.dumps({"entries": items}).encode(), None
    if kind == "json":
        return json.dumps(draw(_json_value())).encode(), None
    return draw(st.binary(max_size=300)), None


@st.composite
def write_request(draw: st.DrawFn, token: str) -> dict[str, Any]:
    endpoint = draw(st.sampled_from(["/add", "/add-batch"]))
    if draw(st.integers(0, 3)):
        auth: str | None = draw(
            st.sampled_from([f"Bearer {token}", f"bearer  {token} ", f"BEARER {token}"])
        )
    else:
        auth = draw(
            st.one_of(
                st.none(),
                st.sampled_from(
                    ["Bearer", "Bearer ", f"Basic {token}", token, f"Bearer {token}x", "Bearer x"]
                ),
                HEADER_TEXT,
                HEADER_TEXT.map(lambda t: "Bearer " + t),
            )
        )
    headers: dict[str, str] = {}
    if auth is not None:
        headers["Authorization"] = auth
    if draw(st.booleans()):
        headers["Content-Type"] = draw(
            st.sampled_from(["application/json", "application/octet-stream", "text/plain"])
            | HEADER_TEXT
        )
    lying = draw(st.integers(0, 9)) == 0
    if lying:
        headers["Content-Length"] = draw(NUMBERISH.filter(lambda s: s.strip() == s))
    if endpoint == "/add":
        body = draw(ENTRY | st.sampled_from([b"seed 5", b"dup", b""]))
        entries: list[bytes] | None = [body]
    else:
        body, entries = draw(batch_body())
    params = draw(
        st.fixed_dictionaries({}, optional={"wait": st.sampled_from(["true", "false", "1", "x"])})
    )
    return {
        "method": draw(st.sampled_from(["POST"] * 10 + ["PUT", "GET"])),
        "url": endpoint,
        "headers": headers,
        "content": body,
        "params": params,
        "entries": None if lying else entries,
    }


@st.composite
def any_request(draw: st.DrawFn) -> tuple[str, str, bytes, dict[str, str]]:
    method = draw(
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"])
        | st.text(alphabet=string.ascii_uppercase, min_size=1, max_size=8)
    )
    path = "/" + "/".join(draw(st.lists(SEGMENT, max_size=5)))
    if path.startswith("//"):  # httpx would read it as a network path
        path = "/." + path
    qs = draw(st.lists(st.tuples(SAFE_TEXT, NUMBERISH), max_size=3))
    if qs:
        path += "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in qs)
    body = draw(st.binary(max_size=50))
    headers = draw(
        st.dictionaries(
            st.sampled_from(["Authorization", "Content-Type", "Accept", "X-Junk", "Range"]),
            HEADER_TEXT,
            max_size=3,
        )
    )
    return method, path, body, headers


# --- the fuzzers ---------------------------------------------------------------------


def test_fuzz_reads(fuzzed: Fuzzed) -> None:
    """Tiles, proofs, entries and lookups with random paths and parameters."""

    @settings(FUZZ, max_examples=120)
    @given(req=read_request(fuzzed.tile_paths))
    def run(req: tuple[str, str, dict[str, str]]) -> None:
        method, url, params = req
        resp = fuzzed.client.request(method, url, params=params)
        fuzzed.check(resp)
        if resp.status_code == 200 and method == "GET" and url.startswith("/proof/"):
            assert isinstance(resp.json()["proof"], list)
        if resp.status_code == 200 and url.startswith("/tile/"):
            assert resp.headers["content-type"] == "application/octet-stream"
            assert resp.content == (fuzzed.dir / "tiles" / url[1:]).read_bytes()

    run()
    assert fuzzed.responses.get(200, 0) > 0
    assert fuzzed.responses.get(400, 0) > 0


def test_fuzz_writes(fuzzed: Fuzzed) -> None:
    """/add and /add-batch with random bodies, headers, tokens and Content-Lengths."""

    @settings(FUZZ, max_examples=120)
    @given(req=write_request(fuzzed.token))
    def run(req: dict[str, Any]) -> None:
        resp = fuzzed.client.request(
            req["method"],
            req["url"],
            headers=req["headers"],
            content=req["content"],
            params=req["params"],
        )
        fuzzed.check(resp)
        if resp.status_code == 200:
            assert req["method"] == "POST"
            entries = req["entries"]
            body = resp.json()
            indexes = [body["index"]] if req["url"] == "/add" else body["indexes"]
            if entries is not None:
                assert len(indexes) == len(entries)
                for entry, index in zip(entries, indexes, strict=True):
                    fuzzed.acknowledge(entry, index)
            if "size" in body and body["size"] is not None:
                assert body["size"] > max(indexes)
            # Only the exact token (scheme in any case) may add.
            scheme, _, token = req["headers"].get("Authorization", "").partition(" ")
            assert scheme.lower() == "bearer" and token.strip() == fuzzed.token

    run()
    fuzzed.check(fuzzed.client.get("/checkpoint"))
    assert fuzzed.responses.get(200, 0) > 0


def test_fuzz_any_method_and_path(fuzzed: Fuzzed) -> None:
    """Random methods, paths, query strings, headers and bodies."""

    @settings(FUZZ, max_examples=80)
    @given(req=any_request())
    def run(req: tuple[str, str, bytes, dict[str, str]]) -> None:
        method, path, body, headers = req
        resp = fuzzed.client.request(method, path, content=body, headers=headers)
        fuzzed.check(resp)
        assert fuzzed.token not in resp.text

    run()
    fuzzed.check(fuzzed.client.get("/status"))


@pytest.mark.parametrize("fuzzed", [0], indirect=True)
def test_fuzz_on_an_empty_log(fuzzed: Fuzzed) -> None:
    """Reads against a log with no entries, then a few adds."""

    @settings(FUZZ, max_examples=40)
    @given(req=read_request([]))
    def run(req: tuple[str, str, dict[str, str]]) -> None:
        method, url, params = req
        fuzzed.check(fuzzed.client.request(method, url, params=params))

    run()
    for i in range(3):
        resp = fuzzed.client.post(
            "/add?wait=true",
            content=b"late %d" % i,
            headers={"Authorization": f"Bearer {fuzzed.token}"},
        )
        fuzzed.check(resp)
        fuzzed.acknowledge(b"late %d" % i, resp.json()["index"])
    fuzzed.check(fuzzed.client.get("/checkpoint"))

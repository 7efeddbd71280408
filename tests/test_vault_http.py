"""The vault's HTTP API as products and staff use it: ingestion, staff reads, status.

Every app runs with its lifespan (TestClient as a context manager), so shutdown
closes the vault and publishes its access logs. A response hook fails the test
on any HTTP 500 (a client must never make the server crash), except in the
tests documenting a bug, which check the status code themselves.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

import drivers
from overt.vault.actors import ActorEntry
from overt.vault.audit import audit
from overt.vault.events import Actor, open_event
from overt.vault.history import access_history
from overt.vault.vault import Vault, init_vault
from overt.web.vault_api import create_vault_app
from sealed_rows import SealedRef, stored_ids
from vault_fixtures import MOW, POLICY, ZRH

ORIGIN = "test.example/acme-http"

STAFF = {
    "dana": ("threat analyst", ("THREAT_ANALYSIS", "CUSTOMER_SUPPORT")),
    "lena": ("legal officer", ("LEGAL_REQUEST",)),
    "dpo": ("data protection officer", ("DATA_ERASURE",)),
}

# Each test runs on both storage drivers (tests/drivers.py).
pytestmark = pytest.mark.usefixtures("database")


class Setup:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ingest_token = (root / "secrets" / "ingest-token").read_text().strip()
        self.tokens: dict[str, str] = {}

    def ingest_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.ingest_token}"}

    def staff(self, actor: str, justification: str = "", ticket: str = "", **extra: str) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[actor]}"}
        if justification:
            headers["X-Overt-Justification"] = justification
        if ticket:
            headers["X-Overt-Ticket"] = ticket
        headers.update(extra)
        return headers


def make_vault(tmp_path: Path) -> Setup:
    root = tmp_path / "vault"
    init_vault(root, POLICY, ORIGIN, drivers.DATABASE)
    setup = Setup(root)
    text = (root / "actors.toml").read_text()
    for name, (role, justs) in STAFF.items():
        token = secrets.token_urlsafe(32)
        setup.tokens[name] = token
        digest = hashlib.sha256(token.encode()).hexdigest()
        text += "\n" + ActorEntry(Actor(name, role, "Acme AG", "CH"), justs, digest).to_toml()
    (root / "actors.toml").write_text(text)
    return setup


def stored_files(root: Path, region: str) -> list[str]:
    """Objects whose ciphertext the region stores, and any stray file."""
    return stored_ids(root, region)


def _no_500(response: httpx.Response) -> None:
    if response.status_code == 500:
        response.read()
        raise AssertionError(
            f"HTTP 500 for {response.request.method} {response.request.url}: {response.text}"
        )


@contextmanager
def serve(root: Path, guard: bool = True) -> Iterator[TestClient]:
    with TestClient(create_vault_app(root), raise_server_exceptions=False) as client:
        if guard:
            client.event_hooks["response"].append(_no_500)
        yield client


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def error_of(response: httpx.Response) -> str:
    doc = response.json()
    assert isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"], doc
    return str(doc["error"])


def ingest(
    client: TestClient, setup: Setup, customer: str, country: str, records: list[bytes]
) -> httpx.Response:
    return client.post(
        "/ingest",
        json={
            "customer": customer,
            "country": country,
            "category": "telemetry",
            "records": [b64(r) for r in records],
        },
        headers=setup.ingest_headers(),
    )


def log_size(client: TestClient, region: str = ZRH) -> int:
    resp = client.get("/status")
    assert resp.status_code == 200
    return int(resp.json()["regions"][region]["access_log_size"])


def log_events(root: Path, region: str) -> list[dict[str, Any]]:
    with Vault(root) as vault:
        log = vault.log(region)
        return [open_event(log.entry(i), vault.verifier) for i in range(log.sequenced_size())]


# --- ingestion ----------------------------------------------------------------------------


def test_ingest_routes_each_country_and_reads_back(tmp_path: Path) -> None:
    setup = make_vault(tmp_path)
    stored: dict[str, tuple[str, bytes]] = {}
    with serve(setup.root) as client:
        for country, region in [("AU", ZRH), ("DE", ZRH), ("US", ZRH), ("CA", ZRH), ("RU", MOW)]:
            records = [f"{country} record {i}".encode() * 3 for i in range(4)]
            resp = ingest(client, setup, f"cust-{country}", country, records)
            assert resp.status_code == 200, resp.text
            doc = resp.json()
            assert doc["region"] == region
            assert len(doc["ids"]) == 4 and len(set(doc["ids"])) == 4
            for object_id, record in zip(doc["ids"], records, strict=True):
                stored[object_id] = (region, record)
        assert log_size(client, ZRH) == 4 and log_size(client, MOW) == 1  # one event per batch
        for n, (object_id, (_, record)) in enumerate(stored.items()):
            resp = client.get(
                f"/objects/{object_id}", headers=setup.staff("dana", "THREAT_ANALYSIS", f"T-{n}")
            )
            assert resp.status_code == 200, resp.text
            assert resp.content == record
            assert resp.headers["content-type"] == "application/octet-stream"
        assert log_size(client, ZRH) + log_size(client, MOW) == 5 + len(stored)
    with Vault(setup.root) as vault:
        for object_id, (region, _) in stored.items():
            assert vault.locate(object_id)[0] == region
        assert audit(vault).ok


def test_ingest_needs_the_ingest_token(tmp_path: Path) -> None:
    setup = make_vault(tmp_path)
    body = {"customer": "c", "country": "DE", "category": "sample", "records": [b64(b"x")]}
    with serve(setup.root) as client:
        resp = client.post("/ingest", json=body)
        assert resp.status_code == 401 and "ingest token" in error_of(resp)
        resp = client.post("/ingest", json=body, headers={"Authorization": "Bearer wrong"})
        assert resp.status_code == 403
        resp = client.post(
            "/ingest", json=body, headers={"Authorization": f"Basic {setup.ingest_token}"}
        )
        assert resp.status_code == 401
        resp = client.post("/ingest", json=body, headers=setup.staff("dana"))  # staff token
        assert resp.status_code == 403
        resp = client.post(
            "/ingest", json=body, headers={"Authorization": f"Bearer {setup.ingest_token}x"}
        )
        assert resp.status_code == 403
        assert log_size(client) == 0
        ok = client.post(
            "/ingest", json=body, headers={"Authorization": f"bearer  {setup.ingest_token}"}
        )
        assert ok.status_code == 200, ok.text
    with Vault(setup.root) as vault:
        assert len(vault.store(ZRH).objects()) == 1


BAD_BODIES: list[tuple[bytes, str]] = [
    (b"", "not acceptable JSON"),
    (b"{", "not acceptable JSON"),
    (b"\xff\xfe\x00", "not acceptable JSON"),
    (b"[" * 50_000, "not acceptable JSON"),
    (b"[]", "must be a JSON object"),
    (b'"text"', "must be a JSON object"),
    (b'{"country": "DE", "category": "sample", "records": []}', "customer must be a string"),
    (b'{"customer": 5, "country": "DE", "category": "sample", "records": []}', "customer"),
    (b'{"customer": "c", "category": "sample", "records": []}', "country must be a string"),
    (b'{"customer": "c", "country": "DE", "records": []}', "category must be a string"),
    (b'{"customer": "c", "country": "DE", "category": "sample"}', "records must be a list"),
    (b'{"customer": "c", "country": "DE", "category": "sample", "records": "eA=="}', "list"),
    (b'{"customer": "c", "country": "DE", "category": "sample", "records": [1]}', "list"),
    (b'{"customer": "c", "country": "DE", "category": "sample", "records": ["!!"]}', "base64"),
    (b'{"customer": "c", "country": "DE", "category": "sample", "records": ["eA="]}', "base64"),
    (b'{"customer": "c", "country": "DE", "category": "sample", "records": []}', "1 to"),
    (b'{"customer": "", "country": "DE", "category": "sample", "records": ["eA=="]}', "customer"),
    (b'{"customer": "c", "country": "DE", "category": "logs", "records": ["eA=="]}', "category"),
    (b'{"customer": "c", "country": "XX", "category": "sample", "records": ["eA=="]}', "XX"),
    (b'{"customer": "c", "country": "CN", "category": "sample", "records": ["eA=="]}', "CN"),
    (b'{"customer": "c", "country": "DEU", "category": "sample", "records": ["eA=="]}', "ISO"),
    (b'{"customer": "c", "country": "", "category": "sample", "records": ["eA=="]}', "ISO"),
]


def test_ingest_refuses_bad_bodies_with_400_and_stores_nothing(tmp_path: Path) -> None:
    setup = make_vault(tmp_path)
    with serve(setup.root) as client:
        for body, expect in BAD_BODIES:
            resp = client.post("/ingest", content=body, headers=setup.ingest_headers())
            assert resp.status_code == 400, (body[:80], resp.status_code, resp.text)
            assert expect in error_of(resp), (body[:80], resp.text)
        assert log_size(client, ZRH) == 0 and log_size(client, MOW) == 0
    with Vault(setup.root) as vault:
        for region in (ZRH, MOW):
            assert vault.store(region).objects() == [] and stored_files(setup.root, region) == []


@pytest.fixture(scope="module")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory, database: str
) -> Iterator[tuple[TestClient, Setup]]:
    setup = make_vault(tmp_path_factory.mktemp("fuzz"))
    with serve(setup.root) as client:
        yield client, setup


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(
    doc=st.one_of(
        st.fixed_dictionaries(
            {
                "customer": st.one_of(st.text(max_size=8), st.integers(), st.none()),
                "country": st.one_of(st.sampled_from(["DE", "RU", "de", "XX", "", "D"]), st.text()),
                "category": st.sampled_from(["sample", "telemetry", "x", ""]),
                "records": st.one_of(
                    st.lists(st.binary(max_size=20).map(b64), max_size=3),
                    st.lists(st.text(max_size=6), max_size=3),
                    st.integers(),
                ),
            }
        ),
        JSON_VALUES,
    )
)
def test_ingest_never_answers_500(fuzz_server: tuple[TestClient, Setup], doc: Any) -> None:
    client, setup = fuzz_server
    resp = client.post("/ingest", content=json.dumps(doc), headers=setup.ingest_headers())
    assert resp.status_code in (200, 400), resp.text
    if resp.status_code == 200:
        assert resp.json()["region"] in (ZRH, MOW)
    else:
        error_of(resp)


@settings(max_examples=40, deadline=None)
@given(
    object_id=st.text(min_size=1, max_size=30),
    justification=st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20
    ),
)
def test_staff_reads_never_answer_500(
    fuzz_server: tuple[TestClient, Setup], object_id: str, justification: str
) -> None:
    client, setup = fuzz_server
    headers = setup.staff("dana", justification.strip(), "T-fuzz")
    resp = client.get(f"/objects/{quote(object_id, safe='')}", headers=headers)
    assert resp.status_code in (403, 404), resp.text


# --- staff reads --------------------------------------------------------------------------


def test_staff_read_needs_an_actor_token(tmp_path: Path) -> None:
    setup = make_vault(tmp_path)
    with serve(setup.root) as client:
        (object_id,) = ingest(client, setup, "c", "DE", [b"data"]).json()["ids"]
        before = log_size(client)
        for headers in (
            {},
            {"Authorization": "Bearer nobody"},
            {"Authorization": f"Bearer {setup.ingest_token}"},
            {"Authorization": f"Basic {setup.tokens['dana']}"},
            {"X-Overt-Justification": "THREAT_ANALYSIS", "X-Overt-Ticket": "T-1"},
        ):
            headers = {"X-Overt-Justification": "THREAT_ANALYSIS", "X-Overt-Ticket": "T", **headers}
            resp = client.get(f"/objects/{object_id}", headers=headers)
            assert resp.status_code == 401, headers
            assert "actor token" in error_of(resp)
            assert b"data" not in resp.content
        assert log_size(client) == before


HTTP_REFUSALS = [
    ("dana", "", "T-1", {}, "a justification code is required"),
    ("dana", "CURIOSITY", "T-2", {}, "unknown justification 'CURIOSITY'"),
    ("dana", "LEGAL_REQUEST", "T-3", {}, "dana may not access data for LEGAL_REQUEST"),
    ("dana", "THREAT_ANALYSIS", "", {}, "a ticket reference is required"),
    ("lena", "LEGAL_REQUEST", "COURT-1", {}, "must name the requesting country"),
    ("dpo", "THREAT_ANALYSIS", "T-4", {}, "dpo may not access data for THREAT_ANALYSIS"),
]


def test_each_staff_refusal_is_403_with_reason_and_logged(tmp_path: Path) -> None:
    setup = make_vault(tmp_path)
    with serve(setup.root) as client:
        (object_id,) = ingest(client, setup, "c", "DE", [b"secret"]).json()["ids"]
        for actor, justification, ticket, extra, reason in HTTP_REFUSALS:
            before = log_size(client)
            resp = client.get(
                f"/objects/{object_id}", headers=setup.staff(actor, justification, ticket, **extra)
            )
            assert resp.status_code == 403, (actor, justification, resp.text)
            assert reason in error_of(resp)
            assert b"secret" not in resp.content
            assert log_size(client) == before + 1  # the refusal is on the record
        resp = client.get(
            f"/objects/{object_id}",
            headers=setup.staff(
                "lena", "LEGAL_REQUEST", "COURT-2", **{"X-Overt-Requester-Country": "US"}
            ),
        )
        assert resp.status_code == 200 and resp.content == b"secret"
        resp = client.get(
            "/objects/0123456789abcdef01234567", headers=setup.staff("dana", "THREAT_ANALYSIS", "T")
        )
        assert resp.status_code in (403, 404) and "no object" in error_of(resp)
    events = log_events(setup.root, ZRH)
    refused = [e for e in events if e["outcome"] == "refused"]
    assert len(refused) == len(HTTP_REFUSALS)
    for event, (actor, justification, ticket, _, reason) in zip(
        refused, HTTP_REFUSALS, strict=True
    ):
        assert reason in event["reason"]
        assert (event["actor"]["name"], event["justification"], event["ticket"]) == (
            actor,
            justification,
            ticket,
        )
    assert all(e["objects"] == [object_id] and e["action"] == "read" for e in refused)
    legal = events[-1]
    assert legal["outcome"] == "allowed" and legal["requester_country"] == "US"
    assert legal["actor"]["name"] == "lena"
    with Vault(setup.root) as vault:
        # lena without a country, and dana (not allowed to) without one either.
        assert audit(vault).legal_requests == {("?", "refused"): 2, ("US", "allowed"): 1}


def test_erased_object_is_403_over_http(tmp_path: Path) -> None:
    setup = make_vault(tmp_path)
    with serve(setup.root) as client:
        (object_id,) = ingest(client, setup, "c", "DE", [b"gone soon"]).json()["ids"]
    with Vault(setup.root) as vault:
        vault.erase(object_id, "dpo", "DATA_ERASURE", "GDPR-1")
    with serve(setup.root) as client:
        resp = client.get(
            f"/objects/{object_id}", headers=setup.staff("dana", "THREAT_ANALYSIS", "T-1")
        )
        assert resp.status_code == 403 and "was erased" in error_of(resp)


def test_log_down_refuses_ingest_and_reads_with_403(tmp_path: Path) -> None:
    setup = make_vault(tmp_path)
    with serve(setup.root) as client:
        (object_id,) = ingest(client, setup, "c", "DE", [b"data"]).json()["ids"]
    with drivers.log_held_elsewhere(setup.root / "logs" / ZRH), serve(setup.root) as client:
        resp = ingest(client, setup, "c", "AT", [b"more"])
        assert resp.status_code == 403 and "unavailable" in error_of(resp)
        resp = client.get(
            f"/objects/{object_id}", headers=setup.staff("dana", "THREAT_ANALYSIS", "T-1")
        )
        assert resp.status_code == 403 and "unavailable" in error_of(resp)
        assert resp.content != b"data"
        # The other region still works.
        resp = ingest(client, setup, "r", "RU", [b"ru"])
        assert resp.status_code == 200 and resp.json()["region"] == MOW
    with Vault(setup.root) as vault:
        store = vault.store(ZRH)
        assert [op for _, _, op, _, _ in store.journal()] == ["write"]
        assert len(store.objects()) == 1
        assert audit(vault).ok


def test_status_lists_regions_and_log_sizes(tmp_path: Path) -> None:
    setup = make_vault(tmp_path)
    with serve(setup.root) as client:
        resp = client.get("/status")
        assert resp.status_code == 200
        doc = resp.json()
        assert doc["vkey"] == (setup.root / "vault.vkey").read_text().strip()
        assert doc["regions"] == {
            ZRH: {"access_log_size": 0},
            MOW: {"access_log_size": 0},
        }
        ingest(client, setup, "c", "DE", [b"a", b"b"])
        assert log_size(client, ZRH) == 1 and log_size(client, MOW) == 0
        assert client.get("/nonexistent").status_code == 404
        assert client.post("/status").status_code == 405


def test_concurrent_ingestion_and_reads_reconcile(tmp_path: Path) -> None:
    setup = make_vault(tmp_path)
    with serve(setup.root) as client:

        def work(n: int) -> tuple[str, bytes]:
            record = f"record {n}".encode()
            resp = ingest(client, setup, f"cust-{n % 3}", ["DE", "US", "RU"][n % 3], [record])
            assert resp.status_code == 200, resp.text
            (object_id,) = resp.json()["ids"]
            got = client.get(
                f"/objects/{object_id}", headers=setup.staff("dana", "THREAT_ANALYSIS", f"T-{n}")
            )
            assert got.status_code == 200 and got.content == record
            return object_id, record

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(work, range(40)))
    assert len({i for i, _ in results}) == 40
    with Vault(setup.root) as vault:
        report = audit(vault)
        assert report.ok, report.discrepancies
        assert report.checked_objects == 40 and report.checked_events == 80
        history = access_history(
            setup.root, [ZRH, MOW], "cust-2", vault.customers.key("cust-2"), vault.verifier
        )
    assert len(history) == 2 * len(range(2, 40, 3))
    assert all(e["verified"] and e["region"] == MOW for e in history)


# --- documented bugs ----------------------------------------------------------------------


def test_tampered_or_missing_ciphertext_is_not_a_500(tmp_path: Path) -> None:
    """Regression: a bug this test found, fixed in src while the tests were written.

    GET /objects/<id> answers HTTP 500 when the object's ciphertext was tampered with
    or is missing.

    web/vault_api.py create_vault_app(), handler `read`: only AccessRefused is caught;
    Vault.read() raises DecryptionError (envelope.py) for a flipped byte in
    VAULT/regions/ch-zurich/objects/<id[:2]>/<id>, and StoreError (store.py) when that file
    is gone. Both are OvertError but not MalformedError/VerificationError, so the generic
    handler in web/errors.py turns them into 500 "object ...: does not decrypt" / "its
    ciphertext is missing". Expected: a 4xx (e.g. 409/422) naming the decryption error.
    Was: 500.
    """
    setup = make_vault(tmp_path)
    codes = []
    with serve(setup.root, guard=False) as client:
        a, b = ingest(client, setup, "c", "DE", [b"original", b"other"]).json()["ids"]
        path = SealedRef(setup.root, ZRH, a)
        sealed = bytearray(path.read_bytes())
        sealed[len(sealed) // 2] ^= 1
        path.write_bytes(bytes(sealed))
        resp = client.get(f"/objects/{a}", headers=setup.staff("dana", "THREAT_ANALYSIS", "T-1"))
        assert b"original" not in resp.content
        codes.append(resp.status_code)
        SealedRef(setup.root, ZRH, b).unlink()
        resp = client.get(f"/objects/{b}", headers=setup.staff("dana", "THREAT_ANALYSIS", "T-2"))
        codes.append(resp.status_code)
    assert all(400 <= c < 500 for c in codes), codes


def test_status_while_the_access_log_is_down_is_not_a_500(tmp_path: Path) -> None:
    """Regression: a bug this test found, fixed in src while the tests were written.

    GET /status answers HTTP 500 when a region's access log cannot be opened.

    web/vault_api.py create_vault_app(), handler `status`, calls vault.log(region) for every
    region; if the log directory is locked by another process (or unusable), Log() raises
    LogError, which web/errors.py maps to 500. Input: hold `Log(VAULT/logs/ch-zurich)` in
    another instance, then GET /status. Expected: 200 reporting the region's log as
    unavailable (or a 503). Was: 500 "... is in use by another overt process".
    """
    setup = make_vault(tmp_path)
    with (
        drivers.log_held_elsewhere(setup.root / "logs" / ZRH),
        serve(setup.root, guard=False) as client,
    ):
        resp = client.get("/status")
    assert resp.status_code != 500, resp.text


def test_the_running_server_publishes_its_access_events(tmp_path: Path) -> None:
    """Regression: a bug this test found, fixed in src while the tests were written.

    while `overt vault serve` runs, its access events are never published.

    web/vault_api.py create_vault_app() has no integrator: Vault._append() only
    *sequences* events (Log.sequence) and nothing calls Log.integrate() until the app
    shuts down (Vault.close()). Input: POST /ingest and GET /objects/<id>, then wait 3 s
    (six times the access logs' default integration period of 500 ms) with the server
    still running. Expected: the region's published checkpoint (VAULT/logs/ch-zurich/
    tiles/checkpoint) covers both events, so the customer's `overt access history` and
    the supervisor see them. Was: the checkpoint stays at size 0 until shutdown.
    """
    setup = make_vault(tmp_path)
    with serve(setup.root) as client:
        (object_id,) = ingest(client, setup, "c", "DE", [b"data"]).json()["ids"]
        resp = client.get(
            f"/objects/{object_id}", headers=setup.staff("dana", "THREAT_ANALYSIS", "T-1")
        )
        assert resp.status_code == 200
        deadline = time.monotonic() + 3
        published = 0
        checkpoint = setup.root / "logs" / ZRH / "tiles" / "checkpoint"
        while time.monotonic() < deadline:
            published = int(checkpoint.read_text().splitlines()[1])
            if published >= 2:
                break
            time.sleep(0.1)
    assert published >= 2, f"published checkpoint size {published} while the server ran"


def test_history_and_audit_after_shutdown(tmp_path: Path) -> None:
    setup = make_vault(tmp_path)
    with serve(setup.root) as client:
        (object_id,) = ingest(client, setup, "berlin", "DE", [b"data"]).json()["ids"]
        client.get(f"/objects/{object_id}", headers=setup.staff("dana", "THREAT_ANALYSIS", "T-1"))
        client.get(f"/objects/{object_id}", headers=setup.staff("dana", "", "T-2"))
    with Vault(setup.root) as vault:
        events = access_history(
            setup.root, [ZRH, MOW], "berlin", vault.customers.key("berlin"), vault.verifier
        )
        assert audit(vault).ok
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("write", "allowed"),
        ("read", "allowed"),
        ("read", "refused"),
    ]
    assert all(e["verified"] for e in events)

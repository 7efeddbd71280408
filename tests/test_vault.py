"""The data vault as the vendor, the customer and the supervisor use it (Python API and CLI).

Residency routing, every refusal of the access gate (each itself on the record),
fail-closed when the access log is down, tamper- and move-evidence of the
ciphertexts, crypto-shredding, nothing ever in plaintext on disk, the
customer's verified access history, the public log's privacy, and the
supervisor's audit catching each way around the gate.

CLI calls run in process (typer's CliRunner) for speed; one test runs the real
`overt` executable end to end. A Vault opened by a test must be closed before the
CLI opens the same directory: each access log has one writer at a time.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import drivers
from overt.cli.main import app
from overt.crypto.dsse import Envelope
from overt.crypto.keys import ed25519_verifier
from overt.errors import MalformedError, OvertError
from overt.log.remote import open_source
from overt.tlog.client import LogClient
from overt.vault.actors import ActorEntry, load_actors
from overt.vault.audit import audit
from overt.vault.envelope import (
    DecryptionError,
    key_aad,
    new_key,
    object_aad,
    open_sealed,
    seal,
)
from overt.vault.events import Actor, open_event, pseudonym
from overt.vault.residency import ResidencyError
from overt.vault.store import NewObject, RegionStore
from overt.vault.vault import AccessRefused, Vault, init_vault
from sealed_rows import SealedRef, stored_ids
from vault_fixtures import MOW, POLICY, ZRH

OVERT = [sys.executable, "-m", "overt.cli"]
ORIGIN = "test.example/acme"

# name -> (role, employer, location, justifications)
STAFF = {
    "dana": ("threat analyst", "Acme Security AG", "CH", ("THREAT_ANALYSIS", "CUSTOMER_SUPPORT")),
    "lena": ("legal officer", "Acme Security AG", "CH", ("LEGAL_REQUEST",)),
    "dpo": ("data protection officer", "Acme Security AG", "CH", ("DATA_ERASURE",)),
}

# Each test runs on both storage drivers (tests/drivers.py).
pytestmark = pytest.mark.usefixtures("database")


# --- helpers ------------------------------------------------------------------------------


def make_vault(tmp_path: Path, name: str = "vault") -> Path:
    root = tmp_path / name
    init_vault(root, POLICY, ORIGIN, drivers.DATABASE)
    text = (root / "actors.toml").read_text()
    for actor, (role, employer, location, justs) in STAFF.items():
        entry = ActorEntry(Actor(actor, role, employer, location), justs, "")
        text += "\n" + entry.to_toml()
    (root / "actors.toml").write_text(text)
    return root


def cli(*args: str | Path) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"overt {args} crashed: {result.exception!r}") from result.exception
    assert "Traceback" not in result.stderr
    return result


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def put(root: Path, tmp_path: Path, data: bytes, customer: str, country: str, *extra: str) -> Any:
    src = tmp_path / f"in-{secrets.token_hex(4)}"
    src.write_bytes(data)
    return cli(
        "vault",
        "put",
        root,
        src,
        "--customer",
        customer,
        "--country",
        country,
        "--category",
        "sample",
        *extra,
    )


def put_ok(root: Path, tmp_path: Path, data: bytes, customer: str, country: str) -> str:
    result = put(root, tmp_path, data, customer, country)
    assert result.exit_code == 0, result.stderr
    return str(json.loads(result.stdout)["id"])


def get(root: Path, object_id: str, *args: str | Path) -> Any:
    return cli("vault", "get", root, object_id, *args)


def log_events(root: Path, region: str) -> list[dict[str, Any]]:
    """Every access event of a region's log, sequenced or published (the vault is closed)."""
    with Vault(root) as vault:
        log = vault.log(region)
        return [open_event(log.entry(i), vault.verifier) for i in range(log.sequenced_size())]


def public_entries(root: Path, region: str) -> list[bytes]:
    """The region's access log as the public reads it: through the tiles, verified."""
    source = open_source(str(root / "logs" / region))
    assert source.vkey is not None
    client = LogClient(source.fetch, log_key=ed25519_verifier(source.vkey))
    client.update()
    return [entry for _, entry in client.entries()]


def history(root: Path, customer: str, *extra: str) -> list[dict[str, Any]]:
    result = cli("access", "history", root, "--customer", customer, "--json", *extra)
    assert result.exit_code == 0, result.stderr
    events: list[dict[str, Any]] = json.loads(result.stdout)
    return events


def stored_files(root: Path, region: str) -> list[str]:
    """Objects whose ciphertext the region stores, and any stray file."""
    return stored_ids(root, region)


def object_file(root: Path, region: str, object_id: str) -> SealedRef:
    return SealedRef(root, region, object_id)


def all_files(root: Path) -> Iterator[Path]:
    for dirpath, _, names in os.walk(root):
        for name in names:
            yield Path(dirpath) / name


def files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in all_files(root) if needle in p.read_bytes()]


def audit_cli(root: Path) -> tuple[int, str, str]:
    result = cli("vault", "audit", root)
    return result.exit_code, flat(result.stdout), flat(result.stderr)


# --- residency routing --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "region"),
    [("AU", ZRH), ("DE", ZRH), ("US", ZRH), ("CA", ZRH), ("RU", MOW), ("fr", ZRH), ("ru", MOW)],
)
def test_put_routes_to_the_customer_region_and_prints_id_and_region(
    tmp_path: Path, country: str, region: str
) -> None:
    root = make_vault(tmp_path)
    result = put(root, tmp_path, b"payload for " + country.encode(), "cust-" + country, country)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"id", "region"}
    assert doc["region"] == region
    assert re.fullmatch(r"[0-9a-f]{24}", doc["id"])
    other = MOW if region == ZRH else ZRH
    assert object_file(root, region, doc["id"]).is_file()
    with Vault(root) as vault:
        obj = vault.store(region).object(doc["id"])
        assert obj is not None and obj.country == country.upper()
        assert vault.store(other).objects() == []
        assert stored_files(root, other) == []
        assert vault.locate(doc["id"])[0] == region
    # The write is an allowed, batch-style event in that region's log only.
    (write,) = log_events(root, region)
    assert write["action"] == "write" and write["outcome"] == "allowed"
    assert write["batch"]["count"] == 1
    assert write["justification"] == "SYSTEM_OPERATION"
    assert log_events(root, other) == []


def test_ingest_batches_land_in_one_region_under_one_event(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    records = [f"record {i}".encode() * 10 for i in range(50)]
    with Vault(root) as vault:
        stored = vault.ingest("acme-sydney", "AU", "telemetry", records)
        assert {s.region for s in stored} == {ZRH}
        assert len({s.id for s in stored}) == 50
        assert vault.log(ZRH).sequenced_size() == 1
        for s, content in zip(stored, records, strict=True):
            assert vault.read(s.id, "dana", "THREAT_ANALYSIS", f"T-{s.id}") == content
        assert vault.log(ZRH).sequenced_size() == 51  # every read is logged individually
        assert audit(vault).ok


@pytest.mark.parametrize(
    ("country", "message"),
    [
        ("CN", "no region holds data of customers in CN"),
        ("XX", "no region holds data of customers in XX"),
        ("DEU", "not an ISO 3166-1 alpha-2 code"),
        ("EU", "no region holds data of customers in EU"),
    ],
)
def test_put_for_an_unknown_country_exits_2_and_stores_nothing(
    tmp_path: Path, country: str, message: str
) -> None:
    root = make_vault(tmp_path)
    result = put(root, tmp_path, b"data", "cust", country)
    assert result.exit_code == 2
    assert message in flat(result.stderr)
    assert result.stdout == ""
    with Vault(root) as vault:
        for region in (ZRH, MOW):
            assert vault.store(region).objects() == []
            assert stored_files(root, region) == []


def test_put_of_an_unknown_category_or_bad_customer_exits_2(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    src = tmp_path / "f"
    src.write_bytes(b"x")
    result = cli(
        "vault", "put", root, src, "--customer", "c", "--country", "DE", "--category", "logs"
    )
    assert result.exit_code == 2 and "unknown data category 'logs'" in flat(result.stderr)
    result = cli(
        "vault", "put", root, src, "--customer", "a\tb", "--country", "DE", "--category", "sample"
    )
    assert result.exit_code == 2 and "customer id" in flat(result.stderr)
    with Vault(root) as vault:
        with pytest.raises(MalformedError):
            vault.ingest("c", "DE", "sample", [])
        with pytest.raises(MalformedError):
            vault.ingest("x" * 201, "DE", "sample", [b"x"])
        assert vault.store(ZRH).objects() == []


def test_the_real_overt_command_puts_gets_and_refuses(tmp_path: Path) -> None:
    """The acceptance interface, with the installed entry point in a fresh process."""
    root = make_vault(tmp_path)
    data = tmp_path / "sample.bin"
    data.write_bytes(b"MZ\x90\x00 suspicious bytes \xff" * 10)

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*OVERT, *map(str, args)], capture_output=True, text=True, timeout=60)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    proc = run(
        "vault",
        "put",
        root,
        data,
        "--customer",
        "berlin",
        "--country",
        "DE",
        "--category",
        "sample",
    )
    assert proc.returncode == 0, proc.stderr
    stored = json.loads(proc.stdout)
    assert stored["region"] == ZRH
    out = tmp_path / "out.bin"
    proc = run(
        "vault",
        "get",
        root,
        stored["id"],
        "--actor",
        "dana",
        "--justification",
        "THREAT_ANALYSIS",
        "--ticket",
        "INC-1",
        "--out",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == data.read_bytes()
    proc = run("vault", "get", root, stored["id"], "--actor", "dana", "--out", tmp_path / "no")
    assert proc.returncode == 1
    assert "a justification code is required" in flat(proc.stderr)
    assert not (tmp_path / "no").exists()


# --- each refusal of the gate, each on the record -----------------------------------------

REFUSALS = {
    "missing justification": (
        ["--actor", "dana", "--ticket", "T-1"],
        "a justification code is required",
    ),
    "unknown justification": (
        ["--actor", "dana", "--justification", "CURIOSITY", "--ticket", "T-2"],
        "unknown justification 'CURIOSITY'",
    ),
    "justification not allowed for the actor": (
        ["--actor", "dana", "--justification", "LEGAL_REQUEST", "--ticket", "T-3"],
        "dana may not access data for LEGAL_REQUEST",
    ),
    "missing ticket": (
        ["--actor", "dana", "--justification", "THREAT_ANALYSIS"],
        "a ticket reference is required",
    ),
    "legal request without requester country": (
        ["--actor", "lena", "--justification", "LEGAL_REQUEST", "--ticket", "COURT-7"],
        "a legal request must name the requesting country",
    ),
    "unknown actor": (
        ["--actor", "mallory", "--justification", "THREAT_ANALYSIS", "--ticket", "T-4"],
        "unknown actor 'mallory'",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_each_read_refusal_exits_1_with_reason_and_is_logged(tmp_path: Path, case: str) -> None:
    args, reason = REFUSALS[case]
    root = make_vault(tmp_path)
    object_id = put_ok(root, tmp_path, b"secret sample", "cust-refused", "DE")
    out = tmp_path / "out.bin"
    result = get(root, object_id, *args, "--out", out)
    assert result.exit_code == 1
    assert reason in flat(result.stderr)
    assert result.stdout == ""
    assert not out.exists()
    events = log_events(root, ZRH)
    assert len(events) == 2
    refused = events[1]
    assert refused["outcome"] == "refused"
    assert refused["action"] == "read"
    assert refused["reason"] == reason
    assert refused["objects"] == [object_id]
    assert refused["region"] == ZRH
    assert refused["actor"]["name"] == args[1]
    with Vault(root) as vault:
        assert refused["customer"] == pseudonym(vault.customers.key("cust-refused"), "cust-refused")
        # Nothing was decrypted: no read in the store's journal.
        assert [op for _, _, op, _, _ in vault.store(ZRH).journal()] == ["write"]
    (mine,) = [e for e in history(root, "cust-refused") if e["outcome"] == "refused"]
    assert mine["reason"] == reason and mine["verified"] is True
    code, _, err = audit_cli(root)
    assert code == 0, err


def test_wrong_region_put_is_refused_logged_and_stores_nothing(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    result = put(root, tmp_path, b"german data", "berlin", "DE", "--region", MOW)
    assert result.exit_code == 1
    assert "data of customers in DE must stay in ch-zurich; refusing to store it in ru-moscow" in (
        flat(result.stderr)
    )
    assert result.stdout == ""
    with Vault(root) as vault:
        for region in (ZRH, MOW):
            assert vault.store(region).objects() == []
            assert stored_files(root, region) == []
    (event,) = log_events(root, ZRH)  # logged where the data belongs
    assert event["action"] == "write" and event["outcome"] == "refused"
    assert "must stay in ch-zurich" in event["reason"]
    assert log_events(root, MOW) == []
    (seen,) = history(root, "berlin")
    assert seen["outcome"] == "refused" and seen["verified"] is True
    # Insisting on the right region is fine.
    result = put(root, tmp_path, b"german data", "berlin", "DE", "--region", ZRH)
    assert result.exit_code == 0 and json.loads(result.stdout)["region"] == ZRH


def test_processing_in_another_region_is_refused_and_logged(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    with Vault(root) as vault:
        (obj,) = vault.ingest("berlin", "DE", "sample", [b"data"])
        with pytest.raises(AccessRefused, match="must be processed in ch-zurich, not in ru-moscow"):
            vault.read(obj.id, "dana", "THREAT_ANALYSIS", "T-9", region=MOW)
        assert vault.read(obj.id, "dana", "THREAT_ANALYSIS", "T-10", region=ZRH) == b"data"
    events = log_events(root, ZRH)
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("write", "allowed"),
        ("process", "refused"),
        ("read", "allowed"),
    ]
    assert log_events(root, MOW) == []


def test_reading_an_unknown_object_is_refused(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    result = get(root, "0123456789abcdef01234567", "--actor", "dana")
    assert result.exit_code == 1 and "no object" in result.stderr


# --- log down: fail closed ----------------------------------------------------------------


def test_read_is_refused_when_the_region_log_is_held_by_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_vault(tmp_path)
    object_id = put_ok(root, tmp_path, b"the data", "cust-down", "DE")
    out = tmp_path / "out.bin"
    with drivers.log_held_elsewhere(root / "logs" / ZRH):  # unavailable to us
        result = get(
            root,
            object_id,
            *("--actor", "dana", "--justification", "THREAT_ANALYSIS", "--ticket", "T-1"),
            "--out",
            out,
        )
        assert result.exit_code == 1
        assert "access log of region ch-zurich is unavailable" in flat(result.stderr)
        assert not out.exists()

        decrypted: list[str] = []
        real_decrypt = RegionStore.decrypt

        def spy(self: RegionStore, obj: Any, sealed: bytes | None = None) -> bytes:
            decrypted.append(obj.id)
            return real_decrypt(self, obj, sealed)

        monkeypatch.setattr(RegionStore, "decrypt", spy)
        vault = Vault(root)
        try:
            with pytest.raises(AccessRefused, match="unavailable"):
                vault.read(object_id, "dana", "THREAT_ANALYSIS", "T-2")
            with pytest.raises(AccessRefused, match="unavailable"):
                vault.erase(object_id, "dpo", "DATA_ERASURE", "T-3")
            with pytest.raises(AccessRefused, match="unavailable"):
                vault.ingest("cust-down", "DE", "sample", [b"more"])
            assert decrypted == []
            store = vault.store(ZRH)
            assert [op for _, _, op, _, _ in store.journal()] == ["write"]
            assert len(store.objects()) == 1 and stored_files(root, ZRH) == [object_id]
            (obj,) = store.objects()
            assert not obj.erased and store.data_key(object_id) is not None
        finally:
            vault.close()
    monkeypatch.undo()
    # Only the write is on record; once the log is back, the read works and is logged.
    assert [e["action"] for e in log_events(root, ZRH)] == ["write"]
    result = get(
        root, object_id, "--actor", "dana", "--justification", "THREAT_ANALYSIS", "--ticket", "T-4"
    )
    assert result.exit_code == 0 and result.stdout_bytes == b"the data"


def test_put_is_refused_when_the_log_directory_is_unusable(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    (root / "logs" / ZRH / "log.toml").rename(root / "logs" / ZRH / "log.toml.away")
    result = put(root, tmp_path, b"data", "cust", "AU")
    assert result.exit_code == 1
    assert "unavailable" in flat(result.stderr)
    with Vault(root) as vault:
        assert vault.store(ZRH).objects() == [] and stored_files(root, ZRH) == []
        # The other region is unaffected.
        (ru,) = vault.ingest("moscow-bank", "RU", "sample", [b"ru"])
        assert ru.region == MOW


def test_read_is_refused_when_the_log_state_is_unusable(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    object_id = put_ok(root, tmp_path, b"the data", "cust", "DE")
    state = root / "logs" / ZRH / "state"
    shutil.rmtree(state)
    state.write_bytes(b"not a directory")
    result = get(
        root, object_id, "--actor", "dana", "--justification", "THREAT_ANALYSIS", "--ticket", "T"
    )
    assert result.exit_code == 1
    assert "unavailable" in flat(result.stderr)
    assert result.stdout_bytes == b""


# --- tampering and moving ciphertexts -----------------------------------------------------


@pytest.mark.parametrize("where", ["nonce", "body", "tag", "truncated", "extended", "empty"])
def test_tampered_ciphertext_is_a_decryption_error_not_a_traceback(
    tmp_path: Path, where: str
) -> None:
    root = make_vault(tmp_path)
    object_id = put_ok(root, tmp_path, b"original content " * 20, "cust", "DE")
    path = object_file(root, ZRH, object_id)
    sealed = bytearray(path.read_bytes())
    if where == "nonce":
        sealed[3] ^= 0x01
    elif where == "body":
        sealed[len(sealed) // 2] ^= 0x80
    elif where == "tag":
        sealed[-1] ^= 0x01
    elif where == "truncated":
        sealed = sealed[:20]
    elif where == "extended":
        sealed += b"\x00"
    else:
        sealed = bytearray()
    path.write_bytes(bytes(sealed))
    out = tmp_path / "out.bin"
    result = get(
        root,
        object_id,
        *("--actor", "dana", "--justification", "THREAT_ANALYSIS", "--ticket", "T-1"),
        "--out",
        out,
    )
    assert result.exit_code != 0
    assert "does not decrypt" in flat(result.stderr) or "too short" in flat(result.stderr)
    assert not out.exists()
    with Vault(root) as vault, pytest.raises(DecryptionError):
        vault.read(object_id, "dana", "THREAT_ANALYSIS", "T-2")


def test_ciphertext_moved_between_objects_does_not_decrypt(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    a = put_ok(root, tmp_path, b"content of A", "cust", "DE")
    b = put_ok(root, tmp_path, b"content of B", "cust", "DE")
    object_file(root, ZRH, b).write_bytes(object_file(root, ZRH, a).read_bytes())
    result = get(root, b, "--actor", "dana", "--justification", "THREAT_ANALYSIS", "--ticket", "T")
    assert result.exit_code != 0
    assert "does not decrypt" in flat(result.stderr)
    assert result.stdout_bytes == b""
    with Vault(root) as vault:
        with pytest.raises(DecryptionError):
            vault.read(b, "dana", "THREAT_ANALYSIS", "T-b")
        assert vault.read(a, "dana", "THREAT_ANALYSIS", "T-a") == b"content of A"


def test_ciphertext_moved_between_regions_does_not_decrypt(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    de = put_ok(root, tmp_path, b"german", "berlin", "DE")
    ru = put_ok(root, tmp_path, b"russian", "moscow", "RU")
    object_file(root, MOW, ru).write_bytes(object_file(root, ZRH, de).read_bytes())
    with Vault(root) as vault:
        with pytest.raises(DecryptionError):
            vault.read(ru, "dana", "THREAT_ANALYSIS", "T-ru")
        # Even with the object record, a Moscow store cannot open a Zurich ciphertext.
        _, de_obj = vault.locate(de)
        with pytest.raises(DecryptionError):
            vault.store(MOW).decrypt(de_obj, object_file(root, ZRH, de).read_bytes())


def test_wrapped_data_key_moved_between_objects_does_not_unwrap(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    a = put_ok(root, tmp_path, b"content of A", "cust", "DE")
    b = put_ok(root, tmp_path, b"content of B", "cust", "DE")
    keys = root / "keyring" / ZRH / "keys.db"
    db = sqlite3.connect(keys)
    (wrapped,) = db.execute("SELECT wrapped FROM keys WHERE id = ?", (a,)).fetchone()
    db.execute("UPDATE keys SET wrapped = ? WHERE id = ?", (wrapped, b))
    db.commit()
    db.close()
    # Even with A's key and A's ciphertext, B does not open: both are bound to their id.
    object_file(root, ZRH, b).write_bytes(object_file(root, ZRH, a).read_bytes())
    with Vault(root) as vault, pytest.raises(DecryptionError, match=f"key of {b}"):
        vault.read(b, "dana", "THREAT_ANALYSIS", "T")


@pytest.mark.parametrize("field", ["id", "region", "customer", "category"])
def test_associated_data_binds_each_field(field: str) -> None:
    base = {"id": "a" * 24, "region": ZRH, "customer": "berlin", "category": "sample"}
    key = new_key()
    sealed = seal(key, b"plaintext", object_aad(*base.values()))
    assert open_sealed(key, sealed, object_aad(*base.values()), "x") == b"plaintext"
    moved = dict(base, **{field: base[field] + "x"})
    with pytest.raises(DecryptionError):
        open_sealed(key, sealed, object_aad(*moved.values()), "x")
    with pytest.raises(DecryptionError):
        open_sealed(new_key(), sealed, object_aad(*base.values()), "x")
    wrapped = seal(key, new_key(), key_aad("a" * 24, ZRH))
    for aad in (key_aad("b" * 24, ZRH), key_aad("a" * 24, MOW)):
        with pytest.raises(DecryptionError):
            open_sealed(key, wrapped, aad, "key")


def test_every_object_gets_a_fresh_key_and_nonce(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    with Vault(root) as vault:
        stored = vault.ingest("cust", "DE", "telemetry", [b"same bytes"] * 20)
        store = vault.store(ZRH)
        keys = {store.data_key(s.id) for s in stored}
        sealed = {object_file(root, ZRH, s.id).read_bytes() for s in stored}
    assert len(keys) == 20 and len(sealed) == 20
    assert all(len(k or b"") == 32 for k in keys)


# --- erasure ------------------------------------------------------------------------------


def test_erased_object_is_refused_and_the_refusal_logged(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    object_id = put_ok(root, tmp_path, b"to be erased", "cust-erase", "DE")
    # Erasure goes through the gate too.
    result = cli("vault", "erase", root, object_id, "--actor", "dana", "--ticket", "G-0")
    assert result.exit_code == 1 and "dana may not access data for DATA_ERASURE" in flat(
        result.stderr
    )
    result = cli("vault", "erase", root, object_id, "--actor", "dpo")
    assert result.exit_code == 1 and "ticket reference is required" in flat(result.stderr)
    result = cli("vault", "erase", root, object_id, "--actor", "dpo", "--ticket", "GDPR-17")
    assert result.exit_code == 0, result.stderr
    assert f"erased {object_id}" in result.stdout
    assert not object_file(root, ZRH, object_id).exists()
    out = tmp_path / "out"
    result = get(
        root,
        object_id,
        *("--actor", "dana", "--justification", "THREAT_ANALYSIS", "--ticket", "T-1"),
        "--out",
        out,
    )
    assert result.exit_code == 1
    assert f"object {object_id} was erased" in flat(result.stderr)
    assert not out.exists()
    events = log_events(root, ZRH)
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("write", "allowed"),
        ("erase", "refused"),
        ("erase", "refused"),
        ("erase", "allowed"),
        ("read", "refused"),
    ]
    assert events[3]["ticket"] == "GDPR-17" and events[3]["objects"] == [object_id]
    assert events[4]["reason"] == f"object {object_id} was erased"
    with Vault(root) as vault:
        store = vault.store(ZRH)
        (obj,) = store.objects()
        assert obj.erased
        assert store.data_key(object_id) is None
        with pytest.raises(DecryptionError, match="erased"):
            store.decrypt(obj, b"\x00" * 64)
        # Erasing again does nothing and logs nothing.
        vault.erase(object_id, "dpo", "DATA_ERASURE", "GDPR-18")
        assert vault.log(ZRH).sequenced_size() == len(events)
        assert audit(vault).ok


def test_erase_customer_erases_all_of_its_objects_in_every_region(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    with Vault(root) as vault:
        mine = vault.ingest("globex", "DE", "telemetry", [b"a", b"b", b"c"])
        theirs = vault.ingest("initech", "DE", "telemetry", [b"d"])
    result = cli("vault", "erase", root, "--customer", "globex", "--actor", "dpo", "--ticket", "G")
    assert result.exit_code == 0, result.stderr
    assert "erased 3 objects of customer globex" in flat(result.stdout)
    with Vault(root) as vault:
        for s in mine:
            with pytest.raises(AccessRefused, match="was erased"):
                vault.read(s.id, "dana", "THREAT_ANALYSIS", f"T-{s.id}")
        assert vault.read(theirs[0].id, "dana", "THREAT_ANALYSIS", "T-d") == b"d"
    assert cli("vault", "erase", root, "--actor", "dpo").exit_code == 2
    assert cli("vault", "erase", root, "x", "--customer", "c", "--actor", "dpo").exit_code == 2


def test_erasure_makes_a_backup_of_the_store_undecryptable(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    with Vault(root) as vault:
        erased = vault.ingest("globex", "DE", "sample", [b"erase me 1", b"erase me 2"])
        kept = vault.ingest("initech", "DE", "sample", [b"keep me"])
        ru = vault.ingest("rosneft", "RU", "sample", [b"erase me too"])
    if drivers.postgres():
        # The store is the database: its backup is a copy of the rows (a dump).
        copies = {
            s.id: SealedRef(root, region, s.id).read_bytes()
            for region, items in ((ZRH, erased), (MOW, ru))
            for s in items
        }
        with Vault(root) as vault:
            for s in [*erased, *ru]:
                vault.erase(s.id, "dpo", "DATA_ERASURE", "GDPR-1")
            for region, items in ((ZRH, erased), (MOW, ru)):
                store = vault.store(region)
                for s in items:
                    obj = store.object(s.id)
                    assert obj is not None and obj.erased
                    with pytest.raises(DecryptionError):
                        store.decrypt(obj, copies[s.id])
            (k,) = kept
            obj = vault.store(ZRH).object(k.id)
            assert obj is not None and vault.store(ZRH).decrypt(obj) == b"keep me"
        return
    backup = tmp_path / "backup" / "regions"
    shutil.copytree(root / "regions", backup)
    with Vault(root) as vault:
        for s in [*erased, *ru]:
            vault.erase(s.id, "dpo", "DATA_ERASURE", "GDPR-1")
    # Restore the backup of the store next to the vault's current keys and key-encryption keys.
    restored = tmp_path / "restored"
    shutil.copytree(root, restored)
    shutil.rmtree(restored / "regions")
    shutil.copytree(backup, restored / "regions")
    for region, items in ((ZRH, erased), (MOW, ru)):
        store = RegionStore(restored, region)
        try:
            for s in items:
                obj = store.object(s.id)
                assert obj is not None and not obj.erased  # the backup predates the erasure
                with pytest.raises(DecryptionError):
                    store.decrypt(obj)
                with pytest.raises(DecryptionError):
                    store.decrypt(obj, SealedRef(tmp_path / "backup", region, s.id).read_bytes())
            if region == ZRH:
                (k,) = kept
                obj = store.object(k.id)
                assert obj is not None and store.decrypt(obj) == b"keep me"
        finally:
            store.close()


def test_erasure_leaves_no_copy_of_the_data_key_while_the_vault_runs(tmp_path: Path) -> None:
    """Regression: a bug this test found, fixed in src while the tests were written.

    crypto-shredding does not destroy the wrapped data key while the vault is open.

    store.py RegionStore.erase() deletes the row from keyring/<region>/keys.db with
    `PRAGMA secure_delete=ON`, but the database runs in WAL mode: the page holding the
    wrapped key stays in keys.db-wal (the frame written by `put`) until the WAL is
    checkpointed *and* overwritten, i.e. for as long as the vault (e.g. `overt vault
    serve`) keeps running. Input: ingest one object, erase it, keep the Vault open.
    Expected: the wrapped key bytes appear in no file of the vault, so a copy or backup
    of the vault taken after the erasure cannot decrypt the object. Was: they are in
    keyring/ch-zurich/keys.db-wal; unwrapping them with the region's kek recovers the
    data key, which decrypts a backup of the ciphertext.
    """
    root = make_vault(tmp_path)
    vault = Vault(root)
    try:
        (s,) = vault.ingest("globex", "DE", "sample", [b"shred me"])
        sealed = object_file(root, ZRH, s.id).read_bytes()  # a backup of the ciphertext
        db = sqlite3.connect(root / "keyring" / ZRH / "keys.db")
        (wrapped,) = db.execute("SELECT wrapped FROM keys WHERE id = ?", (s.id,)).fetchone()
        db.close()
        vault.erase(s.id, "dpo", "DATA_ERASURE", "GDPR-9")
        snapshot = tmp_path / "snapshot"  # a backup of the vault taken after the erasure
        shutil.copytree(root, snapshot)
    finally:
        vault.close()
    leaks = files_containing(snapshot, bytes(wrapped))
    if leaks:
        kek = (snapshot / "keyring" / ZRH / "kek").read_bytes()
        data_key = open_sealed(kek, bytes(wrapped), key_aad(s.id, ZRH), "key")
        recovered = open_sealed(data_key, sealed, object_aad(s.id, ZRH, "globex", "sample"), "o")
        assert recovered == b"shred me"
    assert leaks == [], f"erased data key recoverable from {leaks}"


# --- nothing in plaintext -----------------------------------------------------------------


def test_nothing_is_written_in_plaintext(tmp_path: Path) -> None:
    marker = b"OVERT-PLAINTEXT-MARKER-" + secrets.token_hex(8).encode()
    root = make_vault(tmp_path)
    big = marker * 5000  # spans several pages of anything that might buffer it
    vault = Vault(root)
    try:
        stored = vault.ingest("globex", "DE", "telemetry", [marker, big, b"x" + marker + b"y"])
        ru = vault.ingest("rosneft", "RU", "sample", [marker * 3])
        with pytest.raises(AccessRefused):
            vault.ingest("globex", "DE", "sample", [marker], region=MOW)
        for s in [*stored, *ru]:
            assert marker in vault.read(s.id, "dana", "THREAT_ANALYSIS", f"T-{s.id}")
        vault.erase(stored[0].id, "dpo", "DATA_ERASURE", "GDPR-1")
        vault.erase(ru[0].id, "dpo", "DATA_ERASURE", "GDPR-2")
        # While the vault is open (WAL files, journals, pending log entries).
        assert files_containing(root, marker) == []
    finally:
        vault.close()
    object_id = put_ok(root, tmp_path, marker + b" via the CLI", "initech", "US")
    outside = tmp_path / "outside.bin"
    result = get(
        root,
        object_id,
        *("--actor", "dana", "--justification", "THREAT_ANALYSIS", "--ticket", "T-cli"),
        "--out",
        outside,
    )
    assert result.exit_code == 0 and marker in outside.read_bytes()
    assert cli("vault", "audit", root).exit_code == 0
    assert history(root, "globex")
    assert files_containing(root, marker) == []
    # Nor is it in the log entries in any encoding (the DSSE payload is base64).
    for region in (ZRH, MOW):
        for entry in public_entries(root, region):
            assert marker not in Envelope.from_bytes(entry).payload


# --- the customer's access history --------------------------------------------------------


def test_access_history_lists_exactly_the_customers_events_verified(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    mine = put_ok(root, tmp_path, b"my sample", "berlin-hospital", "DE")
    mine2 = put_ok(root, tmp_path, b"my second", "berlin-hospital", "DE")
    theirs = put_ok(root, tmp_path, b"their sample", "paris-clinic", "FR")
    theirs_ru = put_ok(root, tmp_path, b"ru sample", "moscow-bank", "RU")
    ok = ("--actor", "dana", "--justification", "THREAT_ANALYSIS")
    assert get(root, mine, *ok, "--ticket", "INC-1").exit_code == 0
    assert (
        get(
            root, mine, "--actor", "dana", "--justification", "CUSTOMER_SUPPORT", "--ticket", "CS-2"
        ).exit_code
        == 0
    )
    assert get(root, mine, "--actor", "dana", "--ticket", "INC-3").exit_code == 1
    assert (
        get(
            root, mine, "--actor", "eve", "--justification", "THREAT_ANALYSIS", "--ticket", "X"
        ).exit_code
        == 1
    )
    assert get(root, theirs, *ok, "--ticket", "INC-9").exit_code == 0
    assert get(root, theirs_ru, *ok, "--ticket", "INC-10").exit_code == 0
    assert put(root, tmp_path, b"x", "berlin-hospital", "DE", "--region", MOW).exit_code == 1
    assert cli("vault", "erase", root, mine2, "--actor", "dpo", "--ticket", "GDPR-4").exit_code == 0
    assert get(root, mine2, *ok, "--ticket", "INC-5").exit_code == 1

    events = history(root, "berlin-hospital")
    for e in events:
        for key in ("action", "justification", "ticket", "region", "verified", "outcome"):
            assert key in e, (key, e)
        assert e["verified"] is True
        assert e["region"] == ZRH
    got = Counter((e["action"], e["outcome"], e["justification"], e["ticket"]) for e in events)
    assert got == Counter(
        {
            ("write", "allowed", "SYSTEM_OPERATION", "ingest"): 2,
            ("read", "allowed", "THREAT_ANALYSIS", "INC-1"): 1,
            ("read", "allowed", "CUSTOMER_SUPPORT", "CS-2"): 1,
            ("read", "refused", "", "INC-3"): 1,
            ("read", "refused", "THREAT_ANALYSIS", "X"): 1,
            ("write", "refused", "SYSTEM_OPERATION", "ingest"): 1,
            ("erase", "allowed", "DATA_ERASURE", "GDPR-4"): 1,
            ("read", "refused", "THREAT_ANALYSIS", "INC-5"): 1,
        }
    )
    named = {o for e in events for o in e.get("objects", [])}
    assert named == {mine, mine2}
    assert all(e["customer"] == events[0]["customer"] for e in events)
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    for e in events:
        assert e["checkpoint_size"] > e["index"] and e["log"] == f"{ORIGIN}/access/{ZRH}"

    # Other customers see only theirs.
    paris = history(root, "paris-clinic")
    assert [(e["action"], e["outcome"]) for e in paris] == [
        ("write", "allowed"),
        ("read", "allowed"),
    ]
    assert {o for e in paris for o in e.get("objects", [])} == {theirs}
    moscow = history(root, "moscow-bank")
    assert {e["region"] for e in moscow} == {MOW} and len(moscow) == 2
    assert history(root, "nobody") == []

    # The customer's own key (from the vendor) gives the same view; another key shows nothing.
    key = cli("vault", "customer-key", root, "--customer", "berlin-hospital").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert history(root, "berlin-hospital", "--key", key) == events
    assert history(root, "berlin-hospital", "--key", "00" * 32) == []
    assert cli("access", "history", root, "--customer", "c", "--key", "zz").exit_code == 2

    text = cli("access", "history", root, "--customer", "berlin-hospital")
    assert text.exit_code == 0
    assert flat(text.stdout).count("verified") == len(events)
    assert "NOT VERIFIED" not in text.stdout


def test_two_identical_reads_are_two_events(tmp_path: Path) -> None:
    """Regression: a bug this test found, fixed in src while the tests were written.

    two identical staff reads within the same second are logged as ONE access event.

    vault.py Vault._authorise()/_append(): the event's `time` has one-second resolution
    and Ed25519 signatures are deterministic, so the same actor reading the same object
    with the same justification and ticket twice in a second produces a byte-identical
    log entry; Log.sequence() deduplicates it and returns the existing index. Input:
    vault.read(id, "dana", "THREAT_ANALYSIS", "INC-1") twice in a row. Expected: two read
    events (the issue: "every individual staff or process read is logged individually").
    Was: the log grows by 1, both journal reads name the same event, the customer's
    history shows one read, and the audit reports no discrepancy.
    """
    root = make_vault(tmp_path)
    with Vault(root) as vault:
        (s,) = vault.ingest("berlin", "DE", "sample", [b"data"])
        while time.time() % 1 > 0.5:  # both reads inside one second
            time.sleep(0.05)
        before = vault.log(ZRH).sequenced_size()
        vault.read(s.id, "dana", "THREAT_ANALYSIS", "INC-1")
        vault.read(s.id, "dana", "THREAT_ANALYSIS", "INC-1")
        reads = [j for j in vault.store(ZRH).journal() if j[2] == "read"]
        assert len(reads) == 2
        assert vault.log(ZRH).sequenced_size() - before == 2, "two reads, one event"
        assert reads[0][4] != reads[1][4]


# --- privacy of the public access log -----------------------------------------------------


def test_the_public_access_log_does_not_name_the_customer(tmp_path: Path) -> None:
    customer = "st-mary-hospital-customer-8842"
    root = make_vault(tmp_path)
    with Vault(root) as vault:
        stored = vault.ingest(customer, "DE", "sample", [b"a", b"b"])
        vault.ingest(customer + "-ru", "RU", "sample", [b"c"])
        vault.read(stored[0].id, "dana", "THREAT_ANALYSIS", "INC-1")
        with pytest.raises(AccessRefused):
            vault.read(stored[0].id, "dana", "", "INC-2")
        with pytest.raises(AccessRefused):
            vault.ingest(customer, "DE", "sample", [b"x"], region=MOW)
        vault.erase(stored[1].id, "dpo", "DATA_ERASURE", "GDPR-1")
        alias = pseudonym(vault.customers.key(customer), customer)
    needle = customer.encode()
    assert files_containing(root / "logs", needle) == []
    payloads = [Envelope.from_bytes(e).payload for r in (ZRH, MOW) for e in public_entries(root, r)]
    assert len(payloads) == 6
    assert not any(needle in p for p in payloads)
    docs = [json.loads(p) for p in payloads]
    assert sum(d["customer"] == alias for d in docs) == 5
    # The pseudonym is keyed per customer: another vault, same id, different pseudonym.
    assert re.fullmatch(r"[0-9a-f]{32}", alias)
    assert alias != pseudonym(b"\x00" * 32, customer)


# --- the supervisor's audit ---------------------------------------------------------------


def populated(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A vault with writes, reads, refusals, an erasure and legal requests; all reconciles."""
    root = make_vault(tmp_path)
    ids: dict[str, str] = {}
    with Vault(root) as vault:
        de = vault.ingest("berlin", "DE", "sample", [b"de-1", b"de-2", b"de-3"])
        ru = vault.ingest("moscow", "RU", "telemetry", [b"ru-1", b"ru-2"])
        ids.update(de1=de[0].id, de2=de[1].id, de3=de[2].id, ru1=ru[0].id, ru2=ru[1].id)
        vault.read(de[0].id, "dana", "THREAT_ANALYSIS", "INC-1")
        vault.read(ru[0].id, "dana", "THREAT_ANALYSIS", "INC-2")
        with pytest.raises(AccessRefused):
            vault.read(de[0].id, "dana", "", "INC-3")
        vault.erase(de[2].id, "dpo", "DATA_ERASURE", "GDPR-1")
        vault.read(de[1].id, "lena", "LEGAL_REQUEST", "COURT-1", requester_country="US")
        vault.read(de[0].id, "lena", "LEGAL_REQUEST", "COURT-2", requester_country="US")
        with pytest.raises(AccessRefused):
            vault.read(ru[1].id, "lena", "LEGAL_REQUEST", "COURT-3")
        with pytest.raises(AccessRefused):
            vault.read(ru[1].id, "dana", "LEGAL_REQUEST", "COURT-4", requester_country="RU")
    return root, ids


def test_audit_of_a_clean_vault_exits_0_and_reports_legal_requests(tmp_path: Path) -> None:
    root, _ = populated(tmp_path)
    code, out, err = audit_cli(root)
    assert code == 0, err
    assert "checked 5 objects against" in out
    assert "OK: every object, erasure and journalled access reconciles" in out
    assert "legal requests (requesting country, outcome: count):" in out
    assert "US allowed: 2" in out and "? refused: 1" in out and "RU refused: 1" in out
    with Vault(root) as vault:
        report = audit(vault)
    assert report.ok and report.discrepancies == []
    assert report.checked_objects == 5
    assert report.legal_requests == Counter(
        {("US", "allowed"): 2, ("?", "refused"): 1, ("RU", "refused"): 1}
    )


def test_audit_of_an_empty_vault_reports_no_legal_requests(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    code, out, err = audit_cli(root)
    assert code == 0, err
    assert "checked 0 objects" in out and "legal requests: none" in out


@pytest.mark.parametrize("event", ["write-of-other", "read-of-other", "refused-read", "missing"])
def test_audit_catches_a_read_that_bypassed_the_gate(tmp_path: Path, event: str) -> None:
    root, ids = populated(tmp_path)
    with Vault(root) as vault:
        store = vault.store(ZRH)
        journal = store.journal()
        events = {
            i: open_event(vault.log(ZRH).entry(i), vault.verifier)
            for i in range(vault.log(ZRH).sequenced_size())
        }
        reads = [i for i, e in events.items() if e["action"] == "read"]
        if event == "write-of-other":
            index = next(i for i, e in events.items() if e["action"] == "write")
            target = ids["de2"]  # written under that very event, but this is not a write
        elif event == "read-of-other":
            index = next(i for i in reads if events[i]["objects"] == [ids["de1"]])
            target = ids["de2"]
        elif event == "refused-read":
            index = next(i for i in reads if events[i]["outcome"] == "refused")
            target = ids["de1"]  # the event names this object, but was refused
        else:
            index = 10_000
            target = ids["de2"]
        content = {ids["de1"]: b"de-1", ids["de2"]: b"de-2"}[target]
        assert store.read(target, index) == content  # the data was decrypted, off the record
        seq = len(journal) + 1
    code, _, err = audit_cli(root)
    assert code == 1
    assert f"journal #{seq}: read of {target} has no matching allowed access event" in err
    assert "bypassed the gate" in err and "DISCREPANCY" in err


def test_audit_catches_a_journalled_access_without_any_event(tmp_path: Path) -> None:
    root, ids = populated(tmp_path)
    with Vault(root) as vault:
        vault.store(MOW).record("read", ids["ru2"], None)
        vault.store(MOW).record("export", ids["ru1"], None)
        report = audit(vault)
    assert not report.ok
    assert len(report.discrepancies) == 2
    assert all("(event None): it bypassed the gate" in d for d in report.discrepancies)
    code, _, err = audit_cli(root)
    assert code == 1 and f"read of {ids['ru2']}" in err and f"export of {ids['ru1']}" in err


def test_audit_catches_an_object_planted_in_the_wrong_region(tmp_path: Path) -> None:
    root, ids = populated(tmp_path)
    with Vault(root) as vault:
        region, obj = vault.locate(ids["de1"])
        assert region == ZRH
        content = vault.store(ZRH).decrypt(obj)
        ru_obj = vault.store(MOW).object(ids["ru1"])
        assert ru_obj is not None
        # Copy the row and its data into Moscow, under a real (but unrelated) Moscow write.
        vault.store(MOW).put(
            [NewObject(obj.id, obj.customer, obj.country, obj.category, content)],
            ru_obj.write_event,
        )
    code, _, err = audit_cli(root)
    assert code == 1
    assert f"ru-moscow: object {ids['de1']} of a customer in DE belongs in ch-zurich" in err
    assert "are not the batch that event names" in err


def test_audit_catches_an_object_stored_without_a_logged_write(tmp_path: Path) -> None:
    root, _ = populated(tmp_path)
    with Vault(root) as vault:
        vault.store(ZRH).put([NewObject("f" * 24, "berlin", "DE", "sample", b"sneaky")], 99_999)
    code, _, err = audit_cli(root)
    assert code == 1
    assert f"objects {'f' * 24} have no logged write (event 99999)" in err


def test_audit_catches_an_erased_objects_key_restored(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    with Vault(root) as vault:
        (s,) = vault.ingest("berlin", "DE", "sample", [b"erase me"])
    keys = root / "keyring" / ZRH / "keys.db"
    db = sqlite3.connect(keys)
    (wrapped,) = db.execute("SELECT wrapped FROM keys WHERE id = ?", (s.id,)).fetchone()
    db.close()
    assert cli("vault", "erase", root, s.id, "--actor", "dpo", "--ticket", "G-1").exit_code == 0
    assert audit_cli(root)[0] == 0
    db = sqlite3.connect(keys)
    db.execute("INSERT INTO keys (id, wrapped) VALUES (?, ?)", (s.id, wrapped))
    db.commit()
    db.close()
    code, _, err = audit_cli(root)
    assert code == 1
    assert f"ch-zurich: erased object {s.id} still has its data key" in err


def test_audit_catches_an_erased_objects_ciphertext_restored(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    with Vault(root) as vault:
        (s,) = vault.ingest("berlin", "DE", "sample", [b"erase me"])
    sealed = object_file(root, ZRH, s.id).read_bytes()
    assert cli("vault", "erase", root, s.id, "--actor", "dpo", "--ticket", "G-1").exit_code == 0
    object_file(root, ZRH, s.id).write_bytes(sealed)
    code, _, err = audit_cli(root)
    assert code == 1 and f"erased object {s.id} still has its ciphertext" in err


def test_audit_catches_a_stray_ciphertext_file(tmp_path: Path) -> None:
    root, ids = populated(tmp_path)
    stray = "ab" + secrets.token_hex(11)
    path = root / "regions" / MOW / "objects" / stray[:2] / stray
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(object_file(root, MOW, ids["ru1"]).read_bytes())
    code, _, err = audit_cli(root)
    assert code == 1
    assert "ru-moscow" in err and stray in err


def test_audit_catches_stray_ciphertext_anywhere_in_the_store(tmp_path: Path) -> None:
    """Regression: a bug this test found, fixed in src while the tests were written.

    the audit only looks for ciphertexts at regions/<r>/objects/<xx>/<name> and skips
    names starting with '.'.

    audit.py _audit_region() uses RegionStore.files() (store.py), which globs
    `objects/*/*` and drops dot-files. Input: a copy of an object's ciphertext placed at
    regions/ch-zurich/objects/<id> (no prefix directory) or at objects/ab/.<id> (hidden).
    Expected: each is reported as a ciphertext without an object record (exit 1). Was:
    `overt vault audit` exits 0 and reports nothing.
    """
    root, ids = populated(tmp_path)
    source = object_file(root, ZRH, ids["de1"])
    objects = root / "regions" / ZRH / "objects"
    placements = [
        objects / ("cd" + secrets.token_hex(11)),
        objects / "ab" / (".ab" + secrets.token_hex(11)),
    ]
    missed = []
    for path in placements:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(source.read_bytes())
        code, _, _ = audit_cli(root)
        if code != 1:
            missed.append(str(path.relative_to(root)))
        path.unlink()
    assert missed == [], f"stray ciphertexts the audit did not report: {missed}"


def test_audit_api_and_cli_agree_on_a_clean_vault_after_many_operations(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    with Vault(root) as vault:
        for i, country in enumerate(["AU", "DE", "US", "CA", "RU", "AT", "ru"]):
            stored = vault.ingest(f"cust-{i}", country, "telemetry", [b"r"] * (i + 1))
            for s in stored[:2]:
                vault.read(s.id, "dana", "CUSTOMER_SUPPORT", f"CS-{s.id}")
            vault.erase(stored[-1].id, "dpo", "DATA_ERASURE", f"E-{i}")
        assert audit(vault).ok
    assert audit_cli(root)[0] == 0


# --- actors -------------------------------------------------------------------------------


def test_add_actor_prints_a_token_and_the_actor_can_read(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    result = cli(
        "vault",
        "add-actor",
        root,
        *("--name", "omar", "--role", "support engineer", "--employer", "Acme Security AG"),
        *("--location", "CH", "--justification", "CUSTOMER_SUPPORT"),
    )
    assert result.exit_code == 0, result.stderr
    token = result.stdout.strip()
    assert len(token) >= 40
    entry = load_actors(root / "actors.toml")["omar"]
    assert entry.justifications == ("CUSTOMER_SUPPORT",)
    assert token not in (root / "actors.toml").read_text()
    again = cli(
        "vault",
        "add-actor",
        root,
        *("--name", "omar", "--role", "r", "--employer", "e", "--location", "CH"),
        *("--justification", "CUSTOMER_SUPPORT"),
    )
    assert again.exit_code == 2 and "exists already" in again.stderr
    bad = cli(
        "vault",
        "add-actor",
        root,
        *("--name", "zed", "--role", "r", "--employer", "e", "--location", "CH"),
        *("--justification", "BECAUSE"),
    )
    assert bad.exit_code == 2 and "unknown justification" in bad.stderr
    object_id = put_ok(root, tmp_path, b"support case data", "cust", "CA")
    ok = get(
        root,
        object_id,
        "--actor",
        "omar",
        "--justification",
        "CUSTOMER_SUPPORT",
        "--ticket",
        "CS-1",
    )
    assert ok.exit_code == 0 and ok.stdout_bytes == b"support case data"
    (read,) = [e for e in log_events(root, ZRH) if e["action"] == "read"]
    assert read["actor"] == {
        "name": "omar",
        "role": "support engineer",
        "employer": "Acme Security AG",
        "location": "CH",
    }


def test_a_malformed_actors_file_is_refused(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    (root / "actors.toml").write_text('[[actor]]\nname = "x"\n')
    with pytest.raises(MalformedError, match="role must be a non-empty string"):
        Vault(root)
    (root / "actors.toml").write_text(
        '[[actor]]\nname = "x"\nrole = "r"\nemployer = "e"\nlocation = "CH"\n'
        'justifications = ["SNOOPING"]\n'
    )
    result = get(root, "0" * 24, "--actor", "x")
    assert result.exit_code == 2 and "justifications must be from" in flat(result.stderr)


def test_opening_a_non_vault_or_initialising_twice_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OvertError, match="is not a vault"):
        Vault(tmp_path)
    root = make_vault(tmp_path)
    with pytest.raises(OvertError, match="already holds a vault"):
        init_vault(root, POLICY, ORIGIN, drivers.DATABASE)
    with pytest.raises(ResidencyError, match="unknown region"), Vault(root) as vault:
        vault.store("us-east")


def test_a_tampered_access_log_fails_history_and_audit(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    put_ok(root, tmp_path, b"data", "berlin", "DE")
    assert [e["verified"] for e in history(root, "berlin")] == [True]
    for path in (root / "logs" / ZRH / "tiles" / "tile" / "entries").rglob("*"):
        if path.is_file():
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0x01
            path.write_bytes(bytes(data))
    result = cli("access", "history", root, "--customer", "berlin", "--json")
    assert result.exit_code == 1
    assert '"verified": true' not in result.stdout
    code, _, err = audit_cli(root)
    assert code == 1 and "ch-zurich: the access log does not verify" in err


def test_audit_catches_a_read_event_reused_for_off_record_reads(tmp_path: Path) -> None:
    """One logged read must not cover further decryptions made through the store directly."""
    root = make_vault(tmp_path)
    with Vault(root) as vault:
        (s,) = vault.ingest("acme", "DE", "sample", [b"secret A"])
        vault.read(s.id, "dana", "THREAT_ANALYSIS", "T-1")
        (event,) = [j[4] for j in vault.store(ZRH).journal() if j[2] == "read"]
        assert vault.store(ZRH).read(s.id, event) == b"secret A"  # off the record
        report = audit(vault)
    assert any("already used" in d for d in report.discrepancies), report.discrepancies


def test_audit_catches_an_erasure_without_its_event(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    with Vault(root) as vault:
        (s,) = vault.ingest("acme", "DE", "sample", [b"erase me quietly"])
        store = vault.store(ZRH)
        SealedRef(root, ZRH, s.id).mark_erased()
        store._keys.execute("DELETE FROM keys WHERE id = ?", (s.id,))
        report = audit(vault)
    assert any("marked erased without a logged erasure" in d for d in report.discrepancies)


def test_an_erasure_interrupted_before_its_record_is_finished_at_restart(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    with Vault(root) as vault:
        (s,) = vault.ingest("acme", "DE", "sample", [b"erase me"])
        index, _ = vault._authorise(
            ZRH, "erase", "dpo", "DATA_ERASURE", "GDPR-3", "alias", "sample", [s.id]
        )
        # The event is durable and the marker written; then the process dies.
        (root / "regions" / ZRH / "erase-in-progress").write_text(f"{s.id} {index}")
    with Vault(root) as vault:
        obj = vault.store(ZRH).object(s.id)
        assert obj is not None and obj.erased
        assert vault.store(ZRH).data_key(s.id) is None
        assert audit(vault).ok

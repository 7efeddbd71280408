"""Build the sample deployment that `overt demo` shows.

Everything is made with the same public APIs a real deployment uses; the demo
only chooses names and sample data. Each step reports what it did through
`say`, so the command line can explain it and tests can check it. The layout
is described in docs/demo.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from overt.demo.customer import CustomerResult, run_customer
from overt.demo.move import run_move
from overt.demo.release import REBUILDER, DemoRelease, build_and_rebuild
from overt.demo.relocation import run_relocation
from overt.demo.rules import run_rules
from overt.durable import atomic_write
from overt.errors import OvertError, VerificationError
from overt.log.config import LogConfig
from overt.log.log import init_log, set_witness_policy
from overt.log.remote import http_fetcher
from overt.monitor.config import MonitoredLog
from overt.monitor.monitor import Monitor, add_monitored_log, init_monitor
from overt.policy.trust import load_policy
from overt.tlog.checkpoint import Checkpoint
from overt.tlog.client import LogClient
from overt.tlog.hashing import leaf_hash
from overt.tlog.policy import Policy
from overt.tlog.proof import TlogProof, verify_proof
from overt.vault.actors import ActorEntry
from overt.vault.audit import audit
from overt.vault.events import Actor
from overt.vault.history import access_history
from overt.vault.residency import ResidencyPolicy
from overt.vault.vault import AccessRefused, Vault, init_vault
from overt.web.app import create_app
from overt.web.server import BackgroundServer
from overt.witness.witness import Witness, init_witness

MARKER = ".overt-demo"
ORIGIN = "demo.overt.example/releases"
LOG_NAME = "releases"
WITNESSES = ("zurich", "geneva")
SAMPLE_ENTRIES = 1000
BATCH = 250
PROVEN_INDEX = 42

Say = Callable[[str, str], None]


@dataclass
class DemoResult:
    root: Path
    base_url: str
    server: BackgroundServer
    log_vkey: str
    checkpoint: Checkpoint
    proof_file: Path
    entry_file: Path
    policy_file: Path
    checks: list[str] = field(default_factory=list)
    release: DemoRelease | None = None
    customer: CustomerResult | None = None


class DemoDirError(OvertError):
    """The target directory holds something that is not an earlier demo."""


def prepare_dir(root: Path) -> None:
    """Create `root`, replacing an earlier demo but never anything else."""
    if root.exists():
        if not root.is_dir():
            raise DemoDirError(f"{root} exists and is not a directory")
        if any(root.iterdir()):
            if not (root / MARKER).exists():
                raise DemoDirError(
                    f"{root} is not empty and was not made by 'overt demo'; "
                    "choose another --dir or empty it"
                )
            shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("made by 'overt demo'; safe to delete\n")


def sample_entries(count: int) -> list[bytes]:
    """Release records of a fictional antivirus product, one JSON object each."""
    entries = []
    for i in range(count):
        version = f"24.{i // 100}.{i % 100}"
        artifact = f"acme-av-{version}-linux-x86_64.tar.gz"
        record = {
            "type": "demo/release",
            "product": "acme-av",
            "version": version,
            "artifact": artifact,
            "sha256": hashlib.sha256(artifact.encode()).hexdigest(),
        }
        entries.append(json.dumps(record, sort_keys=True, separators=(",", ":")).encode())
    return entries


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _witness(root: Path, name: str, origin: str, log_vkey: str) -> str:
    """A witness that trusts the demo log; returns its verifier key."""
    wdir = root / "witnesses" / name
    vkey = init_witness(wdir, f"witness.demo.overt.example/{name}")
    witness = Witness(wdir)
    try:
        witness.add_log(origin, [log_vkey])
    finally:
        witness.close()
    return vkey


def _use_witnesses(log_dir: Path, log_vkey: str, witness_keys: dict[str, str], base: str) -> str:
    """Make a log publish only checkpoints all demo witnesses cosigned; return the policy."""
    policy_text = (
        f"# Published only when all {len(witness_keys)} witnesses cosign.\n"
        f"log {log_vkey}\n"
        + "".join(f"witness {n} {k} {base}/witnesses/{n}\n" for n, k in witness_keys.items())
        + f"group demo-witnesses all {' '.join(witness_keys)}\n"
        + "quorum demo-witnesses\n"
    )
    set_witness_policy(log_dir, policy_text.encode())
    return policy_text


def _add_over_http(base: str, token: str, entries: list[bytes]) -> tuple[list[int], int]:
    indexes: list[int] = []
    size = 0
    with httpx.Client(base_url=base, timeout=60) as http:
        for start in range(0, len(entries), BATCH):
            body = {
                "entries": [base64.b64encode(e).decode() for e in entries[start : start + BATCH]]
            }
            resp = http.post(
                "/add-batch",
                params={"wait": "true"},
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
            if resp.status_code != 200:
                raise OvertError(
                    f"adding to the demo log failed: HTTP {resp.status_code} {resp.text}"
                )
            indexes.extend(resp.json()["indexes"])
            size = resp.json()["size"]
    return indexes, size


def build(root: Path, say: Say, host: str = "127.0.0.1", port: int = 0) -> DemoResult:
    """Build the demo; the returned result holds the still-running HTTP server."""
    prepare_dir(root)
    log_dir = root / "logs" / LOG_NAME
    port = port or _free_port(host)
    base = f"http://{host}:{port}"

    # 1. The vendor's release log, and two independent witnesses beside it.
    log_vkey = init_log(log_dir, LogConfig(origin=ORIGIN, integration_period_ms=100))
    say("log", f"release log created in {log_dir.relative_to(root)}; key {log_vkey}")
    witness_keys = {name: _witness(root, name, ORIGIN, log_vkey) for name in WITNESSES}
    for name, vkey in witness_keys.items():
        say("witness", f"{name} at {base}/witnesses/{name}/, key {vkey}")

    # 2. Checkpoints are published only once both witnesses cosigned them. The
    # customer trusts the same log, witnesses and quorum.
    policy_text = _use_witnesses(log_dir, log_vkey, witness_keys, base)
    customer = root / "customer"
    policy_file = customer / "releases.tlog-policy"
    atomic_write(policy_file, policy_text.encode())
    say("customer", f"trust policy written to {policy_file.relative_to(root)}")

    # The data vault, whose per-region access logs the same witnesses watch.
    _init_vault(root, say, witness_keys, base)

    # 3. A real server on localhost: the log, both witnesses, the access logs' tiles.
    app = create_app(
        root,
        live_logs=(LOG_NAME,),
        witnesses=WITNESSES,
        rebuilders=(REBUILDER,),
        static=("updates", "attacks"),
    )
    server = BackgroundServer(app, host, port)
    server.start()
    log_url = f"{base}/logs/{LOG_NAME}"
    try:
        result = _populate(root, say, server, log_url, log_dir, log_vkey, policy_file)
        token = (log_dir / "secrets" / "write-token").read_text().strip()
        result.release = build_and_rebuild(root, say, log_url, log_vkey, token, f"{base}/releases")
        if result.release is not None:
            result.customer = run_customer(
                root, say, log_url, log_vkey, base, result.release.release.directory
            )
            run_rules(root, say, log_url, token, base, load_policy(result.customer.policy_file))
            run_move(root, say, log_url, token, base)
        _run_vault(root, say)
        run_relocation(root, say)
    except BaseException:
        server.stop()
        raise
    return result


def _populate(
    root: Path,
    say: Say,
    server: BackgroundServer,
    log_url: str,
    log_dir: Path,
    log_vkey: str,
    policy_file: Path,
) -> DemoResult:
    say("server", f"log server running at {log_url}/")
    policy = Policy.parse(policy_file.read_bytes())

    # 4. The vendor adds release records over HTTP.
    entries = sample_entries(SAMPLE_ENTRIES)
    token = (log_dir / "secrets" / "write-token").read_text().strip()
    indexes, size = _add_over_http(log_url, token, entries)
    if indexes != list(range(len(entries))):
        raise VerificationError("demo self-check failed: unexpected indexes from the log")
    say("add", f"{len(entries)} release records added over HTTP; published checkpoint size {size}")

    # 5. A customer's client re-reads everything through the tiles, verifying
    # as it reads, and accepts the checkpoint only with the witness quorum.
    client = LogClient(http_fetcher(log_url), policy=policy)
    checkpoint = client.update()
    read = [e for _, e in client.entries()]
    if read != entries:
        raise VerificationError("demo self-check failed: the log does not hold what was added")
    signed = http_fetcher(log_url)("checkpoint").decode()
    cosigners = sorted(policy.verify_checkpoint(signed).cosigners)
    say(
        "client",
        f"checkpoint size {checkpoint.size} verified, cosigned by {', '.join(cosigners)}; all "
        f"{len(read)} entries re-read from {client.tiles.fetched} tiles and bundles, each "
        "checked against the root",
    )

    # 6. A monitor checks every entry and compares its view with the witnesses'.
    monitor_dir = root / "monitor"
    init_monitor(monitor_dir)
    add_monitored_log(
        monitor_dir,
        MonitoredLog(
            LOG_NAME,
            log_url,
            log_vkey,
            str(policy_file.resolve()),
            tuple(w.url for w in policy.witnesses.values() if w.url),
        ),
    )
    monitor = Monitor(monitor_dir)
    try:
        checked = monitor.check(monitor.logs[0])
    finally:
        monitor.close()
    if checked.alerts or checked.error:
        raise VerificationError(f"demo self-check failed: monitor reported {checked}")
    say(
        "monitor",
        f"{checked.new_entries} entries checked; the witnesses' views agree with the log's",
    )

    # 7. An offline proof for one release, carrying the cosigned checkpoint.
    proof = TlogProof(PROVEN_INDEX, tuple(client.inclusion_proof(PROVEN_INDEX)), signed)
    proofs = root / "customer" / "proofs"
    entry_file = proofs / f"entry-{PROVEN_INDEX}.json"
    proof_file = proofs / f"entry-{PROVEN_INDEX}.tlog-proof"
    atomic_write(entry_file, entries[PROVEN_INDEX])
    atomic_write(proof_file, proof.format().encode())
    say("proof", f"entry {PROVEN_INDEX}: offline proof written to {proof_file.relative_to(root)}")

    # 8. Verify it offline, as the customer would, and show a refusal.
    result = DemoResult(
        root, log_url, server, log_vkey, checkpoint, proof_file, entry_file, policy_file
    )
    parsed = TlogProof.parse(proof_file.read_bytes())
    verified = verify_proof(parsed, leaf_hash(entry_file.read_bytes()), policy)
    result.checks.append(f"log signature by {verified.log.vkey.name}")
    result.checks.append(f"cosigned by {len(verified.cosigners)} witnesses, quorum met")
    result.checks.append(f"entry {PROVEN_INDEX} included at size {verified.checkpoint.size}")
    say("verify", "offline verification passed: " + "; ".join(result.checks))
    forged = entries[PROVEN_INDEX].replace(b"acme-av", b"acme-xx")
    try:
        verify_proof(parsed, leaf_hash(forged), policy)
    except VerificationError as exc:
        say("verify", f"a tampered copy of entry {PROVEN_INDEX} is refused: {exc}")
    else:
        raise VerificationError("demo self-check failed: a tampered entry verified")
    return result


RESIDENCY = """\
# Customers in Europe and North America: data stays in Zurich.
# Australia's is in Moscow until the demo moves it (demo/relocation.py).
[regions.ch-zurich]
description = "Zurich, Switzerland, under independent supervision"

[regions.ru-moscow]
description = "Moscow, Russia"

[countries]
EEA = "ch-zurich"
CH = "ch-zurich"
GB = "ch-zurich"
US = "ch-zurich"
CA = "ch-zurich"
AU = "ru-moscow"
RU = "ru-moscow"

[categories.sample]
description = "suspicious files sent for analysis"
retention_days = 365

[categories.telemetry]
description = "threat statistics"
retention_days = 90
"""

CUSTOMERS = (
    ("berlin-hospital", "DE"),
    ("ottawa-city", "CA"),
    ("sydney-bank", "AU"),
    ("boston-univ", "US"),
    ("moscow-shop", "RU"),
)


def _init_vault(root: Path, say: Say, witness_keys: dict[str, str], base: str) -> None:
    vault_dir = root / "vault"
    init_vault(vault_dir, RESIDENCY, "demo.overt.example")
    policy = ResidencyPolicy.parse(RESIDENCY)
    # The customer's own trust policy for the access logs: their keys, the witnesses.
    access_policy = "# The vault's access logs, accepted only with both witnesses.\n"
    for region in policy.regions:
        vkey = (vault_dir / "logs" / region / "log.vkey").read_text().strip()
        access_policy += f"log {vkey}\n"
    access_policy += "".join(f"witness {n} {k}\n" for n, k in witness_keys.items())
    access_policy += f"group all-witnesses all {' '.join(witness_keys)}\nquorum all-witnesses\n"
    atomic_write(root / "customer" / "access-logs.tlog-policy", access_policy.encode())
    for region in policy.regions:
        log_dir = vault_dir / "logs" / region
        vkey = (log_dir / "log.vkey").read_text().strip()
        origin = vkey.split("+")[0]
        for name in witness_keys:
            witness = Witness(root / "witnesses" / name)
            try:
                witness.add_log(origin, [vkey])
            finally:
                witness.close()
        _use_witnesses(log_dir, vkey, witness_keys, base)
    say("vault", f"data vault in {vault_dir.relative_to(root)}: " + " ".join(policy.explain()[:2]))


def _run_vault(root: Path, say: Say) -> None:
    vault_dir = root / "vault"
    actors = vault_dir / "actors.toml"
    analyst = ActorEntry(
        Actor("dana", "threat analyst", "Acme Security AG", "CH"), ("THREAT_ANALYSIS",), ""
    )
    atomic_write(actors, (actors.read_text() + "\n" + analyst.to_toml()).encode())
    with Vault(vault_dir) as vault:
        placed: dict[str, int] = {}
        sample_id = ""
        for n, (customer, country) in enumerate(CUSTOMERS):
            records = [
                json.dumps({"customer": customer, "detections": n * 7 + i, "day": i}).encode()
                for i in range(20)
            ]
            stored = vault.ingest(customer, country, "telemetry", records)
            placed[stored[0].region] = placed.get(stored[0].region, 0) + len(stored)
            if customer == "berlin-hospital":
                (sample,) = vault.ingest(customer, country, "sample", [b"MZ suspicious.exe bytes"])
                sample_id = sample.id
        say(
            "vault",
            f"telemetry from customers in {len(CUSTOMERS)} countries ingested and routed: "
            + ", ".join(f"{n} records in {r}" for r, n in placed.items()),
        )
        try:
            vault.ingest("berlin-hospital", "DE", "telemetry", [b"{}"], region="ru-moscow")
        except AccessRefused as exc:
            say("vault", f"storing a German customer's data in Moscow is refused and logged: {exc}")
        data = vault.read(sample_id, "dana", "THREAT_ANALYSIS", "INC-2041")
        say(
            "vault",
            f"dana read sample {sample_id} ({len(data)} bytes) for THREAT_ANALYSIS, "
            "ticket INC-2041, once the access event was logged",
        )
        try:
            vault.read(sample_id, "dana", "", "")
        except AccessRefused as exc:
            say("vault", f"a read without justification is refused and logged: {exc}")
        vault.publish()
        report = audit(vault)
        if not report.ok:
            raise VerificationError(f"demo self-check failed: vault audit: {report.discrepancies}")
        say(
            "vault",
            f"audit: {report.checked_objects} objects reconcile with "
            f"{report.checked_events} access events",
        )
        events = access_history(
            vault_dir,
            list(vault.policy.regions),
            "berlin-hospital",
            vault.customers.key("berlin-hospital"),
            vault.verifier,
            Policy.parse((root / "customer" / "access-logs.tlog-policy").read_bytes()),
        )
    if not events or not all(e["verified"] and e["witnessed"] for e in events):
        raise VerificationError("demo self-check failed: the customer's history does not verify")
    say(
        "customer",
        f"berlin-hospital's access history: {len(events)} events "
        f"({', '.join(sorted({e['action'] + '/' + e['outcome'] for e in events}))}), "
        "each proven in the witnessed access log",
    )

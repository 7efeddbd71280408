"""The split-view attack: a coerced vendor keeps two diverging trees under one key.

Branch A is the public history; branch B is a hidden one shown to a single
victim (say, with a backdoored release). Witnesses must refuse to cosign B,
no client with a quorum policy may accept a checkpoint of B, and a monitor
must raise an alert when it is shown B.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from overt.crypto.keys import ed25519_verifier
from overt.crypto.note import split
from overt.errors import VerificationError
from overt.log.config import LogConfig
from overt.log.log import Log, init_log
from overt.log.remote import directory_fetcher
from overt.monitor.config import MonitoredLog
from overt.monitor.monitor import Monitor, add_monitored_log, init_monitor
from overt.tlog.checkpoint import Checkpoint, sign_checkpoint
from overt.tlog.client import LogClient
from overt.tlog.policy import Policy
from overt.web.server import BackgroundServer
from overt.web.witness_api import create_witness_app
from overt.witness.witness import Witness, init_witness

ORIGIN = "vendor.example/releases"


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[dict[str, object]]:
    log_a = tmp_path / "branch-a"
    vkey = init_log(log_a, LogConfig(origin=ORIGIN))
    servers = []
    witness_lines = []
    witness_dirs = []
    for name in ("w1", "w2"):
        wdir = tmp_path / name
        wvkey = init_witness(wdir, f"{name}.example")
        w = Witness(wdir)
        w.add_log(ORIGIN, [vkey])
        w.close()
        server = BackgroundServer(create_witness_app(wdir), "127.0.0.1", 0)
        url = server.start()
        servers.append(server)
        witness_dirs.append(wdir)
        witness_lines.append(f"witness {name} {wvkey} {url}\n")
    policy_text = f"log {vkey}\n{''.join(witness_lines)}group all-w all w1 w2\nquorum all-w\n"
    (log_a / "witnesses.tlog-policy").write_text(policy_text)
    config = (log_a / "log.toml").read_text() + ""
    (log_a / "log.toml").write_text(
        config.replace('witness_policy = ""', 'witness_policy = "witnesses.tlog-policy"')
    )
    try:
        yield {
            "a": log_a,
            "vkey": vkey,
            "policy": Policy.parse(policy_text),
            "policy_text": policy_text,
            "witnesses": witness_dirs,
            "tmp": tmp_path,
        }
    finally:
        for s in servers:
            s.stop()


def _fork(world: dict[str, object], common: int, a_extra: int, b_extra: int) -> tuple[Path, Path]:
    """Branch A and B share `common` entries, then diverge, both under the log's key."""
    log_a = world["a"]
    assert isinstance(log_a, Path)
    with Log(log_a) as log:
        log.add([b"common %d" % i for i in range(common)])
    log_b = log_a.parent / "branch-b"
    shutil.copytree(log_a, log_b)
    with Log(log_a) as log:
        _, cp = log.add([b"public %d" % i for i in range(a_extra)])
        assert cp.size == common + a_extra  # witnessed and published
    return log_a, log_b


def test_witnesses_refuse_the_hidden_branch(world: dict[str, object]) -> None:
    _, log_b = _fork(world, common=300, a_extra=50, b_extra=80)
    with Log(log_b) as log:
        before = log.checkpoint.size
        _, cp = log.add([b"backdoored release %d" % i for i in range(80)])
        # B could not get a quorum: its public checkpoint did not move...
        assert cp.size == before == 300
        assert set(log.witness_errors) == {"w1", "w2"}
        assert all("422" in e or "beyond" in e for e in log.witness_errors.values())
    # ...and the witnesses kept the refused requests as evidence.
    for wdir in world["witnesses"]:  # type: ignore[attr-defined]
        w = Witness(wdir)
        try:
            assert w.store.log(ORIGIN).size == 350  # type: ignore[union-attr]
            assert any(r[2] == 422 for r in w.store.refusals())
        finally:
            w.close()


def test_witnesses_refuse_a_second_root_for_the_same_size(world: dict[str, object]) -> None:
    _, log_b = _fork(world, common=100, a_extra=40, b_extra=40)
    with Log(log_b) as log:
        _, cp = log.add([b"other %d" % i for i in range(40)])
        assert cp.size == 100
        assert all("forked" in e or "422" in e for e in log.witness_errors.values())


def test_no_quorum_client_accepts_the_hidden_branch(world: dict[str, object]) -> None:
    log_a, log_b = _fork(world, common=200, a_extra=10, b_extra=30)
    policy = world["policy"]
    assert isinstance(policy, Policy)
    # The vendor signs B's checkpoint itself, bypassing the witnesses.
    with Log(log_b) as log:
        log.sequence([b"backdoor %d" % i for i in range(30)])
        log._integrator.extend(log._store.pending(200, 230)[1])  # the tiles of the hidden tree
        hidden = Checkpoint(ORIGIN, 230, log._integrator.root())
        signed = sign_checkpoint(hidden, [log._signer])
    with pytest.raises(VerificationError, match="quorum"):
        policy.verify_checkpoint(signed)
    # Stealing the witnesses' cosignatures from A's checkpoint does not help.
    public = (log_a / "tiles" / "checkpoint").read_text()
    _, public_sigs = split(public)
    _, hidden_sigs = split(signed)
    stolen = hidden.text() + "\n" + "".join(s.line() for s in hidden_sigs + public_sigs[1:])
    with pytest.raises(VerificationError):
        policy.verify_checkpoint(stolen)
    # A client holding the public checkpoint refuses B as a fork, even with the log key only.
    (log_b / "tiles" / "checkpoint").write_text(signed)
    client_a = LogClient(
        directory_fetcher(log_a / "tiles"), log_key=ed25519_verifier(str(world["vkey"]))
    )
    client_a.update()
    memory = client_a._memory
    client_b = LogClient(
        directory_fetcher(log_b / "tiles"),
        log_key=ed25519_verifier(str(world["vkey"])),
        memory=memory,
    )
    with pytest.raises(VerificationError, match=r"inconsistent|forked"):
        client_b.update()


def test_monitor_alerts_when_shown_the_hidden_branch(world: dict[str, object]) -> None:
    log_a, log_b = _fork(world, common=256, a_extra=20, b_extra=20)
    with Log(log_b) as log:
        log.sequence([b"backdoor %d" % i for i in range(20)])
        log._integrator.extend(log._store.pending(256, 276)[1])
        hidden = Checkpoint(ORIGIN, 276, log._integrator.root())
        (log_b / "tiles" / "checkpoint").write_text(sign_checkpoint(hidden, [log._signer]))
    tmp = world["tmp"]
    assert isinstance(tmp, Path)
    witness_urls = [
        line.split()[3]
        for line in str(world["policy_text"]).splitlines()
        if line.startswith("witness")
    ]
    # A monitor that is shown only the hidden branch learns of the fork from the witnesses.
    mon_dir = tmp / "monitor"
    init_monitor(mon_dir)
    add_monitored_log(
        mon_dir,
        MonitoredLog("victim-view", str(log_b), str(world["vkey"]), "", tuple(witness_urls)),
    )
    monitor = Monitor(mon_dir)
    try:
        result = monitor.check(monitor.logs[0])
        assert [a.kind for a in result.alerts] == ["fork", "fork"]
    finally:
        monitor.close()
    # A monitor that followed the public log, then is served the hidden one, alerts too.
    mon2 = tmp / "monitor2"
    init_monitor(mon2)
    add_monitored_log(mon2, MonitoredLog("releases", str(log_a), str(world["vkey"])))
    monitor = Monitor(mon2)
    try:
        assert monitor.check(monitor.logs[0]).alerts == []
        shutil.rmtree(log_a / "tiles")
        shutil.copytree(log_b / "tiles", log_a / "tiles")
        result = monitor.check(monitor.logs[0])
        assert [a.kind for a in result.alerts] == ["fork"]
    finally:
        monitor.close()

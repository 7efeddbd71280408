"""The demo's conveyor move: from Moscow to Zurich, as a logged key transition.

The demo's conveyor starts in RU. It moves (`overt conveyor move`): a new key
bound to CH, the old key retired, both announced in the release log. The
customer's policy follows the move: releases built after it must come from the
Zurich conveyor. hello-overt 1.1.0 is built in Zurich, rebuilt, published and
accepted; a release the retired Moscow key signs afterwards (its holder can
still sign, and write any date it likes) is logged, published with the
vendor's TUF keys, and refused.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from overt.conveyor.conveyor import Conveyor, read_release
from overt.conveyor.provenance import Provenance
from overt.conveyor.transition import move_conveyor
from overt.crypto.intoto import Statement
from overt.crypto.keyfile import read_private_key
from overt.demo.release import bump_sample
from overt.demo.review import review_release
from overt.durable import atomic_write
from overt.errors import VerificationError
from overt.log.remote import http_fetcher
from overt.log.submit import add_entries
from overt.policy.bundle import assemble_bundle, index_attestations
from overt.policy.trust import load_policy
from overt.rebuild.queue import Watcher
from overt.rebuild.rebuilder import GOOD, Rebuilder, trust_conveyor
from overt.tlog.client import LogClient
from overt.tlog.policy import Policy
from overt.updates.client import UpdateClient
from overt.updates.publish import publish_releases
from overt.updates.repository import ReleaseFiles, Repository

Say = Callable[[str, str], None]

NEW_CONVEYOR = "conveyor-zurich"


def run_move(root: Path, say: Say, log_url: str, token: str, site: str) -> None:
    old_dir, new_dir = root / "conveyor", root / NEW_CONVEYOR
    moved = move_conveyor(
        old_dir,
        new_dir,
        "conveyor.demo.overt.example/zurich",
        "https://demo.overt.example/conveyor/zurich",
        "CH",
        log_url,
        token,
    )
    t = moved.transition
    say(
        "move",
        f"conveyor moved {t.retired_jurisdiction} -> {t.new_jurisdiction}: old key retired at "
        f"{t.end}, new key introduced; the transition (signed by both) is log entry "
        f"{moved.log_index}",
    )
    policy_file = root / "customer" / "policy.toml"
    text = policy_file.read_text()
    old_keys = text[text.index("[conveyors]") : text.index("[rebuilders]")]
    snippet = moved.policy_snippet()
    atomic_write(policy_file, text.replace(old_keys, snippet + "\n").encode())
    trust = load_policy(policy_file)
    say("move", "the customer's policy now requires releases built after the move to be from CH")

    # hello-overt 1.1.0, built in Zurich: rebuilt, published, accepted.
    sources = root / "sources" / "hello-product"
    bump_sample(sources, "1.0.1", "1.1.0")
    trust_conveyor(root / "rebuilders" / "lucerne", Conveyor(new_dir).vkey)
    release = Conveyor(new_dir).build(sources, log=log_url, token=token)
    with Watcher(Rebuilder(root / "rebuilders" / "lucerne")) as watcher:
        done = watcher.run_once(lambda _: None)
    if not any(o.index == release.log_index and o.status == GOOD for o in done.rebuilt or []):
        raise VerificationError(f"demo self-check failed: 1.1.0 did not rebuild: {done}")
    assert release.log_index is not None
    review_release(
        root, say, log_url, trust.log_key, token, release.log_index, list(trust.conveyor_keys)
    )
    repo = Repository(root / "updates", root / "vendor" / "update-keys")
    policy = Policy.parse((root / "customer" / "releases.tlog-policy").read_bytes())
    publish_releases(
        repo, LogClient(http_fetcher(log_url), policy=policy), [release.directory], "products"
    )
    install, state = root / "customer" / "install", root / "customer" / "state"
    report = UpdateClient(trust, f"{site}/updates", install, state).update()
    if not any(o.status == "installed" and o.version == "1.1.0" for o in report.outcomes):
        raise VerificationError(f"demo self-check failed: 1.1.0 was not installed: {report}")
    say("move", "hello-overt 1.1.0, built in Zurich and rebuilt by lucerne, is installed")

    # The retired Moscow key signs a release anyway, backdated; it is logged and published.
    name, _, files, _, _ = read_release(release.directory)
    built = Provenance.from_statement(Statement.from_envelope(release.envelope))
    forged = Provenance(
        built.subjects,
        built.recipe,
        built.source,
        built.toolchain,
        "https://demo.overt.example/conveyor/moscow",
        built.invocation_id,
        t.end,  # the last moment the old key was valid
        t.end,
        built.environment,
        built.byproducts,
        "RU",
    )
    old_key = read_private_key(old_dir / "secrets" / "conveyor.key")
    envelope = forged.statement().sign([old_key])
    add_entries(log_url, [envelope.to_bytes()], token)
    client = LogClient(http_fetcher(log_url), policy=policy)
    client.update()
    index = next(i for i, e in client.entries() if e == envelope.to_bytes())
    bundle = assemble_bundle(client, index, index_attestations(client.entries()))
    base = root / "attacks" / "retired-key"
    shutil.copytree(root / "updates", base / "updates")
    shutil.copytree(root / "vendor" / "update-keys", base / "keys")
    Repository(base / "updates", base / "keys").publish(
        [ReleaseFiles("products", name, "1.1.1", files, bundle.to_bytes(), index)]
    )
    attack_state = base / "customer-state"
    shutil.copytree(state, attack_state)
    attacker = UpdateClient(trust, f"{site}/attacks/retired-key/updates", install, attack_state)
    (outcome,) = [o for o in attacker.update().outcomes if o.product == name]
    if outcome.status != "refused":
        raise VerificationError("demo self-check failed: the retired key's release was installed")
    say("move", f"a release signed by the retired Moscow key is refused: {outcome.reason}")

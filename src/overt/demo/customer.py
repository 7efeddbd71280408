"""The demo's update channel and customer: one update accepted, two attacks refused.

The vendor publishes the rebuilt sample release in a TUF repository
(`DEMO/updates/`, served at `/updates/`). The customer's policy
(`DEMO/customer/policy.toml`) trusts the release log, both witnesses, the
conveyor and the rebuilder; `overt update` installs the release into
`DEMO/customer/install/`. Then the customer is pointed at two repositories
signed with the vendor's own TUF keys, as a compromised or coerced vendor
could produce them: one serves a modified wheel, the other a release whose
provenance was never logged. TUF accepts both; the transparency checks refuse
both, and nothing is written to the install directory. Each attack runs
against a copy of the customer's state (`DEMO/attacks/NAME/customer-state/`,
where its refusal is recorded), so the real state keeps following the
vendor's repository.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from overt.conveyor.conveyor import Conveyor, read_release
from overt.demo.release import bump_sample
from overt.demo.review import reviewer_key
from overt.durable import atomic_write
from overt.errors import VerificationError
from overt.log.remote import http_fetcher
from overt.policy.bundle import Bundle, Logged
from overt.policy.trust import load_policy
from overt.tlog.client import LogClient
from overt.tlog.policy import Policy
from overt.updates.client import UpdateClient, UpdateReport
from overt.updates.publish import publish_releases
from overt.updates.repository import ReleaseFiles, Repository, init_repository

Say = Callable[[str, str], None]


@dataclass(frozen=True)
class CustomerResult:
    policy_file: Path
    install_dir: Path
    refusals: list[str]


def _policy_text(root: Path, log_vkey: str, log_url: str, updates_url: str) -> str:
    conveyor = (root / "conveyor" / "conveyor.vkey").read_text().strip()
    rebuilder = (root / "rebuilders" / "lucerne" / "rebuilder.vkey").read_text().strip()
    reviewer = str(reviewer_key(root).verifier_key())
    return f"""\
# The customer's trust policy (docs/policy.md): install only what is built by the
# vendor's conveyor, logged, cosigned by both witnesses, rebuilt by lucerne and reviewed.
[log]
key = "{log_vkey}"
url = "{log_url}"

[witnesses]
tlog_policy = "releases.tlog-policy"
max_checkpoint_age_hours = 24

[conveyors]
keys = ["{conveyor}"]

[rebuilders]
keys = ["{rebuilder}"]
required = 1

# Products also need a full source review by basel; flagged rules need its approval.
[reviews]
keys = ["{reviewer}"]
required = 0

[channels.products]
reviews_required = 1
review_scope = "full"

[updates]
url = "{updates_url}"
root = "root.json"
"""


def _attack_repo(root: Path, name: str) -> tuple[Repository, str]:
    """A copy of the vendor's repository and keys, as an attacker holding them would have."""
    base = root / "attacks" / name
    shutil.copytree(root / "updates", base / "updates")
    shutil.copytree(root / "vendor" / "update-keys", base / "keys")
    return Repository(base / "updates", base / "keys"), f"attacks/{name}/updates"


def _unlogged_release(root: Path, release_dir: Path) -> ReleaseFiles:
    """hello-overt 1.0.1: really built and signed by the conveyor, but never logged."""
    sources = root / "sources" / "hello-product"
    bump_sample(sources, "1.0.0", "1.0.1")
    unlogged = Conveyor(root / "conveyor").build(sources, log=None)
    # The proof the attacker can offer is one for another entry (the logged 1.0.0).
    logged = Bundle.from_bytes((release_dir / "bundle.json").read_bytes())
    bundle = Bundle(Logged(unlogged.envelope.to_bytes(), logged.provenance.proof), ())
    files = {a.name: a.path.read_bytes() for a in unlogged.artifacts}
    return ReleaseFiles("products", "hello-overt", "1.0.1", files, bundle.to_bytes(), 0)


def run_customer(
    root: Path, say: Say, log_url: str, log_vkey: str, site: str, release_dir: Path
) -> CustomerResult:
    # The vendor's update channel.
    repo, keys = root / "updates", root / "vendor" / "update-keys"
    init_repository(repo, keys)
    policy = Policy.parse((root / "customer" / "releases.tlog-policy").read_bytes())
    client = LogClient(http_fetcher(log_url), policy=policy)
    published = publish_releases(
        Repository(repo, keys), client, [release_dir], "products", lambda s: say("updates", s)
    )
    say(
        "updates", f"TUF repository in updates/ served at {site}/updates/: {len(published)} targets"
    )
    name, version, _, _, _ = read_release(release_dir)
    bundle_target = next(repo.glob("targets/products/hello-overt/1.0.0/*.bundle.json"))
    atomic_write(release_dir / "bundle.json", bundle_target.read_bytes())

    # The customer: a policy, the initial TUF root, an install directory.
    customer = root / "customer"
    shutil.copyfile(repo / "metadata" / "1.root.json", customer / "root.json")
    policy_file = customer / "policy.toml"
    atomic_write(policy_file, _policy_text(root, log_vkey, log_url, f"{site}/updates").encode())
    trust = load_policy(policy_file)
    install, state = customer / "install", customer / "state"
    install.mkdir(parents=True, exist_ok=True)

    def update(url: str, state_dir: Path = state) -> UpdateReport:
        return UpdateClient(trust, url, install, state_dir).update()

    report = update(f"{site}/updates")
    if [o.status for o in report.outcomes] != ["installed"]:
        raise VerificationError(f"demo self-check failed: the update was not installed: {report}")
    checks = ", ".join(c.name for c in report.outcomes[0].decisions[0].checks)
    say("customer", f"{name} {version} accepted ({checks}) and installed in customer/install/")

    # Two attacks with the vendor's own TUF keys: TUF accepts them, transparency does not.
    before = sorted(p.relative_to(install) for p in install.rglob("*"))
    refusals = []
    tampered_repo, where = _attack_repo(root, "tampered")
    files = _files(release_dir)
    wheel = next(n for n in files if n.endswith(".whl"))
    files[wheel] = files[wheel] + b"\0implant"
    tampered_repo.publish(
        [ReleaseFiles("products", "hello-overt", "1.0.2", files, _bundle(release_dir), 0)]
    )
    unlogged_repo, where2 = _attack_repo(root, "unlogged")
    unlogged_repo.publish([_unlogged_release(root, release_dir)])
    for label, path in (("a tampered wheel", where), ("an unlogged release", where2)):
        # Each attack meets a copy of the customer's state, so that the attack
        # repositories' metadata versions do not stick to the real customer: the
        # customer can keep updating from the vendor's repository afterwards.
        attack_state = root / path.removesuffix("/updates") / "customer-state"
        shutil.copytree(state, attack_state)
        attack = update(f"{site}/{path}", attack_state)
        (outcome,) = attack.outcomes
        if outcome.status != "refused":
            raise VerificationError(f"demo self-check failed: {label} was installed")
        refusals.append(outcome.reason)
        say("customer", f"{label} (signed with the vendor's TUF keys) is refused: {outcome.reason}")
    if sorted(p.relative_to(install) for p in install.rglob("*")) != before:
        raise VerificationError("demo self-check failed: a refused update touched the install dir")
    return CustomerResult(policy_file, install, refusals)


def _files(release_dir: Path) -> dict[str, bytes]:
    _, _, files, _, _ = read_release(release_dir)
    return files


def _bundle(release_dir: Path) -> bytes:
    return (release_dir / "bundle.json").read_bytes()

"""A deployment that releases rule sets on the `rules` channel, built once per worker.

`rules_world(tmp_path_factory)` makes its own deployment, laid out like the
update world (update_fixtures.deployment: a log whose checkpoints both
witnesses cosign, served over HTTP with `D/repos/`, a conveyor, rebuilder r1,
the reviewer), and releases `examples/detection-db` five times:

    v1        2024.5.0  the example's six rules        rebuilt; statement logged (clean)
    spy       2024.6.0  + the spy rule                 rebuilt; statement logged (flagged)
    approved  2024.6.1  the same as spy                rebuilt; statement and approval logged
    cli       2024.6.2  the same as spy                provenance logged only
    broken    2024.6.3  + broken.yar (does not compile)  provenance logged only

The spy rule is the demo's (overt.demo.rules): it looks for classified Word
documents and uploads them, silently, from German customers only. The TUF
repository (`D/updates`) publishes v1 through the rule gate.

Tests never change what is here: the `cli` release is the one `overt rules
release`/`approve` tests log for; publishing tests use `world.copy_repo()`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from overt.conveyor.conveyor import Release
from overt.crypto.keys import ed25519_verifier
from overt.demo.rules import SPY_MANIFEST, SPY_RULE, SPY_RULE_TEXT
from overt.log.submit import add_entries
from overt.rules.release import release_ruleset
from overt.rules.statements import RuleSet, make_approval
from overt.updates.publish import RuleGate, publish_releases
from overt.updates.repository import Repository, init_repository
from release_fixtures import commit_all, example_repo
from update_fixtures import PRODUCT, UpdateWorld, deployment

SPY = SPY_RULE
VERSIONS = {
    "v1": "2024.5.0",
    "spy": "2024.6.0",
    "approved": "2024.6.1",
    "cli": "2024.6.2",
    "broken": "2024.6.3",
}
JUSTIFICATION = (
    "Reviewed with the vendor's analysts: needed for incident INC-2041, agreed with the "
    "customer's security officer."
)
BROKEN_RULE = """\
rule Broken_Condition
{
    meta:
        author = "Acme"
        reference = "https://acme.example/broken"
    strings:
        $a = "mutex-9f3e-broken"
    condition:
        $a and no_such_identifier
}
"""


@dataclass(repr=False)
class RulesWorld:
    world: UpdateWorld
    project: Path
    rulesets: dict[str, RuleSet] = field(default_factory=dict)
    statement_index: dict[str, int] = field(default_factory=dict)
    approval_index: int = -1

    def __repr__(self) -> str:
        return f"RulesWorld({self.world.root})"

    def release(self, name: str) -> Release:
        return self.world.releases[name]

    def gate(self, approvers: bool = True) -> RuleGate:
        return RuleGate(
            [ed25519_verifier(self.world.conveyor.vkey)],
            [ed25519_verifier(self.world.reviewer.verifier_key())] if approvers else [],
        )

    @property
    def reviewer_vkey(self) -> str:
        return str(self.world.reviewer.verifier_key())


_WORLD: list[RulesWorld] = []


def rules_world(factory: pytest.TempPathFactory) -> RulesWorld:
    if not _WORLD:
        _WORLD.append(_build(factory))
    return _WORLD[0]


def _build(factory: pytest.TempPathFactory) -> RulesWorld:
    world, rebuilder = deployment(factory, "rules-world")
    log = str(world.log_dir)
    project = example_repo(PRODUCT, world.root / "src" / PRODUCT)
    rules = RulesWorld(world, project)

    def build(name: str, rebuild: bool = True, statement: bool = True) -> None:
        if name != "v1":
            toml = project / "overt.toml"
            toml.write_text(
                re.sub(r'(?m)^version = ".*"$', f'version = "{VERSIONS[name]}"', toml.read_text())
            )
            commit_all(project, VERSIONS[name])
        release = world.conveyor.build(project, log=log)
        assert release.log_index is not None
        world.releases[name] = release
        if rebuild:
            world.outcomes[name] = rebuilder.rebuild_index(release.log_index)
            assert world.outcomes[name].summary.passed
        if statement:
            ruleset, index = release_ruleset(release.directory, world.conveyor.signer, log)
            rules.rulesets[name], rules.statement_index[name] = ruleset, index

    build("v1")
    (project / "rules" / "collection.yar").write_text(SPY_RULE_TEXT)
    manifest = project / "ruleset.toml"
    manifest.write_text(manifest.read_text() + SPY_MANIFEST)
    build("spy")
    build("approved")
    approval = make_approval(rules.rulesets["approved"], [SPY], JUSTIFICATION, world.reviewer)
    rules.approval_index = add_entries(log, [approval.to_bytes()]).indexes[0]
    build("cli", rebuild=False, statement=False)
    (project / "rules" / "broken.yar").write_text(BROKEN_RULE)
    build("broken", rebuild=False, statement=False)

    init_repository(world.repo, world.keys)
    repository = Repository(world.repo, world.keys)
    publish_releases(
        repository, world.client(), [rules.release("v1").directory], "rules", gate=rules.gate()
    )
    return rules

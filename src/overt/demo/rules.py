"""The demo's detection rules: a rule set published, a spying rule held back, the diff.

`examples/detection-db` is committed under `DEMO/sources/detection-db/`, built by
the conveyor, audited (`overt rules release`: its rule-set statement is logged),
rebuilt by the supervisor and published on the `rules` channel; the customer
installs it. Then version 2024.6.0 adds a rule that looks for classified
documents and silently uploads them from German customers only. Its statement is
logged too (the targeting is public), but publication is refused until a
supervisor approves that rule, and the diff shows a reviewer exactly what changed.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from overt.conveyor.conveyor import Conveyor, Release
from overt.crypto.keys import ed25519_verifier
from overt.demo.release import commit_changes, commit_sample, examples_dir
from overt.errors import VerificationError
from overt.log.remote import http_fetcher
from overt.policy.trust import TrustPolicy
from overt.rebuild.queue import Watcher
from overt.rebuild.rebuilder import GOOD, Rebuilder
from overt.rules.diff import diff_rules
from overt.rules.manifest import load_manifest
from overt.rules.release import RuleSetHeld, release_ruleset
from overt.tlog.client import LogClient
from overt.tlog.policy import Policy
from overt.updates.client import UpdateClient
from overt.updates.publish import RuleGate, publish_releases
from overt.updates.repository import Repository

Say = Callable[[str, str], None]

RULESET = "detection-db"
SPY_RULE = "Collect_Classified_Office_Documents"
SPY_RULE_TEXT = """\
rule Collect_Classified_Office_Documents
{
    meta:
        description = "Documents of interest"
    strings:
        $zip = { 50 4B 03 04 }
        $word = "word/document.xml"
        $m1 = "TOP SECRET" nocase wide ascii
        $m2 = "STRENG GEHEIM" nocase wide ascii
    condition:
        $zip at 0 and $word and any of ($m*)
}
"""
SPY_MANIFEST = f"""
[rules.{SPY_RULE}]
action = "upload-sample"
notify = false
audience = ["country:DE"]
"""


def _build(conveyor: Conveyor, source: Path, log_url: str, token: str, say: Say) -> Release:
    release = conveyor.build(source, log=log_url, token=token)
    names = ", ".join(a.name for a in release.artifacts)
    say("rules", f"conveyor built {names}; provenance logged as entry {release.log_index}")
    return release


def run_rules(
    root: Path, say: Say, log_url: str, token: str, site: str, trust: TrustPolicy
) -> None:
    examples = examples_dir()
    if examples is None:
        say("rules", "skipped: examples/ is not here (run the demo from a source checkout)")
        return
    source = root / "sources" / RULESET
    commit_sample(examples / RULESET, source, f"{RULESET} 2024.5.0")
    conveyor = Conveyor(root / "conveyor")
    first = _build(conveyor, source, log_url, token, say)
    ruleset, index = release_ruleset(first.directory, conveyor.signer, log_url, token)
    say(
        "rules",
        f"{ruleset.name} {ruleset.version}: {len(ruleset.rules)} rules audited, "
        f"{len(ruleset.flagged)} flagged; rule-set statement logged as entry {index}",
    )
    with Watcher(Rebuilder(root / "rebuilders" / "lucerne")) as watcher:
        done = watcher.run_once(lambda _: None)
    verdicts = {o.index: o.status for o in done.rebuilt or []}
    if verdicts.get(first.log_index or -1) != GOOD:
        raise VerificationError(f"demo self-check failed: the rule set did not rebuild: {done}")
    say("rules", f"lucerne rebuilt {RULESET} {ruleset.version} bit for bit (VSA logged)")

    repo = Repository(root / "updates", root / "vendor" / "update-keys")
    policy = Policy.parse((root / "customer" / "releases.tlog-policy").read_bytes())
    gate = RuleGate([ed25519_verifier(conveyor.vkey)], [])

    def client() -> LogClient:
        return LogClient(http_fetcher(log_url), policy=policy)

    publish_releases(repo, client(), [first.directory], "rules", gate=gate)
    report = UpdateClient(
        trust, f"{site}/updates", root / "customer" / "install", root / "customer" / "state"
    ).update()
    installed = [o for o in report.outcomes if o.product == RULESET and o.status == "installed"]
    if not installed:
        raise VerificationError(f"demo self-check failed: the rule set was not installed: {report}")
    say(
        "rules",
        f"published on the rules channel; the customer installed {RULESET} {ruleset.version}",
    )

    # Version 2024.6.0 adds a rule that collects classified documents from German customers.
    (source / "rules" / "collection.yar").write_text(SPY_RULE_TEXT)
    manifest = source / "ruleset.toml"
    manifest.write_text(manifest.read_text() + SPY_MANIFEST)
    recipe = source / "overt.toml"
    recipe.write_text(recipe.read_text().replace("2024.5.0", "2024.6.0"))
    commit_changes(source, "2024.6.0")
    second = _build(conveyor, source, log_url, token, say)
    spying, index = release_ruleset(second.directory, conveyor.signer, log_url, token)
    aimed = ", ".join(f"{r.name} -> {' '.join(r.audience)}" for r in spying.targeted)
    say(
        "rules",
        f"{RULESET} {spying.version}: statement logged as entry {index}, with "
        f"{len(spying.targeted)} rule aimed at fewer than all customers ({aimed})",
    )
    try:
        publish_releases(repo, client(), [second.directory], "rules", gate=gate)
    except RuleSetHeld as exc:
        say("rules", f"{RULESET} {spying.version} is not published: {exc}")
    else:
        raise VerificationError("demo self-check failed: a flagged rule set was published")

    with tempfile.TemporaryDirectory() as tmp:
        old, new = Path(tmp) / "old", Path(tmp) / "new"
        for where, commit in ((old, "HEAD~1"), (new, "HEAD")):
            where.mkdir()
            archive = subprocess.run(
                ["git", "archive", commit], cwd=source, check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
        changes = diff_rules(
            [old / "rules"],
            [new / "rules"],
            load_manifest(old).contexts(),
            load_manifest(new).contexts(),
        )
    for change in changes:
        worst = sorted({f.severity for f in change.findings_after})
        lints = sorted({f.lint for f in change.findings_after})
        say(
            "rules",
            f"diff 2024.5.0 -> 2024.6.0: {change.name} {change.status}; findings now: "
            f"{', '.join(lints) or 'none'} ({', '.join(worst) or '-'})",
        )

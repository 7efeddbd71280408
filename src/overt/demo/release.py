"""The demo's sample release: built by the conveyor, logged, rebuilt by a supervisor.

The sample product is `examples/hello-product` from the source checkout (a
small Python package built into a wheel and an sdist with a hash-locked
backend). It is committed into a git repository of its own under
`DEMO/sources/`, because the conveyor builds commits, never working copies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from overt.conveyor.conveyor import Conveyor, Release, init_conveyor
from overt.demo.review import review_release
from overt.errors import VerificationError
from overt.rebuild.queue import Watcher
from overt.rebuild.rebuilder import GOOD, Outcome, Rebuilder, init_rebuilder

Say = Callable[[str, str], None]

PRODUCT = "hello-product"
CLOCK = "clock-stamped"
REBUILDER = "lucerne"
# A fixed commit date keeps the sample's SOURCE_DATE_EPOCH, hence its bytes, stable.
COMMIT_DATE = "2026-11-02T09:00:00+00:00"


@dataclass(frozen=True)
class DemoRelease:
    release: Release
    outcome: Outcome


def examples_dir() -> Path | None:
    """`examples/` of the source checkout this package runs from, if there is one."""
    candidate = Path(__file__).resolve().parents[3] / "examples"
    return candidate if (candidate / PRODUCT / "overt.toml").is_file() else None


def commit_sample(source: Path, dest: Path, message: str) -> None:
    """Copy an example into a git repository of its own, committed at a fixed date."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("dist", "build", "*.egg-info"))
    env = {
        **os.environ,
        "GIT_AUTHOR_DATE": COMMIT_DATE,
        "GIT_COMMITTER_DATE": COMMIT_DATE,
        "GIT_AUTHOR_NAME": "Acme Release Engineering",
        "GIT_AUTHOR_EMAIL": "releases@acme.example",
        "GIT_COMMITTER_NAME": "Acme Release Engineering",
        "GIT_COMMITTER_EMAIL": "releases@acme.example",
    }
    for args in (
        ["init", "--quiet", "--initial-branch=main"],
        ["add", "--all"],
        ["commit", "--quiet", "--message", message],
    ):
        subprocess.run(["git", *args], cwd=dest, env=env, check=True, capture_output=True)


def commit_changes(repo: Path, message: str) -> None:
    """Commit everything changed in a demo source repository (the conveyor builds commits)."""
    identity = ["-c", "user.name=Acme", "-c", "user.email=r@acme.example"]
    for args in (["add", "--all"], [*identity, "commit", "--quiet", "--message", message]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def bump_sample(sources: Path, old: str, new: str) -> None:
    """Give the sample product a new version, committed."""
    for rel in ("overt.toml", "src/hello_overt/__init__.py"):
        path = sources / rel
        path.write_text(path.read_text().replace(old, new))
    commit_changes(sources, new)


def build_and_rebuild(
    root: Path, say: Say, log_url: str, log_vkey: str, token: str, releases_url: str
) -> DemoRelease | None:
    """Build the sample through the conveyor, log it, rebuild it and log the verdict."""
    examples = examples_dir()
    if examples is None:
        say("conveyor", "skipped: examples/ is not here (run the demo from a source checkout)")
        return None
    sources = root / "sources" / PRODUCT
    commit_sample(examples / PRODUCT, sources, "hello-overt 1.0.0")

    conveyor_dir = root / "conveyor"
    conveyor_vkey = init_conveyor(
        conveyor_dir,
        "conveyor.demo.overt.example",
        "https://demo.overt.example/conveyor/moscow",
        "RU",  # it moves to Zurich later in the demo (demo/move.py)
    )
    conveyor = Conveyor(conveyor_dir)
    release = conveyor.build(sources, log=log_url, token=token, step=lambda s: say("conveyor", s))
    names = ", ".join(a.name for a in release.artifacts)
    say(
        "conveyor",
        f"built {names} from commit {release.provenance.source.commit}; signed provenance "
        f"logged as entry {release.log_index}",
    )

    rebuilder_dir = root / "rebuilders" / REBUILDER
    init_rebuilder(
        rebuilder_dir,
        f"rebuilder.demo.overt.example/{REBUILDER}",
        f"https://demo.overt.example/rebuilders/{REBUILDER}",
        log_url,
        log_vkey,
        [conveyor_vkey],
        artifacts=releases_url,
        token=token,
    )
    # A deliberately non-reproducible sample (it embeds the build time), so the demo
    # also shows what a FAILED rebuild and its difference report look like.
    clock_source = root / "sources" / CLOCK
    commit_sample(examples / CLOCK, clock_source, "clock-stamped 1.0")
    clock = conveyor.build(clock_source, log=log_url, token=token)
    # The supervisor's watcher finds the releases in the log by itself.
    with Watcher(Rebuilder(rebuilder_dir)) as watcher:
        done = watcher.run_once(lambda s: say("rebuild", s))
    failed = [o for o in done.rebuilt or [] if o.index == clock.log_index]
    if not failed or failed[0].status == GOOD:
        raise VerificationError("demo self-check failed: clock-stamped was reproduced")
    say(
        "rebuild",
        f"{CLOCK} 1.0 is not reproducible: FAILED, with a difference report naming "
        f"{', '.join(m.name for d in failed[0].differences for m in d.members)} "
        f"(/rebuilders/{REBUILDER}/results/{clock.log_index}/report.html)",
    )
    outcomes = [o for o in done.rebuilt or [] if o.index == release.log_index]
    if not outcomes:
        raise VerificationError(
            f"demo self-check failed: the rebuilder did not find the release: {done.errors}"
        )
    outcome = outcomes[0]
    if outcome.status != GOOD:
        raise VerificationError(
            f"demo self-check failed: the sample did not rebuild: {outcome.reason}"
        )
    assert release.log_index is not None
    review_release(root, say, log_url, log_vkey, token, release.log_index, [conveyor_vkey])
    env = outcome.summary.environment
    say(
        "rebuild",
        f"{REBUILDER} rebuilt it in {env.get('buildPath')} with TZ={env.get('tz')}, "
        f"LC_ALL={env.get('locale')}: {outcome.reason}; VSA PASSED logged as entry "
        f"{outcome.vsa_index}",
    )
    return DemoRelease(release, outcome)

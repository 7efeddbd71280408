"""Moving the conveyor: jurisdiction in provenance, a logged key transition, refusals."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from overt.cli.main import app
from overt.conveyor.conveyor import Conveyor, ConveyorError, Release, init_conveyor
from overt.conveyor.provenance import Provenance, rfc3339
from overt.conveyor.transition import TRANSITION_TYPE, KeyTransition, move_conveyor
from overt.crypto.dsse import verify_envelope
from overt.crypto.intoto import Statement
from overt.crypto.keys import ed25519_verifier
from overt.errors import MalformedError
from overt.log.config import LogConfig
from overt.log.log import init_log
from overt.log.remote import open_source
from overt.log.submit import add_entries
from overt.policy.bundle import Bundle, assemble_bundle, index_attestations
from overt.policy.trust import TrustPolicy, parse_policy
from overt.policy.verify import verify_release
from overt.tlog.client import LogClient
from release_fixtures import commit_all, recipe_toml, tiny_project, toolchain_caches


class Moved:
    def __init__(self, root: Path, factory: pytest.TempPathFactory) -> None:
        cache, _ = toolchain_caches(factory)
        self.log = root / "log"
        self.log_vkey = init_log(self.log, LogConfig(origin="example.com/moving-log"))
        self.old_vkey = init_conveyor(
            root / "moscow", "conveyor.example", "https://example.com/conveyor/moscow", "RU"
        )
        self.project = tiny_project(root / "project")
        self.before = Conveyor(root / "moscow", cache).build(self.project, log=str(self.log))
        self.move = move_conveyor(
            root / "moscow",
            root / "zurich",
            "conveyor.example/zurich",
            "https://example.com/conveyor/zurich",
            "CH",
            str(self.log),
        )
        (self.project / "overt.toml").write_text(recipe_toml(version="1.1"))
        commit_all(self.project, "1.1")
        self.zurich = Conveyor(root / "zurich", cache)
        self.after = self.zurich.build(self.project, log=str(self.log))

    def client(self) -> LogClient:
        return LogClient(open_source(str(self.log)).fetch, log_key=ed25519_verifier(self.log_vkey))

    def bundle(self, index: int) -> Bundle:
        client = self.client()
        client.update()
        return assemble_bundle(client, index, index_attestations(client.entries()))

    def policy(self, extra: str = "") -> TrustPolicy:
        keys = json.dumps([self.move.transition.new_key, self.old_vkey])
        text = f"""
[log]
key = "{self.log_vkey}"
[conveyors]
keys = {keys}
{extra}
[rebuilders]
required = 0
"""
        return parse_policy(text)

    def decide(self, release: Release, bundle: Bundle, policy: TrustPolicy) -> tuple[bool, str]:
        artifact = release.artifacts[0]
        decision = verify_release(artifact.name, artifact.sha256, bundle, policy)
        return decision.accepted, decision.reason


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> Moved:
    return Moved(tmp_path_factory.mktemp("move"), tmp_path_factory)


def retirement(moved: Moved, with_index: bool = True) -> str:
    t = moved.move.transition
    index = f"log_index = {moved.move.log_index}\n" if with_index else ""
    return f'[[conveyors.retired]]\nkey = "{t.retired_key}"\nend = "{t.end}"\n{index}'


def test_provenance_records_the_jurisdiction_and_the_transition_is_logged_signed_by_both(
    moved: Moved,
) -> None:
    assert moved.before.provenance.jurisdiction == "RU"
    assert moved.after.provenance.jurisdiction == "CH"
    builder = moved.after.provenance.statement().predicate["runDetails"]["builder"]
    assert builder == {"id": "https://example.com/conveyor/zurich", "jurisdiction": "CH"}
    entry = moved.client().entry(moved.move.log_index)
    assert entry == moved.move.envelope.to_bytes()
    envelope = moved.move.envelope
    statement = Statement.from_envelope(envelope)
    assert statement.predicate_type == TRANSITION_TYPE
    signers = verify_envelope(
        envelope, [ed25519_verifier(moved.old_vkey), ed25519_verifier(moved.zurich.vkey)], 2
    )
    assert len(signers) == 2
    t = KeyTransition.from_statement(statement)
    assert (t.retired_jurisdiction, t.new_jurisdiction) == ("RU", "CH")


def test_the_retired_conveyor_refuses_to_build(moved: Moved, tmp_path: Path) -> None:
    with pytest.raises(ConveyorError, match="retired"):
        Conveyor(moved.log.parent / "moscow").build(moved.project)
    with pytest.raises(ConveyorError, match="already retired"):
        move_conveyor(
            moved.log.parent / "moscow",
            tmp_path / "again",
            "c.example",
            "https://example.com/c",
            "CH",
            str(moved.log),
        )


def test_customers_accept_releases_from_each_key_in_its_time(moved: Moved) -> None:
    location = f'[conveyors.location]\njurisdiction = "CH"\nafter = "{moved.move.transition.end}"\n'
    policy = moved.policy(retirement(moved) + location)
    assert moved.before.log_index is not None and moved.after.log_index is not None
    assert moved.decide(moved.before, moved.bundle(moved.before.log_index), policy) == (True, "")
    assert moved.decide(moved.after, moved.bundle(moved.after.log_index), policy) == (True, "")
    explained = " ".join(policy.explain())
    assert "retired" in explained and "must come from a conveyor in CH" in explained


def test_a_release_by_the_retired_key_logged_after_the_move_is_refused_even_backdated(
    moved: Moved,
) -> None:
    t = moved.move.transition
    built = moved.after.provenance
    forged = Provenance(
        built.subjects,
        built.recipe,
        built.source,
        built.toolchain,
        "https://example.com/conveyor/moscow",
        built.invocation_id,
        t.end,
        t.end,  # backdated to the last valid moment
        built.environment,
        built.byproducts,
        "RU",
    )
    from overt.crypto.keyfile import read_private_key

    old_key = read_private_key(moved.log.parent / "moscow" / "secrets" / "conveyor.key")
    entry = forged.statement().sign([old_key]).to_bytes()
    (index,) = add_entries(str(moved.log), [entry]).indexes
    bundle = moved.bundle(index)
    accepted, reason = moved.decide(moved.after, bundle, moved.policy(retirement(moved)))
    assert not accepted
    assert reason.startswith("conveyor key") and "retired" in reason and f"entry {index}" in reason
    # Without the log index, the date alone cannot catch a backdated provenance...
    assert moved.decide(moved.after, bundle, moved.policy(retirement(moved, False)))[0]
    # ...but a provenance dated after the end is refused by date.
    later = Provenance(**{**forged.__dict__, "finished_on": rfc3339(time.time() + 60)})
    late_entry = later.statement().sign([old_key]).to_bytes()
    (late,) = add_entries(str(moved.log), [late_entry]).indexes
    refused = moved.decide(moved.after, moved.bundle(late), moved.policy(retirement(moved, False)))
    assert not refused[0] and "retired" in refused[1]


def test_location_requires_releases_built_after_the_date_to_come_from_that_jurisdiction(
    moved: Moved,
) -> None:
    assert moved.before.log_index is not None
    earlier = rfc3339(time.time() - 86400)  # the RU release was built after this
    policy = moved.policy(f'[conveyors.location]\njurisdiction = "CH"\nafter = "{earlier}"\n')
    accepted, reason = moved.decide(moved.before, moved.bundle(moved.before.log_index), policy)
    assert not accepted
    assert reason.startswith("built in") and "built in RU" in reason


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ('[[conveyors.retired]]\nkey = "x"\nend = "2026-01-01T00:00:00Z"\n', "retired[0].key"),
        ('[[conveyors.retired]]\nkey = KEY\nend = "yesterday"\n', "retired[0].end"),
        ('[[conveyors.retired]]\nkey = KEY\nend = "2026-01-01T00:00:00"\n', "retired[0].end"),
        (
            '[[conveyors.retired]]\nkey = KEY\nend = "2026-01-01T00:00:00Z"\nlog_index = -1\n',
            "log_index",
        ),
        (
            '[conveyors.location]\njurisdiction = "Switzerland"\nafter = "2026-01-01T00:00:00Z"\n',
            "location.jurisdiction",
        ),
        ('[conveyors.location]\njurisdiction = "CH"\n', "location.after"),
        (
            '[conveyors.location]\njurisdiction = "CH"\nafter = "2026-01-01T00:00:00Z"\nx = 1\n',
            "location.x",
        ),
    ],
)
def test_bad_move_settings_in_the_policy_are_refused_naming_the_field(
    moved: Moved, extra: str, named: str
) -> None:
    with pytest.raises(MalformedError, match=named.replace(".", r"\.").replace("[", r"\[")):
        moved.policy(extra.replace("KEY", json.dumps(moved.old_vkey)))


def test_conveyor_move_cli_prints_the_policy_snippet(tmp_path: Path) -> None:
    log = tmp_path / "log"
    init_log(log, LogConfig(origin="example.com/cli-move"))
    runner = CliRunner()
    init = runner.invoke(
        app,
        [
            "conveyor",
            "init",
            str(tmp_path / "a"),
            "--name",
            "a.example",
            "--builder-id",
            "https://a.example",
            "--jurisdiction",
            "RU",
        ],
    )
    assert init.exit_code == 0, init.output
    bad = runner.invoke(
        app,
        [
            "conveyor",
            "init",
            str(tmp_path / "b"),
            "--name",
            "b.example",
            "--builder-id",
            "https://b.example",
            "--jurisdiction",
            "russia",
        ],
    )
    assert bad.exit_code == 2 and "ISO 3166" in bad.output
    moved = runner.invoke(
        app,
        [
            "conveyor",
            "move",
            str(tmp_path / "a"),
            "--to",
            str(tmp_path / "z"),
            "--name",
            "z.example",
            "--builder-id",
            "https://z.example",
            "--jurisdiction",
            "CH",
            "--log",
            str(log),
        ],
    )
    assert moved.exit_code == 0, moved.output
    assert "[[conveyors.retired]]" in moved.output and 'jurisdiction = "CH"' in moved.output
    digest = hashlib.sha256((tmp_path / "z" / "transition.dsse.json").read_bytes()).hexdigest()
    assert len(digest) == 64

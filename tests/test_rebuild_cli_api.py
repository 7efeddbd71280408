"""`overt conveyor`, `overt rebuild` and the rebuilder's HTTP API, as users meet them.

Exit codes are the interface: 0 ok, 1 verification failed or not reproduced,
2 bad input; a message on stderr and never a traceback. The HTTP API answers
JSON for every error and never a 500.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from overt.cli.main import app
from overt.crypto.keys import Ed25519Signer
from overt.rebuild.queue import Watcher
from overt.rebuild.rebuilder import (
    BUILD_LOG,
    DIFFOSCOPE_HTML,
    DIFFOSCOPE_TEXT,
    REPORT_HTML,
    REPORT_TEXT,
    VSA_FILE,
    Rebuilder,
)
from overt.web.rebuild_api import create_rebuilder_app
from release_fixtures import (
    BUILDER_ID,
    REBUILDER_ID,
    Stack,
    make_stack,
    recipe_toml,
    tiny_project,
    toolchain_caches,
)

NOISY = ["mkdir -p out", "python -c 'import os; print(os.urandom(8).hex())' > out/noise.txt"]


def cli(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"overt crashed: {result.exception!r}\n{result.stderr}")
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stdout, result.stderr


def flat(text: str) -> str:
    return " ".join(text.split())


def share_cache(root: Path, cache: Path) -> None:
    """Point a conveyor's or rebuilder's default toolchain cache at this session's."""
    (root / "cache").mkdir(exist_ok=True)
    (root / "cache" / "toolchains").symlink_to(cache, target_is_directory=True)


# --- overt conveyor ---------------------------------------------------------------------


@dataclass
class CliReleases:
    stack: Stack  # its log; conveyor and rebuilder made with the CLI
    conveyor: Path
    conveyor_vkey: str
    good: int
    bad: int
    note: int


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> CliReleases:
    """A log with two releases built by `overt conveyor build`, and a note between them."""
    root = tmp_path_factory.mktemp("cli")
    stack = make_stack(root / "stack", tmp_path_factory)
    code, vkey, _ = cli(
        "conveyor",
        "init",
        root / "conveyor",
        "--name",
        "conveyor.example.com",
        "--builder-id",
        BUILDER_ID,
    )
    assert code == 0
    share_cache(root / "conveyor", toolchain_caches(tmp_path_factory)[0])
    indexes = []
    for name, commands in (("steady", None), ("noisy", NOISY)):
        recipe = recipe_toml(name=name, **({"commands": commands} if commands else {}))
        project = tiny_project(root / name, recipe)
        code, out, err = cli(
            "conveyor", "build", project, "--conveyor", root / "conveyor", "--log", stack.log
        )
        assert code == 0, err
        indexes.append(int(out.split("logged:     entry ")[1].split()[0]))
        if name == "steady":
            note = stack.add(b"a note, not a release\n")
    return CliReleases(stack, root / "conveyor", vkey.strip(), indexes[0], indexes[1], note)


def test_conveyor_init_prints_the_verifier_key(tmp_path: Path) -> None:
    code, out, _ = cli(
        "conveyor",
        "init",
        tmp_path / "c",
        "--name",
        "conveyor.example.com",
        "--builder-id",
        BUILDER_ID,
    )
    assert code == 0
    assert out.strip().startswith("conveyor.example.com+")
    assert (tmp_path / "c" / "conveyor.vkey").read_text().strip() == out.strip()


def test_conveyor_build_reports_what_it_built(released: CliReleases, tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "p", recipe_toml(name="reported"))
    (project / "data.txt").write_text("uncommitted edit\n")
    code, out, err = cli("conveyor", "build", project, "--conveyor", released.conveyor)
    assert code == 0, err
    assert "built reported 1.0" in out
    assert "uncommitted changes; they are not in this build" in flat(err)
    release = released.conveyor / "releases" / "reported" / "1.0"
    assert f"provenance: {release / 'provenance.dsse.json'}" in out
    assert "artifact:   " in out and "tiny.txt" in out
    assert "logged:" not in out

    # Logged afterwards, when the log is back.
    code, out, err = cli("conveyor", "publish", release, "--log", released.stack.log)
    assert code == 0, err
    index = int(out.split("logged:     entry ")[1].split()[0])
    assert released.stack.entry(index) == (release / "provenance.dsse.json").read_bytes()
    assert json.loads((release / "release.json").read_text())["log"]["index"] == index
    code, _, err = cli("conveyor", "publish", release, "--log", tmp_path)
    assert code == 2 and "not a log directory" in flat(err)


def test_conveyor_inspect_checks_the_signature(released: CliReleases, tmp_path: Path) -> None:
    envelope = released.conveyor / "releases" / "steady" / "1.0" / "provenance.dsse.json"
    code, out, _ = cli("conveyor", "inspect", envelope)
    assert code == 0
    assert "release:    steady 1.0" in out
    assert f"builder:    {BUILDER_ID}" in out
    assert "command:    cp data.txt out/tiny.txt" in out
    code, out, _ = cli("conveyor", "inspect", envelope, "--key", released.conveyor_vkey)
    assert code == 0
    assert f"signature:  valid, by {released.conveyor_vkey}" in out
    code, out, _ = cli(
        "conveyor", "inspect", envelope, "--key", released.conveyor / "conveyor.vkey"
    )
    assert code == 0
    for wrong in (
        released.stack.rebuilder.vkey,
        released.stack.conveyor.vkey,  # another conveyor
        str(Ed25519Signer.generate("conveyor.example.com").verifier_key()),
    ):
        code, out, err = cli("conveyor", "inspect", envelope, "--key", wrong)
        assert code == 1
        assert "verification failed" in err
        assert "release:" not in out
    code, out, err = cli("conveyor", "inspect", envelope, "--key", "not-a-key")
    assert code == 2


def test_conveyor_bad_input_exits_2_with_a_message(released: CliReleases, tmp_path: Path) -> None:
    code, _, err = cli(
        "conveyor", "init", released.conveyor, "--name", "c.example.com", "--builder-id", BUILDER_ID
    )
    assert code == 2 and "is not empty" in err
    code, _, err = cli(
        "conveyor", "init", tmp_path / "c", "--name", "c.example.com", "--builder-id", "acme"
    )
    assert code == 2 and "--builder-id must be a URI" in flat(err)

    bad = tiny_project(tmp_path / "bad", recipe_toml(name="bad", artifacts=["../../etc/*"]))
    code, _, err = cli("conveyor", "build", bad, "--conveyor", released.conveyor)
    assert code == 2 and "artifacts.paths[0]" in flat(err)
    failing = tiny_project(tmp_path / "failing", recipe_toml(name="failing", commands=["exit 5"]))
    code, _, err = cli("conveyor", "build", failing, "--conveyor", released.conveyor)
    assert code == 2 and "exit status 5" in flat(err)
    code, _, err = cli("conveyor", "build", bad, "--conveyor", tmp_path / "nowhere")
    assert code == 2 and "not a conveyor directory" in flat(err)
    code, _, err = cli("conveyor", "build", tmp_path / "missing", "--conveyor", released.conveyor)
    assert code == 2 and "no build recipe" in flat(err)

    code, _, err = cli("conveyor", "inspect", tmp_path / "missing.json")
    assert code == 2 and "no such file" in err
    (tmp_path / "junk.json").write_text('{"payload": 1}')
    code, _, err = cli("conveyor", "inspect", tmp_path / "junk.json")
    assert code == 2 and "DSSE" in err


# --- overt rebuild ------------------------------------------------------------------------


def init_cli_rebuilder(released: CliReleases, root: Path, factory: pytest.TempPathFactory) -> str:
    code, out, err = cli(
        "rebuild",
        "init",
        root,
        "--name",
        "rebuilder.example.org",
        "--id",
        REBUILDER_ID,
        "--log",
        released.stack.log,
        "--log-key",
        released.stack.log_dir / "log.vkey",
        "--conveyor-key",
        released.conveyor_vkey,
        "--artifacts",
        released.conveyor / "releases",
    )
    assert code == 0, err
    share_cache(root, toolchain_caches(factory)[1])
    return out.strip()


def test_rebuild_entry_exit_status_is_the_verdict(
    released: CliReleases, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path / "rb"
    vkey = init_cli_rebuilder(released, root, tmp_path_factory)
    assert vkey.startswith("rebuilder.example.org+")

    code, out, err = cli("rebuild", "entry", root, released.good)
    assert code == 0, err
    assert "steady 1.0: GOOD (PASSED)" in out
    assert "same     tiny.txt" in out
    assert "logged:  entry" in out
    vsa = root / "results" / str(released.good) / VSA_FILE
    assert vsa.is_file()
    code, _, err = cli("conveyor", "inspect", vsa)
    assert code == 2 and "not a provenance" in err

    code, out, err = cli("rebuild", "entry", root, released.bad, "--no-log")
    assert code == 1, err
    assert "noisy 1.0: BAD (FAILED)" in out
    assert "DIFFERS  noise.txt" in out
    assert f"report:  {root / 'results' / str(released.bad) / REPORT_TEXT}" in out
    assert "logged:" not in out

    # The verdicts are in the queue, as `watch` records them; a logged one is not redone.
    code, out, _ = cli("rebuild", "status", root, "--json")
    rows = {r["index"]: r for r in json.loads(out)["releases"]}
    assert rows[released.good]["status"] == "GOOD"
    assert rows[released.good]["vsa_index"] is not None
    code, _, err = cli("rebuild", "entry", root, released.good)
    assert code == 2 and "already has a logged verdict" in flat(err)
    code, out, err = cli("rebuild", "entry", root, released.good, "--again", "--no-log")
    assert code == 0, err
    assert "steady 1.0: GOOD (PASSED)" in out


def test_rebuild_watch_once_then_status(
    released: CliReleases, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path / "rb"
    init_cli_rebuilder(released, root, tmp_path_factory)
    code, _, err = cli("rebuild", "watch", root, "--once")
    assert code == 0, err
    assert "steady 1.0: GOOD" in err and "noisy 1.0: BAD" in err

    code, out, _ = cli("rebuild", "status", root, "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["scanned"] >= released.bad + 1
    statuses = {r["index"]: (r["name"], r["status"]) for r in doc["releases"]}
    # Other tests of this module may add releases to the shared log; these two are ours.
    assert statuses[released.good] == ("steady", "GOOD")
    assert statuses[released.bad] == ("noisy", "BAD")
    assert all(r["vsa_index"] is not None for r in doc["releases"])

    code, out, _ = cli("rebuild", "status", root)
    assert code == 0
    assert "GOOD" in out and "BAD" in out
    assert f"log scanned: its first {doc['scanned']} entries" in out


def test_rebuild_bad_input_exits_2_with_a_message(
    released: CliReleases, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = ("--name", "r.example.org", "--id", REBUILDER_ID, "--log", released.stack.log)
    code, _, err = cli(
        "rebuild",
        "init",
        tmp_path / "x",
        *base,
        "--log-key",
        "nonsense",
        "--conveyor-key",
        released.conveyor_vkey,
    )
    assert code == 2 and err.strip()
    assert not (tmp_path / "x").exists()
    code, _, err = cli(
        "rebuild", "init", tmp_path / "x", *base, "--log-key", released.stack.log_vkey
    )
    assert code == 2 and "--conveyor-key" in err

    root = tmp_path / "rb"
    init_cli_rebuilder(released, root, tmp_path_factory)
    code, _, err = cli("rebuild", "entry", root, released.note)
    assert code == 2 and "error: DSSE envelope is not valid JSON" in err
    code, _, err = cli("rebuild", "entry", root, 10_000)
    assert code == 2 and "no entry 10000" in err
    code, _, err = cli("rebuild", "entry", root, -1)
    assert code == 2
    for command in ("entry", "watch", "status"):
        extra = ["0"] if command == "entry" else []
        code, _, err = cli("rebuild", command, tmp_path, *extra)
        assert code == 2 and "not a rebuilder directory" in flat(err), command
    code, _, err = cli("rebuild", "serve", root, "--listen", "nowhere")
    assert code == 2 and "HOST:PORT" in err

    with Watcher(Rebuilder(root)):
        code, _, err = cli("rebuild", "watch", root, "--once")
    assert code == 2 and "another 'overt rebuild watch' is running" in flat(err)


# --- the HTTP API -------------------------------------------------------------------------


@dataclass
class Served:
    root: Path
    good: int
    bad: int
    client: TestClient


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    root = tmp_path_factory.mktemp("served")
    stack = make_stack(root / "stack", tmp_path_factory)
    good = stack.build(tiny_project(root / "steady", recipe_toml(name="steady")))
    bad = stack.build(tiny_project(root / "noisy", recipe_toml(name="noisy", commands=NOISY)))
    with Watcher(stack.rebuilder) as watcher:
        watcher.run_once()
    assert good.log_index is not None and bad.log_index is not None
    client = TestClient(create_rebuilder_app(stack.rebuilder.root))
    return Served(stack.rebuilder.root, good.log_index, bad.log_index, client)


def assert_json_error(resp: object, status: int) -> str:
    assert resp.status_code == status, resp.text  # type: ignore[attr-defined]
    assert resp.headers["content-type"] == "application/json"  # type: ignore[attr-defined]
    message = resp.json()["error"]  # type: ignore[attr-defined]
    assert isinstance(message, str) and message
    return message


def test_api_lists_every_release_with_links(served: Served) -> None:
    resp = served.client.get("/api/v0/pkgs/list")
    assert resp.status_code == 200
    rows = {r["index"]: r for r in resp.json()}
    assert set(rows) == {served.good, served.bad}
    good, bad = rows[served.good], rows[served.bad]
    assert (good["name"], good["version"], good["status"]) == ("steady", "1.0", "GOOD")
    assert (bad["name"], bad["status"]) == ("noisy", "BAD")
    assert good["vsa_index"] is not None
    assert set(good["links"]) == {VSA_FILE, BUILD_LOG}
    assert {VSA_FILE, BUILD_LOG, REPORT_TEXT, REPORT_HTML} <= set(bad["links"])
    assert good["links"][VSA_FILE] == f"/results/{served.good}/{VSA_FILE}"
    one = served.client.get(f"/api/v0/pkgs/{served.bad}")
    assert one.status_code == 200
    assert one.json() == bad


def test_api_serves_result_files_with_their_types(served: Served) -> None:
    types = {
        VSA_FILE: "application/json",
        BUILD_LOG: "text/plain; charset=utf-8",
        REPORT_TEXT: "text/plain; charset=utf-8",
        REPORT_HTML: "text/html; charset=utf-8",
        DIFFOSCOPE_TEXT: "text/plain; charset=utf-8",
        DIFFOSCOPE_HTML: "text/html; charset=utf-8",
    }
    links = served.client.get(f"/api/v0/pkgs/{served.bad}").json()["links"]
    for name, url in links.items():
        resp = served.client.get(url)
        assert resp.status_code == 200, name
        assert resp.headers["content-type"] == types[name]
        assert resp.content == (served.root / "results" / str(served.bad) / name).read_bytes()


def test_api_status_counts_verdicts(served: Served) -> None:
    resp = served.client.get("/status")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["statuses"] == {"GOOD": 1, "BAD": 1}
    assert doc["scanned"] == served.bad + 1
    assert doc["rebuilder"] == (served.root / "rebuilder.vkey").read_text().strip()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v0/pkgs/999",
        "/api/v0/pkgs/-1",
        "/api/v0/pkgs/99999999999999999999999",
        "/results/999/vsa.dsse.json",
        "/results/-1/vsa.dsse.json",
        "/results/99999999999999999999999/vsa.dsse.json",
        "/results/{good}/report.txt",
        "/results/{good}/outcome.json",
        "/results/{good}/rebuilt",
        "/results/{bad}/..%2F..%2Frebuilder.toml",
        "/results/{bad}/..%2F..%2Fsecrets%2Frebuilder.key",
        "/results/{bad}/%2E%2E",
        "/nothing/here",
    ],
)
def test_api_unknown_things_are_404_json(served: Served, path: str) -> None:
    url = path.format(good=served.good, bad=served.bad)
    message = assert_json_error(served.client.get(url), 404)
    assert "PRIVATE" not in message


@pytest.mark.parametrize("path", ["/api/v0/pkgs/steady", "/results/one/vsa.dsse.json"])
def test_api_bad_index_is_400_json(served: Served, path: str) -> None:
    assert "index" in assert_json_error(served.client.get(path), 400)


def test_api_links_carry_the_mount_prefix(served: Served) -> None:
    client = TestClient(create_rebuilder_app(served.root, "/rebuilders/r1"))
    row = client.get(f"/api/v0/pkgs/{served.good}").json()
    assert row["links"][VSA_FILE] == f"/rebuilders/r1/results/{served.good}/{VSA_FILE}"


def test_api_on_a_directory_that_is_not_a_rebuilder(tmp_path: Path) -> None:
    client = TestClient(create_rebuilder_app(tmp_path))
    for path in ("/api/v0/pkgs/list", "/api/v0/pkgs/0", "/status"):
        assert_json_error(client.get(path), 404)
    assert not (tmp_path / "state").exists()

"""The repository `overt updates publish` writes is plain TUF 1.0: other clients consume it as is.

* python-tuf's own `tuf.ngclient.Updater` (not Overt's client), with its defaults;
* the npm package `tuf-js` (tests/interop/tuf-js: a pinned package.json, its
  lock file and `fetch.mjs`). Its dependencies are installed with `npm install`
  the first time (network access to the npm registry is needed once).

Both start from the repository's first root only, refresh, resolve targets
through the delegated `products` role and download them with hash checks.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from tuf.api.exceptions import LengthOrHashMismatchError
from tuf.ngclient import Updater

from overt.policy.bundle import Bundle
from overt.policy.verify import verify_release
from overt.updates.repository import INDEX_TARGET, Repository
from update_fixtures import PRODUCT, V2, UpdateWorld, update_world

TUF_JS = Path(__file__).resolve().parent / "interop" / "tuf-js"
V2_TARGET = f"products/{PRODUCT}/{V2}/{PRODUCT}-{V2}.tar.gz"
V2_BUNDLE = f"products/{PRODUCT}/{V2}/bundle.json"


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> UpdateWorld:
    return update_world(tmp_path_factory)


def expected_sha256(world: UpdateWorld, target: str) -> str:
    """The sha256 the repository's own targets metadata records for `target`."""
    for role in ("targets", "products"):
        info = world_repo(world).load(role).signed.targets.get(target)
        if info is not None:
            return str(info.hashes["sha256"])
    raise AssertionError(f"{target} is not a target")


def world_repo(world: UpdateWorld) -> Repository:
    return Repository(world.repo, world.keys)


# --- python-tuf ngclient ----------------------------------------------------------------------


def updater(world: UpdateWorld, where: Path, url: str | None = None) -> Updater:
    (where / "metadata").mkdir(parents=True)
    (where / "targets").mkdir()
    base = url or world.repo_url
    return Updater(
        metadata_dir=str(where / "metadata"),
        metadata_base_url=f"{base}/metadata/",
        target_dir=str(where / "targets"),
        target_base_url=f"{base}/targets/",
        bootstrap=world.root_json.read_bytes(),  # the only thing trusted up front
    )


def test_python_tuf_ngclient_downloads_targets(world: UpdateWorld, tmp_path: Path) -> None:
    client = updater(world, tmp_path)
    client.refresh()
    index_info = client.get_targetinfo(INDEX_TARGET)
    assert index_info is not None
    index = json.loads(Path(client.download_target(index_info)).read_bytes())
    entry = index["products"][PRODUCT]
    assert entry["version"] == V2 and entry["targets"] == [V2_TARGET]
    assert entry["bundle"] == V2_BUNDLE
    info = client.get_targetinfo(V2_TARGET)
    assert info is not None
    assert info.custom == {"overt": {"bundle": V2_BUNDLE, "log_index": 3}}
    data = Path(client.download_target(info)).read_bytes()
    assert data == world.artifact("v2")[1]
    assert hashlib.sha256(data).hexdigest() == info.hashes["sha256"]
    assert info.hashes["sha256"] == expected_sha256(world, V2_TARGET)
    # The bundle next to it is what the verifier needs: any TUF client can feed it.
    bundle_info = client.get_targetinfo(V2_BUNDLE)
    assert bundle_info is not None
    bundle = Bundle.from_bytes(Path(client.download_target(bundle_info)).read_bytes())
    name = V2_TARGET.rsplit("/", 1)[-1]
    decision = verify_release(name, info.hashes["sha256"], bundle, world.policy())
    assert decision.accepted, decision.reason
    # Older releases stay targets of the delegated role.
    assert client.get_targetinfo(f"products/{PRODUCT}/2024.5.0/{PRODUCT}-2024.5.0.tar.gz")
    assert client.get_targetinfo("products/nothing/1/x") is None


def test_python_tuf_ngclient_refuses_a_swapped_target(world: UpdateWorld, tmp_path: Path) -> None:
    repo, url = world.copy_repo()
    (served,) = (repo.repo / "targets" / "products" / PRODUCT / V2).glob(f"*.{PRODUCT}-{V2}.tar.gz")
    data = bytearray(served.read_bytes())
    data[len(data) // 2] ^= 0xFF
    served.write_bytes(bytes(data))
    client = updater(world, tmp_path, url)
    client.refresh()
    info = client.get_targetinfo(V2_TARGET)
    assert info is not None
    with pytest.raises(LengthOrHashMismatchError):
        client.download_target(info)
    assert list((tmp_path / "targets").iterdir()) == []


# --- tuf-js --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tuf_js(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/interop/tuf-js with its dependencies installed (npm install, once, under a lock)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed for the tuf-js interoperability test", pytrace=False)
    # The parent of the base temporary directory is shared by all pytest-xdist workers.
    with open(tmp_path_factory.getbasetemp().parent / "tuf-js-npm-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (TUF_JS / "node_modules" / "tuf-js" / "package.json").is_file():
            done = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund"],
                cwd=TUF_JS,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert done.returncode == 0, f"npm install failed:\n{done.stdout}\n{done.stderr}"
    return TUF_JS


def fetch_with_tuf_js(
    tuf_js: Path, world: UpdateWorld, target: str, out: Path, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    base = url or world.repo_url
    return subprocess.run(
        [
            "node",
            str(tuf_js / "fetch.mjs"),
            f"{base}/metadata/",
            f"{base}/targets/",
            str(world.root_json),
            target,
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_tuf_js_is_pinned_to_a_major_version() -> None:
    package = json.loads((TUF_JS / "package.json").read_text())
    assert package["dependencies"]["tuf-js"].startswith("^")
    lock = json.loads((TUF_JS / "package-lock.json").read_text())
    assert (
        lock["packages"]["node_modules/tuf-js"]["version"].split(".")[0]
        == package["dependencies"]["tuf-js"].lstrip("^").split(".")[0]
    )


@pytest.mark.parametrize("target", [V2_TARGET, INDEX_TARGET, V2_BUNDLE])
def test_tuf_js_downloads_targets(
    tuf_js: Path, world: UpdateWorld, tmp_path: Path, target: str
) -> None:
    done = fetch_with_tuf_js(tuf_js, world, target, tmp_path)
    assert done.returncode == 0, done.stderr
    _, digest, path = done.stdout.split()
    assert digest == expected_sha256(world, target)
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest
    if target == V2_TARGET:
        assert Path(path).read_bytes() == world.artifact("v2")[1]
    # tuf-js keeps the metadata it trusted: the same versions python-tuf would.
    timestamp = json.loads((tmp_path / "metadata" / "timestamp.json").read_text())
    assert timestamp["signed"]["version"] == world_repo(world).version("timestamp")


def test_tuf_js_refuses_a_swapped_target(tuf_js: Path, world: UpdateWorld, tmp_path: Path) -> None:
    repo, url = world.copy_repo()
    (served,) = (repo.repo / "targets" / "products" / PRODUCT / V2).glob(f"*.{PRODUCT}-{V2}.tar.gz")
    data = bytearray(served.read_bytes())
    data[len(data) // 2] ^= 0xFF
    served.write_bytes(bytes(data))
    done = fetch_with_tuf_js(tuf_js, world, V2_TARGET, tmp_path, url)
    assert done.returncode == 1
    assert "tuf-js refused" in done.stderr
    assert "hash" in done.stderr.lower()

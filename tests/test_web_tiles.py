"""Serving tlog-tiles: content types, caching, and refusing bad paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from overt.log.config import LogConfig
from overt.log.log import Log, init_log
from overt.web.app import create_app


@pytest.fixture()
def client(tmp_path: Path) -> TestClient:
    log_dir = tmp_path / "logs" / "rel"
    init_log(log_dir, LogConfig(origin="example.com/rel"))
    with Log(log_dir) as log:
        log.add([b"e%d" % i for i in range(300)])
    (tmp_path / "logs" / "empty" / "tiles").mkdir(parents=True)
    return TestClient(create_app(tmp_path))


def test_full_and_partial_tiles(client: TestClient) -> None:
    full = client.get("/logs/rel/tile/0/000")
    assert full.status_code == 200
    assert len(full.content) == 256 * 32
    assert "immutable" in full.headers["cache-control"]
    partial = client.get("/logs/rel/tile/0/001.p/44")
    assert partial.status_code == 200
    assert len(partial.content) == 44 * 32
    assert "immutable" not in partial.headers["cache-control"]
    assert client.get("/logs/rel/tile/1/000.p/1").status_code == 200
    assert client.get("/logs/rel/tile/entries/001.p/44").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/logs/rel/tile/0/../../secrets",
        "/logs/rel/tile/0/00",
        "/logs/rel/tile/0/001.p/256",
        "/logs/rel/tile/64/000",
        "/logs/rel/tile/0/x000/001",
        "/logs/rel/tile/entries/000.p/0",
        "/logs/rel/tile/0/%00",
    ],
)
def test_bad_tile_paths_are_400_or_404(client: TestClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code in (400, 404)
    assert resp.status_code != 500


def test_missing_tile_and_checkpoint_are_404(client: TestClient) -> None:
    assert client.get("/logs/rel/tile/0/005").status_code == 404
    resp = client.get("/logs/empty/checkpoint")
    assert resp.status_code == 404
    assert "no checkpoint" in resp.text


def test_index_lists_logs(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "/logs/rel/checkpoint" in page.text

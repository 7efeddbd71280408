"""The dashboard's pages, over a demo deployment (built once for the module)."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from overt.tlog.hashing import leaf_hash
from overt.tlog.tiles import TILE_WIDTH, Tile, decode_bundle, tile_width_at
from overt.web.app import create_app

OVERT = [sys.executable, "-m", "overt.cli"]
PAGES = ["/", "/dashboard/releases", "/dashboard/rules", "/dashboard/data"]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("dash") / "d"
    proc = subprocess.run(
        [*OVERT, "demo", "--dir", str(d), "--no-serve"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return d


@pytest.fixture(scope="module")
def client(demo_dir: Path) -> TestClient:
    app = create_app(
        demo_dir,
        witnesses=("zurich", "geneva"),
        rebuilders=("lucerne",),
        static=("updates", "attacks"),
    )
    return TestClient(app)


def text(html: str) -> str:
    html = re.sub(r"<style>.*?</style>", "", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#39;", "'")


def links(html: str) -> list[str]:
    return sorted({h for h in re.findall(r'href="([^"#]+)', html) if h.startswith("/")})


def entry_bytes(demo_dir: Path, index: int) -> bytes:
    tiles = demo_dir / "logs" / "releases" / "tiles"
    size = int((tiles / "checkpoint").read_text().split("\n")[1])
    n = index // TILE_WIDTH
    tile = Tile(0, n, tile_width_at(0, n, size), entries=True)
    return decode_bundle((tiles / tile.path()).read_bytes())[index % TILE_WIDTH]


def customer_key(demo_dir: Path, customer: str) -> str:
    db = sqlite3.connect(demo_dir / "vault" / "secrets" / "customers.db")
    try:
        (key,) = db.execute("SELECT key FROM customers WHERE id = ?", (customer,)).fetchone()
    finally:
        db.close()
    return bytes(key).hex()


def test_pages_are_accessible_html(client: TestClient) -> None:
    for url in PAGES:
        resp = client.get(url)
        assert resp.status_code == 200, url
        assert resp.headers["content-type"].startswith("text/html")
        html = resp.text
        assert '<html lang="en">' in html
        for landmark in ("<header>", "<nav", '<main id="main">', "<footer>", "<h1>"):
            assert landmark in html, (url, landmark)
        assert "@media print" in html
        assert "<script" not in html
        # Every table says what it is.
        assert html.count("<table>") == html.count("<caption>"), url


def test_overview_shows_each_log_with_its_witnessed_checkpoint(client: TestClient) -> None:
    page = text(client.get("/").text)
    assert "releases" in page and "access-ch-zurich" in page and "access-ru-moscow" in page
    assert "accepted by releases.tlog-policy cosigned by geneva, zurich" in page
    assert "accepted by access-logs.tlog-policy" in page
    assert "agrees" in page and "DISAGREES" not in page
    assert "Logs the monitor follows" in page
    assert (
        "/dashboard" in client.get("/dashboard").url.path
        or client.get("/dashboard").url.path == "/"
    )


def test_releases_show_badges_and_link_to_evidence(client: TestClient) -> None:
    html = client.get("/dashboard/releases").text
    page = text(html)
    for release in ("hello-overt 1.0.0", "detection-db 2024.5.0", "detection-db 2024.6.0"):
        assert release in page
    assert "reproduced 1/1" in page and "witnessed" in page
    assert "rules: 1 flagged" in page
    assert "/releases/hello-overt/1.0.0/provenance.dsse.json" in html
    assert "/rebuilders/lucerne/results/1000/vsa.dsse.json" in html
    # The attack's release signed by the retired key: logged, never rebuilt.
    assert "reproduced 0/1" in page


def test_every_link_resolves(client: TestClient) -> None:
    seen: set[str] = set()
    for url in PAGES:
        for link in links(client.get(url).text):
            if link in seen:
                continue
            seen.add(link)
            resp = client.get(link)
            assert resp.status_code == 200, (url, link, resp.text[:300])
    assert any(link.startswith("/rebuilders/lucerne/results/") for link in seen)
    assert any(link.startswith("/dashboard/log/access-") for link in seen)


def test_entry_page_decodes_and_proves_the_entry(client: TestClient, demo_dir: Path) -> None:
    page = text(client.get("/dashboard/log/releases/entry/1000").text)
    assert "inclusion proof verified" in page
    assert "https://slsa.dev/provenance/v1" in page and "hello-overt" in page
    entry = entry_bytes(demo_dir, 42)
    page = text(client.get("/dashboard/log/releases/entry/42").text)
    assert hashlib.sha256(entry).hexdigest() in page and leaf_hash(entry).hex() in page
    assert "JSON" in page


def test_lookup_by_hash(client: TestClient, demo_dir: Path) -> None:
    entry = entry_bytes(demo_dir, 42)
    for digest in (hashlib.sha256(entry).hexdigest(), leaf_hash(entry).hex().upper()):
        resp = client.get("/dashboard/log/releases", params={"hash": digest})
        assert resp.status_code == 200
        assert "Entry 42 of releases" in text(resp.text)
    resp = client.get("/dashboard/log/releases", params={"hash": "00" * 32})
    assert resp.status_code == 404 and "No entry of releases" in text(resp.text)
    assert client.get("/dashboard/log/releases").status_code == 200


def test_rules_page_shows_findings_targeting_and_diff(client: TestClient) -> None:
    page = text(client.get("/dashboard/rules").text)
    assert "detection-db 2024.6.0" in page and "Changes since 2024.5.0" in page
    assert "Collect_Classified_Office_Documents" in page
    assert "targeted country:DE" in page
    assert "narrow-audience" in page and "1 flagged" in page


def test_data_page_shows_regions_accesses_and_relocations(client: TestClient) -> None:
    page = text(client.get("/dashboard/data").text)
    assert "ch-zurich" in page and "ru-moscow" in page
    assert "THREAT_ANALYSIS" in page and "SYSTEM_OPERATION" in page
    assert "Government and court requests" in page
    assert "sydney-bank-report.json" in page and "verified" in page
    assert "ru-moscow ch-zurich AU" in page


def test_customer_page_needs_the_customers_key(client: TestClient, demo_dir: Path) -> None:
    url = "/dashboard/customer/berlin-hospital"
    key = customer_key(demo_dir, "berlin-hospital")
    other = customer_key(demo_dir, "ottawa-city")
    for resp in (
        client.get(url),
        client.get(url, params={"token": other}),
        client.post(url, data={"token": other}),
        client.post(url, data={"token": "zz"}),
        client.get(url, headers={"Authorization": "Bearer " + "00" * 32}),
        client.get("/dashboard/customer/nobody", params={"token": key}),
    ):
        assert resp.status_code == 403
        assert "THREAT_ANALYSIS" not in resp.text and "entry " not in text(resp.text)
    assert 'label for="token"' in client.get(url).text
    resp = client.post(url, data={"token": key})
    assert resp.status_code == 200
    page = text(resp.text)
    assert "THREAT_ANALYSIS" in page and "verified, witnessed" in page
    assert "NOT verified" not in page
    assert client.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    # Asking for an unknown customer made no key for it.
    assert (
        not sqlite3.connect(demo_dir / "vault" / "secrets" / "customers.db")
        .execute("SELECT 1 FROM customers WHERE id = 'nobody'")
        .fetchone()
    )


@pytest.mark.parametrize(
    "url",
    [
        "/dashboard/log/releases/entry/1000000000",
        "/dashboard/log/releases/entry/99999999999999999999999",
        "/dashboard/log/releases/entry/-1",
        "/dashboard/log/releases/entry/abc",
        "/dashboard/log/releases/entry/%C2%B2",
        "/dashboard/log/nope/entry/1",
        "/dashboard/log/nope",
    ],
)
def test_unknown_entries_are_404_pages(client: TestClient, url: str) -> None:
    resp = client.get(url)
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("text/html")


def test_paths_out_of_the_log_are_404(client: TestClient) -> None:
    assert client.get("/dashboard/log/..%2F..%2Fetc/entry/1").status_code == 404


@pytest.mark.parametrize(
    "params",
    [
        {"hash": "x"},
        {"hash": "0" * 63},
        {"hash": "0" * 10_000},
        {"hash": "é" * 64},
        {"hash": "\x00"},
        {"hash": "<script>alert(1)</script>"},
    ],
)
def test_bad_lookups_are_not_errors(client: TestClient, params: dict[str, str]) -> None:
    resp = client.get("/dashboard/log/releases", params=params)
    assert resp.status_code == 404
    assert "<script>alert" not in resp.text


def test_bad_customer_input_is_refused_not_an_error(client: TestClient) -> None:
    for url, kwargs in [
        ("/dashboard/customer/%00", {}),
        ("/dashboard/customer/x", {"params": {"token": "ff" * 5000}}),
        ("/dashboard/customer/x", {"content": b"\xff\xfe token=%%%", "method": "POST"}),
        ("/dashboard/customer/<b>", {"params": {"token": "<b>"}}),
    ]:
        method = str(kwargs.pop("method", "GET"))
        resp = client.request(method, url, **kwargs)  # type: ignore[arg-type]
        assert resp.status_code == 403, url
        assert "<b>" not in resp.text


# --- in a real browser: headless Chromium (Debian's), driven by Playwright -----------

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts" / "dashboard"


@pytest.fixture(scope="module")
def site(demo_dir: Path) -> Iterator[str]:
    from overt.web.server import BackgroundServer

    app = create_app(
        demo_dir,
        witnesses=("zurich", "geneva"),
        rebuilders=("lucerne",),
        static=("updates", "attacks"),
    )
    server = BackgroundServer(app, "127.0.0.1", 0)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # CI installs both (.ci/run); a missing browser fails the run, it is not skipped.
    assert CHROMIUM.exists(), "Debian's chromium is not installed (apt-get install chromium)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def test_every_page_renders_in_chromium_and_is_saved_as_a_screenshot(
    site: str, browser: Any, demo_dir: Path
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    token = customer_key(demo_dir, "berlin-hospital")
    pages = [*PAGES, f"/dashboard/customer/berlin-hospital?token={token}"]
    for url in pages:
        response = page.goto(site + url)
        assert response is not None and response.status == 200, url
        assert page.locator("h1").first.is_visible(), url
        assert page.locator("main").count() == 1, url
        name = url.strip("/").split("?")[0].replace("/", "-") or "overview"
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    assert errors == []
    assert (ARTIFACTS / "overview.png").stat().st_size > 10_000


def test_a_release_links_to_its_verdict_and_its_difference_report(site: str, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(site + "/dashboard/releases")
    row = page.locator("tr", has_text="clock-stamped 1.0").first
    assert "FAILED" in row.inner_text()
    # The verdict: the rebuilder's signed VSA.
    with page.expect_navigation():
        row.locator("a", has_text="vsa.dsse.json").first.click()
    assert "payloadType" in page.content()
    page.go_back()
    # Its difference report names the file that differs.
    row = page.locator("tr", has_text="clock-stamped 1.0").first
    with page.expect_navigation():
        row.locator("a", has_text="report.html").first.click()
    assert "BUILD_INFO" in page.inner_text("body")
    page.screenshot(path=str(ARTIFACTS / "difference-report.png"), full_page=True)
    # And the release's verdict entry in the log explorer, with its verified proof.
    page.goto(site + "/dashboard/releases")
    row = page.locator("tr", has_text="clock-stamped 1.0").first
    with page.expect_navigation():
        row.locator("a", has_text="log entry").first.click()
    assert "inclusion proof" in page.inner_text("body").lower()

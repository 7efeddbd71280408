"""HTTP face of a rebuilder: its queue in rebuilderd's shape, and its verdicts and reports.

    GET /api/v0/pkgs/list           every release seen: name, version, status
                                    (GOOD, BAD, FAIL, UNKWN, BUILDING), VSA index
    GET /api/v0/pkgs/<index>        one release, with links to its files
    GET /results/<index>/<file>     vsa.dsse.json, report.txt, report.html,
                                    diffoscope.txt, diffoscope.html, build.log
    GET /status                     counts per status and how far the log was scanned

The state is read from the rebuilder directory on every request, so this
server can run beside `overt rebuild watch` (which writes it).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response

from overt import __version__
from overt.log.log import NotFound
from overt.rebuild.queue import RebuildQueue, Row
from overt.rebuild.rebuilder import RESULT_FILES
from overt.web.errors import error, install_error_handlers

MEDIA_TYPES = {
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}


def create_rebuilder_app(root: Path, prefix: str = "") -> FastAPI:
    """`prefix` is where the app is mounted, for the links it returns.

    The directory is read on each request, so it may be created after the app.
    """
    app = FastAPI(title="Overt rebuilder", version=__version__)
    install_error_handlers(app)

    def queue() -> RebuildQueue:
        if not (root / "rebuilder.toml").is_file():
            raise NotFound(f"{root.name} is not a rebuilder directory (yet)")
        return RebuildQueue(root / "state")

    def links(row: Row) -> dict[str, str]:
        results = root / "results" / str(row.index)
        return {
            name: f"{prefix}/results/{row.index}/{name}"
            for name in RESULT_FILES
            if (results / name).is_file()
        }

    def describe(row: Row) -> dict[str, Any]:
        return row.to_json() | {"links": links(row)}

    @app.get("/api/v0/pkgs/list")
    def pkgs_list() -> JSONResponse:
        q = queue()
        try:
            return JSONResponse([describe(r) for r in q.rows()])
        finally:
            q.close()

    @app.get("/api/v0/pkgs/{index}")
    def pkg(index: int) -> Response:
        q = queue()
        try:
            row = q.row(index)
        finally:
            q.close()
        if row is None:
            return error(404, f"no release at log entry {index} is known to this rebuilder")
        return JSONResponse(describe(row))

    @app.get("/results/{index}/{name}")
    def result_file(index: int, name: str) -> Response:
        if name not in RESULT_FILES:
            return error(404, f"no such result file {name!r}; known: {', '.join(RESULT_FILES)}")
        path = root / "results" / str(index) / name
        if index < 0 or not path.is_file():
            return error(404, f"entry {index} has no {name}")
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix])

    @app.get("/status")
    def status() -> JSONResponse:
        q = queue()
        try:
            counts = Counter(r.status for r in q.rows())
            scanned = q.scanned()
        finally:
            q.close()
        vkey = (root / "rebuilder.vkey").read_text().strip()
        return JSONResponse({"rebuilder": vkey, "scanned": scanned, "statuses": dict(counts)})

    return app

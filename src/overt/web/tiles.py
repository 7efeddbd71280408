"""Serving a log's tlog-tiles directory exactly as C2SP tlog-tiles specifies.

``checkpoint`` is ``text/plain; charset=utf-8`` and must not be cached for
long; full tiles and entry bundles are immutable. Partial tiles never change
either, but the log may delete them once the full tile exists (tlog-tiles,
"Partial Tiles"), so they get a short lifetime. Paths are parsed with
`Tile.parse_path` before touching the disk, so no request can name a file
outside the log's directory.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response

from overt.errors import MalformedError
from overt.tlog.tiles import Tile

IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=5"
NO_STORE = "no-cache, max-age=0"


def tiles_router(tiles_dir: Path) -> APIRouter:
    router = APIRouter()

    @router.get("/checkpoint", response_class=PlainTextResponse)
    def checkpoint() -> Response:
        try:
            data = (tiles_dir / "checkpoint").read_bytes()
        except FileNotFoundError:
            return PlainTextResponse("this log has no checkpoint yet\n", status_code=404)
        return Response(
            data,
            media_type="text/plain; charset=utf-8",
            headers={"Cache-Control": NO_STORE},
        )

    @router.get("/tile/{path:path}")
    def tile(path: str) -> Response:
        try:
            parsed = Tile.parse_path("tile/" + path)
        except MalformedError as exc:
            return PlainTextResponse(f"bad tile path: {exc}\n", status_code=400)
        try:
            data = (tiles_dir / parsed.path()).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return PlainTextResponse(f"no such tile: {parsed.path()}\n", status_code=404)
        return Response(
            data,
            media_type="application/octet-stream",
            headers={"Cache-Control": SHORT if parsed.partial else IMMUTABLE},
        )

    return router

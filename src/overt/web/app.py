"""Building the ASGI app for a deployment directory."""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from overt import __version__
from overt.web.tiles import tiles_router


def create_app(deployment: Path) -> FastAPI:
    """Serve every log under ``deployment/logs/<name>/tiles`` at ``/logs/<name>/``."""
    app = FastAPI(title="Overt", version=__version__)
    logs_dir = deployment / "logs"
    names = (
        sorted(p.name for p in logs_dir.iterdir() if (p / "tiles").is_dir())
        if (logs_dir.is_dir())
        else []
    )
    for name in names:
        app.include_router(tiles_router(logs_dir / name / "tiles"), prefix=f"/logs/{name}")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        items = "".join(
            f'<li><a href="/logs/{html.escape(n)}/checkpoint">{html.escape(n)}</a>: '
            f"checkpoint and tiles under <code>/logs/{html.escape(n)}/</code></li>"
            for n in names
        )
        return (
            "<!doctype html><meta charset=utf-8><title>Overt</title>"
            f"<h1>Overt {__version__}</h1><p>Transparency logs served here "
            f"(C2SP tlog-tiles):</p><ul>{items or '<li>none yet</li>'}</ul>"
        )

    return app

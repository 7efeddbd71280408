"""HTTP face of a running monitor: ``/status`` (JSON) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse

from overt import __version__
from overt.monitor.monitor import Monitor
from overt.web.errors import install_error_handlers


def create_monitor_app(monitor: Monitor) -> FastAPI:
    app = FastAPI(title="Overt monitor", version=__version__)
    install_error_handlers(app)

    @app.get("/status")
    def status() -> JSONResponse:
        return JSONResponse(monitor.status())

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(monitor.metrics(), media_type="text/plain; version=0.0.4")

    return app

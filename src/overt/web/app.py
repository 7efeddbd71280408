"""Building the ASGI apps: one log, or a whole deployment directory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from overt import __version__
from overt.log.log import Log
from overt.web.dashboard import dashboard_router
from overt.web.errors import install_error_handlers
from overt.web.log_api import LogService, log_router
from overt.web.rebuild_api import create_rebuilder_app
from overt.web.tiles import tiles_router
from overt.web.witness_api import create_witness_app


def _lifespan(services: list[LogService]):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        for service in services:
            service.start(loop)
        try:
            yield
        finally:
            for service in services:
                service.stop()

    return lifespan


def create_log_app(log_dir: Path) -> FastAPI:
    """Serve one log with its tlog-tiles prefix at the root (``/checkpoint``, ``/add``...)."""
    service = LogService(Log(log_dir))
    app = FastAPI(
        title=f"Overt log {service.log.config.origin}",
        version=__version__,
        lifespan=_lifespan([service]),
    )
    install_error_handlers(app)
    app.include_router(log_router(service))
    return app


def create_app(
    deployment: Path,
    live_logs: tuple[str, ...] = (),
    witnesses: tuple[str, ...] = (),
    rebuilders: tuple[str, ...] = (),
    static: tuple[str, ...] = (),
) -> FastAPI:
    """Serve every log under ``deployment/logs/<name>/`` at ``/logs/<name>/``.

    Logs named in `live_logs` are opened for writing (adds and JSON APIs);
    the others are served read-only from their tiles directory. Witnesses named
    in `witnesses` (``deployment/witnesses/<name>/``) are served at
    ``/witnesses/<name>/``, and a vault's access logs
    (``deployment/vault/logs/<region>/``) read-only at ``/access-logs/<region>/``.
    Rebuilders named in `rebuilders` (``deployment/rebuilders/<name>/``) are
    served at ``/rebuilders/<name>/``, and the conveyor's releases
    (``deployment/conveyor/releases/``) as static files at ``/releases/``.
    Each directory named in `static` (e.g. ``updates``, a TUF repository) is
    served as static files at ``/<name>/``. The dashboard's pages are at ``/`` (the
    overview) and under ``/dashboard/`` (see `overt.web.dashboard`).
    """
    logs_dir = deployment / "logs"
    names = (
        sorted(p.name for p in logs_dir.iterdir() if (p / "tiles").is_dir())
        if logs_dir.is_dir()
        else []
    )
    services = [LogService(Log(logs_dir / name)) for name in names if name in live_logs]
    app = FastAPI(title="Overt", version=__version__, lifespan=_lifespan(services))
    install_error_handlers(app)
    live = {s.log.paths.root.name: s for s in services}
    for name in names:
        if name in live:
            app.include_router(log_router(live[name]), prefix=f"/logs/{name}")
        else:
            app.include_router(tiles_router(logs_dir / name / "tiles"), prefix=f"/logs/{name}")

    access_logs = deployment / "vault" / "logs"
    regions = (
        sorted(p.name for p in access_logs.iterdir() if (p / "tiles").is_dir())
        if (access_logs.is_dir())
        else []
    )
    for region in regions:
        app.include_router(
            tiles_router(access_logs / region / "tiles"), prefix=f"/access-logs/{region}"
        )
    for name in witnesses:
        app.mount(f"/witnesses/{name}", create_witness_app(deployment / "witnesses" / name))
    for name in rebuilders:
        app.mount(
            f"/rebuilders/{name}",
            create_rebuilder_app(deployment / "rebuilders" / name, f"/rebuilders/{name}"),
        )
    app.mount(
        "/releases",
        StaticFiles(directory=deployment / "conveyor" / "releases", check_dir=False),
        name="releases",
    )
    for name in static:
        app.mount(f"/{name}", StaticFiles(directory=deployment / name, check_dir=False), name=name)

    app.include_router(dashboard_router(deployment, rebuilders))
    return app

"""One error shape for every JSON API: ``{"error": "<what is wrong>"}`` with a 4xx code.

Validation errors from FastAPI (a non-numeric index, a missing parameter) are
reported as 400 with a sentence naming the parameter, rather than FastAPI's
nested 422 structure, so that a user reading a curl response knows what to fix.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from overt.errors import MalformedError, OvertError, VerificationError
from overt.log.log import NotFound


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path"))
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return error(400, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(MalformedError)
    async def _malformed(request: Request, exc: MalformedError) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(VerificationError)
    async def _unverified(request: Request, exc: VerificationError) -> JSONResponse:
        return error(422, str(exc))

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return error(404, str(exc))

    @app.exception_handler(OvertError)
    async def _overt(request: Request, exc: OvertError) -> JSONResponse:
        logging.getLogger("overt.web").error("%s: %s", request.url.path, exc)
        return error(500, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never a traceback to the client; the server log has it.
        logging.getLogger("overt.web").exception("unhandled error on %s", request.url.path)
        return error(500, "internal error; see the server log")

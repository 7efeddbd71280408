"""HTTP face of a witness (C2SP tlog-witness).

POST /add-checkpoint            the submission API
GET  /<origin hash>/checkpoint  the latest checkpoint it cosigned for a log
                                (origin hash: lowercase hex SHA-256 of the origin)
GET  /status                    JSON: the witness's key and its view of each log
"""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from overt import __version__
from overt.tlog.witness import SIZE_CONTENT_TYPE, format_cosignatures, origin_hash
from overt.web.body import BadContentLength, BodyTooLarge, read_body
from overt.web.errors import install_error_handlers
from overt.witness.witness import Witness, WitnessRefusal

MAX_BODY = 64 * 1024  # 63 proof lines and a checkpoint with signatures fit easily
_HASH = re.compile(r"[0-9a-f]{64}")


def create_witness_app(root: Path) -> FastAPI:
    witness = Witness(root)
    app = FastAPI(title=f"Overt witness {witness.signer.name}", version=__version__)
    install_error_handlers(app)
    lock = asyncio.Lock()

    @app.post("/add-checkpoint")
    async def add_checkpoint(request: Request) -> Response:
        try:
            body = await read_body(request, MAX_BODY)
        except (BodyTooLarge, BadContentLength) as exc:  # malformed: 400 (tlog-witness)
            return PlainTextResponse(f"{exc}\n", status_code=400)
        try:
            # The store serialises updates per log; the lock keeps the event
            # loop from queueing many blocking SQLite transactions at once.
            async with lock:
                sigs = witness.add_checkpoint(body)
        except WitnessRefusal as refusal:
            if refusal.status == 409:
                # Exactly text/x.tlog.size (tlog-witness), with no charset added.
                return Response(
                    f"{refusal.size}\n",
                    status_code=409,
                    headers={"Content-Type": SIZE_CONTENT_TYPE},
                )
            return PlainTextResponse(f"{refusal}\n", status_code=refusal.status)
        return PlainTextResponse(format_cosignatures(sigs))

    @app.get("/status")
    async def status() -> JSONResponse:
        return JSONResponse(
            {
                "name": witness.signer.name,
                "vkey": str(witness.vkey),
                "logs": [
                    {
                        "origin": v.origin,
                        "origin_hash": origin_hash(v.origin),
                        "size": v.size,
                        "root": base64.b64encode(v.root).decode() if v.root else None,
                        "updated": v.updated,
                        "keys": list(v.vkeys),
                    }
                    for v in witness.store.logs()
                ],
            }
        )

    @app.get("/{hashed}/checkpoint")
    async def latest(hashed: str) -> Response:
        if not _HASH.fullmatch(hashed):
            return PlainTextResponse("origin hash must be 64 lowercase hex digits\n", 400)
        for view in witness.store.logs():
            if origin_hash(view.origin) == hashed and view.checkpoint:
                return Response(
                    view.checkpoint,
                    media_type="text/plain; charset=utf-8",
                    headers={"Cache-Control": "no-cache, max-age=0"},
                )
        return PlainTextResponse("no checkpoint cosigned for that log\n", status_code=404)

    return app

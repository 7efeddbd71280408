"""HTTP API of the vault.

    POST /ingest            product ingestion, with the bearer token in
                            VAULT/secrets/ingest-token. JSON body
                            ``{"customer", "country", "category", "records": ["<base64>"]}``.
                            Answer ``{"region", "ids": [...]}``; one access event per batch.
    GET  /objects/<id>      a staff read. ``Authorization: Bearer <actor token>`` and headers
                            ``X-Overt-Justification``, ``X-Overt-Ticket`` (and
                            ``X-Overt-Requester-Country`` for LEGAL_REQUEST). The event is durably
                            logged before the data is decrypted; 403 with the reason when refused.
    GET  /status            regions and access-log sizes.

All operations go through one lock: the gate's check, the durable event and
the store's action happen as one step per request.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from overt import __version__
from overt.errors import MalformedError, OvertError
from overt.vault.actors import actor_by_token
from overt.vault.vault import AccessRefused, Vault
from overt.web.body import BadContentLength, BodyTooLarge, read_body
from overt.web.errors import error, install_error_handlers

MAX_INGEST_BODY = 64 * 1024 * 1024
PUBLISH_PERIOD_S = 0.5


def create_vault_app(root: Path) -> FastAPI:
    vault = Vault(root)
    token_file = root / "secrets" / "ingest-token"
    ingest_token = token_file.read_text().strip() if token_file.exists() else ""
    lock = threading.Lock()

    def bearer(request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    # Publish the access logs regularly, so customers and supervisors see
    # events while the server runs (they are durable as soon as sequenced).
    stop = threading.Event()

    def publisher() -> None:
        while not stop.wait(PUBLISH_PERIOD_S):
            with lock:
                try:
                    vault.publish()
                except OvertError as exc:
                    logging.getLogger("overt.vault").warning("publishing access logs: %s", exc)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        thread = threading.Thread(target=publisher, name="overt-vault-publish", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            with lock:
                vault.close()

    app = FastAPI(title="Overt vault", version=__version__, lifespan=lifespan)
    install_error_handlers(app)

    @app.post("/ingest")
    async def ingest(request: Request) -> Response:
        token = bearer(request)
        if not ingest_token or not hmac.compare_digest(token.encode(), ingest_token.encode()):
            return error(401 if not token else 403, "ingestion needs the vault's ingest token")
        try:
            body = await read_body(request, MAX_INGEST_BODY)
        except BadContentLength as exc:
            return error(400, str(exc))
        except BodyTooLarge as exc:
            return error(413, str(exc))
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as exc:
            return error(400, f"body is not acceptable JSON: {str(exc)[:200]}")
        if not isinstance(doc, dict):
            return error(400, "body must be a JSON object")
        fields = {}
        for key in ("customer", "country", "category"):
            if not isinstance(doc.get(key), str):
                return error(400, f"{key} must be a string")
            fields[key] = doc[key]
        records = doc.get("records")
        if not isinstance(records, list) or not all(isinstance(r, str) for r in records):
            return error(400, "records must be a list of base64 strings")
        try:
            contents = [base64.b64decode(r, validate=True) for r in records]
        except (binascii.Error, ValueError):
            return error(400, "records must be valid base64")

        def work() -> list[tuple[str, str]]:
            with lock:
                stored = vault.ingest(
                    fields["customer"], fields["country"], fields["category"], contents
                )
            return [(s.id, s.region) for s in stored]

        try:
            stored = await run_in_threadpool(work)
        except AccessRefused as exc:
            return error(403, str(exc))
        except MalformedError as exc:
            return error(400, str(exc))
        return JSONResponse({"region": stored[0][1], "ids": [i for i, _ in stored]})

    @app.get("/objects/{object_id}")
    async def read(object_id: str, request: Request) -> Response:
        entry = actor_by_token(vault.actors, bearer(request))
        if entry is None:
            return error(401, "staff access needs 'Authorization: Bearer <actor token>'")
        justification = request.headers.get("x-overt-justification", "")
        ticket = request.headers.get("x-overt-ticket", "")
        requester = request.headers.get("x-overt-requester-country", "")

        def work() -> bytes:
            with lock:
                return vault.read(object_id, entry.actor.name, justification, ticket, requester)

        try:
            data = await run_in_threadpool(work)
        except AccessRefused as exc:
            return error(403, str(exc))
        except OvertError as exc:  # the access was logged, but the data is damaged or gone
            return error(422, f"the object cannot be returned: {exc}")
        return Response(data, media_type="application/octet-stream")

    @app.get("/status")
    async def status() -> JSONResponse:
        regions: dict[str, dict[str, object]] = {}
        with lock:
            for region in vault.policy.regions:
                try:
                    regions[region] = {"access_log_size": vault.log(region).sequenced_size()}
                except OvertError as exc:
                    regions[region] = {"access_log": f"unavailable: {exc}"}
        return JSONResponse({"regions": regions, "vkey": str(vault.verifier.vkey)})

    return app

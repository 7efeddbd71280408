"""HTTP API of one log: adds, C2SP tlog-tiles reads, and JSON conveniences.

Writes:
    POST /add          body: the raw entry; ``?wait=true`` also waits for a
                       checkpoint covering it. Answer ``{"index": N}`` (+ ``"size"``).
    POST /add-batch    body: JSON ``{"entries": ["<base64>", ...]}``. Answer
                       ``{"indexes": [...]}`` (+ ``"size"`` with ``?wait=true``).
    Both need ``Authorization: Bearer <DIR/secrets/write-token>``.

Reads (public):
    GET /checkpoint, /tile/<L>/<N>[.p/<W>], /tile/entries/<N>[.p/<W>]  (tlog-tiles)
    GET /entry/<index>                     entry, leaf hash, inclusion proof, checkpoint
    GET /proof/inclusion?index=I[&size=S]  inclusion proof
    GET /proof/consistency?old=A[&new=B]   consistency proof
    GET /lookup/<leaf hash, hex or base64url>  index of an entry by its leaf hash
    GET /status                            sizes, pool state, driver, whether this
                                           front end integrates
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import re
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from overt.errors import MalformedError, OvertError
from overt.log.log import EntryTooLarge, Log, LogError
from overt.log.sequencer import PoolFull, Sequencer
from overt.tlog.checkpoint import Checkpoint
from overt.tlog.hashing import HASH_SIZE, leaf_hash
from overt.web.body import BadContentLength, BodyTooLarge, read_body
from overt.web.errors import error
from overt.web.tiles import tiles_router

MAX_BATCH = 10_000
WAIT_TIMEOUT_S = 30.0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class PublishWaiters:
    """Lets request handlers await a checkpoint of at least a given size."""

    def __init__(self, log: Log) -> None:
        self._log = log
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def published(self, checkpoint: Checkpoint) -> None:
        """Called from the integrator thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._release, checkpoint.size)

    def _release(self, size: int) -> None:
        keep = []
        for want, fut in self._waiters:
            if want <= size:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((want, fut))
        self._waiters = keep

    async def wait(self, size: int, timeout: float) -> Checkpoint | None:
        if self._log.checkpoint.size >= size:
            return self._log.checkpoint
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((size, fut))
        if self._log.checkpoint.size >= size:  # published while we registered
            return self._log.checkpoint
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        return self._log.checkpoint


class LogService:
    """A log opened for serving: the Log, its sequencer and its publish waiters."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.sequencer = Sequencer(log)
        self.waiters = PublishWaiters(log)
        self.sequencer.add_listener(self.waiters.published)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.waiters.bind(loop)
        self.sequencer.start()

    def stop(self) -> None:
        self.sequencer.stop()
        self.log.close()


async def _read_body(request: Request, limit: int) -> bytes | JSONResponse:
    try:
        return await read_body(request, limit)
    except BadContentLength as exc:
        return error(400, str(exc))
    except BodyTooLarge as exc:
        return error(413, str(exc))


_B64URL = re.compile(r"[A-Za-z0-9_-]{43}=?")


def _parse_leaf_hash(text: str) -> bytes:
    """64 hex digits, or base64url with or without its padding, nothing else."""
    try:
        if len(text) == 2 * HASH_SIZE:
            raw = bytes.fromhex(text)
        elif _B64URL.fullmatch(text):
            raw = base64.urlsafe_b64decode(text.rstrip("=") + "=")
        else:
            raise ValueError(text)
    except (ValueError, binascii.Error) as exc:
        raise MalformedError("leaf hash must be 64 hex digits or base64url") from exc
    if len(raw) != HASH_SIZE:
        raise MalformedError(f"leaf hash must be {HASH_SIZE} bytes")
    return raw


def log_router(service: LogService) -> APIRouter:
    log = service.log
    router = APIRouter()
    router.include_router(tiles_router(log.paths.tiles))

    def authorized(request: Request) -> JSONResponse | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return error(
                401, "adding needs 'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"}
            )
        if not hmac.compare_digest(token.strip().encode(), log.token.encode()):
            return error(403, "wrong bearer token")
        return None

    async def submit(entries: list[bytes], wait: bool) -> dict[str, Any] | JSONResponse:
        try:
            futures = service.sequencer.submit_many_async(entries, asyncio.get_running_loop())
        except PoolFull as exc:
            return error(503, str(exc), {"Retry-After": str(int(exc.retry_after))})
        except EntryTooLarge as exc:
            return error(413, str(exc))
        except LogError as exc:
            return error(503, str(exc), {"Retry-After": "5"})
        try:
            indexes = [await f for f in futures]
        except OvertError as exc:
            return error(503, f"sequencing failed: {exc}", {"Retry-After": "1"})
        answer: dict[str, Any] = {"indexes": indexes}
        if wait:
            checkpoint = await service.waiters.wait(max(indexes) + 1, WAIT_TIMEOUT_S)
            if checkpoint is None:
                answer["size"] = None
                answer["note"] = "sequenced; not yet integrated within the wait timeout"
            else:
                answer["size"] = checkpoint.size
        return answer

    @router.post("/add")
    async def add(request: Request, wait: bool = False) -> Response:
        if (denied := authorized(request)) is not None:
            return denied
        body = await _read_body(request, log.config.max_entry_size)
        if isinstance(body, JSONResponse):
            return body
        result = await submit([body], wait)
        if isinstance(result, JSONResponse):
            return result
        answer = {"index": result["indexes"][0]}
        if "size" in result:
            answer["size"] = result["size"]
        return JSONResponse(answer)

    @router.post("/add-batch")
    async def add_batch(request: Request, wait: bool = False) -> Response:
        if (denied := authorized(request)) is not None:
            return denied
        limit = MAX_BATCH * (log.config.max_entry_size * 4 // 3 + 8) + 1024
        body = await _read_body(request, limit)
        if isinstance(body, JSONResponse):
            return body
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, huge numbers, deep nesting
            return error(400, f"body is not acceptable JSON: {str(exc)[:200]}")
        items = doc.get("entries") if isinstance(doc, dict) else None
        if not isinstance(items, list) or not items:
            return error(400, 'body must be {"entries": ["<base64>", ...]} with at least one entry')
        if len(items) > MAX_BATCH:
            return error(413, f"at most {MAX_BATCH} entries per batch")
        entries = []
        for i, item in enumerate(items):
            if not isinstance(item, str):
                return error(400, f"entries[{i}] must be a base64 string")
            try:
                entries.append(base64.b64decode(item, validate=True))
            except (binascii.Error, ValueError):
                return error(400, f"entries[{i}] is not valid base64")
        result = await submit(entries, wait)
        if isinstance(result, JSONResponse):
            return result
        return JSONResponse(result)

    def proof_json(index: int, size: int) -> dict[str, Any]:
        entry = log.entry(index, size)
        return {
            "index": index,
            "size": size,
            "entry": _b64(entry),
            "leaf_hash": _b64(leaf_hash(entry)),
            "proof": [_b64(h) for h in log.inclusion_proof(index, size)],
        }

    @router.get("/entry/{index}")
    async def entry(index: int) -> Response:
        # One snapshot: the proof, its size and the checkpoint returned with it
        # must all describe the same tree, whatever the integrator does meanwhile.
        cp, signed = log.published()
        if index < 0:
            return error(400, "index must not be negative")
        if index >= cp.size:
            if index < log.sequenced_size():
                data = log.entry(index)
                return JSONResponse(
                    {
                        "index": index,
                        "entry": _b64(data),
                        "leaf_hash": _b64(leaf_hash(data)),
                        "integrated": False,
                    }
                )
            return error(404, f"no entry {index}: the log has {log.sequenced_size()} entries")
        answer = proof_json(index, cp.size)
        answer["integrated"] = True
        answer["checkpoint"] = signed.decode()
        return JSONResponse(answer)

    @router.get("/proof/inclusion")
    async def inclusion(
        index: int = Query(..., ge=0), size: int | None = Query(None, ge=1)
    ) -> Response:
        tree_size = log.checkpoint.size if size is None else size
        if size is not None and size > log.checkpoint.size:
            return error(400, f"size {size} is beyond the published checkpoint")
        if index >= tree_size:
            return error(404, f"no entry {index} in a tree of size {tree_size}")
        return JSONResponse(proof_json(index, tree_size))

    @router.get("/proof/consistency")
    async def consistency(
        old: int = Query(..., ge=0), new: int | None = Query(None, ge=0)
    ) -> Response:
        new_size = log.checkpoint.size if new is None else new
        if not old <= new_size <= log.checkpoint.size:
            return error(
                400, f"need old <= new <= {log.checkpoint.size}, got old={old} new={new_size}"
            )
        proof = log.consistency_proof(old, new_size)
        return JSONResponse({"old": old, "new": new_size, "proof": [_b64(h) for h in proof]})

    @router.get("/lookup/{leaf}")
    async def lookup(leaf: str) -> Response:
        try:
            raw = _parse_leaf_hash(leaf)
        except MalformedError as exc:
            return error(400, str(exc))
        index = log.lookup(raw)
        if index is None:
            return error(404, "no entry with that leaf hash")
        return JSONResponse({"index": index, "integrated": index < log.checkpoint.size})

    @router.get("/status")
    async def status() -> Response:
        cp = log.checkpoint
        return JSONResponse(
            {
                "origin": log.config.origin,
                "size": cp.size,
                "root": _b64(cp.root_hash),
                "sequenced": log.sequenced_size(),
                "pool": service.sequencer.pending(),
                "pool_size": log.config.pool_size,
                "refused": service.sequencer.refused,
                "vkey": str(log.verifier.vkey),
                "driver": log.config.driver,
                # with PostgreSQL, whether this front end holds the integration lock
                "integrating": log.integrating,
            }
        )

    return router

"""Reading request bodies with a size bound: no request makes a server buffer without limit."""

from __future__ import annotations

from fastapi import Request


class BodyTooLarge(Exception):
    def __init__(self, limit: int, declared: str | None = None) -> None:
        what = f"body of {declared} bytes" if declared else "body"
        super().__init__(f"{what} exceeds the limit of {limit} bytes")


class BadContentLength(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused early by its Content-Length and while streaming past `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadContentLength("Content-Length is not a number")
        if int(declared) > limit:
            raise BodyTooLarge(limit, declared)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit)
    return bytes(body)

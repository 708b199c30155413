"""The ceiling for API figures: a bare ASGI app under the same uvicorn settings, answering a
fixed JSON body with no framework, no routing and no state."""

from __future__ import annotations

from typing import Any

BODY = b'{"sku":"SKU-1","channel":"web","sellable":7,"version":1,"updated_at":null}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})

"""The two hottest reads, GET /v1/availability/{sku} and POST /v1/availability/batch, answered
in front of FastAPI's routing.

Profiled under wrk, FastAPI's route matching, dependency solving and query validation cost a
single-SKU read several times what reading and encoding the answer do. This pure ASGI
middleware reads the path, the query and the key itself, then calls the very functions the
FastAPI routes call (the key check, the id checks, the read model, the encoder, the refusal
answers), so every answer is the same to the byte. What it does not take plainly (another
path or method, no `channel`, a root path) goes on to FastAPI, which answers as before; the
routes stay there, and with them the OpenAPI document.

It sits inside RequestTimer, which times its answers under the route's template.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from urllib.parse import parse_qsl

from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from .deps import Services
from .errors import refusal_response
from .routes.reads import (
    AVAILABILITY_PATH,
    BATCH_PATH,
    BREAKDOWN_PARAMETERS,
    READ_SCOPE,
    availability_answer,
    batch_answer,
)

_PREFIX: Final = AVAILABILITY_PATH.removesuffix("{sku}")


class FastReads:
    def __init__(self, app: ASGIApp, services: Services, routes: Sequence[BaseRoute]) -> None:
        """`routes`: the reads router's, whose two routes this answers in front of."""
        self.app = app
        self._services = services
        by_path = {route.path: route for route in routes if isinstance(route, APIRoute)}
        self._one = by_path[AVAILABILITY_PATH]
        self._batch = by_path[BATCH_PATH]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A root path changes what the routes match: FastAPI's business.
        if (
            scope["type"] == "http"
            and scope["path"].startswith(_PREFIX)
            and not scope.get("root_path")
        ):
            response = await self._answer(scope, receive)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive) -> Response | None:
        """The answer, or None to leave the request to FastAPI."""
        read, path, method = self._services.read, scope["path"], scope["method"]
        try:
            if method == "POST" and path == BATCH_PATH:
                scope["route"] = self._batch  # what RequestTimer names the request by
                self._check_key(scope)
                return await batch_answer(read, Request(scope, receive))
            # Starlette's `{sku}` is any non-empty segment, "batch" included.
            sku = path[len(_PREFIX) :]
            if method != "GET" or not sku or "/" in sku:
                return None
            scope["route"] = self._one
            self._check_key(scope)
            # As Starlette reads a query: blanks kept, the last of a repeated name wins.
            query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
            channel = query.get("channel")
            if channel is None or not BREAKDOWN_PARAMETERS.isdisjoint(query):
                # FastAPI's own 422 names the missing parameter, and it checks the types
                # and bounds of a breakdown's.
                return None
            return await availability_answer(read, sku, channel, query.get("location"))
        except Exception as exc:
            response = refusal_response(exc)
            if response is None:
                raise  # a bug: FastAPI's outer handler logs it and answers 500
            return response

    def _check_key(self, scope: Scope) -> None:
        """The reads router's dependency, before anything else is judged."""
        auth = self._services.auth
        if auth.enabled:
            auth.check(READ_SCOPE, Headers(scope=scope).get("authorization"))

"""The one place that turns refusals into HTTP answers:
`{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from availability import InvalidRules, NotReady, UnknownChannel
from availability.errors import (
    CursorExpired,
    HoldsUnavailable,
    InvalidCursor,
    NoFeed,
    UnknownHold,
)

log = logging.getLogger("availability.api")


class ErrorBody(msgspec.Struct, frozen=True):
    code: str
    message: str
    details: list[Any] | dict[str, Any] | None = None


class ErrorEnvelope(msgspec.Struct, frozen=True):
    error: ErrorBody


class ApiError(Exception):
    """A refusal with its status and machine-readable code."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


_encoder = msgspec.json.Encoder()


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = _encoder.encode(ErrorEnvelope(ErrorBody(code, message, details)))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


_RETRY: Final = {"Retry-After": "1"}
# The domain's refusals: status, code and headers. The message is the exception's own.
_DOMAIN_REFUSALS: Final[dict[type[Exception], tuple[int, str, Mapping[str, str] | None]]] = {
    UnknownChannel: (404, "unknown_channel", None),
    InvalidRules: (422, "invalid_rules", None),
    NotReady: (503, "not_ready", _RETRY),
    NoFeed: (404, "no_feed", None),
    CursorExpired: (410, "cursor_expired", None),
    InvalidCursor: (422, "invalid_cursor", None),
    UnknownHold: (404, "unknown_hold", None),
    HoldsUnavailable: (503, "holds_unavailable", _RETRY),
}


def refusal_response(exc: Exception) -> Response | None:
    """The answer to an ApiError or a domain refusal; None for any other exception (a bug,
    answered 500 by the `unexpected` handler). FastAPI's exception handlers and the reads'
    fast path (`fast_reads.py`, which runs outside FastAPI's handlers) both answer with it."""
    if isinstance(exc, ApiError):
        challenge = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, exc.details, challenge)
    for kind in type(exc).__mro__:  # the nearest class with an answer, as Starlette picks
        known = _DOMAIN_REFUSALS.get(kind)
        if known is not None:
            status, code, headers = known
            return error_response(status, code, str(exc), headers=headers)
    return None


_METHODS: Final = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the path takes. Starlette's 405 names those of the first
    route that matched the path alone: GET for `PUT /v1/rules`, which PUT takes too."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL
               for route in routes)
    ]  # fmt: skip


def install_error_handlers(app: FastAPI) -> None:
    async def refusal(_: Request, exc: Exception) -> Response:
        response = refusal_response(exc)
        assert response is not None  # registered only for the kinds it answers
        return response

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    async def request_invalid(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = [
            {"field": ".".join(str(part) for part in error["loc"][1:]), "message": error["msg"]}
            for error in exc.errors()
        ]
        return error_response(422, "invalid_request", "the request is invalid", details)

    async def unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        return error_response(500, "internal_error", "an unexpected error occurred; it was logged")

    refused: list[type[Exception]] = [ApiError, *_DOMAIN_REFUSALS]
    for kind in refused:
        app.add_exception_handler(kind, refusal)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, request_invalid)
    app.add_exception_handler(Exception, unexpected)

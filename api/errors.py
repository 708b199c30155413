"""The one place that turns refusals into HTTP answers:
`{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

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


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, exc.details, headers)

    async def unknown_channel(_: Request, exc: Exception) -> Response:
        return error_response(404, "unknown_channel", str(exc))

    async def invalid_rules(_: Request, exc: Exception) -> Response:
        return error_response(422, "invalid_rules", str(exc))

    async def not_ready(_: Request, exc: Exception) -> Response:
        return error_response(503, "not_ready", str(exc), headers={"Retry-After": "1"})

    async def no_feed(_: Request, exc: Exception) -> Response:
        return error_response(404, "no_feed", str(exc))

    async def cursor_expired(_: Request, exc: Exception) -> Response:
        return error_response(410, "cursor_expired", str(exc))

    async def invalid_cursor(_: Request, exc: Exception) -> Response:
        return error_response(422, "invalid_cursor", str(exc))

    async def unknown_hold(_: Request, exc: Exception) -> Response:
        return error_response(404, "unknown_hold", str(exc))

    async def holds_unavailable(_: Request, exc: Exception) -> Response:
        return error_response(503, "holds_unavailable", str(exc), headers={"Retry-After": "1"})

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

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

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(UnknownChannel, unknown_channel)
    app.add_exception_handler(InvalidRules, invalid_rules)
    app.add_exception_handler(NotReady, not_ready)
    app.add_exception_handler(NoFeed, no_feed)
    app.add_exception_handler(CursorExpired, cursor_expired)
    app.add_exception_handler(InvalidCursor, invalid_cursor)
    app.add_exception_handler(UnknownHold, unknown_hold)
    app.add_exception_handler(HoldsUnavailable, holds_unavailable)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, request_invalid)
    app.add_exception_handler(Exception, unexpected)

"""Checkout holds (SPEC 6): a storefront holds stock while the shopper pays, then commits
the hold into an order or lets it go. Never more than the channel quantity is held."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from availability.holds import (
    CommitRequest,
    HoldRecord,
    HoldRequest,
    HoldStatus,
    commit_answer,
    hold_answer,
)
from availability.ids import DOCUMENT_ID_PATTERN, PATTERN_MEANINGS, is_document_id

from ..body import MAX_OTHER_BODY, decode_json, read_body
from ..deps import Services, documented_pattern
from ..encoding import json_response
from ..errors import ApiError
from ..openapi import answer, errors, json_content, ref, request_body
from ..ports import Holds

_hold_decoder: Final = msgspec.json.Decoder(HoldRequest)
_commit_decoder: Final = msgspec.json.Decoder(CommitRequest)
_AUTH_ERRORS: Final = (
    (401, "unauthorized: no valid key"),
    (403, "forbidden: the key lacks `hold`"),
)
_UNKNOWN: Final = (404, "unknown_hold: no live hold has this id (expired, released, committed)")
_UNAVAILABLE: Final = (503, "holds_unavailable: no decision in time; nothing is held, retry")

HoldPath = Annotated[
    str,
    Path(
        description=PATTERN_MEANINGS[DOCUMENT_ID_PATTERN],
        json_schema_extra=documented_pattern(DOCUMENT_ID_PATTERN),
    ),
]


def _check_hold_id(hold_id: str) -> None:
    if not is_document_id(hold_id):
        raise ApiError(
            422,
            "invalid_request",
            "the request is invalid",
            [{"field": "hold_id", "message": f"Expected {PATTERN_MEANINGS[DOCUMENT_ID_PATTERN]}"}],
        )


def _placed(record: HoldRecord) -> Response:
    if record.status is HoldStatus.REFUSED:
        raise ApiError(
            409,
            "insufficient_stock",
            f"{len(record.shortfalls)} line(s) ask for more than the channel can sell;"
            " nothing is held",
            record.shortfalls,
        )
    return json_response(hold_answer(record), status=201)


def holds_router(services: Services, holds: Holds) -> APIRouter:
    router = APIRouter(tags=["holds"], dependencies=[services.scope("hold")])  # type: ignore[list-item]

    @router.post(
        "/v1/holds",
        summary="Hold every line for ttl_s seconds, or none",
        openapi_extra=request_body(ref("HoldRequest"), "the lines to hold (SPEC 6)"),
        responses={
            **answer(
                201,
                "every line is held until expires_at; a repeated hold_id gets its first answer"
                " again, for a day after the hold ended (released, committed or expired)",
                "HoldAnswer",
            ),
            **errors(
                (400, "malformed_json"),
                (404, "unknown_channel: the channel is not in the rules"),
                (
                    409,
                    "insufficient_stock: details name each short line with"
                    " {sku, requested, sellable}; nothing is held",
                ),
                (413, "payload_too_large"),
                (422, "invalid_request: what is wrong and where"),
                _UNAVAILABLE,
                *_AUTH_ERRORS,
            ),
        },
    )
    async def place(request: Request) -> Response:
        body = await read_body(request, MAX_OTHER_BODY)
        return _placed(await holds.place_hold(decode_json(body, _hold_decoder)))

    @router.delete(
        "/v1/holds/{hold_id}",
        summary="Release a live hold: its units are sellable again at once",
        responses={
            **answer(200, "the hold, released", "HoldAnswer"),
            **errors(
                _UNKNOWN, (422, "invalid_request: a bad hold id"), _UNAVAILABLE, *_AUTH_ERRORS
            ),
        },
    )
    async def release(hold_id: HoldPath) -> Response:
        _check_hold_id(hold_id)
        return json_response(hold_answer(await holds.release_hold(hold_id)))

    @router.post(
        "/v1/holds/{hold_id}/commit",
        summary="Turn a live hold into order documents (order_id: default the hold id)",
        openapi_extra={
            "requestBody": {
                "required": False,
                "description": "optional: {} or no body commits as the hold id",
                "content": json_content(ref("CommitRequest")),
            }
        },
        responses={
            **answer(200, "each line as an order line at its location", "CommitAnswer"),
            **errors(
                (400, "malformed_json"),
                (422, "invalid_request: a bad order_id"),
                _UNKNOWN,
                _UNAVAILABLE,
                *_AUTH_ERRORS,
            ),
        },
    )
    async def commit(hold_id: HoldPath, request: Request) -> Response:
        _check_hold_id(hold_id)
        body = await read_body(request, MAX_OTHER_BODY)
        order_id = decode_json(body, _commit_decoder).order_id if body.strip() else None
        return json_response(commit_answer(await holds.commit_hold(hold_id, order_id)))

    return router

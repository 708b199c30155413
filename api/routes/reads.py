"""Availability and positions: what storefronts ask at checkout."""

from __future__ import annotations

from typing import Final

import msgspec
from fastapi import APIRouter, Request
from starlette.responses import Response

from availability.decoding import decoded
from availability.ids import are_skus, is_channel, is_location

from ..body import MAX_OTHER_BODY, decode_json, read_body
from ..deps import ChannelQuery, LocationQuery, Services, SkuPath, check_ids
from ..encoding import json_response
from ..openapi import answer, errors, ref, request_body
from ..ports import ReadModel
from ..schemas import AvailabilityBatchAnswer, BatchQuestion, UncheckedBatchQuestion

AVAILABILITY_PATH: Final = "/v1/availability/{sku}"
BATCH_PATH: Final = "/v1/availability/batch"
READ_SCOPE: Final = "read"

_batch_decoder: Final = msgspec.json.Decoder(BatchQuestion)
_unchecked_decoder: Final = msgspec.json.Decoder(UncheckedBatchQuestion)
_FIELDS: Final = tuple(f'"{name}"'.encode() for name in BatchQuestion.__struct_fields__)
_AUTH_ERRORS: Final = (
    (401, "unauthorized: no valid key"),
    (403, "forbidden: the key lacks `read`"),
)
# Streaming mode only: a SKU whose partition the workers are still publishing (after a
# restart or a rebalance) may have stock, so it is refused rather than answered 0.
_NOT_READY: Final = (
    503,
    "not_ready: the SKU's state is not published yet, or Redis cannot be reached; retry",
)


async def availability_answer(
    read: ReadModel, sku: str, channel: str, location: str | None
) -> Response:
    """GET /v1/availability/{sku} once its key is checked and its parameters read: the route
    below and the fast path (`api/fast_reads.py`) both answer with it."""
    check_ids(sku, channel, location)
    return json_response(await read.availability(sku, channel, location))


def decode_question(body: bytes) -> BatchQuestion | UncheckedBatchQuestion:
    """The batch question, or BatchQuestion's decoder's refusal.

    That decoder matches each id against its pattern one string at a time, most of the time
    a 100-SKU question took (profiled). So a question is decoded without the patterns and
    its ids checked together; the full decoder runs when anything is off, to say what as it
    always did. It also takes any body with a backslash or a field name twice: it checks a
    field given twice at its first value, where the shortcut sees only the last, and with
    escapes a field name could be given twice unseen."""
    if b"\\" not in body and all(body.count(field) <= 1 for field in _FIELDS):
        try:
            question = decoded(_unchecked_decoder, body)
        except msgspec.DecodeError:
            pass
        else:
            location = question.location
            if (
                is_channel(question.channel)
                and are_skus(question.skus)
                and (location is None or is_location(location))
            ):
                return question
    return decode_json(body, _batch_decoder)


async def batch_answer(read: ReadModel, request: Request) -> Response:
    """POST /v1/availability/batch once its key is checked, as `availability_answer`."""
    question = decode_question(await read_body(request, MAX_OTHER_BODY))
    items = await read.availability_batch(question.skus, question.channel, question.location)
    return json_response(AvailabilityBatchAnswer(items))


def reads_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["availability"], dependencies=[services.scope(READ_SCOPE)])  # type: ignore[list-item]
    read = services.read

    @router.get(
        AVAILABILITY_PATH,
        summary="A SKU's sellable quantity for a channel, optionally at one location",
        responses={
            **answer(
                200,
                "the channel quantity; a SKU never seen answers 0 with version 0",
                "Availability",
            ),
            **errors(
                (404, "unknown_channel: the channel is not in the rules"),
                (422, "invalid_request: a bad SKU, channel or location"),
                *_AUTH_ERRORS,
                _NOT_READY,
            ),
        },
    )
    async def get_availability(
        sku: SkuPath, channel: ChannelQuery, location: LocationQuery = None
    ) -> Response:
        return await availability_answer(read, sku, channel, location)

    @router.post(
        BATCH_PATH,
        summary="Up to 500 SKUs at once, answered in request order",
        openapi_extra=request_body(
            ref("BatchQuestion"), "the channel, 1 to 500 SKUs, an optional location"
        ),
        responses={
            **answer(200, "one item per SKU, in request order", "AvailabilityBatch"),
            **errors(
                (400, "malformed_json"),
                (404, "unknown_channel"),
                (413, "payload_too_large: over 1 MiB"),
                (422, "invalid_request: 0 or over 500 SKUs, bad ids"),
                *_AUTH_ERRORS,
                _NOT_READY,
            ),
        },
    )
    async def post_availability_batch(request: Request) -> Response:
        return await batch_answer(read, request)

    @router.get(
        "/v1/positions/{sku}",
        tags=["positions"],
        summary="A SKU's position at every location it has one",
        responses={
            **answer(200, "positions; a SKU never seen answers version 0 and none", "Positions"),
            **errors((422, "invalid_request: a bad SKU"), *_AUTH_ERRORS, _NOT_READY),
        },
    )
    async def get_positions(sku: SkuPath) -> Response:
        check_ids(sku)
        return json_response(await read.positions(sku))

    return router

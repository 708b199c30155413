"""Availability and positions: what storefronts ask at checkout."""

from __future__ import annotations

from typing import Final

import msgspec
from fastapi import APIRouter, Request
from starlette.responses import Response

from ..body import MAX_OTHER_BODY, decode_json, read_body
from ..deps import ChannelQuery, LocationQuery, Services, SkuPath, check_ids
from ..encoding import json_response
from ..openapi import answer, errors, ref, request_body
from ..schemas import AvailabilityBatchAnswer, BatchQuestion

_batch_decoder: Final = msgspec.json.Decoder(BatchQuestion)
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


def reads_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["availability"], dependencies=[services.scope("read")])  # type: ignore[list-item]
    read = services.read

    @router.get(
        "/v1/availability/{sku}",
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
        check_ids(sku, channel, location)
        return json_response(await read.availability(sku, channel, location))

    @router.post(
        "/v1/availability/batch",
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
        question = decode_json(await read_body(request, MAX_OTHER_BODY), _batch_decoder)
        items = await read.availability_batch(question.skus, question.channel, question.location)
        return json_response(AvailabilityBatchAnswer(items))

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

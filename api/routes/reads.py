"""Availability and positions: what storefronts ask at checkout."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from availability.decoding import decoded
from availability.ids import PATTERN_MEANINGS, SKU_PATTERN, are_skus, is_channel, is_location
from availability.views import DEFAULT_LOCATIONS_PAGE, MAX_LOCATIONS_PAGE, LocationsAsk

from ..body import MAX_OTHER_BODY, decode_json, read_body
from ..deps import (
    ChannelQuery,
    LocationQuery,
    Services,
    SkuPath,
    check_ids,
    documented_pattern,
)
from ..encoding import json_response
from ..errors import ApiError
from ..openapi import answer, errors, ref, request_body
from ..ports import ReadModel
from ..schemas import (
    AvailabilityBatchAnswer,
    BatchQuestion,
    Include,
    UncheckedBatchQuestion,
)

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
# The per-location breakdown's query parameters: the fast path hands a question with any of
# them to FastAPI, which checks their types and bounds.
BREAKDOWN_PARAMETERS: Final = frozenset({"include", "after", "limit"})
IncludeQuery = Annotated[
    Include | None,
    Query(
        description="`locations`: add a page of the channel's eligible locations, each with"
        f" its own sellable, in location id order ({DEFAULT_LOCATIONS_PAGE} unless `limit`"
        " says); not with `location`"
    ),
]
AfterQuery = Annotated[
    str | None,
    Query(
        description="with include=locations: start after this location id (the answer's"
        f" `next_after`, for the next page): {SKU_PATTERN}",
        json_schema_extra=documented_pattern(SKU_PATTERN),
    ),
]
LimitQuery = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_LOCATIONS_PAGE,
        description=f"with include=locations: locations in the page, 1 to {MAX_LOCATIONS_PAGE}",
    ),
]
_BREAKDOWN_ERROR: Final = (
    422,
    "invalid_request: a bad include, after or limit; after or limit without"
    " include=locations; include with a location",
)
# Streaming mode only: a SKU whose partition the workers are still publishing (after a
# restart or a rebalance) may have stock, so it is refused rather than answered 0.
_NOT_READY: Final = (
    503,
    "not_ready: the SKU's state is not published yet, or Redis cannot be reached; retry",
)


def locations_ask(
    include: str | None, location: str | None, after: str | None = None, limit: int | None = None
) -> LocationsAsk | None:
    """The breakdown a question asks for, if any; refuses what cannot go together."""
    if include is None:
        named = [name for name, value in (("after", after), ("limit", limit)) if value is not None]
        if named:
            raise ApiError(
                422,
                "invalid_request",
                f"{' and '.join(named)} page the per-location breakdown: ask for it with"
                " include=locations",
                [{"field": name, "message": "only with include=locations"} for name in named],
            )
        return None
    if location is not None:
        raise ApiError(
            422,
            "invalid_request",
            "include=locations lists every eligible location; a question with a location"
            " is answered for that location, which its answer lists: ask one or the other",
            [{"field": "include", "message": "not with location"}],
        )
    if after is not None and not is_location(after):
        meaning = PATTERN_MEANINGS[SKU_PATTERN]
        raise ApiError(
            422,
            "invalid_request",
            "the request is invalid",
            [{"field": "after", "message": f"Expected {meaning}"}],
        )
    return LocationsAsk(after, DEFAULT_LOCATIONS_PAGE if limit is None else limit)


async def availability_answer(
    read: ReadModel,
    sku: str,
    channel: str,
    location: str | None,
    include: str | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> Response:
    """GET /v1/availability/{sku} once its key is checked and its parameters read: the route
    below and the fast path (`api/fast_reads.py`, only questions without a breakdown) both
    answer with it."""
    check_ids(sku, channel, location)
    ask = locations_ask(include, location, after, limit)
    return json_response(await read.availability(sku, channel, location, ask))


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
                question.include is None
                and question.limit is None
                and is_channel(question.channel)
                and are_skus(question.skus)
                and (location is None or is_location(location))
            ):
                return question
    return decode_json(body, _batch_decoder)


async def batch_answer(read: ReadModel, request: Request) -> Response:
    """POST /v1/availability/batch once its key is checked, as `availability_answer`."""
    question = decode_question(await read_body(request, MAX_OTHER_BODY))
    ask = None
    if isinstance(question, BatchQuestion):  # the unchecked one asks no breakdown
        ask = locations_ask(question.include, question.location, limit=question.limit)
    items = await read.availability_batch(question.skus, question.channel, question.location, ask)
    return json_response(AvailabilityBatchAnswer(items))


def reads_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["availability"], dependencies=[services.scope(READ_SCOPE)])  # type: ignore[list-item]
    read = services.read

    @router.get(
        AVAILABILITY_PATH,
        summary="A SKU's sellable quantity for a channel, optionally at one location",
        description="The channel quantity and version, without a per-location list. With"
        " `include=locations`, a page of the eligible locations and their own sellable (at"
        f" most {MAX_LOCATIONS_PAGE}); `next_after` is there when more follow: ask again"
        " with `after` set to it. With `location`, that location's answer, which lists it.",
        responses={
            **answer(
                200,
                "the channel quantity; a SKU never seen answers 0 with version 0",
                "Availability",
            ),
            **errors(
                (404, "unknown_channel: the channel is not in the rules"),
                (422, "invalid_request: a bad SKU, channel or location"),
                _BREAKDOWN_ERROR,
                *_AUTH_ERRORS,
                _NOT_READY,
            ),
        },
    )
    async def get_availability(
        sku: SkuPath,
        channel: ChannelQuery,
        location: LocationQuery = None,
        include: IncludeQuery = None,
        after: AfterQuery = None,
        limit: LimitQuery = None,
    ) -> Response:
        return await availability_answer(read, sku, channel, location, include, after, limit)

    @router.post(
        BATCH_PATH,
        summary="Up to 500 SKUs at once, answered in request order",
        openapi_extra=request_body(
            ref("BatchQuestion"),
            'the channel, 1 to 500 SKUs, an optional location; `include: "locations"`'
            " adds each item's first page of locations (`limit`, 1 to 100), the rest by GET",
        ),
        responses={
            **answer(200, "one item per SKU, in request order", "AvailabilityBatch"),
            **errors(
                (400, "malformed_json"),
                (404, "unknown_channel"),
                (413, "payload_too_large: over 1 MiB"),
                (422, "invalid_request: 0 or over 500 SKUs, bad ids"),
                _BREAKDOWN_ERROR,
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

"""Event ingest: validate the whole batch, then make it durable, then answer 202."""

from __future__ import annotations

from collections import Counter
from typing import Final

import msgspec
from fastapi import APIRouter, Request
from starlette.responses import Response

from availability import decode_batch_items, decode_raw_list
from availability.batch import event_type
from availability.decoding import decoded
from availability.events import EVENT_TYPES

from ..body import MAX_EVENTS_BODY, read_body
from ..deps import Services
from ..encoding import json_response
from ..errors import ApiError
from ..openapi import answer, errors, json_content, ref
from ..schemas import MAX_EVENTS, EventsAccepted
from ..whole_numbers import refused_a_float, whole_numbers_as_ints

_EVENTS_BODY: Final = {
    "requestBody": {
        "required": True,
        "description": "a JSON array of 1 to 1,000 events (SPEC section 2)",
        "content": json_content(
            {"type": "array", "minItems": 1, "maxItems": MAX_EVENTS, "items": ref("Event")}
        ),
    }
}


class _TypeOnly(msgspec.Struct):
    type: str = "unknown"


_type_decoder: Final = msgspec.json.Decoder(_TypeOnly)


def type_of(raw: msgspec.Raw) -> str:
    """The `type` of a refused event when it is one of ours, for the metric's label."""
    try:
        claimed = decoded(_type_decoder, raw).type
    except msgspec.MsgspecError:
        return "unknown"
    return claimed if claimed in EVENT_TYPES else "unknown"


def with_whole_numbers_as_ints(item: msgspec.Raw) -> msgspec.Raw:
    rewritten = whole_numbers_as_ints(bytes(item))
    return item if rewritten is None else msgspec.Raw(rewritten)


def events_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["events"], dependencies=[services.scope("write")])  # type: ignore[list-item]

    @router.post(
        "/v1/events",
        status_code=202,
        summary="Ingest inventory events; all or nothing",
        openapi_extra=_EVENTS_BODY,
        responses={
            **answer(202, "every event was accepted and is durable", "EventsAccepted"),
            **errors(
                (400, "malformed_json"),
                (413, "payload_too_large: a body over 4 MiB"),
                (422, "invalid_request: not an array, empty, or over 1,000 events"),
                (401, "unauthorized"),
                (403, "forbidden: the key lacks `write`"),
                (503, "not_ready: the events could not be made durable; retry"),
            ),
            422: {
                "description": "invalid_request: not an array, empty, or over 1,000 events; "
                "invalid_events: some event is invalid, `details` lists each "
                "{index, field, message}, and nothing of the batch was applied",
                "content": json_content(ref("EventsRefused")),
            },
        },
    )
    async def post_events(request: Request) -> Response:
        body = await read_body(request, MAX_EVENTS_BODY)
        try:
            items = decode_raw_list(body)
        except msgspec.ValidationError as exc:
            raise ApiError(
                422, "invalid_request", "the body must be a JSON array of events"
            ) from exc
        except msgspec.DecodeError as exc:
            raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from exc
        if not 1 <= len(items) <= MAX_EVENTS:
            raise ApiError(
                422,
                "invalid_request",
                f"a batch holds 1 to {MAX_EVENTS} events; this one has {len(items)}",
            )
        events, refused = decode_batch_items(items, services.clock_micros())
        if any(refused_a_float(error.message) for error in refused):
            items = [with_whole_numbers_as_ints(item) for item in items]
            events, refused = decode_batch_items(items, services.clock_micros())
        if refused:
            services.metrics.record_invalid(
                Counter(type_of(items[index]) for index in {error.index for error in refused})
            )
            raise ApiError(
                422,
                "invalid_events",
                f"{len({e.index for e in refused})} of {len(items)} events are invalid;"
                " nothing of this batch was applied",
                [msgspec.structs.asdict(error) for error in refused],
            )
        result = await services.ingest.submit(events, [bytes(item) for item in items])
        services.metrics.record_batch(result, Counter(event_type(event) for event in events))
        return json_response(EventsAccepted(len(events)), status=202)

    return router

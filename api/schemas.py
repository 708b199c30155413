"""Request and answer bodies of the HTTP API that are not domain values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Final, Literal

from msgspec import Meta, Raw, Struct

from availability import Availability
from availability.events import FieldError
from availability.ids import ChannelName, LocationId, Sku

MAX_BATCH_SKUS: Final = 500
MAX_EVENTS: Final = 1000
# A batch item's breakdown page, at most: 500 SKUs of 100 locations is 50,000 entries.
MAX_BATCH_LOCATIONS_PAGE: Final = 100

Include = Literal["locations"]


class BatchQuestion(Struct, frozen=True, forbid_unknown_fields=True):
    channel: ChannelName
    skus: Annotated[list[Sku], Meta(min_length=1, max_length=MAX_BATCH_SKUS)]
    location: LocationId | None = None
    include: Annotated[
        Include | None,
        Meta(description="`locations`: each item with the first page of its breakdown"),
    ] = None
    limit: Annotated[
        Annotated[int, Meta(ge=1, le=MAX_BATCH_LOCATIONS_PAGE)] | None,
        Meta(description="locations in each item's page, with include (default 100)"),
    ] = None


class UncheckedBatchQuestion(Struct, frozen=True, forbid_unknown_fields=True):
    """BatchQuestion but for the id patterns, which `reads.decode_question` checks apart,
    and its breakdown's fields, which it leaves to BatchQuestion's decoder."""

    channel: str
    skus: Annotated[list[str], Meta(min_length=1, max_length=MAX_BATCH_SKUS)]
    location: str | None = None
    include: object = None
    limit: object = None


class AvailabilityBatch(Struct, frozen=True):
    """The batch answer as documented (OpenAPI)."""

    items: list[Availability]


class AvailabilityBatchAnswer(Struct, frozen=True):
    """The batch answer as encoded: an item may be an answer the read model already holds as
    JSON (streaming mode), sent as it is. Its schema is AvailabilityBatch's, which stays
    precise where `Availability | Raw` would document an item as anything at all."""

    items: Sequence[Availability | Raw]


class EventsAccepted(Struct, frozen=True):
    accepted: int


class EventsRefusedBody(Struct, frozen=True):
    code: str
    message: str
    # invalid_events names each refused event; invalid_request (not an array, empty, too
    # many) refuses the body as a whole and has no details.
    details: list[FieldError] | None


class EventsRefused(Struct, frozen=True):
    error: EventsRefusedBody

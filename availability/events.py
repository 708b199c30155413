"""Inventory events on the wire (SPEC section 2): frozen msgspec Structs tagged by `type`.

The same Structs serve HTTP, Kafka and storage. Schema evolution: new fields get defaults,
types never change, unknown fields are ignored so a newer producer never breaks a reader.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta, Struct

from .decoding import decoded
from .ids import PATTERN_MEANINGS, ChannelName, DocumentId, LocationId, Sku
from .timeutil import MICROS_PER_SECOND, to_micros

MAX_QTY: Final = 1_000_000
# The SPEC sets no ceiling on a count; a billion units at one location is already absurd,
# and a bound keeps a typo from poisoning sums.
MAX_COUNTED: Final = 1_000_000_000
# A POS with a wrong clock must not poison the count rebase (SPEC 2, rule 4).
MAX_CLOCK_SKEW_MICROS: Final = 5 * 60 * MICROS_PER_SECOND

Qty = Annotated[int, Meta(ge=1, le=MAX_QTY, description="1 to 1,000,000")]
Delta = Annotated[
    int, Meta(ge=-MAX_QTY, le=MAX_QTY, description="non-zero, -1,000,000 to 1,000,000")
]
Counted = Annotated[int, Meta(ge=0, le=MAX_COUNTED)]
Timestamp = Annotated[datetime, Meta(tz=True, description="RFC 3339 with an offset")]
FreeText = Annotated[str, Meta(max_length=256)]
Reason = Annotated[str, Meta(min_length=1, max_length=256)]


class BaseEvent(Struct, frozen=True, kw_only=True, tag_field="type"):
    event_id: DocumentId
    sku: Sku
    location: LocationId
    occurred_at: Timestamp
    source: FreeText | None = None

    @property
    def occurred_us(self) -> int:
        return to_micros(self.occurred_at)


class Sale(BaseEvent, frozen=True, kw_only=True, tag="sale"):
    qty: Qty


class Order(BaseEvent, frozen=True, kw_only=True, tag="order"):
    qty: Qty
    order_id: DocumentId
    channel: ChannelName | None = None


class Cancel(BaseEvent, frozen=True, kw_only=True, tag="cancel"):
    qty: Qty
    order_id: DocumentId


class Pick(BaseEvent, frozen=True, kw_only=True, tag="pick"):
    qty: Qty
    order_id: DocumentId | None = None


class Return(BaseEvent, frozen=True, kw_only=True, tag="return"):
    qty: Qty
    disposition: Literal["sellable", "damaged"]


class TransferOut(BaseEvent, frozen=True, kw_only=True, tag="transfer_out"):
    qty: Qty
    transfer_id: DocumentId
    to_location: LocationId


class TransferIn(BaseEvent, frozen=True, kw_only=True, tag="transfer_in"):
    qty: Qty
    transfer_id: DocumentId


class Receipt(BaseEvent, frozen=True, kw_only=True, tag="receipt"):
    qty: Qty
    po_id: DocumentId | None = None


class Adjust(BaseEvent, frozen=True, kw_only=True, tag="adjust"):
    delta: Delta
    reason: Reason

    def __post_init__(self) -> None:
        if self.delta == 0:
            raise ValueError("delta: must be non-zero")


class Count(BaseEvent, frozen=True, kw_only=True, tag="count"):
    counted: Counted


Event = Sale | Order | Cancel | Pick | Return | TransferOut | TransferIn | Receipt | Adjust | Count

EVENT_TYPES: Final[tuple[str, ...]] = (
    "sale",
    "order",
    "cancel",
    "pick",
    "return",
    "transfer_out",
    "transfer_in",
    "receipt",
    "adjust",
    "count",
)

event_decoder: Final[msgspec.json.Decoder[Event]] = msgspec.json.Decoder(Event)
_raw_list_decoder: Final = msgspec.json.Decoder(list[msgspec.Raw])
_MISSING_FIELD: Final = re.compile(r"Object missing required field `([^`]+)`")


class FieldError(Struct, frozen=True):
    """Why one event of a batch was refused: `field` is a dotted path inside the event."""

    index: int
    field: str
    message: str


def decode_event(raw: bytes) -> Event:
    """Decode one event; raises msgspec.ValidationError or msgspec.DecodeError."""
    return decoded(event_decoder, raw)


def decode_message(value: bytes | None) -> tuple[Event | None, str | None]:
    """A Kafka message's value as an event, or why it is none: the reason a worker
    dead-letters it with, and the one a SKU's history shows."""
    if value is None:
        return None, "the message has no value"
    try:
        return decode_event(value), None
    except msgspec.MsgspecError as exc:
        return None, f"invalid event: {exc}"


def split_error(error: msgspec.MsgspecError) -> tuple[str, str]:
    """Split msgspec's "Expected `int`, got `str` - at `$.qty`" into field and message."""
    text = str(error)
    message, sep, path = text.rpartition(" - at `")
    if not sep:
        # Checks in __post_init__ have no path; they name their field as "field: message".
        field, colon, rest = text.partition(": ")
        if colon and field.isidentifier():
            return field, rest
        message, path = text, "$`"  # msgspec names no path at the top level
    if path.startswith("key` in `"):  # a dictionary key, e.g. a channel name
        path = path.removeprefix("key` in `")
        message = f"key {message[0].lower()}{message[1:]}"
    field = path.rstrip("`").removeprefix("$").lstrip(".")
    missing = _MISSING_FIELD.match(message)
    if missing:  # msgspec reports it at the enclosing object: name the field itself
        field = f"{field}.{missing[1]}" if field else missing[1]
    return field, _plain_words(message)


def _plain_words(message: str) -> str:
    """Say "expected 1 to 64 of A-Z a-z 0-9 . _ : -" rather than quote a regex."""
    for pattern, meaning in PATTERN_MEANINGS.items():
        if f"matching regex {pattern!r}" in message:
            return message.replace(f"`str` matching regex {pattern!r}", meaning)
    return message


def clock_error(event: Event, now_us: int) -> str | None:
    if event.occurred_us > now_us + MAX_CLOCK_SKEW_MICROS:
        return "occurred_at is more than 5 minutes ahead of the server clock"
    if event.occurred_us < 0:
        # No stock moved before 1970; such a date is a broken clock or a default value,
        # and the dedup window, measured from a new SKU's zero, would refuse it later for
        # the wrong reason.
        return "occurred_at is before 1970-01-01T00:00:00Z"
    return None


def decode_batch_items(
    items: list[msgspec.Raw], now_us: int
) -> tuple[list[Event], list[FieldError]]:
    """Decode every item of a batch, collecting every error so one answer names them all."""
    events: list[Event] = []
    errors: list[FieldError] = []
    for index, raw in enumerate(items):
        try:
            event = decode_event(raw)
        except msgspec.MsgspecError as exc:
            field, message = split_error(exc)
            errors.append(FieldError(index, field, message))
            continue
        problem = clock_error(event, now_us)
        if problem is not None:
            errors.append(FieldError(index, "occurred_at", problem))
            continue
        events.append(event)
    return events, errors


def decode_raw_list(body: bytes) -> list[msgspec.Raw]:
    """Split a JSON array into its raw items; raises DecodeError/ValidationError if it isn't one."""
    return decoded(_raw_list_decoder, body)

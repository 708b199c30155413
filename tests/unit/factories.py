"""Builders shared by the unit tests: events at minutes past a fixed start, states, rules.

Processing tests build Structs directly (already valid, as the core expects); validation
tests go through the wire with `wire()` and `decode_one()`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple, TypedDict, Unpack

import msgspec

from availability.events import (
    Adjust,
    Cancel,
    Count,
    Event,
    FieldError,
    Order,
    Pick,
    Receipt,
    Return,
    Sale,
    TransferIn,
    TransferOut,
    decode_batch_items,
)
from availability.processing import DEFAULT_WINDOWS, Applied, Windows, apply_event
from availability.rules import CompiledRules, rules_from_object
from availability.state import SkuState
from availability.timeutil import MICROS_PER_DAY, to_micros

T0: Final = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
T0_US: Final = to_micros(T0)
# Server time for processing tests: after every event they build, so no clock rule bites.
NOW_US: Final = T0_US + 30 * MICROS_PER_DAY

SKU: Final = "SKU-1"
OTHER_SKU: Final = "SKU-2"
STORE: Final = "S001"
STORE_2: Final = "S002"
DC: Final = "DC1"
DROPSHIP: Final = "D001"

_event_ids = itertools.count(1)


class Where(TypedDict, total=False):
    event_id: str
    sku: str
    location: str
    minutes: float


def at(minutes: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes)


def us(minutes: float = 0) -> int:
    return to_micros(at(minutes))


def _base(where: Where) -> dict[str, Any]:
    return {
        "event_id": where.get("event_id") or f"e{next(_event_ids)}",
        "sku": where.get("sku", SKU),
        "location": where.get("location", STORE),
        "occurred_at": at(where.get("minutes", 0)),
    }


def sale(qty: int, **where: Unpack[Where]) -> Sale:
    return Sale(qty=qty, **_base(where))


def order(qty: int, order_id: str = "O1", **where: Unpack[Where]) -> Order:
    return Order(qty=qty, order_id=order_id, **_base(where))


def cancel(qty: int, order_id: str = "O1", **where: Unpack[Where]) -> Cancel:
    return Cancel(qty=qty, order_id=order_id, **_base(where))


def pick(qty: int, order_id: str | None = None, **where: Unpack[Where]) -> Pick:
    return Pick(qty=qty, order_id=order_id, **_base(where))


def return_(qty: int, disposition: str = "sellable", **where: Unpack[Where]) -> Return:
    return Return(qty=qty, disposition=disposition, **_base(where))  # type: ignore[arg-type]


def transfer_out(
    qty: int, transfer_id: str = "T1", to: str = STORE, **where: Unpack[Where]
) -> TransferOut:
    where.setdefault("location", DC)
    return TransferOut(qty=qty, transfer_id=transfer_id, to_location=to, **_base(where))


def transfer_in(qty: int, transfer_id: str = "T1", **where: Unpack[Where]) -> TransferIn:
    return TransferIn(qty=qty, transfer_id=transfer_id, **_base(where))


def receipt(qty: int, po_id: str | None = None, **where: Unpack[Where]) -> Receipt:
    return Receipt(qty=qty, po_id=po_id, **_base(where))


def adjust(delta: int, reason: str = "shrink", **where: Unpack[Where]) -> Adjust:
    return Adjust(delta=delta, reason=reason, **_base(where))


def count(counted: int, **where: Unpack[Where]) -> Count:
    return Count(counted=counted, **_base(where))


class Figures(NamedTuple):
    """The stored figures of one position, with zeros by default so tables stay short."""

    on_hand: int = 0
    reserved: int = 0
    inbound: int = 0
    unsellable: int = 0


def figures(state: SkuState) -> dict[str, Figures]:
    return {
        location: Figures(p.on_hand, p.reserved, p.inbound, p.unsellable)
        for location, p in state.positions.items()
    }


def apply_all(
    events: Iterable[Event],
    state: SkuState | None = None,
    *,
    now_us: int = NOW_US,
    windows: Windows = DEFAULT_WINDOWS,
) -> tuple[SkuState, list[Applied]]:
    """Apply events in the given order to one SKU's state (a fresh one by default)."""
    events = list(events)
    if state is None:
        state = SkuState(sku=events[0].sku if events else SKU)
    return state, [apply_event(state, event, now_us, windows) for event in events]


def compiled(**document: Any) -> CompiledRules:
    """Rules from keyword arguments, validated exactly like a PUT /v1/rules body."""
    return CompiledRules(rules_from_object(document))


# One valid wire object per event type: validation tests change one field at a time.
WIRE_EXTRAS: Final[dict[str, dict[str, Any]]] = {
    "sale": {"qty": 1},
    "order": {"qty": 2, "order_id": "O-1", "channel": "web"},
    "cancel": {"qty": 1, "order_id": "O-1"},
    "pick": {"qty": 1, "order_id": "O-1"},
    "return": {"qty": 1, "disposition": "sellable"},
    "transfer_out": {"qty": 3, "transfer_id": "T-1", "to_location": "S001"},
    "transfer_in": {"qty": 3, "transfer_id": "T-1"},
    "receipt": {"qty": 10, "po_id": "PO-7"},
    "adjust": {"delta": -2, "reason": "damaged on shelf"},
    "count": {"counted": 12},
}


def wire(type_: str, **changes: Any) -> dict[str, Any]:
    """A valid JSON event of `type_`; a change to `MISSING` removes that field."""
    document: dict[str, Any] = {
        "event_id": "pos-0042:2026-11-22:17",
        "type": type_,
        "sku": SKU,
        "location": "S001",
        "occurred_at": "2026-11-22T10:00:00Z",
        "source": "pos-0042",
        **WIRE_EXTRAS.get(type_, {"qty": 1}),
    }
    for field, value in changes.items():
        if value is MISSING:
            document.pop(field, None)
        else:
            document[field] = value
    return document


MISSING: Final = object()


def decode_all(
    objects: Iterable[object], now_us: int = NOW_US
) -> tuple[list[Event], list[FieldError]]:
    items = [msgspec.Raw(msgspec.json.encode(obj)) for obj in objects]
    return decode_batch_items(items, now_us)


def decode_one(obj: object, now_us: int = NOW_US) -> tuple[list[Event], list[FieldError]]:
    return decode_all([obj], now_us)

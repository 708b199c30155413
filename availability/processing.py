"""Applying one event to one SKU's state (SPEC section 2, processing rules).

- Idempotent: an event_id already applied for the SKU, inside the dedup window, does nothing.
- Order-independent: on-hand effects are sums; reserved and inbound come from documents.
- Rebase on count: a count sets on_hand to its figure plus every later on-hand effect; an
  on-hand effect at or before the last count is already in it; an older count is stale; a
  count older than the reconciliation window is dead-lettered.

The core mutates the SkuState it is given (copying a SKU's documents per event would make a
hot SKU quadratic) and reports what happened; the shells own the state and its writes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from msgspec import Struct

from .events import (
    Adjust,
    Cancel,
    Count,
    Event,
    Order,
    Pick,
    Receipt,
    Return,
    Sale,
    TransferIn,
    TransferOut,
)
from .state import OrderDoc, Position, SkuState, TransferDoc
from .timeutil import MICROS_PER_DAY, MICROS_PER_HOUR


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    DEAD_LETTERED = "dead_lettered"


class Windows(Struct, frozen=True):
    """How far back in event time the service remembers: both are settings."""

    dedup_us: int = 7 * MICROS_PER_DAY
    reconciliation_us: int = 48 * MICROS_PER_HOUR


DEFAULT_WINDOWS: Final = Windows()
# Dropping expired dedup ids and documents is a scan of the SKU: it runs at most once per
# hour of event time, and only once the SKU remembers enough for it to be worth it (a SKU
# with fewer events than that holds fewer documents and effects than that too).
COMPACT_EVERY_US: Final = MICROS_PER_HOUR
COMPACT_MIN_SEEN: Final = 64


class Applied(Struct, frozen=True):
    outcome: Outcome
    reason: str | None = None
    drift: int | None = None  # set when a count was applied
    oversold_change: int = 0  # positions that became oversold minus those that stopped


_DUPLICATE: Final = Applied(Outcome.DUPLICATE)
_STALE: Final = Applied(Outcome.STALE)


def apply_event(
    state: SkuState, event: Event, now_us: int, windows: Windows = DEFAULT_WINDOWS
) -> Applied:
    """Apply `event` (already validated, for `state.sku`) at server time `now_us`."""
    occurred = event.occurred_us
    if event.event_id in state.seen:
        return _DUPLICATE
    if occurred < state.newest_at - windows.dedup_us:
        return Applied(
            Outcome.DEAD_LETTERED,
            reason="older than the dedup window behind the newest event for this SKU: "
            "cannot tell whether it was already applied",
        )
    position = state.positions.get(event.location)
    if position is None:
        position = state.positions[event.location] = Position()
    was_oversold = position.oversold
    drift: int | None = None
    oversold_change = 0

    match event:
        case Count():
            if occurred < position.newest_at - windows.reconciliation_us:
                return Applied(
                    Outcome.DEAD_LETTERED,
                    reason="count older than the reconciliation window: cannot be rebased",
                )
            if position.last_count_at is not None and (occurred, event.event_id) < (
                position.last_count_at,
                position.last_count_id,
            ):
                state.seen[event.event_id] = occurred
                return _STALE
            drift = _rebase(position, occurred, event.event_id, event.counted)
        case Sale() | Pick():
            _on_hand_effect(position, occurred, -event.qty)
            if isinstance(event, Pick) and event.order_id is not None:
                change_order(position, event.order_id, occurred, picked=event.qty)
        case Order():
            change_order(position, event.order_id, occurred, ordered=event.qty)
        case Cancel():
            change_order(position, event.order_id, occurred, cancelled=event.qty)
        case Return():
            if event.disposition == "sellable":
                _on_hand_effect(position, occurred, event.qty)
            else:
                position.unsellable += event.qty
        case TransferOut():
            _on_hand_effect(position, occurred, -event.qty)
            destination = state.positions.get(event.to_location)
            if destination is None:
                destination = state.positions[event.to_location] = Position()
            destination_was_oversold = destination.oversold
            _change_transfer(destination, event.transfer_id, occurred, shipped=event.qty)
            destination.newest_at = max(destination.newest_at, occurred)
            if destination is not position:
                oversold_change += destination.oversold - destination_was_oversold
        case TransferIn():
            _on_hand_effect(position, occurred, event.qty)
            _change_transfer(position, event.transfer_id, occurred, received=event.qty)
        case Receipt():
            _on_hand_effect(position, occurred, event.qty)
        case Adjust():
            _on_hand_effect(position, occurred, event.delta)

    position.newest_at = max(position.newest_at, occurred)
    state.seen[event.event_id] = occurred
    state.newest_at = max(state.newest_at, occurred)
    state.version += 1
    state.updated_at = max(state.updated_at, now_us)
    if (
        len(state.seen) >= COMPACT_MIN_SEEN
        and state.newest_at - state.compacted_at >= COMPACT_EVERY_US
    ):
        compact(state, windows)
    oversold_change += position.oversold - was_oversold
    return Applied(Outcome.APPLIED, drift=drift, oversold_change=oversold_change)


def _on_hand_effect(position: Position, occurred: int, delta: int) -> None:
    if position.last_count_at is not None and occurred <= position.last_count_at:
        return  # already in the count
    position.on_hand += delta
    position.effects.append((occurred, delta))


def _rebase(position: Position, occurred: int, event_id: str, counted: int) -> int:
    """Set on_hand as of the count's time; return the drift (book minus counted)."""
    later = [(at, delta) for at, delta in position.effects if at > occurred]
    replayed = sum(delta for _, delta in later)
    drift = (position.on_hand - replayed) - counted
    position.on_hand = counted + replayed
    position.effects = later
    position.last_count_at = occurred
    position.last_count_id = event_id
    position.last_count_drift = drift
    return drift


def change_order(
    position: Position,
    order_id: str,
    occurred: int,
    *,
    ordered: int = 0,
    picked: int = 0,
    cancelled: int = 0,
) -> None:
    doc = position.orders.get(order_id)
    if doc is None:
        doc = position.orders[order_id] = OrderDoc()
    before = doc.open_qty
    doc.ordered += ordered
    doc.picked += picked
    doc.cancelled += cancelled
    doc.last_at = max(doc.last_at, occurred)
    position.reserved += doc.open_qty - before


def _change_transfer(
    position: Position, transfer_id: str, occurred: int, *, shipped: int = 0, received: int = 0
) -> None:
    doc = position.transfers.get(transfer_id)
    if doc is None:
        doc = position.transfers[transfer_id] = TransferDoc()
    before = doc.open_qty
    doc.shipped += shipped
    doc.received += received
    doc.last_at = max(doc.last_at, occurred)
    position.inbound += doc.open_qty - before


def compact(state: SkuState, windows: Windows = DEFAULT_WINDOWS) -> None:
    """Forget what no event inside the windows can touch any more: it changes no figure."""
    dedup_cutoff = state.newest_at - windows.dedup_us
    state.seen = {eid: at for eid, at in state.seen.items() if at >= dedup_cutoff}
    for position in state.positions.values():
        position.orders = {
            oid: doc
            for oid, doc in position.orders.items()
            if doc.open_qty or doc.last_at >= dedup_cutoff
        }
        position.transfers = {
            tid: doc
            for tid, doc in position.transfers.items()
            if doc.open_qty or doc.last_at >= dedup_cutoff
        }
        effects_cutoff = position.newest_at - windows.reconciliation_us
        position.effects = [(at, d) for at, d in position.effects if at > effects_cutoff]
    state.compacted_at = state.newest_at

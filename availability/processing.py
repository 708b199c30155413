"""Applying one event to one SKU's state (SPEC section 2, processing rules).

- Idempotent: an event_id already applied for the SKU, inside the dedup window, does nothing.
- Order-independent: on-hand effects are sums; reserved and inbound come from documents.
- Rebase on count: a count sets on_hand to its figure plus every later on-hand effect; an
  on-hand effect at or before the last count is already in it; an older count is stale; a
  count older than the reconciliation window is dead-lettered.
- Drift: a count's drift is the books at its time (the previous count, or zero, plus the
  effects after it and up to this count) minus its figure. An effect at or before the last
  count that arrives after it moves that drift, unless the count before had it already:
  so the drift does not depend on the order the other events arrive in.

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
from .state import Effect, Item, OrderDoc, Position, Seen, SkuState, TransferDoc
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
    location = event.location
    position = state.positions.get(location)
    if position is None:
        position = state.positions[location] = Position()
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
                state.remember(event.event_id, occurred)
                return _STALE
            drift = _rebase(state, location, occurred, event.event_id, event.counted)
        case Sale() | Pick():
            _on_hand_effect(state, position, location, occurred, -event.qty)
            if isinstance(event, Pick) and event.order_id is not None:
                change_order(state, location, event.order_id, occurred, picked=event.qty)
        case Order():
            change_order(state, location, event.order_id, occurred, ordered=event.qty)
        case Cancel():
            change_order(state, location, event.order_id, occurred, cancelled=event.qty)
        case Return():
            if event.disposition == "sellable":
                _on_hand_effect(state, position, location, occurred, event.qty)
            else:
                position.unsellable += event.qty
        case TransferOut():
            _on_hand_effect(state, position, location, occurred, -event.qty)
            destination = state.position(event.to_location)
            destination_was_oversold = destination.oversold
            _change_transfer(
                state, event.to_location, event.transfer_id, occurred, shipped=event.qty
            )
            destination.newest_at = max(destination.newest_at, occurred)
            if destination is not position:
                oversold_change += destination.oversold - destination_was_oversold
        case TransferIn():
            _on_hand_effect(state, position, location, occurred, event.qty)
            _change_transfer(state, location, event.transfer_id, occurred, received=event.qty)
        case Receipt():
            _on_hand_effect(state, position, location, occurred, event.qty)
        case Adjust():
            _on_hand_effect(state, position, location, occurred, event.delta)

    position.newest_at = max(position.newest_at, occurred)
    state.remember(event.event_id, occurred)
    state.newest_at = max(state.newest_at, occurred)
    state.version += 1
    state.updated_at = max(state.updated_at, now_us)
    if state.newest_at - state.compacted_at >= COMPACT_EVERY_US and (
        len(state.seen) >= COMPACT_MIN_SEEN or state.book.sealed
    ):
        compact(state, windows)
    oversold_change += position.oversold - was_oversold
    return Applied(Outcome.APPLIED, drift=drift, oversold_change=oversold_change)


def _on_hand_effect(
    state: SkuState, position: Position, location: str, occurred: int, delta: int
) -> None:
    last_count = position.last_count_at
    if last_count is not None and occurred <= last_count:
        # Already in the count's figure, so on_hand stays; but the books the count was
        # compared with missed it, unless the count before had it already.
        previous = position.prev_count_at
        if position.last_count_drift is not None and (previous is None or occurred > previous):
            position.last_count_drift += delta
        return
    position.on_hand += delta
    state.add_effect(location, occurred, delta)


def _rebase(state: SkuState, location: str, occurred: int, event_id: str, counted: int) -> int:
    """Set on_hand as of the count's time; return the drift (book minus counted). The
    effects at or before the count stay in their chunks until those expire: a later count
    is newer, so it never replays them."""
    position = state.positions[location]
    later = [effect for effect in state.effects.get(location, ()) if effect.at > occurred]
    replayed = sum(effect.delta for effect in later)
    drift = (position.on_hand - replayed) - counted
    position.on_hand = counted + replayed
    if later:
        state.effects[location] = later
    else:
        state.effects.pop(location, None)
    position.prev_count_at = position.last_count_at
    position.last_count_at = occurred
    position.last_count_id = event_id
    position.last_count_drift = drift
    return drift


def change_order(
    state: SkuState,
    location: str,
    order_id: str,
    occurred: int,
    *,
    ordered: int = 0,
    picked: int = 0,
    cancelled: int = 0,
) -> None:
    doc = state.order(location, order_id)
    before = doc.open_qty
    doc.ordered += ordered
    doc.picked += picked
    doc.cancelled += cancelled
    doc.last_at = max(doc.last_at, occurred)
    state.book.touch(doc.chunk, doc.last_at)
    state.positions[location].reserved += doc.open_qty - before


def _change_transfer(
    state: SkuState,
    location: str,
    transfer_id: str,
    occurred: int,
    *,
    shipped: int = 0,
    received: int = 0,
) -> None:
    doc = state.transfer(location, transfer_id)
    before = doc.open_qty
    doc.shipped += shipped
    doc.received += received
    doc.last_at = max(doc.last_at, occurred)
    state.book.touch(doc.chunk, doc.last_at)
    state.positions[location].inbound += doc.open_qty - before


def compact(state: SkuState, windows: Windows = DEFAULT_WINDOWS) -> None:
    """Forget what no event inside the windows can touch any more: it changes no figure.

    A sealed chunk goes once every item in it is past use: event ids behind the dedup
    window, closed documents untouched for as long, effects a count can no longer replay
    (counted already, or behind the reconciliation window); the open chunk, written with
    the head anyway, loses its expired items one by one. What stays in memory is what a
    read of the stored chunks gives back."""
    dedup_cutoff = state.newest_at - windows.dedup_us
    book = state.book
    gone: list[Item] = []
    for number, chunk in list(book.sealed.items()):
        if chunk.max_at >= dedup_cutoff:
            continue
        if all(_expired(state, item, dedup_cutoff, windows) for item in chunk.items):
            gone += chunk.items
            book.drop(number)
    kept: list[Item] = []
    for item in book.open.items:
        (gone if _expired(state, item, dedup_cutoff, windows) else kept).append(item)
    book.open.items = kept
    for item in gone:
        state.forget(item)
    gone_effects = {id(item) for item in gone if isinstance(item, Effect)}
    if gone_effects:
        for location, effects in list(state.effects.items()):
            live = [effect for effect in effects if id(effect) not in gone_effects]
            if live:
                state.effects[location] = live
            else:
                del state.effects[location]
    state.compacted_at = state.newest_at


def _effect_expired(state: SkuState, effect: Effect, windows: Windows) -> bool:
    position = state.positions[effect.location]
    if position.last_count_at is not None and effect.at <= position.last_count_at:
        return True  # in the count already
    return effect.at <= position.newest_at - windows.reconciliation_us  # no count reaches it


def _expired(state: SkuState, item: Item, dedup_cutoff: int, windows: Windows) -> bool:
    if isinstance(item, Seen):
        return item.at < dedup_cutoff
    if isinstance(item, Effect):
        return _effect_expired(state, item, windows)
    if isinstance(item, OrderDoc | TransferDoc):
        return item.open_qty == 0 and item.last_at < dedup_cutoff
    return False  # a hold: it ends by expiry or release

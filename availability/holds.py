"""Checkout holds (SPEC 6) as pure operations on SKU states, with time passed in.

A hold's lines live in the states of their SKUs (`SkuState.holds`): a located line adds to
its position's `held`, which readers see in `reserved`; a line without a location comes off
every channel's pool. Both modes decide with these functions, each on the single writer of
the SKUs it owns, so two storefronts racing for the last unit are decided one after the
other and the second is refused.

Every operation is idempotent per SKU: placing a hold the SKU already carries, or releasing
or committing one it no longer carries, changes nothing. That is what lets a stream redeliver
a hold command after a crash without holding twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Annotated, Final

from msgspec import Meta, Struct

from .events import Qty
from .ids import ChannelName, DocumentId, LocationId, Sku
from .processing import change_order
from .rules import CompiledChannel, CompiledRules
from .state import HeldLine, SkuState, line_size
from .timeutil import MICROS_PER_SECOND, format_micros
from .views import availability, eligible_sellable

MAX_HOLD_LINES: Final = 100
MAX_TTL_S: Final = 3600


class HoldLineRequest(Struct, frozen=True, omit_defaults=True):
    sku: Sku
    qty: Qty
    location: LocationId | None = None


class HoldRequest(Struct, frozen=True):
    channel: ChannelName
    lines: Annotated[
        list[HoldLineRequest],
        Meta(min_length=1, max_length=MAX_HOLD_LINES, description="1 to 100 lines"),
    ]
    ttl_s: Annotated[int, Meta(ge=1, le=MAX_TTL_S, description="1 to 3,600 seconds")]
    hold_id: DocumentId | None = None


class CommitRequest(Struct, frozen=True):
    order_id: DocumentId | None = None


class Shortfall(Struct, frozen=True):
    sku: str
    requested: int
    sellable: int


class CommittedLine(Struct, frozen=True):
    sku: str
    qty: int
    location: str


class HoldStatus(StrEnum):
    HELD = "held"
    REFUSED = "refused"
    RELEASED = "released"
    COMMITTED = "committed"
    EXPIRED = "expired"


class HoldRecord(Struct):
    """What a mode remembers of a hold request, by hold_id: enough to give a repeated
    request its first answer, and to release, commit or expire the hold."""

    hold_id: str
    channel: str
    status: HoldStatus
    expires_at: int  # server time, µs
    lines: list[HoldLineRequest]
    shortfalls: list[Shortfall] = []
    order_id: str | None = None
    committed: list[CommittedLine] = []

    def skus(self) -> list[str]:
        return skus_of(self.lines)


class HoldAnswer(Struct, frozen=True):
    """SPEC 6's 201 answer."""

    hold_id: str
    expires_at: str
    lines: list[HoldLineRequest]


class CommitAnswer(Struct, frozen=True):
    hold_id: str
    order_id: str
    lines: list[CommittedLine]


def hold_answer(record: HoldRecord) -> HoldAnswer:
    return HoldAnswer(record.hold_id, format_micros(record.expires_at), record.lines)


def commit_answer(record: HoldRecord) -> CommitAnswer:
    return CommitAnswer(record.hold_id, record.order_id or record.hold_id, record.committed)


def skus_of(lines: Sequence[HoldLineRequest]) -> list[str]:
    """The lines' SKUs, each once, in the order the lines name them."""
    return list(dict.fromkeys(line.sku for line in lines))


def expires_at(request: HoldRequest, now_us: int) -> int:
    return now_us + request.ttl_s * MICROS_PER_SECOND


def line_quantity(
    state: SkuState, rules: CompiledRules, channel: CompiledChannel, location: str | None
) -> int:
    """What a line may take: the channel quantity of SPEC 3, at its location if it names one."""
    return availability(state, rules, channel, location).sellable


def place_hold(
    load: Callable[[str], SkuState],
    hold_id: str,
    channel: CompiledChannel,
    rules: CompiledRules,
    lines: Sequence[HoldLineRequest],
    expires_at_us: int,
    now_us: int,
) -> list[Shortfall]:
    """Hold every line, or none. Lines are decided in order, each after the earlier lines
    of the same hold are taken, so two lines of one SKU cannot both take its last unit.
    Returns the short lines (nothing is held then); an empty list means all are held."""
    states: dict[str, SkuState] = {}
    for line in lines:
        if line.sku not in states:
            states[line.sku] = load(line.sku)
    if any(hold_id in state.holds for state in states.values()):
        return []  # already placed: a redelivered command holds nothing more
    taken: list[tuple[SkuState, HeldLine]] = []
    short: list[Shortfall] = []
    for line in lines:
        state = states[line.sku]
        quantity = line_quantity(state, rules, channel, line.location)
        if line.qty > quantity:
            short.append(Shortfall(line.sku, line.qty, quantity))
            continue
        held = HeldLine(line.location, line.qty)
        _take(state, hold_id, held, expires_at_us)
        taken.append((state, held))
    if short:
        for state, held in reversed(taken):
            _give_back(state, hold_id, held)
        return short
    for state in states.values():
        _bump(state, now_us)
    return []


def release_hold(state: SkuState, hold_id: str, now_us: int) -> bool:
    """Give the hold's units on this SKU back; False when the SKU carries no such hold."""
    hold = state.holds.get(hold_id)
    if hold is None:
        return False
    for line in list(hold.lines):
        _give_back(state, hold_id, line)
    _bump(state, now_us)
    return True


def expire_holds(state: SkuState, now_us: int) -> list[str]:
    """Release every hold of the SKU whose time is up; returns their ids."""
    due = [hold_id for hold_id, hold in state.holds.items() if hold.expires_at <= now_us]
    for hold_id in due:
        release_hold(state, hold_id, now_us)
    return due


def commit_hold(
    state: SkuState,
    hold_id: str,
    order_id: str,
    rules: CompiledRules,
    channel: CompiledChannel | None,
    now_us: int,
) -> list[CommittedLine] | None:
    """Turn the hold's lines on this SKU into order documents (SPEC 6): at the line's
    location, or for a line without one at the channel's eligible location with the most
    sellable once the hold is released (ties: the smallest location id). Later picks and
    cancels of `order_id` then apply to them. None when the SKU carries no such hold."""
    hold = state.holds.get(hold_id)
    if hold is None:
        return None
    lines = list(hold.lines)
    for line in lines:
        _give_back(state, hold_id, line)
    committed = []
    for line in lines:
        location = line.location or _fullest_location(state, rules, channel)
        position = state.position(location)
        change_order(state, location, order_id, now_us, ordered=line.qty)
        position.newest_at = max(position.newest_at, now_us)
        committed.append(CommittedLine(state.sku, line.qty, location))
    _bump(state, now_us)
    return committed


def extend_hold(state: SkuState, hold_id: str, expires_at_us: int) -> bool:
    """Move the hold's expiry on this SKU (a tentative hold confirmed); False when the SKU
    carries no such hold (it expired or was released first)."""
    hold = state.holds.get(hold_id)
    if hold is None:
        return False
    hold.expires_at = expires_at_us
    state.book.touch(hold.chunk, 0)
    return True


def committed_before(state: SkuState, order_id: str) -> list[CommittedLine]:
    """The order lines a commit of `order_id` left on this SKU: what a redelivered commit
    answers with, once the hold itself is gone."""
    return [
        CommittedLine(state.sku, docs[order_id].ordered, location)
        for location, docs in sorted(state.orders.items())
        if order_id in docs
    ]


def next_expiry(state: SkuState) -> int | None:
    return min((hold.expires_at for hold in state.holds.values()), default=None)


def _fullest_location(
    state: SkuState, rules: CompiledRules, channel: CompiledChannel | None
) -> str:
    eligible = eligible_sellable(state, rules, channel) if channel is not None else []
    if eligible:
        return min(eligible, key=lambda entry: (-entry.sellable, entry.location)).location
    # Granted from a pool that had units, so the SKU has positions; the rules may have
    # made none of them eligible since. The order still needs a place: the first one.
    return min(state.positions)


def _take(state: SkuState, hold_id: str, line: HeldLine, expires_at_us: int) -> None:
    hold = state.holds.get(hold_id)
    if hold is None:
        hold = state.add_hold(hold_id, expires_at_us)
    hold.lines.append(line)
    state.book.touch(hold.chunk, 0)
    state.book.grow(hold.chunk, line_size(line))
    if line.location is None:
        state.held_anywhere += line.qty
    else:
        state.position(line.location).held += line.qty


def _give_back(state: SkuState, hold_id: str, line: HeldLine) -> None:
    hold = state.holds[hold_id]
    hold.lines.remove(line)
    if hold.lines:
        state.book.touch(hold.chunk, 0)
    else:
        state.remove_hold(hold)
    if line.location is None:
        state.held_anywhere -= line.qty
    else:
        state.positions[line.location].held -= line.qty


def _bump(state: SkuState, now_us: int) -> None:
    state.version += 1
    state.updated_at = max(state.updated_at, now_us)

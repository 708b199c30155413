"""What readers see (SPEC sections 3 and 5): positions with their sellable quantity, and a
channel's quantity for a SKU, computed from a SkuState and the rules.

sellable = max(0, on_hand - reserved - safety_stock); a channel's quantity is its pool of
eligible sellable units, then share (exact), cap, buffer and zero_below.

A channel answer is bounded: its quantity and version, and the per-location breakdown only
when asked for (`LocationsAsk`), a page of at most `MAX_LOCATIONS_PAGE` locations in
location id order, with the id to ask `after` for the next page.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Final

from msgspec import Struct, structs

from .rules import CompiledChannel, CompiledRules
from .state import Position, SkuFigures, SkuState
from .timeutil import format_micros


class LocationSellable(Struct, frozen=True):
    location: str
    sellable: int


MAX_LOCATIONS_PAGE: Final = 1000  # locations in one answer's breakdown, at most
DEFAULT_LOCATIONS_PAGE: Final = 100


class LocationsAsk(Struct, frozen=True):
    """A question's ask for the breakdown: the eligible locations whose id sorts after
    `after` (from the first when None), at most `limit` of them."""

    after: str | None = None
    limit: int = DEFAULT_LOCATIONS_PAGE


class Availability(Struct, frozen=True, omit_defaults=True):
    """A SKU's sellable quantity for a channel, at its version. `locations` only when asked:
    with a location, that location (when eligible); with include=locations, a page of at
    most 1,000 (100 in a batch) eligible locations in location id order, each with its own
    sellable (before share, cap and buffer), and `next_after` when more follow."""

    sku: str
    channel: str
    sellable: int
    version: int
    updated_at: str | None
    location: str | None = None  # only when the question named a location
    # Asked with a location: that location when eligible (else empty). Asked with
    # include=locations: a page of the eligible locations, each with its own sellable.
    locations: list[LocationSellable] | None = None
    # Only with a page that has more after it: the last location id, to ask `after` for.
    next_after: str | None = None


class PositionView(Struct, frozen=True):
    location: str
    on_hand: int
    reserved: int
    inbound: int
    unsellable: int
    safety_stock: int
    sellable: int
    oversold: bool
    last_count_drift: int | None


class Positions(Struct, frozen=True):
    sku: str
    version: int
    positions: list[PositionView]


def sellable(position: Position, safety_stock: int) -> int:
    return max(0, position.on_hand - position.reserved - position.held - safety_stock)


def channel_pool(state: SkuFigures, eligible: list[LocationSellable]) -> int:
    """SPEC 3: the eligible sellable units, less the units of live holds that name no
    location, which every pool gives up."""
    return max(0, sum(entry.sellable for entry in eligible) - state.held_anywhere)


def location_pool(location_sellable: int, channel_pool: int) -> int:
    """Asked with a location: its own sellable, but never more than the channel's pool once
    the holds without a location are taken, which any eligible location may have to serve.
    Together the answers then never promise a unit twice."""
    return min(location_sellable, channel_pool)


def eligible_sellable(
    state: SkuFigures, rules: CompiledRules, channel: CompiledChannel
) -> list[LocationSellable]:
    """The channel's eligible locations for this SKU, by location id, with their sellable."""
    return [
        LocationSellable(location, sellable(position, rules.safety_stock(state.sku, location)))
        for location, position in sorted(state.positions.items())
        if channel.is_eligible(location, rules.location_type(location))
    ]


def channel_quantity(channel: CompiledChannel, pool: int) -> int:
    """Share, cap, buffer and zero_below applied to a pool of sellable units."""
    rule = channel.rule
    quantity = pool * channel.share_numerator // channel.share_denominator
    if rule.cap is not None:
        quantity = min(quantity, rule.cap)
    quantity -= rule.buffer
    if quantity < rule.zero_below:
        quantity = 0
    return max(quantity, 0)


def with_locations(
    answer: Availability, eligible: Sequence[LocationSellable], ask: LocationsAsk
) -> Availability:
    """The channel answer with the page of its breakdown `ask` names; `eligible` is sorted
    by location id. Both modes page with this."""
    start = 0 if ask.after is None else bisect.bisect_right(eligible, ask.after, key=_location_id)
    page = list(eligible[start : start + ask.limit])
    more = start + ask.limit < len(eligible)
    return structs.replace(answer, locations=page, next_after=page[-1].location if more else None)


def _location_id(entry: LocationSellable) -> str:
    return entry.location


def availability(
    state: SkuFigures,
    rules: CompiledRules,
    channel: CompiledChannel,
    location: str | None = None,
    ask: LocationsAsk | None = None,
) -> Availability:
    """The channel answer; asked with a location, that location's (`ask` then changes
    nothing: the answer lists the location); else with the breakdown page `ask` names."""
    locations = eligible_sellable(state, rules, channel)
    pool = channel_pool(state, locations)
    listed = None
    if location is not None:
        listed = [entry for entry in locations if entry.location == location]
        pool = location_pool(listed[0].sellable if listed else 0, pool)
    answer = Availability(
        sku=state.sku,
        channel=channel.name,
        sellable=channel_quantity(channel, pool),
        version=state.version,
        updated_at=format_micros(state.updated_at) if state.version else None,
        location=location,
        locations=listed,
    )
    if location is None and ask is not None:
        return with_locations(answer, locations, ask)
    return answer


def positions(state: SkuFigures, rules: CompiledRules) -> Positions:
    views = []
    for location, position in sorted(state.positions.items()):
        safety = rules.safety_stock(state.sku, location)
        views.append(
            PositionView(
                location=location,
                on_hand=position.on_hand,
                reserved=position.reserved + position.held,
                inbound=position.inbound,
                unsellable=position.unsellable,
                safety_stock=safety,
                sellable=sellable(position, safety),
                oversold=position.oversold,
                last_count_drift=position.last_count_drift,
            )
        )
    return Positions(sku=state.sku, version=state.version, positions=views)


def channel_quantities(state: SkuFigures, rules: CompiledRules) -> dict[str, int]:
    """Every channel's quantity for the SKU: what a rules change compares, and what feeds carry."""
    return {
        name: channel_quantity(
            channel, channel_pool(state, eligible_sellable(state, rules, channel))
        )
        for name, channel in rules.channels.items()
    }


def reader_fingerprint(state: SkuFigures, rules: CompiledRules) -> tuple[object, ...]:
    """Everything a reader sees of a SKU that depends on the rules: a rules change bumps the
    SKU's version exactly when this changes."""
    per_channel = []
    for name, channel in sorted(rules.channels.items()):
        eligible = eligible_sellable(state, rules, channel)
        pool = channel_pool(state, eligible)
        per_channel.append((name, channel_quantity(channel, pool), tuple(eligible)))
    safety = tuple(
        (location, rules.safety_stock(state.sku, location)) for location in sorted(state.positions)
    )
    return tuple(per_channel), safety


def bump_if_rules_move_answers(
    state: SkuState, old: CompiledRules, new: CompiledRules, now_us: int
) -> bool:
    """SPEC 4: a rules change grows the version of every SKU whose answers it changes.
    Both modes call this for each stored SKU; True when the state was bumped."""
    if reader_fingerprint(state, old) == reader_fingerprint(state, new):
        return False
    state.version += 1
    state.updated_at = max(state.updated_at, now_us)
    return True

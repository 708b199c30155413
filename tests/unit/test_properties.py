"""Properties of the core over generated event sets (SPEC section 2 rules 1-3, section 3).

The events are realistic: a few SKUs, locations, orders and transfers, each order living at
one location and each transfer going one way, every `occurred_at` inside 24 hours so that
both the dedup window (7 days) and the reconciliation window (48 hours) hold all of them.
Times fall on half hours, and often on one of a few busy instants, so that events, counts
included, often share an instant: the ties are where an off-by-one hides.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any, Final

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from availability.batch import apply_events
from availability.events import (
    EVENT_TYPES,
    Adjust,
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
from availability.events import Cancel as CancelEvent
from availability.processing import apply_event
from availability.published import render
from availability.rules import CompiledRules, rules_from_object
from availability.state import SkuState
from availability.timeutil import format_micros
from availability.views import (
    MAX_LOCATIONS_PAGE,
    Availability,
    LocationsAsk,
    LocationSellable,
    availability,
    channel_quantities,
    channel_quantity,
    eligible_sellable,
    positions,
    with_locations,
)

from .factories import NOW_US, T0, Figures, figures

PROPERTY: Final = settings(max_examples=200, deadline=None)

SKUS: Final = ("SKU-1", "SKU-2")
LOCATIONS: Final = ("DC1", "S001", "S002", "D001")
LOCATION_TYPES: Final = {"DC1": "dc", "S001": "store", "S002": "store", "D001": "dropship"}
ORDER_AT: Final = {"O1": "S001", "O2": "DC1", "O3": "S002"}  # order id -> its location
TRANSFER_ROUTE: Final = {"T1": ("DC1", "S001"), "T2": ("DC1", "S002"), "T3": ("S001", "S002")}

HALF_HOURS_IN_A_DAY: Final = 48
BUSY_HALF_HOURS: Final = (0, 20, 21, 48)
times = st.one_of(st.sampled_from(BUSY_HALF_HOURS), st.integers(0, HALF_HOURS_IN_A_DAY)).map(
    lambda n: T0 + timedelta(minutes=30 * n)
)
qtys = st.integers(1, 20)


@st.composite
def inventory_events(draw: st.DrawFn) -> Event:
    """One event of any type, with a placeholder id (`event_sets` numbers them)."""
    kind = draw(st.sampled_from(EVENT_TYPES))
    common: dict[str, Any] = {
        "event_id": "-",
        "sku": draw(st.sampled_from(SKUS)),
        "occurred_at": draw(times),
    }
    location = draw(st.sampled_from(LOCATIONS))
    order_id = draw(st.sampled_from(sorted(ORDER_AT)))
    transfer_id = draw(st.sampled_from(sorted(TRANSFER_ROUTE)))
    source, destination = TRANSFER_ROUTE[transfer_id]
    match kind:
        case "sale":
            return Sale(location=location, qty=draw(qtys), **common)
        case "order":
            return Order(location=ORDER_AT[order_id], qty=draw(qtys), order_id=order_id, **common)
        case "cancel":
            return CancelEvent(
                location=ORDER_AT[order_id], qty=draw(qtys), order_id=order_id, **common
            )
        case "pick":
            if draw(st.booleans()):
                return Pick(location=location, qty=draw(qtys), **common)
            return Pick(location=ORDER_AT[order_id], qty=draw(qtys), order_id=order_id, **common)
        case "return":
            disposition = draw(st.sampled_from(["sellable", "damaged"]))
            return Return(location=location, qty=draw(qtys), disposition=disposition, **common)
        case "transfer_out":
            return TransferOut(
                location=source,
                qty=draw(qtys),
                transfer_id=transfer_id,
                to_location=destination,
                **common,
            )
        case "transfer_in":
            return TransferIn(
                location=destination, qty=draw(qtys), transfer_id=transfer_id, **common
            )
        case "receipt":
            po_id = draw(st.none() | st.just("PO-1"))
            return Receipt(location=location, qty=draw(qtys), po_id=po_id, **common)
        case "adjust":
            delta = draw(st.integers(-20, 20).filter(bool))
            return Adjust(location=location, delta=delta, reason="cycle", **common)
        case _:
            return Count(location=location, counted=draw(st.integers(0, 40)), **common)


def _numbered(events: list[Event]) -> list[Event]:
    return [msgspec.structs.replace(e, event_id=f"ev-{i}") for i, e in enumerate(events)]


event_sets = st.lists(inventory_events(), max_size=30).map(_numbered)

_scopes = st.sampled_from(
    [
        {},
        *({"location": loc} for loc in LOCATIONS),
        *({"location_type": t} for t in ("dc", "store")),
    ]
)
safety_rules = st.builds(
    lambda scope, sku, units: {**scope, **sku, "units": units},
    _scopes,
    st.sampled_from([{}, *({"sku": s} for s in SKUS)]),
    st.integers(0, 5),
)
channel_rules = st.fixed_dictionaries(
    {},
    optional={
        "location_types": st.lists(st.sampled_from(["store", "dc", "dropship"]), unique=True),
        "locations": st.lists(st.sampled_from([*LOCATIONS, "S999"]), unique=True),
        "share": st.integers(0, 100).map(lambda n: n / 100),
        "cap": st.integers(0, 60),
        "buffer": st.integers(0, 5),
        "zero_below": st.integers(0, 5),
    },
)
rule_sets = st.builds(
    lambda safety, channels: CompiledRules(
        rules_from_object(
            {
                "locations": {loc: {"type": t} for loc, t in LOCATION_TYPES.items()},
                "safety_stock": safety,
                "channels": channels,
            }
        )
    ),
    st.lists(
        safety_rules,
        max_size=6,
        unique_by=lambda r: (r.get("sku"), r.get("location"), r.get("location_type")),
    ),
    st.dictionaries(st.sampled_from(["web", "pickup", "amazon"]), channel_rules, min_size=1),
)


def _fresh(sku: str) -> SkuState:
    return SkuState(sku=sku)


def _apply(events: Sequence[Event]) -> dict[str, SkuState]:
    result = apply_events(_fresh, events, NOW_US)
    assert result.dead_letters == []  # every event is inside both windows
    return result.touched


def _states_along(events: Sequence[Event]) -> Iterator[SkuState]:
    """The state of the SKU just touched, after each event in turn."""
    states: dict[str, SkuState] = {}
    for event in events:
        state = states.setdefault(event.sku, SkuState(sku=event.sku))
        apply_event(state, event, NOW_US)
        yield state


def _observed(states: dict[str, SkuState], rules: CompiledRules) -> dict[str, Any]:
    """What readers see of each SKU, except what legitimately depends on arrival order:
    `last_count_drift` is measured when a count is applied, against the events applied so far
    (SPEC 2 rule 3), and `version` counts applied events, which leaves out a count that
    arrived after a newer one (stale)."""
    return {
        sku: {
            "positions": {
                p.location: (p.on_hand, p.reserved, p.inbound, p.unsellable, p.sellable, p.oversold)
                for p in positions(state, rules).positions
            },
            "channels": channel_quantities(state, rules),
        }
        for sku, state in states.items()
    }


@PROPERTY
@given(events=event_sets, rules=rule_sets, data=st.data())
def test_any_arrival_order_ends_in_the_same_positions_and_channel_quantities(
    events: list[Event], rules: CompiledRules, data: st.DataObject
) -> None:
    arrival = data.draw(st.permutations(events), label="arrival order")

    assert _observed(_apply(arrival), rules) == _observed(_apply(events), rules)


@PROPERTY
@given(events=event_sets.filter(bool), data=st.data())
def test_delivering_any_event_twice_changes_nothing(
    events: list[Event], data: st.DataObject
) -> None:
    delivery = list(events)
    again = data.draw(st.lists(st.sampled_from(events), min_size=1, max_size=10), label="again")
    for event in again:
        delivery.insert(data.draw(st.integers(0, len(delivery)), label="where"), event)
    first_deliveries = list({e.event_id: e for e in delivery}.values())  # in first-seen order

    result = apply_events(_fresh, delivery, NOW_US)

    # Whole states, version and drift included: a redelivery must leave no trace at all.
    assert result.touched == _apply(first_deliveries)
    duplicates = sum(n for (_, outcome), n in result.outcomes.items() if outcome == "duplicate")
    assert duplicates == len(again)


@PROPERTY
@given(events=event_sets, rules=rule_sets)
def test_sellable_is_never_negative(events: list[Event], rules: CompiledRules) -> None:
    for state in _states_along(events):
        for view in positions(state, rules).positions:
            assert view.sellable >= 0
        for name, quantity in channel_quantities(state, rules).items():
            assert quantity >= 0, name


@PROPERTY
@given(events=event_sets, rules=rule_sets)
def test_no_channel_quantity_exceeds_its_pool_or_its_cap(
    events: list[Event], rules: CompiledRules
) -> None:
    for state in _states_along(events):
        for channel in rules.channels.values():
            pool = sum(entry.sellable for entry in eligible_sellable(state, rules, channel))
            quantity = availability(state, rules, channel).sellable
            assert quantity <= pool
            if channel.rule.cap is not None:
                assert quantity <= channel.rule.cap
            for location in [*LOCATIONS, "S999"]:
                own = {e.location: e.sellable for e in eligible_sellable(state, rules, channel)}
                at_location = availability(state, rules, channel, location=location).sellable
                assert 0 <= at_location <= own.get(location, 0)


@PROPERTY
@given(events=event_sets, rules=rule_sets, unlocated_hold=st.integers(0, 30))
def test_every_published_answer_is_what_the_api_would_encode(
    events: list[Event], rules: CompiledRules, unlocated_hold: int
) -> None:
    """The worker writes its answers as text (availability.published.render): each must be
    msgspec's encoding of the answer the views compute, byte for byte, and the quantities
    it hands the feeds the channel quantities. A page of the breakdown paged from the
    published locations is the page the views compute."""
    whole_list = LocationsAsk(limit=MAX_LOCATIONS_PAGE)
    for state in _states_along(events):
        if unlocated_hold:
            state.held_anywhere = unlocated_hold  # held units that name no location
        rendered = render(state, rules)
        expected = {
            "v": str(state.version),
            "u": format_micros(state.updated_at) if state.version else "",
            "p": msgspec.json.encode(positions(state, rules)).decode(),
        }
        for name, channel in rules.channels.items():
            expected[f"c:{name}"] = msgspec.json.encode(availability(state, rules, channel))
            eligible = eligible_sellable(state, rules, channel)
            expected[f"l:{name}"] = msgspec.json.encode(eligible)
            paged = with_locations(
                msgspec.json.decode(rendered.fields[f"c:{name}"], type=Availability),
                msgspec.json.decode(rendered.fields[f"l:{name}"], type=list[LocationSellable]),
                whole_list,
            )
            assert paged == availability(state, rules, channel, ask=whole_list)
            assert paged.locations == eligible
            for entry in eligible:
                answer = availability(state, rules, channel, location=entry.location)
                expected[f"c:{name}:{entry.location}"] = msgspec.json.encode(answer)
        assert rendered.fields == {
            k: v.decode() if isinstance(v, bytes) else v for k, v in expected.items()
        }
        assert rendered.quantities == channel_quantities(state, rules)


def _reference_figures(events: Sequence[Event]) -> dict[tuple[str, str], Figures]:
    """SPEC sections 2 and 3 written as directly as possible, for a set of events that all
    apply: on_hand is the last count (by time, then event id) plus every on-hand effect after
    it, or the sum of every effect without a count; reserved and inbound come from documents."""
    on_hand_effects: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    counts: dict[tuple[str, str], list[Count]] = defaultdict(list)
    orders: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    transfers: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    unsellable: dict[tuple[str, str], int] = defaultdict(int)
    keys: set[tuple[str, str]] = set()
    for e in events:
        key = (e.sku, e.location)
        keys.add(key)
        effect = 0
        match e:
            case Sale():
                effect = -e.qty
            case Pick():
                effect = -e.qty
                if e.order_id is not None:
                    orders[(*key, e.order_id)][1] += e.qty
            case Order():
                orders[(*key, e.order_id)][0] += e.qty
            case CancelEvent():
                orders[(*key, e.order_id)][2] += e.qty
            case Return():
                if e.disposition == "sellable":
                    effect = e.qty
                else:
                    unsellable[key] += e.qty
            case TransferOut():
                effect = -e.qty
                keys.add((e.sku, e.to_location))
                transfers[(e.sku, e.to_location, e.transfer_id)][0] += e.qty
            case TransferIn():
                effect = e.qty
                transfers[(*key, e.transfer_id)][1] += e.qty
            case Receipt():
                effect = e.qty
            case Adjust():
                effect = e.delta
            case Count():
                counts[key].append(e)
        if effect:
            on_hand_effects[key].append((e.occurred_us, effect))

    figures: dict[tuple[str, str], Figures] = {}
    for key in keys:
        if counts[key]:
            last = max(counts[key], key=lambda c: (c.occurred_us, c.event_id))
            later = sum(d for at, d in on_hand_effects[key] if at > last.occurred_us)
            on_hand = last.counted + later
        else:
            on_hand = sum(d for _, d in on_hand_effects[key])
        reserved = sum(
            max(0, o - p - c) for (*k, _), (o, p, c) in orders.items() if tuple(k) == key
        )
        inbound = sum(max(0, s - r) for (*k, _), (s, r) in transfers.items() if tuple(k) == key)
        figures[key] = Figures(on_hand, reserved, inbound, unsellable[key])
    return figures


@PROPERTY
@given(events=event_sets, data=st.data())
def test_positions_match_the_spec_read_literally(events: list[Event], data: st.DataObject) -> None:
    arrival = data.draw(st.permutations(events), label="arrival order")

    states = _apply(arrival)

    assert {
        (sku, location): figure
        for sku, state in states.items()
        for location, figure in figures(state).items()
    } == _reference_figures(events)


def _reference_drifts(arrival: Sequence[Event]) -> dict[tuple[str, str], int | None]:
    """SPEC 2 rule 3's drift read literally, for events that all arrive inside the windows:
    the last applied count is the newest count; the one applied before it is the newest
    of those that arrived before it. The drift is the books at the last count's time (the
    previous count's figure, or zero, plus every on-hand effect after it and at or before
    the last count) minus the last count's figure, whenever the other events arrived."""
    effects: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    counts: dict[tuple[str, str], list[Count]] = defaultdict(list)  # in arrival order
    keys: set[tuple[str, str]] = set()
    for e in arrival:
        key = (e.sku, e.location)
        keys.add(key)
        if isinstance(e, TransferOut):
            keys.add((e.sku, e.to_location))
        if isinstance(e, Count):
            counts[key].append(e)
        elif (delta := _on_hand_delta(e)) != 0:
            effects[key].append((e.occurred_us, delta))
    drifts: dict[tuple[str, str], int | None] = {}
    for key in keys:
        if not counts[key]:
            drifts[key] = None
            continue
        order = [(c.occurred_us, c.event_id) for c in counts[key]]
        last_index = max(range(len(order)), key=lambda i: order[i])
        last = counts[key][last_index]
        before = counts[key][:last_index]
        previous = max(before, key=lambda c: (c.occurred_us, c.event_id)) if before else None
        since = previous.occurred_us if previous is not None else None
        books = (previous.counted if previous is not None else 0) + sum(
            d for at, d in effects[key] if (since is None or at > since) and at <= last.occurred_us
        )
        drifts[key] = books - last.counted
    return drifts


def _on_hand_delta(event: Event) -> int:
    match event:
        case Sale() | Pick() | TransferOut():
            return -event.qty
        case Return():
            return event.qty if event.disposition == "sellable" else 0
        case TransferIn() | Receipt():
            return event.qty
        case Adjust():
            return event.delta
    return 0


@PROPERTY
@given(events=event_sets, data=st.data())
def test_the_drift_is_the_books_at_the_count_whatever_order_the_other_events_arrive_in(
    events: list[Event], data: st.DataObject
) -> None:
    arrival = data.draw(st.permutations(events), label="arrival order")

    states = _apply(arrival)

    assert {
        (sku, location): position.last_count_drift
        for sku, state in states.items()
        for location, position in state.positions.items()
    } == _reference_drifts(arrival)


@PROPERTY
@given(events=event_sets, data=st.data())
def test_with_counts_in_the_same_order_any_arrival_ends_in_the_same_state(
    events: list[Event], data: st.DataObject
) -> None:
    """Issue 18's promise: keep the counts of each position in their order, shuffle every
    other event, and positions, drifts and versions end the same."""
    others = data.draw(st.permutations([e for e in events if not isinstance(e, Count)]))
    counts = [e for e in events if isinstance(e, Count)]
    places = data.draw(
        st.lists(st.integers(0, len(others)), min_size=len(counts), max_size=len(counts))
    )
    arrival = list(others)
    for offset, (place, count) in enumerate(zip(sorted(places), counts, strict=True)):
        arrival.insert(place + offset, count)  # the counts keep their order

    assert _state_figures(_apply(arrival)) == _state_figures(_apply(events))


def _state_figures(states: dict[str, SkuState]) -> dict[str, Any]:
    return {
        sku: (state.version, {location: p for location, p in sorted(state.positions.items())})
        for sku, state in states.items()
    }


@PROPERTY
@given(pool=st.integers(0, 10**9), percent=st.integers(0, 100))
def test_a_share_is_applied_exactly_as_written(pool: int, percent: int) -> None:
    channel = CompiledRules(
        rules_from_object({"channels": {"web": {"share": percent / 100}}})
    ).channels["web"]

    assert channel_quantity(channel, pool) == pool * percent // 100

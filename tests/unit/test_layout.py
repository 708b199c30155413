"""A SKU's state stored as a head and bounded chunks (availability/layout.py): what is read
back is what was written, whatever the moments of the writes; no record grows with a SKU's
history; expired items leave the store; a refused hold leaves no trace."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final

from hypothesis import given
from hypothesis import strategies as st

from availability.events import Event
from availability.holds import HoldLineRequest, place_hold, release_hold
from availability.layout import (
    chunk_prefix,
    decode_figures,
    head_key,
    read_state,
    sku_records,
    written,
)
from availability.processing import Outcome, apply_event
from availability.state import CHUNK_ITEMS, SkuState
from tests.support.tables import MemoryTable, assert_stored_as, same_state

from .factories import (
    NOW_US,
    SKU,
    compiled,
    count,
    order,
    pick,
    receipt,
    sale,
    transfer_out,
)
from .test_properties import PROPERTY, event_sets

DAY_MIN: Final = 24 * 60
RECORD_LIMIT: Final = 64 * 1024  # the bestseller test's bound on any record
STORES: Final = [f"S{n:03d}" for n in range(20)]


def write(state: SkuState, table: MemoryTable) -> int:
    """Store one write of `state`; returns the size of its largest record."""
    records = sku_records(state)
    table.write(records)
    written(state)
    return max(len(key) + len(value or b"") for key, value in records)


@PROPERTY
@given(events=event_sets, cuts=st.lists(st.integers(0, 30), max_size=6))
def test_what_is_read_back_is_what_was_written_whatever_the_moments_of_the_writes(
    events: list[Event], cuts: list[int]
) -> None:
    table = MemoryTable(partitions=1)
    states: dict[str, SkuState] = {}
    for index, event in enumerate(events):
        state = states.get(event.sku) or read_state(table, event.sku)
        states[event.sku] = state
        apply_event(state, event, NOW_US)
        if index in cuts:
            for written in states.values():
                write(written, table)
            states = {}  # the next events start from what the table holds
    for state in states.values():
        write(state, table)
        assert_stored_as(state, table)
        assert same_state(read_state(table, state.sku), state)


def bestseller_events(count_: int, seed: int = 7) -> list[Event]:
    """A week of trade of one SKU at 20 stores: mostly sales, orders picked later, counts."""
    rnd = random.Random(seed)
    events: list[Event] = []
    for n in range(count_):
        minutes = 6 * DAY_MIN * n / count_  # inside the 7-day dedup window
        store = rnd.choice(STORES)
        roll = rnd.random()
        where = {"location": store, "minutes": minutes, "event_id": f"e-{n}"}
        if roll < 0.7:
            events.append(sale(1, **where))  # type: ignore[arg-type]
        elif roll < 0.8:
            events.append(order(1, f"O-{n}", **where))  # type: ignore[arg-type]
        elif roll < 0.9 and n > 100:
            # A pick of an order made a while ago: it changes a document in an old chunk.
            events.append(pick(1, f"O-{n - rnd.randrange(1, 100)}", **where))  # type: ignore[arg-type]
        elif roll < 0.99:
            events.append(receipt(5, **where))  # type: ignore[arg-type]
        else:
            events.append(count(50, **where))  # type: ignore[arg-type]
    return events


def test_a_bestsellers_records_stay_small_however_much_it_has_seen() -> None:
    table = MemoryTable(partitions=1)
    state = SkuState(sku=SKU)
    largest, heads, events = 0, [], bestseller_events(20_000)
    for start in range(0, len(events), 64):  # written every 64 events, as a worker does
        for event in events[start : start + 64]:
            apply_event(state, event, NOW_US)
        largest = max(largest, write(state, table))
        heads.append(len(table.records[head_key(SKU)]))

    assert largest < RECORD_LIMIT
    # The head holds the positions and the open chunk only: it does not grow with history.
    assert max(heads[-20:]) <= 2 * max(heads[:20])
    assert len(state.seen) == 20_000  # all inside the dedup window, every id remembered
    assert same_state(read_state(table, SKU), state)


def test_one_write_stores_the_head_and_only_the_chunks_that_changed() -> None:
    table = MemoryTable(partitions=1)
    state = SkuState(sku=SKU)
    for event in bestseller_events(5_000):
        apply_event(state, event, NOW_US)
    write(state, table)

    apply_event(state, sale(1, location="S001", minutes=6 * DAY_MIN, event_id="late"), NOW_US)
    records = sku_records(state)

    assert [key for key, _ in records] == [head_key(SKU)]  # the new id is in the open chunk


def test_items_past_the_windows_leave_the_store_chunk_by_chunk() -> None:
    table = MemoryTable(partitions=1)
    state = SkuState(sku=SKU)
    for n in range(3_000):  # ten days, hour by hour and a bit
        apply_event(state, receipt(1, minutes=n * 5, event_id=f"e-{n}"), NOW_US)
        if n % 64 == 63:
            write(state, table)
    write(state, table)

    ids_kept = len(state.seen)
    chunks = sum(1 for _ in table.scan(chunk_prefix(SKU)))
    assert ids_kept < 7 * 24 * 12 + 2 * CHUNK_ITEMS  # a week of ids, and less than a chunk over
    # Each receipt is two items (its id and its effect): the sealed chunks hold no more
    # than the week's items, and a chunk of them.
    assert chunks * CHUNK_ITEMS <= 2 * ids_kept + CHUNK_ITEMS
    # A forgotten id is not forgotten silently: it is past the window, so dead-lettered.
    assert apply_event(state, receipt(1, event_id="e-0"), NOW_US).outcome is Outcome.DEAD_LETTERED
    assert same_state(read_state(table, SKU), state)


def test_a_heads_figures_read_alone_are_the_states() -> None:
    rules = compiled(channels={"web": {}})
    state = SkuState(sku=SKU)
    for n in range(CHUNK_ITEMS * 2):
        apply_event(state, receipt(2, location=f"S00{n % 3}", event_id=f"r-{n}"), NOW_US)
    lines = [HoldLineRequest(SKU, 1, "S001"), HoldLineRequest(SKU, 2)]
    assert not place_hold(
        lambda sku: state, "H1", rules.channels["web"], rules, lines, NOW_US, NOW_US
    )

    head = dict(sku_records(state))[head_key(SKU)]
    assert head is not None
    figures = decode_figures(head)
    assert (figures.sku, figures.version, figures.updated_at, figures.newest_at) == (
        state.sku,
        state.version,
        state.updated_at,
        state.newest_at,
    )
    assert (figures.held_anywhere, figures.holds, figures.positions) == (2, 1, state.positions)


def test_a_refused_hold_leaves_no_trace_in_what_is_written() -> None:
    rules = compiled(channels={"web": {}})
    table = MemoryTable(partitions=1)
    state = SkuState(sku=SKU)
    for n in range(CHUNK_ITEMS - 1):  # the open chunk one item short of full
        apply_event(state, receipt(1, location="S001", event_id=f"r-{n}"), NOW_US)
    write(state, table)
    before = dict(table.records)

    lines = [HoldLineRequest(SKU, 1, "S001"), HoldLineRequest(SKU, 10_000)]
    short = place_hold(lambda sku: state, "H1", rules.channels["web"], rules, lines, NOW_US, NOW_US)
    write(state, table)

    assert short  # the second line cannot be had: nothing is held
    assert table.records == before


def test_holds_live_in_chunks_and_leave_with_their_release() -> None:
    rules = compiled(channels={"web": {}})
    table = MemoryTable(partitions=1)
    state = SkuState(sku=SKU)
    apply_event(state, receipt(100_000, location="S001"), NOW_US)
    for n in range(20_000):  # a flash sale: 20,000 holds at once on one SKU
        line = [HoldLineRequest(SKU, 1, "S001" if n % 2 else None)]
        place_hold(lambda sku: state, f"H{n}", rules.channels["web"], rules, line, NOW_US, NOW_US)
        if n % 64 == 0:  # a worker writes a SKU at least every 64 commands
            assert write(state, table) < RECORD_LIMIT
    write(state, table)
    assert (state.held_anywhere, state.positions["S001"].held) == (10_000, 10_000)
    assert same_state(read_state(table, SKU), state)

    for n in range(20_000):
        release_hold(state, f"H{n}", NOW_US)
    write(state, table)

    # The chunks that held holds only were emptied and deleted; the receipt's stays.
    assert len(list(table.scan(chunk_prefix(SKU)))) == 1
    assert read_state(table, SKU).holds == {}
    assert same_state(read_state(table, SKU), state)
    assert (state.held_anywhere, state.positions["S001"].held) == (0, 0)


def test_a_transfer_between_stores_keeps_its_document_at_the_receiver() -> None:
    table = MemoryTable(partitions=1)
    state = SkuState(sku=SKU)
    events: Sequence[Event] = [
        receipt(5, location="S001"),
        transfer_out(3, "T1", location="S001", to="S002"),
    ]
    for event in events:
        apply_event(state, event, NOW_US)
    write(state, table)

    read = read_state(table, SKU)
    assert read.transfers["S002"]["T1"].open_qty == 3
    assert read.positions["S002"].inbound == 3

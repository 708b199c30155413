"""Applying events (SPEC section 2, processing rules, and the position figures of section 3)."""

from __future__ import annotations

import itertools
from collections import Counter

import msgspec
import pytest

from availability.batch import apply_events
from availability.events import Event
from availability.layout import decode_head, encode_head, read_state, sku_records, written
from availability.processing import Outcome, Windows, apply_event, compact
from availability.state import SkuState
from availability.timeutil import MICROS_PER_DAY, MICROS_PER_HOUR
from tests.support.tables import MemoryTable, same_state

from .factories import (
    DC,
    NOW_US,
    OTHER_SKU,
    SKU,
    STORE,
    STORE_2,
    Figures,
    adjust,
    apply_all,
    cancel,
    count,
    figures,
    order,
    pick,
    receipt,
    return_,
    sale,
    transfer_in,
    transfer_out,
    us,
)

DAY_MIN = 24 * 60  # minutes in a day, for events placed days apart
HOUR_MIN = 60


# -- every event type ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([sale(3)], {STORE: Figures(on_hand=-3)}, id="sale-takes-stock-at-once"),
        pytest.param([receipt(10), sale(3)], {STORE: Figures(on_hand=7)}, id="sale-after-receipt"),
        pytest.param([order(4)], {STORE: Figures(reserved=4)}, id="order-reserves"),
        pytest.param(
            [order(4), order(2)], {STORE: Figures(reserved=6)}, id="order-adds-to-its-document"
        ),
        pytest.param(
            [order(4, "O1"), order(2, "O2")],
            {STORE: Figures(reserved=6)},
            id="two-orders-reserve-their-sum",
        ),
        pytest.param(
            [order(5), cancel(2)], {STORE: Figures(reserved=3)}, id="cancel-releases-part"
        ),
        pytest.param(
            [order(5), cancel(9)],
            {STORE: Figures(reserved=0)},
            id="cancel-beyond-the-order-reserves-nothing",
        ),
        pytest.param(
            [receipt(10), order(5), pick(3, "O1")],
            {STORE: Figures(on_hand=7, reserved=2)},
            id="pick-with-order-takes-stock-and-releases-reservation",
        ),
        pytest.param(
            [receipt(10), order(5), pick(3)],
            {STORE: Figures(on_hand=7, reserved=5)},
            id="pick-without-order-only-takes-stock",
        ),
        pytest.param(
            [receipt(10), order(2), pick(5, "O1")],
            {STORE: Figures(on_hand=5, reserved=0)},
            id="over-pick-reserves-nothing",
        ),
        pytest.param(
            [receipt(10), order(5, "O1"), pick(3, "O2")],
            {STORE: Figures(on_hand=7, reserved=5)},
            id="pick-of-another-order-leaves-this-one-reserved",
        ),
        pytest.param(
            [return_(2, "sellable")], {STORE: Figures(on_hand=2)}, id="return-sellable-restocks"
        ),
        pytest.param(
            [return_(2, "damaged")],
            {STORE: Figures(unsellable=2)},
            id="return-damaged-is-unsellable",
        ),
        pytest.param(
            [receipt(10, location=DC), transfer_out(4, to=STORE)],
            {DC: Figures(on_hand=6), STORE: Figures(inbound=4)},
            id="transfer_out-ships-to-the-destination",
        ),
        pytest.param(
            [transfer_out(4, to=STORE), transfer_in(4, location=STORE)],
            {DC: Figures(on_hand=-4), STORE: Figures(on_hand=4)},
            id="transfer_in-receives-what-was-shipped",
        ),
        pytest.param(
            [transfer_out(4, to=STORE), transfer_in(3, location=STORE)],
            {DC: Figures(on_hand=-4), STORE: Figures(on_hand=3, inbound=1)},
            id="partial-transfer_in-leaves-the-rest-inbound",
        ),
        pytest.param(
            [transfer_in(4, location=STORE)],
            {STORE: Figures(on_hand=4)},
            id="transfer_in-before-transfer_out-leaves-nothing-inbound",
        ),
        pytest.param(
            [transfer_in(4, location=STORE), transfer_out(4, to=STORE)],
            {DC: Figures(on_hand=-4), STORE: Figures(on_hand=4)},
            id="transfer_in-then-transfer_out",
        ),
        pytest.param([receipt(10)], {STORE: Figures(on_hand=10)}, id="receipt"),
        pytest.param(
            [receipt(10, po_id="PO-1")], {STORE: Figures(on_hand=10)}, id="receipt-with-po_id"
        ),
        pytest.param([receipt(10), adjust(-3)], {STORE: Figures(on_hand=7)}, id="adjust-down"),
        pytest.param([adjust(5)], {STORE: Figures(on_hand=5)}, id="adjust-up"),
        pytest.param(
            [receipt(10, minutes=0), count(7, minutes=1)],
            {STORE: Figures(on_hand=7)},
            id="count-sets-on_hand",
        ),
        pytest.param(
            [order(5), count(7, minutes=1)],
            {STORE: Figures(on_hand=7, reserved=5)},
            id="count-leaves-reservations",
        ),
        pytest.param(
            [sale(1, location=STORE), sale(2, location=STORE_2)],
            {STORE: Figures(on_hand=-1), STORE_2: Figures(on_hand=-2)},
            id="each-location-is-its-own-position",
        ),
    ],
)
def test_each_event_type_changes_its_position_as_the_spec_says(
    events: list[Event], expected: dict[str, Figures]
) -> None:
    state, applied = apply_all(events)

    assert all(a.outcome is Outcome.APPLIED for a in applied)
    assert figures(state) == expected


def test_a_transfer_out_to_its_own_location_ships_to_itself() -> None:
    state, _ = apply_all([transfer_out(4, location=STORE, to=STORE)])

    assert figures(state) == {STORE: Figures(on_hand=-4, inbound=4)}


# -- order independence --------------------------------------------------------------------


@pytest.mark.parametrize(
    "events",
    [
        pytest.param([receipt(10), order(5), pick(3, "O1"), cancel(1)], id="order-pick-cancel"),
        pytest.param(
            [order(5, "O1"), order(2, "O2"), pick(6, "O1"), cancel(2, "O2")],
            id="two-orders-over-picked-and-cancelled",
        ),
        pytest.param(
            [
                receipt(10, location=DC),
                transfer_out(4, "T1", to=STORE),
                transfer_in(3, "T1", location=STORE),
                transfer_in(1, "T1", location=STORE),
            ],
            id="transfer-in-two-receipts",
        ),
        pytest.param(
            [sale(2), return_(1), return_(1, "damaged"), adjust(-1), receipt(5)],
            id="on_hand-effects-are-sums",
        ),
    ],
)
def test_every_arrival_order_ends_in_the_same_positions(events: list[Event]) -> None:
    expected, _ = apply_all(events)

    for arrival in itertools.permutations(events):
        state, _ = apply_all(arrival)
        assert figures(state) == figures(expected), [e.event_id for e in arrival]


def test_pick_before_its_order_ends_in_the_same_reservation() -> None:
    events = [receipt(10, minutes=0), order(5, minutes=1), pick(3, "O1", minutes=2)]

    in_order, _ = apply_all(events)
    pick_first, _ = apply_all([events[0], events[2], events[1]])

    assert figures(pick_first) == figures(in_order) == {STORE: Figures(on_hand=7, reserved=2)}


def test_cancel_before_its_order_ends_in_the_same_reservation() -> None:
    events = [order(5, minutes=1), cancel(5, minutes=2)]

    cancel_first, _ = apply_all(reversed(events))

    assert figures(cancel_first) == {STORE: Figures(reserved=0)}
    assert cancel_first.orders[STORE]["O1"].open_qty == 0


def test_a_pick_alone_reserves_nothing_until_its_order_arrives() -> None:
    state, _ = apply_all([pick(3, "O1")])
    assert figures(state) == {STORE: Figures(on_hand=-3)}

    apply_all([order(5)], state)

    assert figures(state) == {STORE: Figures(on_hand=-3, reserved=2)}


def test_transfer_in_before_transfer_out_ends_with_nothing_inbound() -> None:
    out = transfer_out(4, to=STORE, minutes=0)
    into = transfer_in(4, location=STORE, minutes=60)

    state, _ = apply_all([into, out])

    assert figures(state) == {DC: Figures(on_hand=-4), STORE: Figures(on_hand=4, inbound=0)}


# -- idempotence ---------------------------------------------------------------------------


def test_a_redelivered_event_changes_nothing() -> None:
    event = receipt(10)
    state, _ = apply_all([event])
    before = stored(state)

    applied = apply_event(state, event, NOW_US + 1)

    assert applied.outcome is Outcome.DUPLICATE
    assert stored(state) == before


def test_the_event_id_is_the_idempotency_key_whatever_the_payload() -> None:
    state, applied = apply_all([receipt(10, event_id="e-1"), sale(4, event_id="e-1")])

    assert [a.outcome for a in applied] == [Outcome.APPLIED, Outcome.DUPLICATE]
    assert figures(state) == {STORE: Figures(on_hand=10)}


def test_the_same_event_id_on_another_sku_is_another_event() -> None:
    events = [receipt(10, event_id="e-1", sku=SKU), receipt(7, event_id="e-1", sku=OTHER_SKU)]

    result = apply_events(lambda sku: SkuState(sku=sku), events, NOW_US)

    assert figures(result.touched[SKU]) == {STORE: Figures(on_hand=10)}
    assert figures(result.touched[OTHER_SKU]) == {STORE: Figures(on_hand=7)}
    assert result.outcomes == Counter({("receipt", "applied"): 2})


def test_a_duplicate_is_still_recognised_near_the_end_of_the_dedup_window() -> None:
    event = receipt(10, minutes=0)
    state, _ = apply_all([event, sale(1, minutes=7 * DAY_MIN - 1)])

    applied = apply_event(state, event, NOW_US)

    assert applied.outcome is Outcome.DUPLICATE
    assert state.positions[STORE].on_hand == 9


@pytest.mark.parametrize(
    ("minutes_behind", "outcome"),
    [
        pytest.param(7 * DAY_MIN, Outcome.APPLIED, id="exactly-7-days-behind-applies"),
        pytest.param(7 * DAY_MIN + 1, Outcome.DEAD_LETTERED, id="older-than-7-days-dead-letters"),
    ],
)
def test_an_event_older_than_the_dedup_window_is_dead_lettered(
    minutes_behind: int, outcome: Outcome
) -> None:
    newest = 10 * DAY_MIN
    state, _ = apply_all([receipt(10, minutes=newest)])
    late = sale(3, minutes=newest - minutes_behind)

    applied = apply_event(state, late, NOW_US)

    assert applied.outcome is outcome
    if outcome is Outcome.DEAD_LETTERED:
        assert "dedup window" in (applied.reason or "")
        assert late.event_id not in state.seen  # nothing of it applied, not even its id
        assert state.positions[STORE].on_hand == 10
    else:
        assert state.positions[STORE].on_hand == 7


def test_the_dedup_window_is_a_setting() -> None:
    windows = Windows(dedup_us=MICROS_PER_HOUR, reconciliation_us=MICROS_PER_HOUR)
    state, _ = apply_all([receipt(10, minutes=120)], windows=windows)

    applied = apply_event(state, sale(1, minutes=59), NOW_US, windows)

    assert applied.outcome is Outcome.DEAD_LETTERED


def test_the_dedup_window_runs_behind_the_newest_event_of_the_sku_not_the_location() -> None:
    state, _ = apply_all([receipt(10, location=DC, minutes=8 * DAY_MIN)])

    applied = apply_event(state, sale(1, location=STORE, minutes=0), NOW_US)

    assert applied.outcome is Outcome.DEAD_LETTERED
    assert STORE not in state.positions


# -- rebase on count -----------------------------------------------------------------------


def test_a_count_replays_on_hand_effects_later_than_it() -> None:
    # The sale at 10:30 happened after the count at 10:20: it is not in the counted figure.
    state, _ = apply_all([receipt(10, minutes=0), sale(2, minutes=30), count(7, minutes=20)])

    assert state.positions[STORE].on_hand == 5


@pytest.mark.parametrize(
    "late",
    [
        pytest.param(sale(2, minutes=10), id="sale-before-the-count"),
        pytest.param(sale(2, minutes=20), id="sale-at-the-count-time"),
        pytest.param(receipt(5, minutes=5), id="receipt-before-the-count"),
        pytest.param(adjust(-1, minutes=19), id="adjust-before-the-count"),
        pytest.param(return_(1, minutes=1), id="sellable-return-before-the-count"),
        pytest.param(pick(2, minutes=15), id="pick-before-the-count"),
        pytest.param(transfer_in(2, "T9", minutes=15), id="transfer_in-before-the-count"),
        pytest.param(
            transfer_out(2, "T9", location=STORE, to=DC, minutes=15),
            id="transfer_out-before-the-count",
        ),
    ],
)
def test_an_on_hand_effect_at_or_before_the_last_count_is_already_in_it(late: Event) -> None:
    state, _ = apply_all([count(7, minutes=20)])

    applied = apply_event(state, late, NOW_US)

    assert applied.outcome is Outcome.APPLIED
    assert state.positions[STORE].on_hand == 7


def test_a_pick_before_the_count_still_closes_its_order() -> None:
    state, _ = apply_all([order(5, minutes=0), count(7, minutes=20)])

    apply_event(state, pick(3, "O1", minutes=10), NOW_US)

    assert figures(state) == {STORE: Figures(on_hand=7, reserved=2)}


def test_a_transfer_before_the_count_still_moves_its_document() -> None:
    state, _ = apply_all(
        [transfer_out(4, to=STORE, minutes=0), count(9, location=STORE, minutes=20)]
    )

    apply_event(state, transfer_in(4, location=STORE, minutes=10), NOW_US)

    assert figures(state)[STORE] == Figures(on_hand=9, inbound=0)


def test_a_transfer_out_before_the_count_still_ships_to_the_destination() -> None:
    state, _ = apply_all([count(9, location=DC, minutes=20)])

    apply_event(state, transfer_out(4, to=STORE, minutes=10), NOW_US)

    assert figures(state) == {DC: Figures(on_hand=9), STORE: Figures(inbound=4)}


def test_a_damaged_return_is_not_rebased_by_a_count() -> None:
    state, _ = apply_all([count(7, minutes=20), return_(2, "damaged", minutes=10)])

    assert figures(state) == {STORE: Figures(on_hand=7, unsellable=2)}


def test_an_older_count_after_a_newer_one_is_stale_and_has_no_effect() -> None:
    state, _ = apply_all([count(7, minutes=20), sale(1, minutes=30)])
    version = state.version

    applied = apply_event(state, count(100, minutes=10), NOW_US)

    assert applied.outcome is Outcome.STALE
    assert applied.drift is None
    assert state.positions[STORE].on_hand == 6
    assert state.positions[STORE].last_count_drift == -7  # still the applied count's
    assert state.version == version


def test_a_stale_count_redelivered_is_a_duplicate() -> None:
    stale = count(100, minutes=10)
    state, applied = apply_all([count(7, minutes=20), stale, stale])

    assert [a.outcome for a in applied] == [Outcome.APPLIED, Outcome.STALE, Outcome.DUPLICATE]
    assert state.positions[STORE].on_hand == 7


def test_two_counts_at_the_same_time_resolve_by_event_id_in_any_order() -> None:
    a = count(5, event_id="count-a", minutes=20)
    b = count(9, event_id="count-b", minutes=20)

    ab, _ = apply_all([a, b])
    ba, applied = apply_all([b, a])

    assert ab.positions[STORE].on_hand == ba.positions[STORE].on_hand == 9
    assert applied[1].outcome is Outcome.STALE


def test_a_newer_count_replaces_an_older_one_and_keeps_effects_between_them_out() -> None:
    state, _ = apply_all(
        [count(7, minutes=0), sale(2, minutes=10), count(20, minutes=20), sale(1, minutes=30)]
    )

    assert state.positions[STORE].on_hand == 19


@pytest.mark.parametrize(
    ("hours_behind", "outcome"),
    [
        pytest.param(47, Outcome.APPLIED, id="47h-behind-rebases"),
        pytest.param(48, Outcome.APPLIED, id="exactly-48h-behind-rebases"),
        pytest.param(49, Outcome.DEAD_LETTERED, id="49h-behind-dead-letters"),
    ],
)
def test_a_count_older_than_the_reconciliation_window_is_dead_lettered(
    hours_behind: int, outcome: Outcome
) -> None:
    newest = 3 * DAY_MIN
    state, _ = apply_all([receipt(10, minutes=0), sale(1, minutes=newest)])
    late = count(50, minutes=newest - hours_behind * HOUR_MIN)

    applied = apply_event(state, late, NOW_US)

    assert applied.outcome is outcome
    if outcome is Outcome.DEAD_LETTERED:
        assert "reconciliation window" in (applied.reason or "")
        assert state.positions[STORE].on_hand == 9
        assert state.positions[STORE].last_count_at is None
        assert late.event_id not in state.seen
    else:
        assert state.positions[STORE].on_hand == 49


def test_the_reconciliation_window_runs_behind_the_newest_event_of_the_position() -> None:
    # Newer events at another location do not age this position's count.
    state, _ = apply_all([receipt(10, minutes=0), sale(1, location=DC, minutes=3 * DAY_MIN)])

    applied = apply_event(state, count(4, minutes=60), NOW_US)

    assert applied.outcome is Outcome.APPLIED
    assert state.positions[STORE].on_hand == 4


@pytest.mark.parametrize(
    ("events", "drift", "on_hand"),
    [
        pytest.param([receipt(10, minutes=0), count(10, minutes=5)], 0, 10, id="no-drift"),
        pytest.param([receipt(10, minutes=0), count(7, minutes=5)], 3, 7, id="shrink"),
        pytest.param([receipt(10, minutes=0), count(12, minutes=5)], -2, 12, id="found-stock"),
        pytest.param(
            # on_hand just before the count is 8, but 10 at the count's time: drift 10 - 7.
            [receipt(10, minutes=0), sale(2, minutes=30), count(7, minutes=20)],
            3,
            5,
            id="measured-at-the-count-time",
        ),
        pytest.param([count(4, minutes=0)], -4, 4, id="first-count-of-a-new-position"),
    ],
)
def test_each_applied_count_records_its_drift(
    events: list[Event], drift: int, on_hand: int
) -> None:
    state, applied = apply_all(events)

    assert applied[-1].drift == drift
    assert state.positions[STORE].last_count_drift == drift
    assert state.positions[STORE].on_hand == on_hand


@pytest.mark.parametrize(
    ("late_minutes", "drift"),
    [
        pytest.param(15, 0, id="between-the-counts-it-was-missing-from-the-books"),
        pytest.param(20, 0, id="at-the-last-count-it-was-missing-too"),
        pytest.param(10, 2, id="at-the-previous-count-it-was-in-that-count"),
        pytest.param(5, 2, id="before-the-previous-count-changes-nothing"),
    ],
)
def test_a_late_sale_moves_the_last_drift_unless_the_count_before_had_it(
    late_minutes: int, drift: int
) -> None:
    # Books at the second count: 10 (the first count) and whatever sold between them.
    state, _ = apply_all([receipt(10, minutes=0), count(10, minutes=10), count(8, minutes=20)])
    assert state.positions[STORE].last_count_drift == 2

    apply_event(state, sale(2, minutes=late_minutes), NOW_US)

    assert state.positions[STORE].last_count_drift == drift
    assert state.positions[STORE].on_hand == 8  # already in the count: on_hand stays


def test_a_late_sale_before_the_first_count_moves_its_drift() -> None:
    state, _ = apply_all([receipt(10, minutes=0), count(7, minutes=10), sale(2, minutes=5)])

    assert state.positions[STORE].last_count_drift == 1  # books 10 - 2 = 8 at the count
    assert state.positions[STORE].on_hand == 7


# -- versions ------------------------------------------------------------------------------


def test_each_applied_event_grows_the_version_and_nothing_else_does() -> None:
    day_8 = 8 * DAY_MIN
    redelivered = receipt(10, minutes=day_8)
    steps: list[tuple[Event, Outcome]] = [
        (redelivered, Outcome.APPLIED),
        (count(8, minutes=day_8 + 10), Outcome.APPLIED),
        (redelivered, Outcome.DUPLICATE),
        (count(99, minutes=day_8 + 5), Outcome.STALE),
        (sale(1, minutes=0), Outcome.DEAD_LETTERED),  # dedup window
        (count(1, minutes=day_8 - 49 * HOUR_MIN), Outcome.DEAD_LETTERED),  # reconciliation
        (order(2, minutes=day_8 + 20), Outcome.APPLIED),
    ]
    state = SkuState(sku=SKU)
    versions = [state.version]

    for event, outcome in steps:
        assert apply_event(state, event, NOW_US).outcome is outcome
        versions.append(state.version)

    assert versions == [0, 1, 2, 2, 2, 2, 2, 3]


def test_updated_at_is_the_server_time_of_the_change_and_never_goes_back() -> None:
    state = SkuState(sku=SKU)

    apply_event(state, receipt(1), NOW_US)
    apply_event(state, receipt(1), NOW_US - 5)  # a server clock that stepped back

    assert state.updated_at == NOW_US
    assert state.version == 2


# -- oversold ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "event", "change", "oversold"),
    [
        pytest.param([receipt(2)], sale(3), 1, True, id="sale-beyond-stock"),
        pytest.param([receipt(2)], sale(2), 0, False, id="sale-down-to-zero"),
        pytest.param([receipt(2)], order(3), 1, True, id="order-beyond-stock"),
        pytest.param([sale(3)], receipt(3), -1, False, id="receipt-clears"),
        pytest.param([order(3)], cancel(3), -1, False, id="cancel-clears"),
        pytest.param([sale(3)], sale(1), 0, True, id="already-oversold"),
        pytest.param([sale(3)], count(0, minutes=1), -1, False, id="count-clears"),
        pytest.param([receipt(5)], adjust(-6), 1, True, id="adjust-below-zero"),
        pytest.param([], transfer_out(1, to=STORE), 1, True, id="transfer_out-from-nothing"),
        pytest.param([], return_(1, "damaged"), 0, False, id="damaged-return-not-oversold"),
        pytest.param(
            [receipt(1, location=STORE)],
            transfer_out(5, location=DC, to=STORE),
            1,
            True,
            id="transfer_out-counts-its-source-not-its-destination",
        ),
    ],
)
def test_oversold_is_flagged_and_its_change_reported(
    setup: list[Event], event: Event, change: int, oversold: bool
) -> None:
    state, _ = apply_all(setup)

    applied = apply_event(state, event, NOW_US)

    assert applied.oversold_change == change
    assert state.positions[event.location].oversold is oversold


def test_a_redelivered_oversale_reports_no_oversold_change() -> None:
    oversale = sale(1)
    state, _ = apply_all([oversale])

    applied = apply_event(state, oversale, NOW_US)

    assert applied.outcome is Outcome.DUPLICATE
    assert applied.oversold_change == 0


def test_safety_stock_does_not_make_a_position_oversold() -> None:
    # Oversold is on_hand - reserved < 0: safety stock only lowers sellable (SPEC 3).
    state, _ = apply_all([receipt(3), order(3)])

    assert state.positions[STORE].oversold is False


# -- compaction ----------------------------------------------------------------------------


def _closed_and_open_documents(minutes: float) -> list[Event]:
    return [
        order(5, "CLOSED", minutes=minutes),
        pick(5, "CLOSED", minutes=minutes),
        order(5, "CANCELLED", minutes=minutes),
        cancel(5, "CANCELLED", minutes=minutes),
        order(5, "OPEN", minutes=minutes),
        pick(2, "OPEN", minutes=minutes),
        transfer_out(4, "T-DONE", to=STORE, minutes=minutes),
        transfer_in(4, "T-DONE", location=STORE, minutes=minutes),
        transfer_out(4, "T-OPEN", to=STORE, minutes=minutes),
    ]


def test_documents_with_nothing_open_are_dropped_once_past_the_dedup_window() -> None:
    state, _ = apply_all(_closed_and_open_documents(minutes=0))
    before = figures(state)
    apply_event(state, receipt(1, location=STORE_2, minutes=7 * DAY_MIN + 1), NOW_US)

    compact(state)

    assert set(state.orders.get(STORE, {})) == {"OPEN"}
    assert set(state.transfers.get(STORE, {})) == {"T-OPEN"}
    assert {k: v for k, v in figures(state).items() if k != STORE_2} == before


def test_documents_with_nothing_open_are_kept_inside_the_dedup_window() -> None:
    state, _ = apply_all(_closed_and_open_documents(minutes=0))
    apply_event(state, receipt(1, location=STORE_2, minutes=7 * DAY_MIN), NOW_US)

    compact(state)

    assert set(state.orders.get(STORE, {})) == {"CLOSED", "CANCELLED", "OPEN"}
    assert set(state.transfers.get(STORE, {})) == {"T-DONE", "T-OPEN"}


def test_a_closed_document_touched_recently_is_kept() -> None:
    # The document's newest event, not its first, decides when it ages out.
    state, _ = apply_all(
        [
            order(5, "O1", minutes=0),
            pick(5, "O1", minutes=6 * DAY_MIN),
            receipt(1, minutes=8 * DAY_MIN),
        ]
    )

    compact(state)

    assert "O1" in state.orders[STORE]


def test_compaction_forgets_event_ids_only_outside_the_dedup_window() -> None:
    old = receipt(1, minutes=0)
    recent = receipt(1, minutes=2 * DAY_MIN)
    state, _ = apply_all([old, recent, receipt(1, minutes=8 * DAY_MIN)])

    compact(state)

    assert old.event_id not in state.seen
    assert recent.event_id in state.seen
    # Forgotten ids are still safe: the event is now too old and is dead-lettered.
    assert apply_event(state, old, NOW_US).outcome is Outcome.DEAD_LETTERED


def test_a_busy_sku_forgets_closed_documents_by_itself() -> None:
    # No shell calls compact(): applying events does it when there is enough to forget.
    hourly_receipts = [receipt(1, minutes=hour * HOUR_MIN) for hour in range(1, 10 * 24)]

    state, _ = apply_all([order(5, "O1", minutes=0), cancel(5, "O1", minutes=0), *hourly_receipts])

    assert STORE not in state.orders
    assert len(state.seen) < len(hourly_receipts)
    assert state.compacted_at > 0


def test_compaction_never_changes_a_figure() -> None:
    state, _ = apply_all(
        [
            receipt(10, minutes=0),
            order(3, minutes=1),
            count(9, minutes=2),
            sale(1, minutes=3),
            transfer_out(2, to=STORE, minutes=4),
            return_(1, "damaged", minutes=5),
        ]
    )
    before = figures(state)

    state.newest_at += 30 * MICROS_PER_DAY  # as if much later events had arrived elsewhere
    compact(state)

    assert figures(state) == before


# -- state on disk ---------------------------------------------------------------------------


def stored(state: SkuState) -> dict[bytes, bytes]:
    """What a write of `state` leaves in a table that held its previous write."""
    table = MemoryTable(partitions=1)
    table.write(sku_records(state))
    written(state)
    return table.records


def test_state_survives_its_records_unchanged() -> None:
    state, _ = apply_all(
        [receipt(10), order(3), pick(1, "O1"), transfer_out(2, to=STORE), count(4, minutes=1)]
    )
    table = MemoryTable(partitions=1)
    table.write(sku_records(state))
    written(state)

    assert same_state(read_state(table, SKU), state)


def with_every_field(value: object) -> object:
    """As builtins, every struct field included, defaults too: the records of before."""
    if isinstance(value, msgspec.Struct):
        fields = [getattr(value, f.name) for f in msgspec.structs.fields(value)]
        if value.__struct_config__.array_like:
            tag = value.__struct_config__.tag
            return [tag, *(with_every_field(field) for field in fields)] if tag else fields
        names = value.__struct_fields__
        return {name: with_every_field(field) for name, field in zip(names, fields, strict=True)}
    if isinstance(value, dict):
        return {key: with_every_field(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [with_every_field(item) for item in value]
    return value


def test_heads_written_with_every_field_read_back_the_same() -> None:
    """Heads leave fields at their defaults out; heads written with every field (defaults
    too, as a newer field's default would be by an older writer) read back the same."""
    state, _ = apply_all([receipt(10), order(3), count(4, minutes=1)])
    head = decode_head(encode_head(state))
    every_field = msgspec.msgpack.encode(with_every_field(head))

    assert len(encode_head(state)) < len(every_field)
    assert decode_head(every_field) == head


# -- batches -------------------------------------------------------------------------------


def test_a_batch_loads_each_sku_once_and_reports_every_outcome() -> None:
    loads: list[str] = []

    def load(sku: str) -> SkuState:
        loads.append(sku)
        return SkuState(sku=sku)

    first = receipt(10, sku=SKU, minutes=8 * DAY_MIN)
    events: list[Event] = [
        first,
        receipt(5, sku=OTHER_SKU),
        first,
        sale(1, sku=SKU, minutes=0),
        count(7, sku=SKU, minutes=8 * DAY_MIN + 1),
        sale(12, sku=OTHER_SKU),
    ]

    result = apply_events(load, events, NOW_US)

    assert loads == [SKU, OTHER_SKU]
    assert [(d.index, "dedup window" in d.reason) for d in result.dead_letters] == [(3, True)]
    assert [(d.index, d.units) for d in result.drifts] == [(4, 3)]
    assert result.oversold_change == 1
    assert result.outcomes == Counter(
        {
            ("receipt", "applied"): 2,
            ("receipt", "duplicate"): 1,
            ("sale", "dead_lettered"): 1,
            ("count", "applied"): 1,
            ("sale", "applied"): 1,
        }
    )
    assert figures(result.touched[SKU]) == {STORE: Figures(on_hand=7)}
    assert figures(result.touched[OTHER_SKU]) == {STORE: Figures(on_hand=-7)}


def test_a_batch_applies_on_top_of_the_loaded_state() -> None:
    stored, _ = apply_all([receipt(10, minutes=0)])

    result = apply_events(lambda sku: stored, [sale(4, minutes=1)], NOW_US)

    assert result.touched[SKU] is stored
    assert stored.positions[STORE].on_hand == 6
    assert stored.newest_at == us(1)

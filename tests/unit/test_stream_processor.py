"""The worker's per-partition processing against an in-memory table (a fake of faust's):
what gets dead-lettered, what is written, and how a rules change moves versions."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from availability import Rules, SkuState, decode_rules
from availability.control import (
    HOLD_CLOCK_TOLERANCE_S,
    ExpireHolds,
    PlaceHold,
    ReleaseHold,
    RulesChanged,
    control_encoder,
)
from availability.holds import HoldLineRequest
from availability.layout import answers_state, decode_head, read_state
from availability.processing import Windows
from availability.published import reply_key
from availability.snapshots import SNAPSHOT_END_KEY, SnapshotEnd, SnapshotRow, as_count
from availability.topics import Names, partition_for
from streams.processor import RULES_KEY, Message, Processor, RulesHolder
from streams.state_cache import StateCache
from tests.support.events import event
from tests.support.tables import MemoryTable, assert_stored_as

NAMES = Names("u-")
PARTITIONS = 4
NOW_US = 4_000_000_000_000_000  # far after every test event


class DeadLetterList(list[tuple[bytes | None, str]]):
    def send(
        self,
        raw: bytes | None,
        key: bytes | None,
        reason: str,
        topic: str,
        partition: int,
        offset: int,
    ) -> None:
        self.append((raw, reason))


def processor(cache_skus: int = 0) -> tuple[Processor, MemoryTable, DeadLetterList]:
    table, dead = MemoryTable(PARTITIONS), DeadLetterList()
    made = Processor(
        NAMES, PARTITIONS, table, dead, RulesHolder(), Windows(), lambda: NOW_US, cache_skus
    )
    return made, table, dead


def message(
    body: dict[str, Any] | bytes | None, key: bytes | None = None, offset: int = 0
) -> Message:
    value = body if isinstance(body, bytes | None) else json.dumps(body).encode()
    if key is None and isinstance(body, dict):
        key = str(body["sku"]).encode()
    return Message(NAMES.event_topic("receipt"), 0, offset, key, value)


def test_valid_events_are_applied_and_written_once_per_sku() -> None:
    made, table, dead = processor()
    outcome = made.handle_partition(
        0,
        [
            message(event("receipt", "SKU-1", "DC1", qty=5)),
            message(event("receipt", "SKU-1", "DC1", qty=2)),
        ],
    )
    assert not dead
    assert list(outcome.changed) == ["SKU-1"]
    assert read_state(table, "SKU-1").positions["DC1"].on_hand == 7


@pytest.mark.parametrize(
    ("body", "key", "reason"),
    [
        pytest.param(b"{not json", b"SKU-1", "invalid event", id="malformed"),
        pytest.param(None, b"SKU-1", "no value", id="tombstone"),
        pytest.param(event("receipt", "SKU-1", qty=0), None, "invalid event", id="invalid-field"),
        pytest.param(event("receipt", "SKU-1", qty=1), b"SKU-2", "key must be", id="wrong-key"),
        pytest.param(
            {**event("receipt", "SKU-1", qty=1), "occurred_at": "2200-01-01T00:00:00Z"},
            None,
            "5 minutes ahead",
            id="future-clock",
        ),
        pytest.param(
            {**event("receipt", "SKU-1", qty=1), "occurred_at": "1969-07-20T20:17:00Z"},
            None,
            "before 1970",
            id="before-1970",
        ),
        pytest.param(
            b'{"type": "receipt", "extra": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
            b"SKU-1",
            "nested too deeply",
            id="nested-too-deeply",
        ),
    ],
)
def test_what_cannot_apply_is_dead_lettered_with_its_bytes_and_nothing_is_written(
    body: dict[str, Any] | bytes | None, key: bytes | None, reason: str
) -> None:
    made, table, dead = processor()
    sent = message(body, key)
    outcome = made.handle_partition(0, [sent])
    assert outcome.invalid == 1
    assert dead == [(sent.value, dead[0][1])]
    assert reason in dead[0][1]
    assert not table.records


def test_a_count_too_old_to_rebase_is_dead_lettered_by_the_core() -> None:
    made, _, dead = processor()
    made.handle_partition(
        0,
        [
            message(event("receipt", "SKU-1", "DC1", minute=60 * 50, qty=5)),
            message(event("count", "SKU-1", "DC1", minute=0, counted=1)),
        ],
    )
    assert len(dead) == 1
    assert "reconciliation window" in dead[0][1]


def rules_change(revision: int, rules: dict[str, Any]) -> Message:
    body = control_encoder.encode(RulesChanged(revision, decode_rules(json.dumps(rules).encode())))
    return Message(NAMES.control_topic, 0, revision, b"rules", body)


def sku_in(partition: int) -> str:
    return next(
        f"SKU-{n}"
        for n in range(1000)
        if partition_for(f"SKU-{n}".encode(), PARTITIONS) == partition
    )


def test_a_rules_change_bumps_only_the_skus_of_its_partition_whose_answers_move() -> None:
    made, table, _ = processor()
    here, elsewhere = sku_in(0), sku_in(1)
    made.handle_partition(0, [message(event("receipt", here, "S1", qty=5))])
    made.handle_partition(1, [message(event("receipt", elsewhere, "S1", qty=5))])
    before = {sku: read_state(table, sku).version for sku in (here, elsewhere)}

    outcome = made.handle_partition(0, [rules_change(3, {"channels": {"web": {}}})])
    assert list(outcome.changed) == [here]
    assert read_state(table, here).version == before[here] + 1
    assert read_state(table, elsewhere).version == before[elsewhere]
    assert made.rules.revision == 3
    assert RULES_KEY in table.records

    # The same revision again, or an older one, changes nothing.
    assert not made.handle_partition(0, [rules_change(3, {"channels": {"web": {}}})]).changed
    assert not made.handle_partition(0, [rules_change(2, {})]).changed
    # A change that moves no answer of the SKU bumps nothing either.
    unmoved = {"channels": {"web": {}}, "locations": {"DC9": {"type": "dc"}}}
    assert not made.handle_partition(0, [rules_change(5, unmoved)]).changed


def test_rules_holder_keeps_the_newest_revision() -> None:
    holder = RulesHolder()
    assert holder.offer(4, Rules(channels={}))
    assert not holder.offer(4, Rules())
    assert not holder.offer(1, Rules())
    assert holder.revision == 4


def control(command: PlaceHold | ReleaseHold | ExpireHolds, offset: int) -> Message:
    return Message(NAMES.control_topic, 0, offset, b"hold", control_encoder.encode(command))


def place(hold_id: str, lines: dict[str, int]) -> PlaceHold:
    requested = [HoldLineRequest(sku, qty) for sku, qty in lines.items()]
    return PlaceHold(hold_id, hold_id, "web", requested, expires_at=NOW_US - 1)


def test_the_cached_states_stay_what_the_table_holds_through_every_kind_of_batch() -> None:
    """Events and holds apply to the cached states in place; expiries and rules changes
    write through them. After every batch each cached state is exactly what the table holds
    (its head and sealed chunks), and the table ends byte for byte as without a cache."""
    a, b = [f"SKU-{n}" for n in range(1000) if partition_for(f"SKU-{n}".encode(), PARTITIONS) == 0][
        :2
    ]
    batches = [
        [message(event("receipt", a, "DC1", qty=5)), message(event("receipt", b, "S001", qty=1))],
        [rules_change(1, {"channels": {"web": {}}})],
        [control(place("H1", {a: 2}), 2), message(event("sale", a, "DC1", qty=1))],
        [control(place("H2", {a: 1, b: 9}), 3)],  # b is short: refused, nothing held
        [message(event("sale", b, "S001", qty=1)), message(event("sale", a, "DC1", qty=1))],
        [control(ExpireHolds(), 4), message(event("receipt", a, "DC1", qty=3))],
        [rules_change(5, {"channels": {"web": {}}, "safety_stock": [{"units": 1}]})],
        [message(event("count", a, "DC1", counted=4)), message(b"not json", a.encode())],
    ]
    cached, table, _ = processor(cache_skus=100)
    plain, plain_table, _ = processor()
    for batch in batches:
        cached.handle_partition(0, batch)
        plain.handle_partition(0, batch)
        for sku in (a, b):
            state = cached.cache.get(sku)
            assert state is not None, sku
            assert_stored_as(state, table)
    assert table.records == plain_table.records
    assert read_state(table, a).holds == {}  # H1 expired, H2 never held


def test_a_hold_command_whose_reply_would_go_outside_the_reply_lists_is_dead_lettered() -> None:
    """Anyone who can produce to the control topic names the reply's Redis key: a key that
    is not one of the API's reply lists (here a SKU's answers) refuses the command whole."""
    made, table, dead = processor()
    sku = sku_in(0)
    made.handle_partition(
        0,
        [message(event("receipt", sku, "DC1", qty=5)), rules_change(1, {"channels": {"web": {}}})],
    )
    lines = [HoldLineRequest(sku, 2)]
    namespace = NAMES.redis_namespace
    foreign = PlaceHold("r1", "H1", "web", lines, NOW_US + 60_000_000, f"{namespace}:{{{sku}}}")
    refused = control(foreign, 5)

    outcome = made.handle_partition(0, [refused])

    assert dead == [(refused.value, dead[0][1])]
    assert dead[0][1].startswith("invalid control message: the reply list")
    assert not outcome.replies
    assert not outcome.changed
    assert read_state(table, sku).holds == {}  # not applied: nothing held

    own = msgspec.structs.replace(foreign, reply_to=reply_key(namespace, "api-1"))
    outcome = made.handle_partition(0, [control(own, 6)])
    assert [key for key, _ in outcome.replies] == [own.reply_to]
    assert list(read_state(table, sku).holds) == ["H1"]
    assert len(dead) == 1


def test_a_batch_hands_on_its_records_which_later_batches_leave_as_they_were() -> None:
    made, _, _ = processor(cache_skus=100)
    first = made.handle_partition(0, [message(event("receipt", "SKU-1", "DC1", qty=5))])
    made.handle_partition(0, [message(event("sale", "SKU-1", "DC1", qty=2))])

    handed_on = answers_state(decode_head(first.changed["SKU-1"]))
    assert (handed_on.version, handed_on.positions["DC1"].on_hand) == (1, 5)


def test_the_cache_keeps_the_most_recently_written_and_forgets_all_on_a_new_generation() -> None:
    cache = StateCache(2)
    for sku in ("A", "B", "A", "C"):
        cache.written(SkuState(sku=sku))
    assert [sku for sku in "ABC" if cache.get(sku) is not None] == [
        "A",
        "C",
    ]  # B written least recently

    cache.follow_generation(7)
    assert len(cache) == 0
    cache.written(SkuState(sku="D"))
    cache.follow_generation(7)
    assert cache.get("D") is not None  # the same generation: kept

    off = StateCache(0)
    off.written(SkuState(sku="D"))
    assert off.get("D") is None


def test_a_control_message_nested_too_deeply_is_dead_lettered_and_the_batch_goes_on() -> None:
    made, table, dead = processor()
    deep = b'{"kind": "expire_holds", "x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    made.handle_partition(
        0,
        [
            Message(NAMES.control_topic, 0, 0, b"hold", deep),
            message(event("receipt", "SKU-1", "DC1", qty=3), offset=1),
        ],
    )
    assert [reason for _, reason in dead] == ["invalid control message: JSON nested too deeply"]
    assert read_state(table, "SKU-1").positions["DC1"].on_hand == 3


def test_a_snapshot_end_zeroes_the_unlisted_positions_of_its_partition_at_its_locations() -> None:
    made, table, dead = processor()
    skus = [sku for sku in (f"SKU-{n}" for n in range(40)) if partition_for(sku.encode(), 4) == 0]
    listed, unlisted = skus[0], skus[1]
    counted_at = "2026-12-01T10:00:00Z"
    row = msgspec.convert(
        {"sku": listed, "location": "S1", "counted": 3, "counted_at": counted_at}, SnapshotRow
    )
    count = as_count("erp-7", row)
    end = SnapshotEnd("erp-7", {"S1": count.occurred_us})
    counts_topic = NAMES.event_topic("count")
    made.handle_partition(
        0,
        [
            message(event("receipt", listed, "S1", qty=5, minute=-(10**6))),
            message(event("receipt", unlisted, "S1", qty=5, minute=-(10**6))),
            message(event("receipt", unlisted, "S2", qty=5, minute=-(10**6))),
            Message(counts_topic, 0, 1, listed.encode(), msgspec.json.encode(count)),
            Message(counts_topic, 0, 2, SNAPSHOT_END_KEY, msgspec.json.encode(end)),
            Message(counts_topic, 0, 3, SNAPSHOT_END_KEY, b"{not json"),
        ],
    )

    on_hand = {
        sku: {place: p.on_hand for place, p in read_state(table, sku).positions.items()}
        for sku in (listed, unlisted)
    }
    assert on_hand == {listed: {"S1": 3}, unlisted: {"S1": 0, "S2": 5}}
    assert [reason.startswith("invalid snapshot end: JSON is malformed") for _, reason in dead] == [
        True
    ]


def test_a_hold_that_reaches_its_writer_after_its_api_answered_is_not_placed() -> None:
    """An API that got no acknowledgement in time answers 503 (nothing is held) while Kafka
    may still write the command, after the client retried, got its hold and released it.
    Placed then, it would hold units no one knows of until it expires. Placed in time and
    redelivered, it answers as the first time."""
    made, table, _ = processor()
    sku = sku_in(0)
    made.handle_partition(
        0,
        [message(event("receipt", sku, "DC1", qty=5)), rules_change(1, {"channels": {"web": {}}})],
    )
    reply_to = reply_key(NAMES.redis_namespace, "api-1")
    lines = [HoldLineRequest(sku, 2)]
    far = NOW_US + 600_000_000
    answered = NOW_US - int((HOLD_CLOCK_TOLERANCE_S + 1) * 1_000_000)
    late = PlaceHold("r1", "LATE", "web", lines, far, reply_to, decide_by=answered)
    in_time = PlaceHold("r2", "ON-TIME", "web", lines, far, reply_to, decide_by=NOW_US + 1)

    outcome = made.handle_partition(0, [control(late, 5), control(in_time, 6)])

    replies = [msgspec.json.decode(value) for _, value in outcome.replies]
    assert [bool(r.get("shortfalls")) for r in replies] == [True, False]
    assert list(read_state(table, sku).holds) == ["ON-TIME"]
    # The one placed in time, redelivered past its API's answer (a crash before the offset
    # commit): already held, so granted again, and nothing more is held.
    redelivered = msgspec.structs.replace(in_time, decide_by=answered)
    outcome = made.handle_partition(0, [control(redelivered, 7)])
    assert not msgspec.json.decode(outcome.replies[0][1]).get("shortfalls")
    assert list(read_state(table, sku).holds) == ["ON-TIME"]

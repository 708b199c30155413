"""The worker's per-partition processing against an in-memory table (a fake of faust's):
what gets dead-lettered, what is written, and how a rules change moves versions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from availability import Rules, decode_rules, decode_state
from availability.control import RulesChanged, control_encoder
from availability.processing import Windows
from availability.topics import Names, partition_for
from streams.processor import RULES_KEY, Message, Processor, RulesHolder
from tests.support.events import event

NAMES = Names("u-")
PARTITIONS = 4
NOW_US = 4_000_000_000_000_000  # far after every test event


class DictTable(dict[bytes, bytes]):
    def partition_items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        return iter([(k, v) for k, v in self.items() if partition_for(k, PARTITIONS) == partition])


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


def processor() -> tuple[Processor, DictTable, DeadLetterList]:
    table, dead = DictTable(), DeadLetterList()
    made = Processor(NAMES, PARTITIONS, table, dead, RulesHolder(), Windows(), lambda: NOW_US)
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
    assert decode_state(table[b"SKU-1"]).positions["DC1"].on_hand == 7


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
    assert not table


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
    before = {sku: decode_state(table[sku.encode()]).version for sku in (here, elsewhere)}

    outcome = made.handle_partition(0, [rules_change(3, {"channels": {"web": {}}})])
    assert list(outcome.changed) == [here]
    assert decode_state(table[here.encode()]).version == before[here] + 1
    assert decode_state(table[elsewhere.encode()]).version == before[elsewhere]
    assert made.rules.revision == 3
    assert RULES_KEY in table

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

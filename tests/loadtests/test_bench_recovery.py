"""The recovery benchmark's changelog (`loadtests/bench_recovery.py`): the records it writes
are the ones a worker would have written, on the partitions the worker would read them from."""

from __future__ import annotations

import pytest

from availability import decode_state
from availability.topics import partition_for
from loadtests.bench_recovery import changelog_records, sku_count, sku_state
from loadtests.workload import LOCATIONS

NOW_US = 1_800_000_000 * 1_000_000


def test_a_sku_state_is_deterministic_and_consistent_with_its_documents() -> None:
    state = sku_state(42, LOCATIONS, NOW_US)

    assert state == sku_state(42, LOCATIONS, NOW_US)
    assert list(state.positions) == LOCATIONS
    for position in state.positions.values():
        assert position.reserved == sum(o.open_qty for o in position.orders.values())
        assert position.inbound == sum(t.open_qty for t in position.transfers.values())
        assert position.newest_at <= state.newest_at < NOW_US


@pytest.mark.parametrize(
    ("positions", "per_sku", "skus"),
    [(1_000, 8, 125), (1_003, 8, 126), (10, 1, 10), (20, 12, 2)],
)
def test_the_changelog_holds_every_position_once_on_its_skus_partition(
    positions: int, per_sku: int, skus: int
) -> None:
    records = list(changelog_records(positions, per_sku, 8, NOW_US))

    assert sku_count(positions, per_sku) == skus == len(records)
    states = [decode_state(value) for _, _, value in records]
    assert sum(len(state.positions) for state in states) == positions
    assert len({state.sku for state in states}) == skus
    for (partition, key, _), state in zip(records, states, strict=True):
        assert key == state.sku.encode()
        assert partition == partition_for(key, 8)

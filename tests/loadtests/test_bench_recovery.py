"""The recovery benchmark's changelog (`loadtests/recovery_records.py`): the records it writes
are the ones a worker would have written, on the partitions the worker would read them
from, and read back into the table the issue sets the target for."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder

from availability.layout import Record, is_head, read_state, sku_of_head
from availability.state import CHUNK_ITEMS
from availability.topics import partition_for
from loadtests.batches import Batches
from loadtests.recovery_records import SEEN_PER_SKU, changelog_records, sku_count, sku_state
from loadtests.workload import LOCATIONS

NOW_US = 1_800_000_000 * 1_000_000
KAFKA_LIMIT_BYTES = 1024**2


class Stored:
    """A table: the last value of each key (a None value deletes it), as a RecordReader."""

    def __init__(self, records: Iterable[Record]) -> None:
        self.records: dict[bytes, bytes] = {}
        for key, value in records:
            if value is None:
                self.records.pop(key, None)
            else:
                self.records[key] = value

    def get(self, key: bytes) -> bytes | None:
        return self.records.get(key)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted(item for item in self.records.items() if item[0].startswith(prefix)))


def test_a_sku_state_is_deterministic_and_consistent_with_its_documents() -> None:
    state = sku_state(42, LOCATIONS, NOW_US)

    assert state == sku_state(42, LOCATIONS, NOW_US)
    assert list(state.positions) == LOCATIONS
    assert len(state.seen) == SEEN_PER_SKU == 40
    for location, position in state.positions.items():
        orders = state.orders.get(location, {}).values()
        transfers = state.transfers.get(location, {}).values()
        assert position.reserved == sum(order.open_qty for order in orders)
        assert position.inbound == sum(transfer.open_qty for transfer in transfers)
        assert position.newest_at <= state.newest_at < NOW_US
        assert len(state.effects[location]) == 2  # the sales since its last count
    assert all(state.newest_at - at < 7 * 24 * 3_600_000_000 for at in state.seen.values())


def test_a_sku_reads_back_from_its_records_as_it_was_built() -> None:
    built = sku_state(7, LOCATIONS, NOW_US)
    records = list(changelog_records(len(LOCATIONS) * 8, len(LOCATIONS), 8, NOW_US))[7][1]

    read = read_state(Stored(records), built.sku)

    assert read.version == built.version
    assert read.positions == built.positions
    assert read.seen == built.seen
    assert read.orders == built.orders
    assert read.transfers == built.transfers
    assert read.effects == built.effects


@pytest.mark.parametrize(
    ("positions", "per_sku", "skus"),
    [(1_000, 8, 125), (1_003, 8, 126), (10, 1, 10), (20, 12, 2)],
)
def test_the_changelog_holds_every_position_once_on_its_skus_partition(
    positions: int, per_sku: int, skus: int
) -> None:
    written = list(changelog_records(positions, per_sku, 8, NOW_US))

    assert sku_count(positions, per_sku) == skus == len(written)
    states = []
    for partition, records in written:
        head_key = records[-1][0]
        assert is_head(head_key), "a write stores its chunks first, its head last"
        sku = sku_of_head(head_key)
        assert partition == partition_for(sku.encode(), 8)
        states.append(read_state(Stored(records), sku))
    assert sum(len(state.positions) for state in states) == positions
    assert len({state.sku for state in states}) == skus
    assert all(len(state.seen) == SEEN_PER_SKU for state in states)


def test_the_issues_table_is_mostly_heads_and_every_record_is_small() -> None:
    """A sample of the default fill (8 locations, 40 dedup ids a SKU): the open chunk holds
    up to 64 items inline, so most SKUs are one head record."""
    written = [records for _, records in changelog_records(8_000, 8, 8, NOW_US)]

    heads_alone = sum(len(records) == 1 for records in written)
    assert heads_alone >= 0.8 * len(written)
    assert all(len(records) <= 2 for records in written)  # at most one chunk of 64 items
    largest = max(len(key) + len(value or b"") for records in written for key, value in records)
    assert largest < KAFKA_LIMIT_BYTES // 100
    assert CHUNK_ITEMS == 64


class RecordingProducer:
    """A producer's record batches (aiokafka's own, as a producer on a current broker makes
    them), never sent: each `send_batch` is recorded."""

    def __init__(self, max_batch_size: int) -> None:
        self._max_batch_size = max_batch_size
        self.sent: list[tuple[str, int, int]] = []  # topic, partition, records

    def create_batch(self) -> Any:
        return BatchBuilder(2, self._max_batch_size, 0, is_transactional=False)

    async def send_batch(self, batch: Any, topic: str, partition: int) -> asyncio.Future[None]:
        self.sent.append((topic, partition, batch.record_count()))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_batches_keep_each_skus_records_of_one_write_together() -> None:
    producer = RecordingProducer(max_batch_size=4_096)
    batches = Batches(producer, 4_096)  # type: ignore[arg-type]
    group = [(b"c" + bytes([n]), b"x" * 1_000) for n in range(3)]  # 3 records, ~3.1 kB

    for _ in range(3):
        await batches.add("changelog", 0, group)
    await batches.add("changelog", 1, group[:1])
    await batches.flush()

    # A batch of 4 kB takes one group of three records, never four records.
    assert producer.sent == [("changelog", 0, 3)] * 3 + [("changelog", 1, 1)]
    with pytest.raises(ValueError, match="does not fit"):
        await batches.add("changelog", 0, group * 2)

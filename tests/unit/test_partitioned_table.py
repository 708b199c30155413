"""The worker's table on real RocksDB databases (one per partition, as faust keeps them): a
batch's writes are read back within the batch, land in one write batch when it ends, and
go to the changelog group by group, each group whole in one record batch; a batch that
raises writes nothing; a record batch Kafka refuses stops every later commit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from rocksdict import Options, Rdict

from streams.changelog import ChangelogFailure, ChangelogWriter, record_batches
from streams.table import PartitionedTable


class RocksStore:
    """The two things the table takes from faust's RocksDB store."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._dbs: dict[int, Rdict] = {}

    def _db_for_partition(self, partition: int) -> Rdict:
        if partition not in self._dbs:
            path = str(self._folder / f"p{partition}")
            self._dbs[partition] = Rdict(path, Options(raw_mode=True))
        return self._dbs[partition]

    def _visible_items(self, db: Rdict) -> Iterator[tuple[bytes, bytes]]:
        return iter(db.items())

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()


class FaustTable:
    def __init__(self, store: RocksStore) -> None:
        self.data = store


def no_producer(partition: int) -> Any:
    raise AssertionError("nothing is produced in these tests")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RocksStore]:
    opened = RocksStore(tmp_path)
    yield opened
    opened.close()


def waiting(changelog: ChangelogWriter) -> dict[int, list[list[tuple[bytes, bytes | None]]]]:
    return {p: [list(group) for group in groups] for p, groups in changelog._waiting.items()}


def writer(producer: Any = no_producer, on_failure: Any = lambda failure: None) -> ChangelogWriter:
    return ChangelogWriter("t-changelog", producer, lambda tp, offset: None, 4096, on_failure)


def test_a_batch_reads_its_own_writes_and_writes_them_once_it_ends(store: RocksStore) -> None:
    changelog = writer()
    table = PartitionedTable(FaustTable(store), changelog)
    store._db_for_partition(1)[b"hold"] = b"v0"
    store._db_for_partition(1)[b"hkept"] = b"k0"
    store._db_for_partition(1)[b"hgone"] = b"g0"

    with table.in_partition(1):
        table.write([(b"hold", b"v1"), (b"hnew", b"n1")])
        table.write([(b"hold", b"v2"), (b"hgone", None)])
        assert table.get(b"hold") == b"v2"
        assert table.get(b"hkept") == b"k0"
        assert table.get(b"hgone") is None  # deleted within the batch, though still stored
        expected = [(b"hkept", b"k0"), (b"hnew", b"n1"), (b"hold", b"v2")]
        assert list(table.scan(b"h")) == expected  # in key order, the batch's writes in
        assert list(table.partition_items(1, b"h")) == expected
        assert store._db_for_partition(1).get(b"hold") == b"v0"  # not before the batch ends

    assert list(table.partition_items(1, b"h")) == expected
    assert store._db_for_partition(1).get(b"hgone") is None
    # Every group goes to the changelog whole, in order: no record of one is dropped for
    # a newer value in a later one, which would leave the earlier group incomplete.
    assert waiting(changelog) == {
        1: [[(b"hold", b"v1"), (b"hnew", b"n1")], [(b"hold", b"v2"), (b"hgone", None)]]
    }


def test_a_batch_that_raises_writes_nothing_anywhere(store: RocksStore) -> None:
    changelog = writer()
    table = PartitionedTable(FaustTable(store), changelog)

    def a_batch_with_a_bug() -> None:
        with table.in_partition(0):
            table.write([(b"ha", b"1")])
            raise RuntimeError("a bug in the middle of a batch")

    with pytest.raises(RuntimeError):
        a_batch_with_a_bug()

    assert list(table.partition_items(0, b"h")) == []
    assert waiting(changelog) == {}
    with table.in_partition(0):
        assert table.get(b"ha") is None


def test_another_partition_does_not_see_the_batch(store: RocksStore) -> None:
    table = PartitionedTable(FaustTable(store), writer())

    with table.in_partition(2):
        table.write([(b"hx", b"1")])
        assert list(table.partition_items(3, b"h")) == []
        assert list(table.reader(2).scan(b"h")) == []  # a reader sees what is stored only


class BatchProducer:
    """aiokafka's record batches in transactions, and what was sent and committed."""

    def __init__(self, max_bytes: int, fail: bool = False, fenced: bool = False) -> None:
        self.max_bytes = max_bytes
        self.fail = fail
        self.fenced = fenced
        self.sent: list[list[tuple[bytes, bytes | None]]] = []
        self.committed: list[int] = []  # how many batches were sent when each commit ended
        self.in_transaction = False
        self.commit_gate = asyncio.Event()
        self.commit_gate.set()

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(2, self.max_bytes, 0, is_transactional=True)

    async def begin_transaction(self) -> None:
        assert not self.in_transaction, "a transaction began before the last one ended"
        self.in_transaction = True

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        assert self.in_transaction, "a batch sent outside a transaction"
        records = DefaultRecordBatch(bytearray(batch._build()))
        self.sent.append([(bytes(r.key), r.value and bytes(r.value)) for r in records])
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail:
            done.set_exception(KafkaError("MessageSizeTooLargeError"))
        else:
            done.set_result(SimpleNamespace(offset=len(self.sent) * 100))
        return done

    async def commit_transaction(self) -> None:
        await self.commit_gate.wait()
        self.in_transaction = False
        if self.fenced:
            raise ProducerFenced()
        if self.fail:
            raise KafkaError("MessageSizeTooLargeError")
        self.committed.append(len(self.sent))


def group(name: bytes, records: int, value_bytes: int) -> list[tuple[bytes, bytes | None]]:
    return [(name + bytes([n]), b"v" * value_bytes) for n in range(records)]


def test_a_group_of_records_never_spans_two_record_batches() -> None:
    producer = BatchProducer(max_bytes=1000)
    groups = [group(b"a", 3, 150), group(b"b", 3, 150), group(b"c", 1, 10), group(b"d", 5, 100)]

    batches = list(record_batches(cast(Any, producer), groups, 1000))

    contents = [
        [bytes(r.key) for r in DefaultRecordBatch(bytearray(batch._build()))] for batch in batches
    ]
    keys = [[key for key, _ in g] for g in groups]
    # Whole groups only, in order: a and b do not fit one batch together, nor b, c and d.
    assert contents == [keys[0], keys[1] + keys[2], keys[3]]


def test_a_group_too_large_for_any_record_batch_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ChangelogFailure, match="does not fit"):
        list(record_batches(cast(Any, BatchProducer(1000)), [group(b"a", 10, 200)], 1000))


@dataclass
class Booking:
    """A changelog writer on fake producers, what it booked and the failures it said."""

    changelog: ChangelogWriter
    booked: list[tuple[int, int]]  # (partition, offset)
    failures: list[ChangelogFailure]


def booking(producers: dict[int, BatchProducer]) -> Booking:
    booked: list[tuple[int, int]] = []
    failures: list[ChangelogFailure] = []
    changelog = ChangelogWriter(
        "t-changelog",
        producers.__getitem__,
        lambda tp, offset: booked.append((tp.partition, offset)),
        4096,
        failures.append,
    )
    return Booking(changelog, booked, failures)


async def test_a_record_batch_kafka_refuses_fails_every_later_wait_and_books_nothing() -> None:
    producer = BatchProducer(max_bytes=4096, fail=True)
    made = booking({0: producer})
    made.changelog.add(0, [group(b"a", 2, 10)])

    with pytest.raises(ChangelogFailure, match="did not commit"):
        await made.changelog.acknowledged()
    made.changelog.add(0, [group(b"b", 1, 10)])
    with pytest.raises(ChangelogFailure):
        await made.changelog.acknowledged()  # never again: the worker must stop

    assert len(made.failures) == 1
    assert made.booked == []  # faust's recovery offset never moves past a lost batch
    assert len(producer.sent) == 1  # nothing more is produced after the failure


async def test_committed_transactions_book_their_last_offsets() -> None:
    producers = {0: BatchProducer(max_bytes=4096), 1: BatchProducer(max_bytes=4096)}
    made = booking(producers)
    made.changelog.add(0, [group(b"a", 2, 10)])
    made.changelog.add(1, [group(b"b", 3, 10)])

    await made.changelog.acknowledged()

    # Base offset + the batch's last record, once each partition's transaction committed.
    assert sorted(made.booked) == [(0, 101), (1, 102)]
    assert [p.committed for p in producers.values()] == [[1], [1]]


async def test_a_fenced_producer_fails_the_write_and_says_another_worker_owns_the_partition() -> (
    None
):
    made = booking({3: BatchProducer(max_bytes=4096, fenced=True)})
    made.changelog.add(3, [group(b"a", 2, 10)])

    with pytest.raises(ChangelogFailure, match="partition 3 is another worker's now"):
        await made.changelog.acknowledged()
    assert len(made.failures) == 1
    assert made.booked == []  # the aborted transaction's records are never recovered from


async def test_a_partition_waits_for_its_last_commit_and_then_sends_what_came_meanwhile() -> None:
    producers = {0: BatchProducer(max_bytes=4096), 1: BatchProducer(max_bytes=4096)}
    made = booking(producers)
    changelog = made.changelog
    producers[0].commit_gate.clear()  # partition 0's first commit is slow
    changelog.add(0, [group(b"a", 1, 10)])
    changelog.add(1, [group(b"b", 1, 10)])
    await asyncio.wait_for(changelog.acknowledged([1]), 1)
    changelog.add(0, [group(b"c", 1, 10)])
    changelog.add(1, [group(b"d", 1, 10)])
    await asyncio.wait_for(changelog.acknowledged([1]), 1)

    # Partition 1 goes on; partition 0's second write waits for its first commit.
    assert [len(p.sent) for p in producers.values()] == [1, 2]
    assert made.booked == [(1, 100), (1, 200)]

    producers[0].commit_gate.set()
    await asyncio.wait_for(changelog.acknowledged(), 1)
    assert producers[0].sent == [group(b"a", 1, 10), group(b"c", 1, 10)]
    assert producers[0].committed == [1, 2]  # one transaction each, in order
    assert sorted(made.booked) == [(0, 100), (0, 200), (1, 100), (1, 200)]

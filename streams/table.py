"""The worker's state table: faust's `sku-state` table, read and written one partition at a
time, straight on the partition's RocksDB database, its changelog produced in batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rocksdict import WriteBatch

from availability.layout import Record

from .changelog import ChangelogWriter
from .transport import partition_database


class PartitionedTable:
    """faust keeps the table: its RocksDB databases (one per partition), its changelog
    topic, recovery and standbys. What goes around faust is the per-record path:

    - reads and writes name their partition (`in_partition`), where faust's table finds it
      in the "current event" of an agent's stream, which the batch delivery has none of;
    - a SKU's records of one write (its head and changed chunks, availability/layout.py)
      are a group: the groups written within `in_partition` go to RocksDB as one write
      batch when it ends (one write-ahead-log append, not one a key), and to
      `ChangelogWriter` group by group, each kept whole in one Kafka record batch
      (streams/changelog.py), rather than faust's changelog future per write;
    - a partition's records come from that partition's own database: faust's `items()`
      scans every partition's database, and a rebuild of P partitions then read the whole
      table P times over (43% of a worker's time while it republished 125,000 SKUs).

    faust offers no public per-partition read or write."""

    def __init__(self, table: Any, changelog: ChangelogWriter) -> None:
        self._store = table.data  # faust's RocksDB store
        self._changelog = changelog
        self._partition: int | None = None
        self._db: Any = None
        # This partition's writes, not yet in RocksDB (a None value deletes the key).
        self._written: dict[bytes, bytes | None] = {}
        self._groups: list[Sequence[Record]] = []

    @contextmanager
    def in_partition(self, partition: int) -> Iterator[None]:
        """Reads and writes within go to `partition`'s database and changelog partition."""
        self._partition, self._db = partition, partition_database(self._store, partition)
        try:
            yield
            if self._written:  # all of it or, if the block raised, none of it
                batch = WriteBatch(raw_mode=True)
                for key, value in self._written.items():
                    if value is None:
                        batch.delete(key)
                    else:
                        batch.put(key, value)
                self._db.write(batch)
                self._changelog.add(partition, self._groups)
        finally:
            self._partition, self._db, self._written, self._groups = None, None, {}, []

    def get(self, key: bytes) -> bytes | None:
        if key in self._written:
            return self._written[key]
        value: bytes | None = self._db.get(key)
        return value

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The current partition's records under `prefix`, in key order, this batch's
        writes included."""
        return self._scan(self._db, prefix, self._written)

    def write(self, records: Sequence[Record]) -> None:
        """One SKU's records of one write: stored together or not at all."""
        assert self._partition is not None, "a table write outside in_partition"
        self._written.update(records)
        self._groups.append(records)

    def reader(self, partition: int) -> PartitionReader:
        """The partition's records as stored, between batches (for a takeover)."""
        return PartitionReader(partition_database(self._store, partition))

    def partition_items(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The partition's records under `prefix` in key order, this batch's writes included
        when it is the current partition (a rules change sweeps the partition after the
        batch's events were applied)."""
        written = self._written if partition == self._partition else {}
        return self._scan(partition_database(self._store, partition), prefix, written)

    @staticmethod
    def _scan(
        db: Any, prefix: bytes, written: dict[bytes, bytes | None]
    ) -> Iterator[tuple[bytes, bytes]]:
        pending = sorted((k, v) for k, v in written.items() if k.startswith(prefix))
        for key, value in _merged(_stored(db, prefix), pending):
            if value is not None:
                yield key, value


class PartitionReader:
    def __init__(self, db: Any) -> None:
        self._db = db

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return _stored(self._db, prefix)


def _stored(db: Any, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    for key, value in db.items(from_key=prefix):
        if not key.startswith(prefix):
            return
        yield key, value


def _merged(
    stored: Iterator[tuple[bytes, bytes]], pending: list[tuple[bytes, bytes | None]]
) -> Iterator[tuple[bytes, bytes | None]]:
    """Two key-ordered runs as one; on equal keys the pending write wins."""
    later = iter(pending)
    upcoming = next(later, None)
    for key, value in stored:
        while upcoming is not None and upcoming[0] < key:
            yield upcoming
            upcoming = next(later, None)
        if upcoming is not None and upcoming[0] == key:
            yield upcoming
            upcoming = next(later, None)
        else:
            yield key, value
    while upcoming is not None:
        yield upcoming
        upcoming = next(later, None)

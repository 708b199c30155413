"""The worker's state table: faust's `sku-state` table, read and written one partition at a
time, straight on the partition's RocksDB database, its changelog produced in batches."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rocksdict import WriteBatch

from .changelog import ChangelogWriter


class PartitionedTable:
    """faust keeps the table: its RocksDB databases (one per partition), its changelog
    topic, recovery and standbys. What goes around faust is the per-record path:

    - reads and writes name their partition (`in_partition`), where faust's table finds it
      in the "current event" of an agent's stream, which the batch delivery has none of;
    - the writes made within `in_partition` go to RocksDB as one write batch when it ends
      (one write-ahead-log append, not one a key), and the newest of each key to
      `ChangelogWriter`, rather than faust's changelog future per write
      (streams/changelog.py);
    - a partition's records come from that partition's own database: faust's `items()`
      scans every partition's database, and a rebuild of P partitions then read the whole
      table P times over (43% of a worker's time while it republished 125,000 SKUs).

    faust offers no public per-partition read or write."""

    def __init__(self, table: Any, changelog: ChangelogWriter) -> None:
        self._store = table.data  # faust's RocksDB store
        self._changelog = changelog
        self._partition: int | None = None
        self._db: Any = None
        self._written: dict[bytes, bytes] = {}  # this partition's writes, not yet in RocksDB

    @contextmanager
    def in_partition(self, partition: int) -> Iterator[None]:
        """Reads and writes within go to `partition`'s database and changelog partition."""
        self._partition, self._db = partition, self._store._db_for_partition(partition)
        try:
            yield
            if self._written:  # all of it or, if the block raised, none of it
                batch = WriteBatch(raw_mode=True)
                for key, value in self._written.items():
                    batch.put(key, value)
                self._db.write(batch)
                self._changelog.add(partition, self._written.items())
        finally:
            self._partition, self._db, self._written = None, None, {}

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._written.get(key)
        return value if value is not None else self._db.get(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        assert self._partition is not None, "a table write outside in_partition"
        self._written[key] = value

    def partition_items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Every record of the partition, this batch's writes included (a rules change
        sweeps the partition after the batch's events were applied)."""
        items: Iterator[tuple[bytes, bytes]] = self._store._visible_items(
            self._store._db_for_partition(partition)
        )
        if partition != self._partition or not self._written:
            return items
        return self._with_written(items, dict(self._written))

    @staticmethod
    def _with_written(
        items: Iterator[tuple[bytes, bytes]], written: dict[bytes, bytes]
    ) -> Iterator[tuple[bytes, bytes]]:
        for key, value in items:
            yield key, written.pop(key, value)
        yield from written.items()

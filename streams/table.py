"""The worker's state table: faust's `sku-state` table, read one partition at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class PartitionedTable:
    """Reads and writes go through faust's table (so every write reaches its changelog);
    a partition's records come from that partition's own RocksDB database. faust's
    `items()` scans every partition's database, and a rebuild of P partitions then read the
    whole table P times over, hashing every key to keep one partition's (43% of a worker's
    time while it republished 125,000 SKUs). faust offers no public per-partition read."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._table.get(key)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._table[key] = value

    def partition_items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        store = self._table.data  # faust's RocksDB store: one database per partition
        items: Iterator[tuple[bytes, bytes]] = store._visible_items(
            store._db_for_partition(partition)
        )
        return items

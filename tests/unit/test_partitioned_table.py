"""The worker's table on real RocksDB databases (one per partition, as faust keeps them): a
batch's writes are read back within the batch, land in one write batch when it ends, and
go to the changelog once each; a batch that raises writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rocksdict import Options, Rdict

from streams.changelog import ChangelogWriter
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


def no_producer() -> Any:
    raise AssertionError("nothing is produced in these tests")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RocksStore]:
    opened = RocksStore(tmp_path)
    yield opened
    opened.close()


def waiting(changelog: ChangelogWriter) -> dict[int, list[tuple[bytes, bytes]]]:
    return {p: list(records) for p, records in changelog._waiting.items()}


def test_a_batch_reads_its_own_writes_and_writes_them_once_it_ends(store: RocksStore) -> None:
    changelog = ChangelogWriter("t-changelog", no_producer, lambda tp, offset: None)
    table = PartitionedTable(FaustTable(store), changelog)
    store._db_for_partition(1)[b"old"] = b"v0"
    store._db_for_partition(1)[b"kept"] = b"k0"

    with table.in_partition(1):
        table[b"old"] = b"v1"
        table[b"new"] = b"n1"
        table[b"old"] = b"v2"
        assert table.get(b"old") == b"v2"
        assert table.get(b"kept") == b"k0"
        assert dict(table.partition_items(1)) == {b"old": b"v2", b"kept": b"k0", b"new": b"n1"}
        assert store._db_for_partition(1).get(b"old") == b"v0"  # not before the batch ends

    assert dict(table.partition_items(1)) == {b"old": b"v2", b"kept": b"k0", b"new": b"n1"}
    assert waiting(changelog) == {1: [(b"old", b"v2"), (b"new", b"n1")]}


def test_a_batch_that_raises_writes_nothing_anywhere(store: RocksStore) -> None:
    changelog = ChangelogWriter("t-changelog", no_producer, lambda tp, offset: None)
    table = PartitionedTable(FaustTable(store), changelog)

    def a_batch_with_a_bug() -> None:
        with table.in_partition(0):
            table[b"a"] = b"1"
            raise RuntimeError("a bug in the middle of a batch")

    with pytest.raises(RuntimeError):
        a_batch_with_a_bug()

    assert dict(table.partition_items(0)) == {}
    assert waiting(changelog) == {}
    with table.in_partition(0):
        assert table.get(b"a") is None


def test_another_partition_does_not_see_the_batch(store: RocksStore) -> None:
    changelog = ChangelogWriter("t-changelog", no_producer, lambda tp, offset: None)
    table = PartitionedTable(FaustTable(store), changelog)

    with table.in_partition(2):
        table[b"x"] = b"1"
        assert dict(table.partition_items(3)) == {}

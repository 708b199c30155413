"""An in-memory, sorted stand-in for the worker's state table (streams.ports.StateTable),
and a check that a state in memory is what a table holds for it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import msgspec

from availability.layout import (
    CHUNK,
    HEAD,
    Record,
    chunk_key,
    chunk_prefix,
    encode_head,
    head_key,
)
from availability.state import SkuState
from availability.topics import partition_for


def sku_of_key(key: bytes) -> str | None:
    """The SKU a head or chunk key belongs to; None for a per-partition record."""
    if key.startswith(HEAD):
        return key[len(HEAD) :].decode()
    if key.startswith(CHUNK):
        return key[len(CHUNK) :].split(b"\x00", 1)[0].decode()
    return None


class MemoryTable:
    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.records: dict[bytes, bytes] = {}
        self.groups: list[list[Record]] = []  # every write, in order

    def get(self, key: bytes) -> bytes | None:
        return self.records.get(key)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted((k, v) for k, v in self.records.items() if k.startswith(prefix)))

    def write(self, records: Sequence[Record]) -> None:
        for key, value in records:
            if value is None:
                self.records.pop(key, None)
            else:
                self.records[key] = value
        self.groups.append(list(records))

    def partition_items(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self.scan(prefix):
            sku = sku_of_key(key)
            if sku is None or partition_for(sku.encode(), self.partitions) == partition:
                yield key, value


_encoder = msgspec.msgpack.Encoder()


def assert_stored_as(state: SkuState, table: MemoryTable) -> None:
    """The table holds exactly `state`'s records: its head, and each sealed chunk as it is
    in memory (nothing more, nothing less)."""
    assert table.get(head_key(state.sku)) == encode_head(state), state.sku
    stored = dict(table.scan(chunk_prefix(state.sku)))
    expected = {
        chunk_key(state.sku, number): _encoder.encode(chunk.items)
        for number, chunk in state.book.sealed.items()
    }
    assert stored == expected, state.sku


def state_content(state: SkuState) -> tuple[object, ...]:
    """Everything a state knows, in comparable form (effects in time order)."""
    return (
        state.sku,
        state.version,
        state.updated_at,
        state.newest_at,
        state.compacted_at,
        state.held_anywhere,
        dict(sorted(state.positions.items())),
        dict(sorted(state.seen.items())),
        {loc: dict(sorted(docs.items())) for loc, docs in sorted(state.orders.items())},
        {loc: dict(sorted(docs.items())) for loc, docs in sorted(state.transfers.items())},
        {
            loc: sorted((e.at, e.delta) for e in effects)
            for loc, effects in sorted(state.effects.items())
            if effects
        },
        dict(sorted(state.holds.items())),
    )


def same_state(read: SkuState, expected: SkuState) -> bool:
    return state_content(read) == state_content(expected)

"""What the batch processor needs from its surroundings, as Protocols: a faust table (or a
dict in unit tests) and a dead-letter sink."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from availability.layout import Record


class StateTable(Protocol):
    """A sorted, partition-local key/value table of records (faust's table in production),
    read and written within one partition at a time."""

    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes) -> Iterable[tuple[bytes, bytes]]:
        """The current partition's records under `prefix`, in key order."""
        ...

    def write(self, records: Sequence[Record]) -> None:
        """One SKU's records of one write (a None value deletes): stored whole or not at all."""
        ...

    def partition_items(self, partition: int, prefix: bytes) -> Iterable[tuple[bytes, bytes]]:
        """A partition's records under `prefix`, in key order."""
        ...


class DeadLetters(Protocol):
    def send(
        self,
        raw: bytes | None,
        key: bytes | None,
        reason: str,
        topic: str,
        partition: int,
        offset: int,
    ) -> None:
        """Queue the original bytes with the reason; durable before offsets are committed."""
        ...

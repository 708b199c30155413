"""What the batch processor needs from its surroundings, as Protocols: a faust table (or a
dict in unit tests) and a dead-letter sink."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class StateTable(Protocol):
    """A partition-local key/value table of encoded records (faust's Table in production)."""

    def get(self, key: bytes) -> bytes | None: ...

    def __setitem__(self, key: bytes, value: bytes) -> None: ...

    def partition_items(self, partition: int) -> Iterable[tuple[bytes, bytes]]:
        """Every record of one partition, including the ones that are not SKUs."""
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

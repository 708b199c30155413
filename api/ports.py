"""What the routes need from a mode, as Protocols: the embedded engine implements them now,
the Redis read model and the Kafka ingest implement them in the streaming mode, and the
routes never change between the two."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeAlias

from msgspec import Raw

from availability import Availability, Event, Positions, Rules
from availability.batch import BatchResult
from availability.feeds import FeedPage, SnapshotPage
from availability.holds import HoldRecord, HoldRequest

# An answer as a value, or as the same JSON already encoded: the streaming mode's Redis holds
# ready answers, and sending their bytes as they are saves a decode and an encode per read.
AvailabilityAnswer: TypeAlias = Availability | Raw
PositionsAnswer: TypeAlias = Positions | Raw


class ReadModel(Protocol):
    async def availability(
        self, sku: str, channel: str, location: str | None
    ) -> AvailabilityAnswer: ...

    async def availability_batch(
        self, skus: Sequence[str], channel: str, location: str | None
    ) -> Sequence[AvailabilityAnswer]:
        """One answer per SKU, in the order asked."""
        ...

    async def positions(self, sku: str) -> PositionsAnswer: ...


class Ingest(Protocol):
    async def submit(self, events: Sequence[Event], raw: Sequence[bytes]) -> BatchResult | None:
        """Make the events durable (and, embedded, apply them) before returning.

        Returns the outcome of applying them, or None when they were only enqueued."""
        ...


class RulesAdmin(Protocol):
    async def rules(self) -> Rules: ...

    async def replace_rules(self, rules: Rules) -> Rules: ...


class Health(Protocol):
    async def readiness(self) -> dict[str, bool]: ...

    def oversold_positions(self) -> int: ...


class Feeds(Protocol):
    async def feed(self, channel: str, cursor: str | None, limit: int, wait_ms: int) -> FeedPage:
        """The items after `cursor`; when there are none, wait up to `wait_ms` for one."""
        ...

    async def feed_snapshot(
        self, channel: str, page_token: str | None, limit: int
    ) -> SnapshotPage: ...


class Holds(Protocol):
    """SPEC 6. Each answers with the hold's record; UnknownHold when no live hold has the id,
    HoldsUnavailable when the decision did not come in time (and nothing is held)."""

    async def place_hold(self, request: HoldRequest) -> HoldRecord:
        """A repeated hold_id returns the first record, holding nothing more."""
        ...

    async def release_hold(self, hold_id: str) -> HoldRecord: ...

    async def commit_hold(self, hold_id: str, order_id: str | None) -> HoldRecord:
        """Committing a committed hold again returns its record."""
        ...


class Backend(ReadModel, Ingest, RulesAdmin, Health, Protocol):
    """Everything one mode provides; a mode may also be split over several objects."""

"""What the routes need from a mode, as Protocols: the embedded engine implements them now,
the Redis read model and the Kafka ingest implement them in the streaming mode, and the
routes never change between the two."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypeAlias

from msgspec import Raw

from availability import Availability, Event, Positions, Rules
from availability.batch import BatchResult
from availability.feeds import FeedPage, SnapshotPage
from availability.holds import HoldRecord, HoldRequest
from availability.snapshot_reports import SnapshotReport
from availability.views import LocationsAsk

# An answer as a value, or as the same JSON already encoded: the streaming mode's Redis holds
# ready answers, and sending their bytes as they are saves a decode and an encode per read.
AvailabilityAnswer: TypeAlias = Availability | Raw
PositionsAnswer: TypeAlias = Positions | Raw


class ReadModel(Protocol):
    async def availability(
        self, sku: str, channel: str, location: str | None, ask: LocationsAsk | None = None
    ) -> AvailabilityAnswer: ...

    async def availability_batch(
        self,
        skus: Sequence[str],
        channel: str,
        location: str | None,
        ask: LocationsAsk | None = None,
    ) -> Sequence[AvailabilityAnswer]:
        """One answer per SKU, in the order asked; with `ask` (and no location), each with
        that page of its breakdown (`views.with_locations`)."""
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


class Snapshots(Protocol):
    """What ERP snapshot imports need beyond the ingest: their reports, kept across
    restarts (one a request, as JSON), and the zeroing of a `full` snapshot's unlisted
    positions (availability/snapshots.py)."""

    async def add_snapshot_report(self, snapshot_id: str, report: bytes) -> None: ...

    async def snapshot_reports(self, snapshot_id: str) -> list[bytes]:
        """Every stored report of the snapshot, oldest first; none for an unknown id."""
        ...

    async def zero_unlisted(
        self, snapshot_id: str, locations: Mapping[str, int]
    ) -> SnapshotReport | None:
        """Count as 0 the positions at `locations` (location -> counted_at, µs) that the
        snapshot did not list, once its rows are taken: the report of those counts, or
        None when the writers of the partitions count them after the call (and report
        what they did themselves)."""
        ...


class Backend(ReadModel, Ingest, RulesAdmin, Health, Protocol):
    """Everything one mode provides; a mode may also be split over several objects."""

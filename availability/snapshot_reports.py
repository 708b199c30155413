"""What an ERP snapshot's import did: the API's report of the rows it read and took, and
the reports of what applying them did (embedded: the same process, before the answer;
streaming: each partition's writer, batch by batch, once its changelog is durable). A
snapshot's reports, however many, are served merged into one.

A count belongs to a snapshot by its `source` (availability/snapshots.py `snapshot_of`).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final

import msgspec
from msgspec import Struct

from .batch import BatchResult
from .events import Event
from .snapshots import RowRefusal, SnapshotFormat, snapshot_of
from .timeutil import format_micros, to_micros

LISTED_REFUSALS: Final = 1000  # a report lists the first ones, and counts them all
LISTED_DRIFTS: Final = 20


class PositionDrift(Struct, frozen=True):
    sku: str
    location: str
    drift: int


class LocationDrift(Struct, frozen=True):
    location: str
    counts: int  # counts applied at the location
    drift: int  # their drifts summed: the books minus the shelf
    absolute_drift: int  # their drifts' absolute values summed


class DriftReport(Struct, frozen=True):
    absolute_drift: int
    by_location: list[LocationDrift]
    largest: list[PositionDrift]  # the positions with the largest absolute drift


class SnapshotReport(Struct, frozen=True):
    """What an import of a snapshot did, or (rows 0, format None) what applying some of
    its counts did. `outcomes`, `drift` and `zeroed` are None until counts were applied."""

    snapshot_id: str
    format: SnapshotFormat | None
    rows: int  # the rows read, blank lines not counted
    accepted: int  # durable as count events
    refused: int
    refusals: list[RowRefusal]  # the first LISTED_REFUSALS, in line order
    outcomes: dict[str, int] | None  # applied, duplicate, stale, dead_lettered
    drift: DriftReport | None
    # Each location the rows taken name, with its latest counted_at: what a `full` scope
    # zeroes the unlisted positions of, and as of when.
    locations: dict[str, str] = {}
    # The unlisted positions a `full` scope counted as 0.
    zeroed: int | None = None


class ReportTally:
    """A report's figures, gathered count by count, or report by report (merged)."""

    def __init__(self, snapshot_id: str, fmt: SnapshotFormat | None) -> None:
        self.snapshot_id = snapshot_id
        self.fmt = fmt
        self.rows = 0
        self.accepted = 0
        self.refused = 0
        self.refusals: list[RowRefusal] = []
        self.outcomes: Counter[str] | None = None
        self.zeroed: int | None = None
        self.by_location: dict[str, list[int]] = {}  # location -> [counts, drift, |drift|]
        self.locations: dict[str, int] = {}  # location -> its latest counted_at (µs)
        self.largest: list[tuple[int, str, str, int]] = []  # a min-heap by |drift|

    def refuse(self, refusal: RowRefusal) -> None:
        self.rows += 1
        self.refused += 1
        if len(self.refusals) < LISTED_REFUSALS:
            self.refusals.append(refusal)

    def taken(self, events: Sequence[Event]) -> None:
        """Rows durable as count events."""
        self.rows += len(events)
        self.accepted += len(events)
        for event in events:
            self._seen(event.location, event.occurred_us)

    def applied(self, event: Event, outcome: str, drift: int | None, unlisted: bool) -> None:
        """What applying one of the snapshot's counts did."""
        if self.outcomes is None:
            self.outcomes = Counter()
        self.outcomes[outcome] += 1
        if unlisted and outcome == "applied":
            self.zeroed = (self.zeroed or 0) + 1
        if drift is not None:
            self._at(event.location, 1, drift, abs(drift))
            self._offer(PositionDrift(event.sku, event.location, drift))

    def absorb(self, report: SnapshotReport) -> None:
        self.fmt = self.fmt or report.format
        self.rows += report.rows
        self.accepted += report.accepted
        self.refused += report.refused
        self.refusals += report.refusals[: LISTED_REFUSALS - len(self.refusals)]
        if report.outcomes is not None:
            if self.outcomes is None:
                self.outcomes = Counter()
            self.outcomes.update(report.outcomes)
        if report.zeroed is not None:
            self.zeroed = (self.zeroed or 0) + report.zeroed
        for location, at in report.locations.items():
            self._seen(location, to_micros(datetime.fromisoformat(at)))
        if report.drift is not None:
            for place in report.drift.by_location:
                self._at(place.location, place.counts, place.drift, place.absolute_drift)
            for position in report.drift.largest:
                self._offer(position)

    def report(self) -> SnapshotReport:
        drift = None
        if self.outcomes is not None:
            drift = DriftReport(
                absolute_drift=sum(figures[2] for figures in self.by_location.values()),
                by_location=[
                    LocationDrift(location, *figures)
                    for location, figures in sorted(self.by_location.items())
                ],
                largest=[
                    PositionDrift(sku, location, units)
                    for _, sku, location, units in sorted(self.largest, reverse=True)
                ],
            )
        return SnapshotReport(
            snapshot_id=self.snapshot_id,
            format=self.fmt,
            rows=self.rows,
            accepted=self.accepted,
            refused=self.refused,
            refusals=self.refusals,
            outcomes=dict(self.outcomes) if self.outcomes is not None else None,
            drift=drift,
            locations={place: format_micros(at) for place, at in sorted(self.locations.items())},
            zeroed=self.zeroed,
        )

    def _seen(self, location: str, at: int) -> None:
        if at > self.locations.get(location, -1):
            self.locations[location] = at

    def _at(self, location: str, counts: int, drift: int, absolute: int) -> None:
        figures = self.by_location.setdefault(location, [0, 0, 0])
        figures[0] += counts
        figures[1] += drift
        figures[2] += absolute

    def _offer(self, position: PositionDrift) -> None:
        entry = (abs(position.drift), position.sku, position.location, position.drift)
        if len(self.largest) < LISTED_DRIFTS:
            heapq.heappush(self.largest, entry)
        elif entry > self.largest[0]:
            heapq.heapreplace(self.largest, entry)


def applied_reports(events: Sequence[Event], result: BatchResult) -> list[SnapshotReport]:
    """What a batch's counts of each snapshot did (none for a batch without any)."""
    tallies: dict[str, ReportTally] = {}
    drifts = {drift.index: drift.units for drift in result.drifts}
    for index, outcome in result.count_outcomes:
        event = events[index]
        found = snapshot_of(event.source)
        if found is None:
            continue
        snapshot_id, unlisted = found
        tally = tallies.get(snapshot_id)
        if tally is None:
            tally = tallies[snapshot_id] = ReportTally(snapshot_id, None)
        tally.applied(event, outcome, drifts.get(index), unlisted)
    return [tally.report() for tally in tallies.values()]


def merged(reports: Sequence[SnapshotReport]) -> SnapshotReport:
    """A snapshot's reports as one: figures summed, refusals in the order sent."""
    tally = ReportTally(reports[0].snapshot_id, None)
    for report in reports:
        tally.absorb(report)
    return tally.report()


def zero_times(report: SnapshotReport) -> dict[str, int]:
    """A report's locations as a `full` scope zeroes them: location -> counted_at (µs)."""
    return {place: to_micros(datetime.fromisoformat(at)) for place, at in report.locations.items()}


report_encoder: Final = msgspec.json.Encoder()
report_decoder: Final = msgspec.json.Decoder(SnapshotReport)


def decoded_reports(stored: Iterable[bytes]) -> list[SnapshotReport]:
    return [report_decoder.decode(item) for item in stored]

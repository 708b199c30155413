"""Importing an ERP snapshot through the mode's ingest: rows read from a spooled copy of the
body, taken as count events in batches, each batch durable before the next is read.

The body is copied to a temporary file first (in memory up to SPOOL_MEMORY_BYTES, on disk
past it), hashed on the way: a snapshot sent without an id gets one made from its content
before its first row is taken, and a client that goes away mid-upload has nothing of its
file applied. Rows are then read one line at a time, so memory stays bounded however many
millions of rows the file holds.
"""

from __future__ import annotations

import hashlib
import heapq
import tempfile
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Final

import msgspec
from msgspec import Struct

from availability import BatchResult, Event
from availability.snapshots import (
    FileCheck,
    RowRefusal,
    SnapshotError,
    SnapshotFormat,
    content_id,
    read_rows,
)
from availability.timeutil import format_micros, to_micros

from .ports import Ingest
from .schemas import MAX_EVENTS

SPOOL_MEMORY_BYTES: Final = 4 * 1024 * 1024
MAX_SNAPSHOT_BYTES: Final = 2 * 1024 * 1024 * 1024  # about 30 million rows
READ_CHUNK_BYTES: Final = 256 * 1024
LISTED_REFUSALS: Final = 1000  # the report lists the first ones, and counts them all
LISTED_DRIFTS: Final = 20


class SnapshotTooLarge(ValueError):
    pass


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
    """What one import of a snapshot did. `outcomes` and `drift` are known when the mode
    applies the rows before answering (embedded); the streaming mode's workers apply them
    after, and its report has neither."""

    snapshot_id: str
    format: SnapshotFormat
    rows: int  # the rows read, blank lines not counted
    accepted: int  # durable as count events
    refused: int
    refusals: list[RowRefusal]  # the first LISTED_REFUSALS, in line order
    outcomes: dict[str, int] | None  # applied, duplicate, stale, dead_lettered
    drift: DriftReport | None
    # Each location the rows taken name, with its latest counted_at: what a `full` scope
    # zeroes the unlisted positions of, and as of when.
    locations: dict[str, str] = {}
    # scope=full: the unlisted positions counted 0 (embedded), or None where the writers
    # of the partitions count them after the answer (streaming); 0 for a partial import.
    zeroed: int | None = 0


@dataclass(frozen=True)
class Spooled:
    file: IO[bytes]
    sha256_hex: str
    size: int


@asynccontextmanager
async def spooled(body: AsyncIterable[bytes]) -> AsyncIterator[Spooled]:
    """The body copied to a temporary file, hashed and checked (FileCheck) on the way;
    raises SnapshotError or SnapshotTooLarge. The file goes when the context ends."""
    digest = hashlib.sha256()
    check = FileCheck()
    size = 0
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as file:
        async for chunk in body:
            size += len(chunk)
            if size > MAX_SNAPSHOT_BYTES:
                raise SnapshotTooLarge(f"a snapshot is at most {MAX_SNAPSHOT_BYTES} bytes")
            check.feed(chunk)
            digest.update(chunk)
            file.write(chunk)
        check.finish()
        if not size:
            raise SnapshotError("the body is empty")
        file.seek(0)
        yield Spooled(file, digest.hexdigest(), size)


def snapshot_id_of(spooled: Spooled, given: str | None) -> str:
    return given if given is not None else content_id(spooled.sha256_hex)


class _Tally:
    """A report's figures, gathered batch by batch, or report by report (merged)."""

    def __init__(self, snapshot_id: str, fmt: SnapshotFormat) -> None:
        self.snapshot_id = snapshot_id
        self.fmt = fmt
        self.rows = 0
        self.accepted = 0
        self.refused = 0
        self.refusals: list[RowRefusal] = []
        self.outcomes: Counter[str] | None = None
        self.by_location: dict[str, list[int]] = {}  # location -> [counts, drift, |drift|]
        self.locations: dict[str, int] = {}  # location -> its latest counted_at (µs)
        self.largest: list[tuple[int, str, str, int]] = []  # a min-heap by |drift|

    def refuse(self, refusal: RowRefusal) -> None:
        self.rows += 1
        self.refused += 1
        if len(self.refusals) < LISTED_REFUSALS:
            self.refusals.append(refusal)

    def taken(self, events: list[Event], result: BatchResult | None) -> None:
        self.accepted += len(events)
        for event in events:
            self._seen(event.location, event.occurred_us)
        if result is None:
            return  # enqueued: the workers apply the counts
        self._outcomes((outcome, count) for (_, outcome), count in result.outcomes.items())
        for drift in result.drifts:
            self._at(drift.location, 1, drift.units, abs(drift.units))
            self._offer(PositionDrift(events[drift.index].sku, drift.location, drift.units))

    def absorb(self, report: SnapshotReport) -> None:
        self.rows += report.rows
        self.accepted += report.accepted
        self.refused += report.refused
        self.refusals += report.refusals[: LISTED_REFUSALS - len(self.refusals)]
        if report.outcomes is not None:
            self._outcomes(report.outcomes.items())
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
        )

    def _seen(self, location: str, at: int) -> None:
        if at > self.locations.get(location, -1):
            self.locations[location] = at

    def _outcomes(self, counts: Iterable[tuple[str, int]]) -> None:
        if self.outcomes is None:
            self.outcomes = Counter()
        for outcome, count in counts:
            self.outcomes[outcome] += count

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


def merged(reports: Sequence[SnapshotReport]) -> SnapshotReport:
    """The reports of several imports of one snapshot (the parts of a file, or the file
    sent again) as one: figures summed, refusals in the order sent."""
    tally = _Tally(reports[0].snapshot_id, reports[0].format)
    zeroed: int | None = 0
    for report in reports:
        tally.absorb(report)
        zeroed = None if zeroed is None or report.zeroed is None else zeroed + report.zeroed
    return msgspec.structs.replace(tally.report(), zeroed=zeroed)


def zero_times(report: SnapshotReport) -> dict[str, int]:
    """A report's locations as a `full` scope zeroes them: location -> counted_at (µs)."""
    return {place: to_micros(datetime.fromisoformat(at)) for place, at in report.locations.items()}


async def import_rows(
    spooled: Spooled,
    fmt: SnapshotFormat,
    snapshot_id: str,
    ingest: Ingest,
    now_us: int,
    line_offset: int = 0,
) -> SnapshotReport:
    """Take every valid row as a count, MAX_EVENTS a batch; raises SnapshotError, before
    any row is taken, when a CSV header lacks the columns. `line_offset` is added to the
    refusals' line numbers: a part of a file names the file's lines."""
    tally = _Tally(snapshot_id, fmt)
    batch: list[Event] = []
    for item in read_rows(_chunks(spooled.file), fmt, snapshot_id, now_us):
        if isinstance(item, RowRefusal):
            tally.refuse(msgspec.structs.replace(item, line=item.line + line_offset))
            continue
        tally.rows += 1
        batch.append(item)
        if len(batch) == MAX_EVENTS:
            await _submit(ingest, batch, tally)
            batch = []
    if batch:
        await _submit(ingest, batch, tally)
    return tally.report()


async def _submit(ingest: Ingest, batch: list[Event], tally: _Tally) -> None:
    raw = [msgspec.json.encode(event) for event in batch]
    tally.taken(batch, await ingest.submit(batch, raw))


def _chunks(file: IO[bytes]) -> Iterator[bytes]:
    while chunk := file.read(READ_CHUNK_BYTES):
        yield chunk

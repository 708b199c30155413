"""ERP stock snapshots: files of absolute counts, one row per SKU and location, read as they
stream in and turned into count events.

A row's event id is made from the snapshot id and the row's position (SKU and location), so
the same snapshot sent again, whole or in part, is deduplicated row by row; a position
listed twice in one snapshot counts once (its first row). A corrected file is a new
snapshot: it needs a new id.

Two formats, rows `sku, location, counted, counted_at`:
- CSV (RFC 4180, UTF-8): a header line naming those four columns, in any order; other
  columns are ignored.
- NDJSON: one JSON object a line with those four fields; other fields are ignored. Its
  values are taken as CSV cells are: 2.0 and "2" are the count 2.
Blank lines are skipped in both. `counted_at` is RFC 3339 with an offset.

Scope `full`: every position at a location the snapshot lists, but that it does not list
itself, is counted as 0 at the location's latest `counted_at`. That zero count has the
event id its row would have had, so a listed position's zero count is a duplicate of its
row and changes nothing: only the unlisted ones are zeroed, with no list of the listed
ones kept anywhere. It runs once every row is taken (in the streaming mode, a
SnapshotEnd marker on each partition of the counts topic, after the rows: the writer of
each partition zeroes its SKUs there).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Final, Literal

import msgspec
from msgspec import Struct

from .decoding import ANY_JSON, decoded
from .events import MAX_COUNTED, Count, Counted, Timestamp, clock_error, split_error
from .ids import DocumentId, LocationId, Sku, is_location, is_sku
from .state import Position
from .timeutil import from_micros

SnapshotFormat = Literal["csv", "ndjson"]
COLUMNS: Final = ("sku", "location", "counted", "counted_at")
# A line longer than this is refused rather than held: four short fields fit in a fraction.
MAX_LINE_BYTES: Final = 64 * 1024


_ROW_SOURCE: Final = "snapshot "
_UNLISTED_SOURCE: Final = "unlisted in snapshot "


def snapshot_source(snapshot_id: str) -> str:
    """The `source` of a snapshot row's count."""
    return f"{_ROW_SOURCE}{snapshot_id}"


def unlisted_source(snapshot_id: str) -> str:
    """The `source` of the zero count of a position a `full` snapshot did not list."""
    return f"{_UNLISTED_SOURCE}{snapshot_id}"


def snapshot_of(source: str | None) -> tuple[str, bool] | None:
    """(snapshot id, whether it is an unlisted position's zero count) of a count's source."""
    if source is None:
        return None
    if source.startswith(_UNLISTED_SOURCE):
        return source[len(_UNLISTED_SOURCE) :], True
    if source.startswith(_ROW_SOURCE):
        return source[len(_ROW_SOURCE) :], False
    return None


class SnapshotRow(Struct, frozen=True, forbid_unknown_fields=False):
    sku: Sku
    location: LocationId
    counted: Counted
    counted_at: Timestamp


class RowRefusal(Struct, frozen=True):
    """Why one row was not taken; `line` counts from 1, the CSV header included."""

    line: int
    field: str
    message: str


class SnapshotError(ValueError):
    """The file as a whole can't be read (a wrong encoding, a CSV header without the
    columns): none of its rows is taken."""


_row_decoder: Final = msgspec.json.Decoder(SnapshotRow)


def row_event_id(snapshot_id: str, sku: str, location: str) -> str:
    digest = hashlib.blake2b(f"{snapshot_id}\n{sku}\n{location}".encode(), digest_size=16)
    return f"snap:{digest.hexdigest()}"


def content_id(sha256_hex: str) -> str:
    """The id of a snapshot sent without one: made from its bytes' SHA-256, so the same
    file gets the same id."""
    return f"sha256:{sha256_hex[:40]}"


class SnapshotEnd(Struct, frozen=True):
    """The end of a `full` snapshot, for the writer of one partition: zero the positions of
    `locations` (location -> counted_at in µs of its zero counts) that it did not list."""

    snapshot_id: str
    locations: dict[str, int]


# The key of a SnapshotEnd record on the counts topic: no SKU starts with a NUL byte.
SNAPSHOT_END_KEY: Final = b"\x00snapshot_end"
snapshot_end_decoder: Final = msgspec.json.Decoder(SnapshotEnd)


def zero_count(snapshot_id: str, sku: str, location: str, at_us: int) -> Count:
    """An unlisted position's count in a `full` snapshot (see the module's doc)."""
    return Count(
        event_id=row_event_id(snapshot_id, sku, location),
        sku=sku,
        location=location,
        occurred_at=from_micros(at_us),
        counted=0,
        source=unlisted_source(snapshot_id),
    )


def unlisted_zero_counts(
    snapshot_id: str, sku: str, positions: Mapping[str, Position], locations: Mapping[str, int]
) -> list[Count]:
    """The zero counts of one SKU's positions at `locations`, but for those whose last
    count is their row of the snapshot: theirs would be duplicates, and need no work."""
    counts = []
    for location, position in positions.items():
        at = locations.get(location)
        if at is None:
            continue
        count = zero_count(snapshot_id, sku, location, at)
        if position.last_count_id != count.event_id:
            counts.append(count)
    return counts


def as_count(snapshot_id: str, row: SnapshotRow) -> Count:
    return Count(
        event_id=row_event_id(snapshot_id, row.sku, row.location),
        sku=row.sku,
        location=row.location,
        occurred_at=row.counted_at,
        counted=row.counted,
        source=snapshot_source(snapshot_id),
    )


def read_rows(
    chunks: Iterable[bytes], fmt: SnapshotFormat, snapshot_id: str, now_us: int
) -> Iterator[Count | RowRefusal]:
    """Each row of a file that passed FileCheck, in order: its count event, or why it was
    refused; a CSV header without the columns raises SnapshotError before the first row.
    Holds one line at a time, however large the file."""
    lines = _lines(chunks)
    rows = _csv_rows(lines) if fmt == "csv" else _ndjson_rows(lines)
    problems: dict[datetime, str | None] = {}  # by counted_at: a snapshot has few
    for line, row in rows:
        if isinstance(row, RowRefusal):
            yield row
            continue
        event = as_count(snapshot_id, row)
        if row.counted_at in problems:
            problem = problems[row.counted_at]
        else:
            problem = problems[row.counted_at] = clock_error(event, now_us)
        yield RowRefusal(line, "counted_at", problem) if problem else event


class FileCheck:
    """What makes a file unreadable as a whole, checked as its bytes go by, before any of
    its rows is taken: an encoding other than UTF-8, or a line too long to be a row."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._line = 1
        self._line_bytes = 0

    def feed(self, chunk: bytes) -> None:
        try:
            self._decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            at_line = self._line + chunk.count(b"\n", 0, max(0, exc.start))
            raise SnapshotError(f"line {at_line}: not UTF-8 ({exc.reason})") from None
        *ended, rest = chunk.split(b"\n")
        for line in ended:
            self._fits(self._line_bytes + len(line))
            self._line += 1
            self._line_bytes = 0
        self._line_bytes += len(rest)
        self._fits(self._line_bytes)

    def finish(self) -> None:
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise SnapshotError(f"line {self._line}: not UTF-8 ({exc.reason})") from None

    def _fits(self, size: int) -> None:
        if size > MAX_LINE_BYTES:
            raise SnapshotError(f"line {self._line}: longer than {MAX_LINE_BYTES} bytes")


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """The text's lines, line ends kept (csv needs them inside quoted fields). The bytes
    passed FileCheck: this decoder meets no error it has not refused already."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    pending = ""
    for chunk in chunks:
        pending += decoder.decode(chunk)
        *complete, pending = pending.split("\n")
        for line in complete:
            yield line + "\n"
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


def _ndjson_rows(lines: Iterable[str]) -> Iterator[tuple[int, SnapshotRow | RowRefusal]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = decoded(_row_decoder, line)
        except msgspec.ValidationError:  # a DecodeError too: first
            yield number, _lax_row(number, line)
        except msgspec.DecodeError as exc:
            yield number, RowRefusal(number, "", f"not JSON: {exc}")
        else:
            yield number, row


def _lax_row(number: int, line: str) -> SnapshotRow | RowRefusal:
    """A JSON row taken as a CSV row's cells are: a whole number written as a float (2.0),
    or a number as a string ("2"), is that number (msgspec's lax conversion), as
    `POST /v1/events` takes 2.0 too; the refusal, if any, names the field."""
    try:
        return msgspec.convert(decoded(ANY_JSON, line), SnapshotRow, strict=False)
    except msgspec.ValidationError as exc:
        field, message = split_error(exc)
        return RowRefusal(number, field, message)


def _csv_rows(lines: Iterable[str]) -> Iterator[tuple[int, SnapshotRow | RowRefusal]]:
    reader = csv.reader(lines, strict=True)
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        raise SnapshotError(f"line 1: the header is not CSV: {exc}") from None
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise SnapshotError(
            f"line 1: the header must name the columns {', '.join(COLUMNS)};"
            f" it lacks {', '.join(missing)}"
        )
    where = {name: header.index(name) for name in COLUMNS}
    at = [where[name] for name in COLUMNS]
    moments = _Moments()
    while True:
        number = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield number, RowRefusal(number, "", f"not a CSV row: {exc}")
            continue
        if not any(cell.strip() for cell in cells):
            continue
        row = _valid_row(cells, at, moments)
        if row is not None:
            yield number, row
            continue
        # Not valid, or not plainly so: msgspec decides, and says what is wrong. A cell
        # the row lacks is a missing field.
        fields = {name: cells[i].strip() for name, i in where.items() if i < len(cells)}
        try:
            yield number, msgspec.convert(fields, SnapshotRow, strict=False)
        except msgspec.ValidationError as exc:
            field, message = split_error(exc)
            yield number, RowRefusal(number, field, message)


class _Moments:
    """counted_at texts as datetimes: a snapshot has few distinct ones (often one a
    location), and parsing each row's again was a fifth of a row's cost."""

    def __init__(self, most: int = 4096) -> None:
        self._known: dict[str, datetime] = {}
        self._most = most

    def parse(self, text: str) -> datetime | None:
        moment = self._known.get(text)
        if moment is None:
            try:
                moment = msgspec.convert(text, Timestamp)
            except msgspec.ValidationError:
                return None
            if len(self._known) < self._most:
                self._known[text] = moment
        return moment


def _valid_row(cells: list[str], at: list[int], moments: _Moments) -> SnapshotRow | None:
    """The row, when every cell is plainly valid (the common case, about twice as fast as
    msgspec.convert from a dict); None for msgspec to decide and explain."""
    if len(cells) <= max(at):
        return None
    sku, location = cells[at[0]].strip(), cells[at[1]].strip()
    counted, counted_at = cells[at[2]].strip(), cells[at[3]].strip()
    if not (is_sku(sku) and is_location(location)):
        return None
    if not (counted.isascii() and counted.isdigit() and len(counted) <= 10):
        return None
    if counted[0] == "0" and counted != "0":
        return None  # msgspec refuses leading zeros
    units = int(counted)
    moment = moments.parse(counted_at)
    if units > MAX_COUNTED or moment is None:
        return None
    return SnapshotRow(sku, location, units, moment)


def is_snapshot_id(value: str) -> bool:
    try:
        msgspec.convert(value, DocumentId)
    except msgspec.ValidationError:
        return False
    return True

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
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO, Final

import msgspec

from availability import Event
from availability.snapshot_reports import ReportTally, SnapshotReport, applied_reports
from availability.snapshots import (
    FileCheck,
    RowRefusal,
    SnapshotError,
    SnapshotFormat,
    content_id,
    read_rows,
)

from .ports import Ingest
from .schemas import MAX_EVENTS

SPOOL_MEMORY_BYTES: Final = 4 * 1024 * 1024
MAX_SNAPSHOT_BYTES: Final = 2 * 1024 * 1024 * 1024  # about 30 million rows
READ_CHUNK_BYTES: Final = 256 * 1024


class SnapshotTooLarge(ValueError):
    pass


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
    tally = ReportTally(snapshot_id, fmt)
    batch: list[Event] = []
    for item in read_rows(_chunks(spooled.file), fmt, snapshot_id, now_us):
        if isinstance(item, RowRefusal):
            tally.refuse(msgspec.structs.replace(item, line=item.line + line_offset))
            continue
        batch.append(item)
        if len(batch) == MAX_EVENTS:
            await _submit(ingest, batch, tally)
            batch = []
    if batch:
        await _submit(ingest, batch, tally)
    return tally.report()


async def _submit(ingest: Ingest, batch: list[Event], tally: ReportTally) -> None:
    result = await ingest.submit(batch, [msgspec.json.encode(event) for event in batch])
    tally.taken(batch)
    if result is not None:  # applied before the answer (embedded)
        for applied in applied_reports(batch, result):
            tally.absorb(applied)


def _chunks(file: IO[bytes]) -> Iterator[bytes]:
    while chunk := file.read(READ_CHUNK_BYTES):
        yield chunk

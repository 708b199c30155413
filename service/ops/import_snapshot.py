"""`availability import-snapshot FILE`: send an ERP snapshot to a running server (either
mode) in parts, with a progress line, and print the whole file's report.

The file is read twice, never held: a first pass checks it as the server would (UTF-8, no
line over 64 KiB), counts its rows and makes its id from its SHA-256 unless one is given;
the second sends it in parts of --rows-per-request rows under that one id, two requests at
a time, the last alone once the others are answered. A row's event id
is made from the snapshot id and its position, so an import cut short (the server
restarted, the network gone) is finished by running the same command again: the rows
already taken count once. Exit status: 0 when every row was taken, 3 when some were refused
(the report lists them), 1 when the import did not finish.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final
from urllib.parse import urlencode

import msgspec

from availability.snapshot_reports import SnapshotReport, merged
from availability.snapshots import FileCheck, SnapshotError, SnapshotFormat, content_id

from .progress import Progress, fail

COMMAND: Final = "import-snapshot"
DEFAULT_ROWS_PER_REQUEST: Final = 20_000
REQUESTS_IN_FLIGHT: Final = 2
REQUEST_TIMEOUT_S: Final = 600.0
MEDIA_TYPES: Final[dict[SnapshotFormat, str]] = {
    "csv": "text/csv",
    "ndjson": "application/x-ndjson",
}


@dataclass(frozen=True)
class ImportOptions:
    path: Path
    url: str
    key: str | None
    snapshot_id: str | None
    fmt: SnapshotFormat | None
    rows_per_request: int | None = None  # DEFAULT_ROWS_PER_REQUEST
    scope: str = "partial"  # "full": the last part asks for it, once every row is taken


class ImportFailed(Exception):
    pass


def import_snapshot(options: ImportOptions) -> int:
    fmt = options.fmt or ("ndjson" if options.path.suffix in {".ndjson", ".jsonl"} else "csv")
    try:
        rows, sha256_hex = _checked(options.path)
    except (OSError, SnapshotError) as exc:
        fail(COMMAND, f"{options.path}: {exc}; nothing was sent")
        return 1
    if fmt == "csv":
        rows = max(0, rows - 1)  # the header
    snapshot_id = options.snapshot_id or content_id(sha256_hex)
    progress = Progress(COMMAND)
    progress.say(f"snapshot {snapshot_id}: {rows:,} rows to send to {options.url}")
    done: dict[int, SnapshotReport] = {}  # part number -> its report

    def answered(number: int, report: SnapshotReport) -> None:
        done[number] = report
        sent = sum(p.rows for p in done.values())
        progress.tick(f"{100 * sent // max(rows, 1)}% ({sent:,} of {rows:,} rows)")

    try:
        _send_parts(options, fmt, snapshot_id, answered)
    except (OSError, ImportFailed) as exc:
        taken = sum(p.accepted for p in done.values())
        fail(
            COMMAND,
            f"{exc}; {taken:,} rows were taken. Run the same command again to finish: rows"
            " already taken count once",
        )
        return 1
    if not done:
        fail(COMMAND, f"{options.path} holds no row; nothing was sent")
        return 1
    total = merged([done[number] for number in sorted(done)])
    progress.say(f"done: {total.accepted:,} rows taken, {total.refused:,} refused")
    print(msgspec.json.format(msgspec.json.encode(total), indent=2).decode())
    return 3 if total.refused else 0


def _send_parts(
    options: ImportOptions,
    fmt: SnapshotFormat,
    snapshot_id: str,
    answered: Callable[[int, SnapshotReport], None],
) -> None:
    """Send the parts, REQUESTS_IN_FLIGHT at a time (the server parses one while Kafka
    acknowledges another's rows), and the last one alone once all others are answered: a
    `full` scope, which it asks for, zeroes what none of them listed."""
    per_request = options.rows_per_request or DEFAULT_ROWS_PER_REQUEST
    with ThreadPoolExecutor(REQUESTS_IN_FLIGHT) as pool, options.path.open("rb") as file:
        pending: dict[Future[SnapshotReport], int] = {}

        def collect(leaving: int) -> None:
            while len(pending) > leaving:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    answered(pending.pop(future), future.result())

        for number, (line_offset, part, last) in enumerate(_parts(file, fmt, per_request)):
            if last:
                collect(leaving=0)
                answered(number, _post(options, fmt, snapshot_id, options.scope, line_offset, part))
            else:
                collect(leaving=REQUESTS_IN_FLIGHT - 1)
                post = pool.submit(_post, options, fmt, snapshot_id, "partial", line_offset, part)
                pending[post] = number


def _checked(path: Path) -> tuple[int, str]:
    """The file's line count (a guide for the progress line) and SHA-256, once it passed
    the server's file check."""
    check = FileCheck()
    digest = hashlib.sha256()
    lines = 0
    with path.open("rb") as file:
        while chunk := file.read(1024 * 1024):
            check.feed(chunk)
            digest.update(chunk)
            lines += chunk.count(b"\n")
    check.finish()
    return lines, digest.hexdigest()


def _parts(file: BinaryIO, fmt: SnapshotFormat, rows: int) -> Iterator[tuple[int, bytes, bool]]:
    """(the part's line offset in the file, the part, whether it is the last): a CSV part
    is led by the file's header, and its line 2 is the file's line 2 + offset."""
    header = file.readline() if fmt == "csv" else b""
    if header and not header.endswith(b"\n"):
        header += b"\n"
    offset = 0
    lines = _next_lines(file, rows)
    while lines:
        following = _next_lines(file, rows)
        yield offset, header + b"".join(lines), not following
        offset += len(lines)
        lines = following


def _next_lines(file: BinaryIO, rows: int) -> list[bytes]:
    lines = [line for _, line in zip(range(rows), file, strict=False)]
    if lines and not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"
    return lines


def _post(
    options: ImportOptions,
    fmt: SnapshotFormat,
    snapshot_id: str,
    scope: str,
    line_offset: int,
    part: bytes,
) -> SnapshotReport:
    query = urlencode({"snapshot_id": snapshot_id, "scope": scope, "line_offset": line_offset})
    request = urllib.request.Request(
        f"{options.url.rstrip('/')}/v1/snapshots?{query}",
        data=part,
        method="POST",
        headers={"content-type": MEDIA_TYPES[fmt]}
        | ({"authorization": f"Bearer {options.key}"} if options.key else {}),
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return msgspec.json.decode(response.read(), type=SnapshotReport)
    except urllib.error.HTTPError as exc:
        raise ImportFailed(f"the server answered {exc.code}: {_message(exc)}") from exc
    except urllib.error.URLError as exc:
        raise ImportFailed(f"{options.url} can't be reached: {exc.reason}") from exc


def _message(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.load(error)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return error.reason

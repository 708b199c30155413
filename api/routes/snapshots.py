"""ERP snapshots: a file of absolute counts streamed in, every valid row taken as a count,
every bad row reported with its line, the rest applied; each import's report kept, and a
snapshot's reports served as one (JSON, or CSV for a spreadsheet)."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Final

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from availability import NotReady
from availability.ids import DOCUMENT_ID_PATTERN
from availability.snapshot_reports import (
    SnapshotReport,
    decoded_reports,
    merged,
    report_encoder,
    zero_times,
)
from availability.snapshots import SnapshotError, SnapshotFormat, is_snapshot_id

from ..deps import Services, documented_pattern
from ..encoding import json_response
from ..errors import ApiError
from ..openapi import answer, errors
from ..ports import Snapshots
from ..snapshot_import import (
    MAX_SNAPSHOT_BYTES,
    SnapshotTooLarge,
    Spooled,
    import_rows,
    snapshot_id_of,
    spooled,
)

MEDIA_TYPES: Final[dict[str, SnapshotFormat]] = {
    "text/csv": "csv",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
}
CSV_HEADER_PATTERN: Final = r"^sku,location,counted,counted_at(\r?\n|$)"
_BODY: Final = {
    "requestBody": {
        "required": True,
        "description": "rows `sku, location, counted, counted_at`: CSV with a header line, or "
        "NDJSON (one object a line); streamed, up to 2 GiB",
        "content": {
            # The header the service takes is any order of the four columns, among others;
            # the document names the plainest form, which every client can write.
            "text/csv": {"schema": {"type": "string", "pattern": CSV_HEADER_PATTERN}},
            "application/x-ndjson": {"schema": {"type": "string", "minLength": 1}},
        },
    }
}


SCOPES: Final = ("partial", "full")
SnapshotIdPath = Annotated[str, Path(description="the snapshot's id", max_length=128)]


def snapshots_router(services: Services, snapshots: Snapshots) -> APIRouter:
    router = APIRouter(tags=["snapshots"])

    @router.post(
        "/v1/snapshots",
        dependencies=[services.scope("write")],  # type: ignore[list-item]
        status_code=202,
        summary="Import an ERP stock snapshot: each valid row becomes a count",
        openapi_extra=_BODY,
        responses={
            **answer(
                202,
                "every valid row is durable as a count event; bad rows are listed with their "
                "line and reason",
                "SnapshotReport",
            ),
            **errors(
                (413, f"payload_too_large: a body over {MAX_SNAPSHOT_BYTES} bytes"),
                (415, "unsupported_media_type: neither text/csv nor application/x-ndjson"),
                (
                    422,
                    "invalid_request: a bad snapshot_id, scope or line_offset; "
                    "invalid_snapshot: the file is empty, or "
                    "can't be read as a whole (not UTF-8, a line over 64 KiB, a CSV header "
                    "without the columns), and none of its rows was taken",
                ),
                (401, "unauthorized"),
                (403, "forbidden: the key lacks `write`"),
                (
                    503,
                    "not_ready: some rows could not be made durable; send the same snapshot "
                    "again: rows already taken count once",
                ),
            ),
        },
    )
    async def post_snapshot(
        request: Request,
        snapshot_id: Annotated[
            str | None,
            Query(
                description="the snapshot's id: a row's event id is made from it, so the same "
                "snapshot sent twice changes nothing; by default the SHA-256 of the body",
                json_schema_extra=documented_pattern(DOCUMENT_ID_PATTERN),
            ),
        ] = None,
        scope: Annotated[
            str,
            Query(
                json_schema_extra={"enum": list(SCOPES)},
                description="`partial`: positions the snapshot does not list are left as they "
                "are; `full`: at each location the rows of this snapshot name (this request's "
                "and earlier ones' of the same id), every position the snapshot does not list "
                "is counted as 0, at the location's latest counted_at",
            ),
        ] = "partial",
        line_offset: Annotated[
            int,
            Query(
                ge=0,
                description="added to the line numbers of the report: a client sending a "
                "file in parts gives each part's place in the file",
            ),
        ] = 0,
    ) -> Response:
        fmt = _format_of(request.headers.get("content-type", ""))
        if snapshot_id is not None and not is_snapshot_id(snapshot_id):
            raise _invalid("snapshot_id", "Expected 1 to 128 printable characters")
        if scope not in SCOPES:
            raise _invalid("scope", "Expected `partial` or `full`")
        try:
            async with spooled(request.stream()) as body:
                the_id = snapshot_id_of(body, snapshot_id)
                report = await _import(body, fmt, the_id, line_offset, services)
        except SnapshotTooLarge as exc:
            raise ApiError(413, "payload_too_large", str(exc)) from exc
        except SnapshotError as exc:
            raise ApiError(422, "invalid_snapshot", f"{exc}; no row was taken") from exc
        if scope == "full":
            report = await _zero_unlisted(snapshots, the_id, report)
        await snapshots.add_snapshot_report(the_id, report_encoder.encode(report))
        return json_response(report, status=202)

    @router.get(
        "/v1/snapshots/{snapshot_id}",
        dependencies=[services.scope("read")],  # type: ignore[list-item]
        summary="A snapshot's report: every import of it, as one",
        responses={
            **answer(200, "the figures of every import of the snapshot, summed", "SnapshotReport"),
            **errors(
                (404, "unknown_snapshot: no import of this id"),
                (401, "unauthorized"),
                (403, "forbidden: the key lacks `read`"),
                (503, "not_ready: the reports can't be read now (Redis); retry"),
            ),
        },
    )
    async def get_snapshot(snapshot_id: SnapshotIdPath) -> Response:
        return json_response(await _report(snapshots, snapshot_id))

    @router.get(
        "/v1/snapshots/{snapshot_id}/report.csv",
        dependencies=[services.scope("read")],  # type: ignore[list-item]
        summary="A snapshot's report as CSV: refused rows, drift by location, largest drifts",
        responses={
            200: {
                "description": "one line a refused row, a location, or a position among the "
                "largest drifts; the `section` column says which",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            },
            **errors(
                (404, "unknown_snapshot: no import of this id"),
                (401, "unauthorized"),
                (403, "forbidden: the key lacks `read`"),
                (503, "not_ready: the reports can't be read now (Redis); retry"),
            ),
        },
    )
    async def get_snapshot_csv(snapshot_id: SnapshotIdPath) -> Response:
        report = await _report(snapshots, snapshot_id)
        return Response(report_csv(report), media_type="text/csv; charset=utf-8")

    return router


async def _report(snapshots: Snapshots, snapshot_id: str) -> SnapshotReport:
    stored = await _stored(snapshots, snapshot_id)
    if not stored:
        raise ApiError(404, "unknown_snapshot", f"no import of snapshot {snapshot_id!r}")
    return merged(stored)


async def _stored(snapshots: Snapshots, snapshot_id: str) -> list[SnapshotReport]:
    return decoded_reports(await snapshots.snapshot_reports(snapshot_id))


async def _zero_unlisted(
    snapshots: Snapshots, snapshot_id: str, report: SnapshotReport
) -> SnapshotReport:
    """The `full` scope, once this request's rows are taken: the locations of every import
    of the snapshot, the parts sent before this one among them."""
    whole = merged([*await _stored(snapshots, snapshot_id), report])
    try:
        zeros = await snapshots.zero_unlisted(snapshot_id, zero_times(whole))
    except NotReady as exc:
        await snapshots.add_snapshot_report(snapshot_id, report_encoder.encode(report))
        raise ApiError(503, "not_ready", str(exc)) from exc
    return report if zeros is None else merged([report, zeros])


CSV_COLUMNS: Final = ("section", "line", "sku", "location", "field", "counts", "drift", "message")


def report_csv(report: SnapshotReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for refusal in report.refusals:
        writer.writerow(["refused", refusal.line, "", "", refusal.field, "", "", refusal.message])
    if report.drift is not None:
        for place in report.drift.by_location:
            writer.writerow(["location", "", "", place.location, "", place.counts, place.drift, ""])
        for position in report.drift.largest:
            writer.writerow(
                ["largest", "", position.sku, position.location, "", "", position.drift, ""]
            )
    return out.getvalue()


async def _import(
    body: Spooled, fmt: SnapshotFormat, snapshot_id: str, line_offset: int, services: Services
) -> SnapshotReport:
    try:
        return await import_rows(
            body, fmt, snapshot_id, services.ingest, services.clock_micros(), line_offset
        )
    except NotReady as exc:
        raise ApiError(
            503,
            "not_ready",
            f"{exc}; the rows before it were taken: send snapshot {snapshot_id} again, rows "
            "already taken count once",
        ) from exc


def _format_of(content_type: str) -> SnapshotFormat:
    media_type = content_type.split(";", 1)[0].strip().lower()
    fmt = MEDIA_TYPES.get(media_type)
    if fmt is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"a snapshot is {' or '.join(sorted(MEDIA_TYPES))}, not {media_type or 'untyped'}",
        )
    return fmt


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(
        422, "invalid_request", "the request is invalid", [{"field": field, "message": message}]
    )

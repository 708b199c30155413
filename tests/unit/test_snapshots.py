"""Reading ERP snapshot files: rows to count events, bad rows to refusals with their line,
and files that can't be read as a whole refused before any row is taken."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from availability import SkuState, apply_events
from availability.events import Count
from availability.snapshot_reports import applied_reports, merged
from availability.snapshots import (
    MAX_LINE_BYTES,
    FileCheck,
    RowRefusal,
    SnapshotError,
    SnapshotFormat,
    SnapshotRow,
    as_count,
    read_rows,
    row_event_id,
    zero_count,
)

NOW_US = int(datetime(2026, 12, 3, 12, tzinfo=UTC).timestamp() * 1_000_000)
AT = "2026-12-01T10:00:00Z"


def rows(text: bytes, fmt: SnapshotFormat = "csv", chunk: int = 7) -> list[Count | RowRefusal]:
    """Read `text` split into small chunks: lines and UTF-8 sequences cross chunk bounds."""
    chunks = [text[i : i + chunk] for i in range(0, len(text), chunk)]
    check = FileCheck()
    for piece in chunks:
        check.feed(piece)
    check.finish()
    return list(read_rows(chunks, fmt, "erp-1", NOW_US))


def test_csv_columns_in_any_order_extra_columns_blank_lines_and_a_bom() -> None:
    text = (
        "\ufefflocation,Counted ,note,sku,counted_at\r\n"
        f"S1,5,fine,SKU-1,{AT}\r\n"
        "\r\n"
        f'"S2",0,"a, quoted, note",SKU-é,{AT}\n'
    ).encode()
    found = rows(text)
    assert [(c.sku, c.location, c.counted) for c in found if isinstance(c, Count)] == [
        ("SKU-1", "S1", 5)
    ]
    assert found[1] == RowRefusal(4, "sku", "Expected 1 to 64 of A-Z a-z 0-9 . _ : -")
    first = found[0]
    assert isinstance(first, Count)
    assert first.occurred_at == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert first.event_id == row_event_id("erp-1", "SKU-1", "S1")
    assert first.source == "snapshot erp-1"


def test_every_bad_csv_row_is_refused_with_its_line_and_field() -> None:
    text = (
        "sku,location,counted,counted_at\n"
        f"A,S1,-1,{AT}\n"
        f"A,S1,x,{AT}\n"
        "A,S1,3,yesterday\n"
        "A,S1,3,2026-12-01T10:00:00\n"
        "A,S1\n"
        "A,S1,3,2099-01-01T00:00:00Z\n"
        f"B,S1,3,{AT}\n"
    ).encode()
    found = rows(text)
    refusals = [(r.line, r.field) for r in found if isinstance(r, RowRefusal)]
    assert refusals == [
        (2, "counted"),
        (3, "counted"),
        (4, "counted_at"),
        (5, "counted_at"),
        (6, "counted"),
        (7, "counted_at"),
    ]
    assert any("ahead of the server clock" in r.message for r in found if isinstance(r, RowRefusal))
    assert [c.sku for c in found if isinstance(c, Count)] == ["B"]


def test_ndjson_rows_and_refusals() -> None:
    text = (
        f'{{"sku":"A","location":"S1","counted":2,"counted_at":"{AT}","erp_row":17}}\n'
        "\n"
        "[1]\n"
        '{"sku":"A"}\n'
        "{not json\n"
        f'{{"sku":"B","location":"S1","counted":9,"counted_at":"{AT}"}}\n'
        f'{{"sku":"C","location":"S1","counted":4.0,"counted_at":"{AT}"}}\n'
        f'{{"sku":"D","location":"S1","counted":"5","counted_at":"{AT}"}}\n'
        f'{{"sku":"E","location":"S1","counted":4.5,"counted_at":"{AT}"}}'
    ).encode()
    found = rows(text, "ndjson")
    assert [(c.sku, c.counted) for c in found if isinstance(c, Count)] == [
        ("A", 2),
        ("B", 9),
        ("C", 4),
        ("D", 5),
    ]
    refused = {r.line: r for r in found if isinstance(r, RowRefusal)}
    assert set(refused) == {3, 4, 5, 9}
    assert refused[9].field == "counted"
    assert refused[4].field == "location"
    assert refused[5].message.startswith("not JSON")


def test_a_row_event_id_is_the_snapshot_and_position_so_a_resend_is_deduplicated() -> None:
    assert row_event_id("erp-1", "A", "S1") == row_event_id("erp-1", "A", "S1")
    assert row_event_id("erp-1", "A", "S1") != row_event_id("erp-2", "A", "S1")
    assert row_event_id("erp-1", "A", "S1") != row_event_id("erp-1", "A", "S2")
    assert row_event_id("erp-1", "AS", "1") != row_event_id("erp-1", "A", "S1")


def test_a_csv_header_without_the_columns_is_refused_before_any_row() -> None:
    with pytest.raises(SnapshotError, match="it lacks counted_at"):
        rows(b"sku,location,counted\nA,S1,1\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"sku,location,counted,counted_at\nA,S1,\xff,x\n", "line 2: not UTF-8"),
        (b"sku,location,counted,counted_at\nA,S1,1,\xe2\x82", "line 2: not UTF-8"),
        (b"sku\n" + b"x" * (MAX_LINE_BYTES + 1), f"line 2: longer than {MAX_LINE_BYTES}"),
    ],
)
def test_a_file_that_is_not_utf8_or_has_a_huge_line_is_refused_whole(
    text: bytes, message: str
) -> None:
    with pytest.raises(SnapshotError, match=message):
        rows(text, chunk=4096)


def test_an_empty_file_has_no_rows() -> None:
    assert rows(b"") == []
    assert rows(b"", "ndjson") == []


@pytest.mark.parametrize("counted", ["7", "007", " 7 ", "+7", "٣", "1e3", "7.0", "", "1000000001"])
@pytest.mark.parametrize("counted_at", [AT, "2026-12-01T07:00:00+01:00", "2026-12-01", "x"])
def test_the_fast_path_takes_and_refuses_exactly_what_msgspec_does(
    counted: str, counted_at: str
) -> None:
    text = f"sku,location,counted,counted_at\nA,S1,{counted},{counted_at}\n".encode()
    fields = {"sku": "A", "location": "S1", "counted": counted.strip(), "counted_at": counted_at}
    try:
        by_msgspec: SnapshotRow | None = msgspec.convert(fields, SnapshotRow, strict=False)
    except msgspec.ValidationError:
        by_msgspec = None

    [found] = rows(text)

    if by_msgspec is None:
        assert isinstance(found, RowRefusal)
    else:
        assert isinstance(found, Count)
        assert (found.counted, found.occurred_at) == (by_msgspec.counted, by_msgspec.counted_at)


def test_a_batch_reports_each_snapshot_s_counts_apart_from_other_events() -> None:
    row = msgspec.convert(
        {"sku": "A", "location": "S1", "counted": 3, "counted_at": AT}, SnapshotRow
    )
    listed = as_count("erp-1", row)
    other = as_count("erp-2", msgspec.structs.replace(row, sku="B"))
    zero = zero_count("erp-1", "C", "S2", listed.occurred_us)
    unrelated = msgspec.structs.replace(listed, event_id="pos-count", source="pos", sku="D")
    states: dict[str, SkuState] = {}
    events = [listed, other, zero, unrelated, listed]
    result = apply_events(lambda sku: states.setdefault(sku, SkuState(sku=sku)), events, NOW_US)

    reports = {report.snapshot_id: report for report in applied_reports(events, result)}

    assert set(reports) == {"erp-1", "erp-2"}
    first = reports["erp-1"]
    assert (first.outcomes, first.zeroed, first.rows) == ({"applied": 2, "duplicate": 1}, 1, 0)
    assert first.drift is not None
    assert [(p.location, p.counts, p.drift) for p in first.drift.by_location] == [
        ("S1", 1, -3),
        ("S2", 1, 0),
    ]
    merged_report = merged([first, reports["erp-2"]])
    assert merged_report.outcomes == {"applied": 3, "duplicate": 1}

"""`availability import-snapshot`: a file sent in parts to a real server, its report in the
file's own line numbers, and an import cut short by a `kill -9` of the server finished by
running the same command again, every row counted once."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.events import at, event
from tests.support.server import Server
from tests.support.snapshots import SnapshotScenario, figures_from_positions, import_snapshot


def finished(process: subprocess.Popen[str]) -> tuple[int, dict[str, Any] | None, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, json.loads(out) if out.strip() else None, err


def test_bad_rows_are_reported_at_their_line_in_the_file_and_the_rest_taken(
    server: Server, tmp_path: Path
) -> None:
    lines = ["sku,location,counted,counted_at"]
    lines += [f"IMP-{n},S001,{n % 7},2026-12-01T10:00:00Z" for n in range(5_000)]
    lines[2_500] = "IMP-x,S001,-1,2026-12-01T10:00:00Z"  # the file's line 2,501
    lines[4_999] = "IMP-y,S001,1"  # line 5,000
    path = tmp_path / "snapshot.csv"
    path.write_text("\n".join(lines) + "\n")

    code, report, err = finished(import_snapshot(server.url, path, "--rows-per-request", "2000"))

    assert code == 3, err
    assert report is not None
    assert (report["rows"], report["accepted"], report["refused"]) == (5_000, 4_998, 2)
    assert [(r["line"], r["field"]) for r in report["refusals"]] == [
        (2_501, "counted"),
        (5_000, "counted_at"),
    ]
    assert report["outcomes"] == {"applied": 4_998}
    assert report["snapshot_id"].startswith("sha256:")
    assert "done: 4,998 rows taken, 2 refused" in err
    # The server keeps the report of every part, and serves them as one, after a restart too.
    server.stop()
    server.start()
    with server.client() as http:
        stored = http.get(f"/v1/snapshots/{report['snapshot_id']}")
        assert stored.status_code == 200, stored.text
        assert stored.json() == report
        sheet = http.get(f"/v1/snapshots/{report['snapshot_id']}/report.csv")
    assert sheet.headers["content-type"].startswith("text/csv")
    lines = sheet.text.splitlines()
    assert lines[0] == "section,line,sku,location,field,counts,drift,message"
    assert lines[1].startswith("refused,2501,,,counted,")
    assert lines[3] == f"location,,,S001,,4998,{report['drift']['by_location'][0]['drift']},"


def test_a_full_snapshot_in_parts_zeroes_only_what_no_part_lists(
    server: Server, tmp_path: Path
) -> None:
    skus = [f"FULL-{n}" for n in range(30)]
    with server.client() as http:
        receipts = [event("receipt", sku, "S001", qty=5) for sku in skus]
        assert http.post("/v1/events", json=receipts).status_code == 202
    path = tmp_path / "full.csv"
    path.write_text(
        "sku,location,counted,counted_at\n"
        + "".join(f"{sku},S001,2,{at(10)}\n" for sku in skus[:20])
    )

    code, report, err = finished(
        import_snapshot(server.url, path, "--scope", "full", "--rows-per-request", "7")
    )

    assert code == 0, err
    assert report is not None
    assert (report["accepted"], report["zeroed"]) == (20, 10)
    with server.client() as http:
        on_hand = {
            sku: http.get(f"/v1/positions/{sku}").json()["positions"][0]["on_hand"] for sku in skus
        }
    assert on_hand == {sku: 2 if n < 20 else 0 for n, sku in enumerate(skus)}


def test_an_import_cut_by_a_kill_9_is_finished_by_running_it_again(
    server: Server, tmp_path: Path
) -> None:
    scenario = SnapshotScenario.build("IMPK", skus=1_000, locations=20, seed=9)
    with server.client() as http:
        for start in range(0, len(scenario.before), 1000):
            assert http.post("/v1/events", json=scenario.before[start : start + 1000]).is_success
    path = tmp_path / "chain.csv"
    path.write_bytes(scenario.csv_bytes())

    in_small_parts = ("--snapshot-id", scenario.snapshot_id, "--rows-per-request", "200")
    cut = import_snapshot(server.url, path, *in_small_parts)
    wait_for_first_part(server, scenario)
    server.kill()
    code, _, err = finished(cut)
    assert code == 1, err
    assert "Run the same command again to finish" in err

    server.start()
    code, report, err = finished(import_snapshot(server.url, path, *in_small_parts))

    assert code == 0, err
    assert report is not None
    outcomes = report["outcomes"]
    assert outcomes["duplicate"] > 0  # taken before the kill, counted once
    assert outcomes["applied"] + outcomes["duplicate"] == 20_000
    expected = scenario.expected(time.time_ns() // 1000, with_late=False)
    with server.client() as http:
        served = {
            sku: figures_from_positions(http.get(f"/v1/positions/{sku}").json())
            for sku in scenario.skus
        }
    assert served == expected


def wait_for_first_part(server: Server, scenario: SnapshotScenario) -> None:
    """Wait until the import's first part is taken: the file's first SKU is counted."""
    first = scenario.rows[0].sku
    with server.client() as http:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answer = http.get(f"/v1/positions/{first}").json()
            if any(p["last_count_drift"] is not None for p in answer["positions"]):
                return
            time.sleep(0.01)
    raise AssertionError("the import took no row within 60 s")

"""ERP snapshots in the streaming mode: the API takes every valid row as a count event on
Kafka, the workers apply them, and the positions and drifts published to Redis are the
core's fold of the whole event log, late sales included; a second import changes nothing,
and an import cut by a `kill -9` of the API is finished by running it again."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from availability.published import snapshot_key
from availability.snapshot_reports import decoded_reports
from tests.support.events import at, event
from tests.support.server import ApiServer
from tests.support.snapshots import (
    Figures,
    SnapshotScenario,
    figures_from_positions,
    import_snapshot,
)
from tests.support.streaming import Stack, WorkerProcess, wait_until

from .helpers import wait_readiness

pytestmark = pytest.mark.integration

CONVERGE_S = 180.0


@dataclass(frozen=True)
class Deployment:
    stack: Stack
    api: ApiServer
    worker: WorkerProcess
    redis: redis.Redis


@pytest.fixture
def deployment(
    fresh_stack: Stack,
    start_api: Callable[..., ApiServer],
    rules_path: Path,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> Iterator[Deployment]:
    """A worker and an API on a deployment of the test's own, the API ready."""
    worker = WorkerProcess(fresh_stack, tmp_path / "worker").start()
    try:
        api = start_api(rules_file=rules_path)
        wait_readiness(api, 200, timeout_s=120)
        yield Deployment(fresh_stack, api, worker, redis_client)
    finally:
        worker.stop()


def test_a_chain_snapshot_streams_to_the_positions_and_drifts_of_the_whole_log(
    deployment: Deployment,
) -> None:
    scenario = SnapshotScenario.build(f"SS{uuid.uuid4().hex[:6]}", skus=5000, locations=20, seed=5)
    with deployment.api.client(timeout=300) as http:
        in_batches(http, scenario.before)
        report = post_snapshot(http, scenario)
        assert (report["rows"], report["accepted"], report["refused"]) == (100_000,) * 2 + (0,)
        assert report["outcomes"] is None  # the workers apply the rows after the answer
        in_batches(http, scenario.late)
        assert post_snapshot(http, scenario)["accepted"] == 100_000  # deduplicated by the workers

    assert_converges(deployment, scenario.expected(time.time_ns() // 1000))
    # The workers report what the rows did, once durable: both imports' 200,000 counts.
    with deployment.api.client() as http:
        report = reported(http, scenario.snapshot_id, counts=200_000)
    assert report["outcomes"] == {"applied": 100_000, "duplicate": 100_000}
    assert report["rows"] == report["accepted"] == 200_000
    assert sum(place["counts"] for place in report["drift"]["by_location"]) == 100_000
    assert deployment.worker.running, deployment.worker.log_tail()


def test_bad_rows_are_reported_and_the_rest_applied_by_the_workers(deployment: Deployment) -> None:
    body = (
        "sku,location,counted,counted_at\n"
        f"SB-1,S001,4,{at(10)}\n"
        f"SB-2,S001,-4,{at(10)}\n"
        f"SB 3,S001,4,{at(10)}\n"
        f"SB-4,S001,6,{at(10)}\n"
    )
    with deployment.api.client(timeout=60) as http:
        answer = http.post(
            "/v1/snapshots", content=body.encode(), headers={"content-type": "text/csv"}
        )
        assert answer.status_code == 202, answer.text
        report = answer.json()
        assert (report["accepted"], report["refused"]) == (2, 2)
        assert [(r["line"], r["field"]) for r in report["refusals"]] == [
            (3, "counted"),
            (4, "sku"),
        ]
        # The workers add what the two rows did; the API's part is its answer.
        stored = reported(http, report["snapshot_id"], counts=2)
        assert {name: stored[name] for name in ("rows", "accepted", "refusals")} == {
            name: report[name] for name in ("rows", "accepted", "refusals")
        }
        assert stored["outcomes"] == {"applied": 2}
    assert_converges(deployment, {"SB-1": {"S001": (4, -4)}, "SB-4": {"S001": (6, -6)}})


def test_a_full_snapshot_zeroes_the_unlisted_positions_on_every_partition(
    deployment: Deployment,
) -> None:
    skus = [f"SF-{n}" for n in range(200)]  # on every partition
    stocked: Figures = {sku: {"S001": (5, None), "S002": (5, None)} for sku in skus}
    with deployment.api.client(timeout=60) as http:
        in_batches(
            http,
            [event("receipt", sku, place, qty=5) for sku in skus for place in ("S001", "S002")],
        )
        # The positions exist before the snapshot's end is read: zeroed are those the
        # writer holds then.
        assert_converges(deployment, stocked)
        rows = "".join(f"{sku},S001,2,{at(10)}\n" for sku in skus[:150])
        answer = http.post(
            "/v1/snapshots",
            content=f"sku,location,counted,counted_at\n{rows}".encode(),
            params={"snapshot_id": "full-1", "scope": "full"},
            headers={"content-type": "text/csv"},
        )
        assert answer.status_code == 202, answer.text
        assert (answer.json()["accepted"], answer.json()["zeroed"]) == (150, None)

    expected = {
        sku: {"S001": (2, 3) if n < 150 else (0, 5), "S002": (5, None)}
        for n, sku in enumerate(skus)
    }
    assert_converges(deployment, expected)
    with deployment.api.client() as http:
        report = reported(http, "full-1", counts=200)
    assert (report["outcomes"], report["zeroed"]) == ({"applied": 200}, 50)


def test_an_import_cut_by_a_kill_9_of_the_api_is_finished_by_running_it_again(
    deployment: Deployment, tmp_path: Path
) -> None:
    scenario = SnapshotScenario.build(f"SK{uuid.uuid4().hex[:6]}", skus=1000, locations=20, seed=6)
    path = tmp_path / "chain.csv"
    path.write_bytes(scenario.csv_bytes())
    with deployment.api.client(timeout=60) as http:
        in_batches(http, scenario.before)
    in_small_parts = ["--snapshot-id", scenario.snapshot_id, "--rows-per-request", "200"]

    cut = import_snapshot(deployment.api.url, path, *in_small_parts)
    assert wait_until(
        lambda: taken_rows(deployment, scenario.snapshot_id) > 0, 60, interval_s=0.01
    ), "no part of the import was taken within 60 s"
    deployment.api.kill()
    _, err = cut.communicate(timeout=120)
    assert cut.returncode == 1, err
    assert "Run the same command again to finish" in err

    deployment.api.start()
    wait_readiness(deployment.api, 200, timeout_s=120)
    again = import_snapshot(deployment.api.url, path, *in_small_parts)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert json.loads(out)["accepted"] == 20_000

    expected = scenario.expected(time.time_ns() // 1000, with_late=False)
    assert_converges(deployment, expected)
    with deployment.api.client() as http:
        stored = http.get(f"/v1/snapshots/{scenario.snapshot_id}").json()
        assert stored["accepted"] > 20_000  # the cut import's parts, then the whole file
        # Every row the workers applied once; those sent twice are duplicates.
        outcomes = reported(http, scenario.snapshot_id, counts=stored["accepted"])["outcomes"]
    assert outcomes["applied"] == 20_000


def taken_rows(deployment: Deployment, snapshot_id: str) -> int:
    """The rows the API has reported taken: the list also holds the workers' reports of
    what they applied, which may come first and take no rows."""
    key = snapshot_key(deployment.stack.names.redis_namespace, snapshot_id)
    stored = deployment.redis.lrange(key, 0, -1)
    return sum(report.accepted for report in decoded_reports(stored))


def assert_converges(deployment: Deployment, expected: Figures) -> None:
    def published() -> Figures:
        return read_figures(deployment.redis, deployment.stack, set(expected))

    if not wait_until(lambda: published() == expected, CONVERGE_S, interval_s=2):
        got = published()
        wrong = [sku for sku in expected if got.get(sku) != expected[sku]]
        pytest.fail(f"{len(wrong)} SKUs differ, e.g. {wrong[:1]}\n{deployment.worker.log_tail()}")


def reported(http: httpx.Client, snapshot_id: str, counts: int) -> dict[str, Any]:
    """The snapshot's report once the workers reported `counts` counts applied."""
    report: dict[str, Any] = {}
    deadline = time.monotonic() + CONVERGE_S
    while time.monotonic() < deadline:
        report = http.get(f"/v1/snapshots/{snapshot_id}").json()
        if sum((report.get("outcomes") or {}).values()) >= counts:
            return report
        time.sleep(0.5)
    pytest.fail(f"the workers reported {report.get('outcomes')}, not {counts} counts")


def post_snapshot(http: httpx.Client, scenario: SnapshotScenario) -> dict[str, Any]:
    answer = http.post(
        "/v1/snapshots",
        content=scenario.csv_bytes(),
        params={"snapshot_id": scenario.snapshot_id},
        headers={"content-type": "text/csv"},
    )
    assert answer.status_code == 202, answer.text
    body: dict[str, Any] = answer.json()
    return body


def in_batches(http: httpx.Client, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 1000):
        answer = http.post("/v1/events", json=events[start : start + 1000])
        assert answer.status_code == 202, answer.text


def read_figures(client: redis.Redis, stack: Stack, skus: set[str]) -> Figures:
    keys = [f"{stack.names.redis_namespace}:{{{sku}}}" for sku in sorted(skus)]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hget(key, "p")
    return {
        sku: figures_from_positions(json.loads(raw))
        for sku, raw in zip(sorted(skus), pipe.execute(), strict=True)
        if raw is not None
    }

"""The wide figure of `make bench` (`loadtests/bench_wide.py`), run small: it measures both
SKUs on one server, its rows are the ones the targets judge, and what it reports of the
answers and the read model is what the service gives."""

from __future__ import annotations

import re

import pytest

from loadtests.bench_wide import bench_wide
from loadtests.targets import judge_targets

pytestmark = pytest.mark.integration  # the Redis figure writes to the shared Redis


def test_a_small_wide_run_reports_every_figure_and_each_is_judged() -> None:
    rows = bench_wide(stores=60, events=200, seconds=1)

    assert [name.split(":")[0] for name, _, _ in rows] == [
        "per-event cost, 1 sale a POST",
        "per-event cost, 100 sales a POST",
        "read p99 under writes",
        "answer bytes, 1 SKU at 60 stores against 1 SKU at 8 locations",
        "Redis memory per SKU, 1 SKU at 60 stores against 1 SKU at 8 locations",
        "a worker's rendering of the SKU's hash, 1 SKU at 60 stores against 1 SKU at 8"
        " locations (streaming)",
    ]
    # A ratio, or none when the run was too short for the CPU clock: the targets judge each
    # ratio there is.
    ratios = [value for _, value, _ in rows[:3]]
    assert all(re.fullmatch(r"\d+\.\d\dx|n/a \(too short to measure\)", r) for r in ratios)
    judged = [name for name, _, _ in judge_targets(rows)]
    assert sum("a SKU at 5,000 stores" in name for name in judged) == sum(
        r.endswith("x") for r in ratios
    )
    answer_bytes = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) B", rows[3][1])]
    page_bytes = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) B", rows[3][2])]
    assert max(answer_bytes) < 200  # the channel answer: no list, whatever the store count
    assert page_bytes[0] > 5 * page_bytes[1]  # the asked-for breakdown lists every store
    wide, narrow = (int(n.replace(",", "")) for n in re.findall(r"([\d,]+) B", rows[4][1]))
    assert wide > narrow > 0

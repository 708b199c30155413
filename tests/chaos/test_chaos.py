"""The fault suite's short form: a stack of its own (three brokers, a redis-server, two
workers, two APIs), a smaller load, faults 1 (a broker killed), 2 (a worker killed and
restarted on an empty disk) and 6 (a worker frozen past its session timeout). Every fault
must lose nothing, count nothing twice, oversell nothing, keep every hold, give no wrong
read and get every answer right again within the settle timeout."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from loadtests.chaos.profile import SHORT
from loadtests.chaos.report import table
from loadtests.chaos.suite import run_suite

pytestmark = pytest.mark.integration

FAULTS = (1, 2, 6)


def test_faults_lose_nothing_count_nothing_twice_and_oversell_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="aiokafka")  # every broken connection, else
    started = time.monotonic()
    rows = run_suite(SHORT, FAULTS, tmp_path, say=print)
    shown = f"{table(rows)}\n" + "\n".join(f"{r.fault}: {n}" for r in rows for n in r.notes)
    print(f"{shown}\nwall clock {time.monotonic() - started:.0f} s")
    for row in rows:
        assert (row.lost, row.twice, row.oversold_units, row.holds_off) == (0, 0, 0, 0), shown
        assert row.reads_wrong == 0, shown
        assert row.right_again_s is not None, shown

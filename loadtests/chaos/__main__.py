"""`python -m loadtests.chaos [--faults 1,2,6] [--short] [--keep DIR]`: the fault suite;
exits 1 when any fault lost or doubled an event, oversold, broke a hold, gave a wrong read
or never got right again."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from .faults import FAULTS
from .profile import FULL, SHORT
from .report import table, write
from .suite import run_suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.chaos", description=__doc__)
    every = ",".join(str(f) for f in FAULTS if f)
    parser.add_argument("--faults", default=every, help="e.g. 1,2,6 (the baseline, 0, always runs)")
    parser.add_argument("--short", action="store_true", help="smaller load, shorter waits")
    parser.add_argument("--keep", type=Path, help="run in DIR and keep the logs there")
    args = parser.parse_args(argv)
    faults = [int(f) for f in args.faults.split(",") if f.strip()]
    if unknown := [f for f in faults if f not in FAULTS]:
        parser.error(f"no fault {unknown}: the faults are {sorted(FAULTS)}")
    profile = SHORT if args.short else FULL
    # The suite's own Kafka clients (the log fold, the cluster's probes) would log every
    # connection a fault breaks; the table says what matters.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    command = " ".join(["python -m loadtests.chaos", *(argv if argv is not None else sys.argv[1:])])
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chaos-") as temporary:
        root = args.keep or Path(temporary)
        rows = run_suite(profile, faults, root, say=lambda text: print(text, flush=True))
    wall = time.monotonic() - started
    print(table(rows))
    for row in rows:
        for note in row.notes:
            print(f"  {row.fault.split('.')[0]}: {note}")
    print(f"wall clock {wall:.0f} s; written to {write(rows, profile, wall, command)}")
    return 1 if any(row.failed for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

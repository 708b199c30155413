"""An ERP snapshot scenario at a mid-size chain's scale: stock moved before the count, a
snapshot of every position, then late sales made before the count and sales after it. The
expected positions and drifts are the core's fold of the whole event log."""

from __future__ import annotations

import csv
import io
import random
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from availability import SkuState, apply_events, decode_event
from availability.snapshots import SnapshotRow, as_count

from .events import at, event
from .server import child_env, cli_command

# (on_hand, last_count_drift) per SKU and location
Figures = dict[str, dict[str, tuple[int, int | None]]]


@dataclass
class SnapshotScenario:
    snapshot_id: str
    before: list[dict[str, Any]]  # events posted before the snapshot
    rows: list[SnapshotRow]
    late: list[dict[str, Any]]  # events posted after it, some made before its count

    @classmethod
    def build(cls, tag: str, skus: int, locations: int, seed: int) -> SnapshotScenario:
        rng = random.Random(seed)
        sku_names = [f"{tag}-{n}" for n in range(skus)]
        places = [f"L{n:02d}" for n in range(locations)]

        def anywhere() -> tuple[str, str]:
            return rng.choice(sku_names), rng.choice(places)

        before = [
            event("receipt", *anywhere(), minute=1, qty=rng.randint(10, 50))
            for _ in range(skus * 4)
        ]
        before += [
            event("sale", *anywhere(), minute=2, qty=rng.randint(1, 3)) for _ in range(skus * 2)
        ]
        count_at = at(10)
        rows = [
            msgspec.convert(
                {"sku": s, "location": p, "counted": rng.randint(0, 60), "counted_at": count_at},
                SnapshotRow,
            )
            for s in sku_names
            for p in places
        ]
        late = [event("sale", *anywhere(), minute=5, qty=rng.randint(1, 3)) for _ in range(skus)]
        late += [event("sale", *anywhere(), minute=20, qty=1) for _ in range(skus)]
        rng.shuffle(late)
        return cls(f"erp-{tag}", before, rows, late)

    @property
    def skus(self) -> set[str]:
        return {row.sku for row in self.rows}

    def csv_bytes(self) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["sku", "location", "counted", "counted_at"])
        for row in self.rows:
            writer.writerow([row.sku, row.location, row.counted, row.counted_at.isoformat()])
        return out.getvalue().encode()

    def expected(self, now_us: int, with_late: bool = True) -> Figures:
        """The core's fold of the events in the order they were posted: the drift rule makes
        it the same in any order of the non-count events."""
        events = [decode_event(msgspec.json.encode(e)) for e in self.before]
        events += [as_count(self.snapshot_id, row) for row in self.rows]
        if with_late:
            events += [decode_event(msgspec.json.encode(e)) for e in self.late]
        states: dict[str, SkuState] = {}
        result = apply_events(lambda sku: states.setdefault(sku, SkuState(sku=sku)), events, now_us)
        return figures_of(result.touched.values())


def figures_of(states: Iterable[SkuState]) -> Figures:
    return {
        state.sku: {
            location: (p.on_hand, p.last_count_drift) for location, p in state.positions.items()
        }
        for state in states
    }


def figures_from_positions(answer: dict[str, Any]) -> dict[str, tuple[int, int | None]]:
    """The same figures from a positions answer (GET /v1/positions or the read model)."""
    return {p["location"]: (p["on_hand"], p["last_count_drift"]) for p in answer["positions"]}


def import_snapshot(url: str, path: Path, *options: str) -> subprocess.Popen[str]:
    """`availability import-snapshot` of `path` to the server at `url`, running."""
    return subprocess.Popen(
        cli_command("import-snapshot", str(path), "--url", url, *options),
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

"""The suite's table: on the console, and as markdown in bench-results/chaos.md (where
`make bench` writes its report; the folder is ignored by git)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from tests.support.server import REPO_ROOT

from .measure import __doc__ as DEFINITIONS
from .profile import Profile
from .suite import Row

RESULTS: Final = REPO_ROOT / "bench-results" / "chaos.md"
HEADER: Final = (
    "fault",
    "events 202",
    "events/s",
    "lost",
    "twice",
    "holds 201",
    "oversold units",
    "holds off",
    "right again (s)",
    "reads 503",
    "wrong reads",
    "worker restarts",
)


def cells(row: Row) -> list[str]:
    right = "never" if row.right_again_s is None else f"{row.right_again_s:.1f}"
    return [
        row.fault,
        f"{row.events_accepted:,}",
        f"{row.events_per_s:,.0f}",
        str(row.lost),
        str(row.twice),
        f"{row.holds_granted:,}",
        str(row.oversold_units),
        str(row.holds_off),
        right,
        f"{row.reads_503:,}",
        str(row.reads_wrong),
        str(row.restarts),
    ]


def table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def code_state() -> str:
    """The commit the run ran, and the files changed beside it: the working tree is shared,
    so a run may test code not committed yet."""
    head = _git("rev-parse", "--short", "HEAD")
    changed = _git("status", "--porcelain", "--untracked-files=no").splitlines()
    files = ", ".join(line[3:] for line in changed)
    return f"commit {head}" + (f", with uncommitted changes to {files}" if files else "")


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
    return done.stdout.strip()


def markdown(rows: Sequence[Row], profile: Profile, wall_s: float, command: str) -> str:
    notes = [f"- {row.fault.split('.')[0]}: {note}" for row in rows for note in row.notes]
    return "\n".join(
        [
            "# Fault suite (issue 17)",
            "",
            f"`{command}`, profile `{profile.name}`, {time.strftime('%Y-%m-%d %H:%M:%S %Z')},"
            f" {os.cpu_count()} cores, wall clock {wall_s:.0f} s; {code_state()}.",
            "",
            table(rows),
            "",
            "## Notes",
            "",
            *notes,
            "",
            "## Definitions",
            "",
            (DEFINITIONS or "").strip(),
            "",
        ]
    )


def write(
    rows: Sequence[Row], profile: Profile, wall_s: float, command: str, path: Path = RESULTS
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(rows, profile, wall_s, command))
    return path

"""One fault after the other on one stack, each measured the same way:

1. the load (events, holds, reads through both APIs) runs `warm_s`;
2. the fault, under the same load, until its repair is done: the fault's end;
3. writes pause (every request in flight gets its answer), reads go on;
4. the check runs again and again until every answer is right (`measure.py`), or the
   settle timeout: "right again" is the time from the fault's end to that check.

Events accepted and the rate are over steps 1-2; reads answered 503 or wrong, from the
fault's start to the end of step 4; lost, twice, oversold and holds off are what the check
found beyond the previous fault's check."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx

from .checkout import HoldBook
from .faults import FAULTS, FaultRun
from .harness import Harness
from .load import CLIENT_TIMEOUT_S, ApiCounts, Load
from .log_fold import Ledger, LogFold
from .measure import Checker, Verdict
from .profile import Profile
from .workload import ChaosMix

STOCK_BATCH: Final = 1_000
STOCK_TIMEOUT_S: Final = 120.0
CHECK_PAUSE_S: Final = 1.0


@dataclass
class Row:
    fault: str
    events_accepted: int = 0
    events_per_s: float = 0.0
    lost: int = 0
    twice: int = 0
    holds_granted: int = 0
    oversold_units: int = 0
    holds_off: int = 0
    right_again_s: float | None = None  # None: not right within the settle timeout
    reads_503: int = 0
    reads_wrong: int = 0
    restarts: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(
            self.lost or self.twice or self.oversold_units or self.holds_off or self.reads_wrong
        ) or (self.right_again_s is None)


def run_suite(
    profile: Profile, faults: Sequence[int], root: Path, say: Callable[[str], None] = print
) -> list[Row]:
    """Start the stack, run `faults` in order, stop everything whatever happens."""
    harness = Harness(root)
    load: Load | None = None
    fold: LogFold | None = None
    try:
        started = time.monotonic()
        harness.start()
        say(f"stack up in {time.monotonic() - started:.0f} s: brokers {harness.cluster.bootstrap}")
        ledger = Ledger()
        mix = ChaosMix(profile.event_skus, id_prefix=f"c{uuid.uuid4().hex[:6]}")
        book = HoldBook(profile.hold_skus, profile.short_ttl_s)
        fold = LogFold(harness.stack.kafka, harness.stack.names, harness.stack.partitions, ledger)
        urls = [api.url for api in harness.apis]
        checker = Checker(harness.stack, fold, ledger, book, harness.rules, mix.skus, urls)
        _stock(urls[0], mix.opening_stock(profile.hold_skus, profile.hold_stock), ledger)
        verdict, _ = settle(checker, STOCK_TIMEOUT_S, time.monotonic())
        if not verdict.right:
            raise RuntimeError(f"the opening stock never showed right: {verdict.examples}")
        say(f"opening stock applied and published ({fold.records} events in the log)")
        load = Load(urls, mix, book, ledger, profile).start()
        rows: list[Row] = []
        totals = Verdict()
        # The baseline first: the same measurement with no fault, and a warm stack for the
        # first fault (a cold one answers its first holds slowly).
        for number in [0, *(f for f in faults if f != 0)]:
            row, totals = run_fault(harness, load, checker, book, profile, number, totals, say)
            rows.append(row)
        rows.append(_whole_run(rows, totals, len(harness.restarts)))
        return rows
    finally:
        if load is not None:
            load.stop()
        if fold is not None:
            fold.close()
        harness.stop()


def run_fault(
    harness: Harness,
    load: Load,
    checker: Checker,
    book: HoldBook,
    profile: Profile,
    number: int,
    totals: Verdict,
    say: Callable[[str], None],
) -> tuple[Row, Verdict]:
    name, inject = FAULTS[number]
    row = Row(f"{number}. {name}")
    before, granted, restarts = load.snapshot(), book.granted(), len(harness.restarts)
    holds_before = {api: dict(c) for api, c in load.hold_answers.by_api.items()}
    began = time.monotonic()
    load.resume_writes()
    time.sleep(profile.warm_s)
    run = FaultRun(started=time.monotonic())
    at_fault = load.snapshot()
    say(f"fault {number}: warm-up {_rate(at_fault, before, run.started - began)}")
    inject(harness, profile, run)
    run.ended = time.monotonic()
    at_end = load.snapshot()
    say(f"fault {number}: fault over, {_rate(at_end, at_fault, run.ended - run.started)}")
    load.pause_writes()
    writes_ended = time.monotonic()
    verdict, right_at = settle(checker, profile.settle_timeout_s, run.ended)
    settled = load.snapshot()
    after = time.monotonic() - run.ended
    say(f"fault {number}: checked {after:.0f} s after its end, right: {verdict.right}")

    row.events_accepted = sum(
        a.minus(b).events_accepted for a, b in zip(settled, before, strict=True)
    )
    row.events_per_s = row.events_accepted / (writes_ended - began)
    row.lost = max(0, verdict.lost - totals.lost)
    row.twice = max(0, verdict.twice - totals.twice)
    row.oversold_units = max(0, verdict.oversold_units - totals.oversold_units)
    row.holds_off = verdict.holds_off
    row.holds_granted = book.granted() - granted
    row.right_again_s = None if right_at is None else max(0.0, right_at - run.ended)
    during = [a.minus(b) for a, b in zip(settled, at_fault, strict=True)]
    row.reads_503 = sum(c.reads["503"] for c in during)
    row.reads_wrong = sum(
        c.reads["wrong"] for c in (a.minus(b) for a, b in zip(settled, before, strict=True))
    )
    row.restarts = len(harness.restarts) - restarts
    row.notes += run.notes + run.watched_lines()
    row.notes += _during(at_fault, at_end, "during the fault")
    row.notes += [
        f"{r.name} exited and was restarted: {r.last_words}" for r in harness.restarts[restarts:]
    ]
    row.notes += _hold_answers(load, holds_before)
    row.notes += [f"at the last check: {e}" for e in verdict.examples if not verdict.right]
    row.notes += [f"wrong read: {e}" for e in load.wrong_examples[:5]]
    return row, verdict


def _rate(now: list[ApiCounts], then: list[ApiCounts], seconds: float) -> str:
    accepted = sum(a.minus(b).events_accepted for a, b in zip(now, then, strict=True))
    return f"{accepted:,} events answered 202 in {seconds:.0f} s: {accepted / seconds:,.0f}/s"


def settle(checker: Checker, timeout_s: float, since: float) -> tuple[Verdict, float | None]:
    """Check until right (returns the moment) or `timeout_s` after `since` (None)."""
    deadline = since + timeout_s
    while True:
        try:
            verdict = checker.check()
        except Exception as exc:  # Kafka or Redis still away: the next round tries again
            verdict = Verdict(unanswered=1)
            verdict.note(f"the check itself failed: {exc!r}")
        if verdict.right:
            return verdict, time.monotonic()
        if time.monotonic() > deadline:
            return verdict, None
        time.sleep(CHECK_PAUSE_S)


def _stock(url: str, events: list[dict[str, object]], ledger: Ledger) -> None:
    """The opening receipts through one API, each batch until it is taken."""
    with httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT_S, trust_env=False) as http:
        for start in range(0, len(events), STOCK_BATCH):
            batch = events[start : start + STOCK_BATCH]
            deadline = time.monotonic() + STOCK_TIMEOUT_S
            while (answer := http.post("/v1/events", json=batch)).status_code != 202:
                if answer.status_code != 503 or time.monotonic() > deadline:
                    raise RuntimeError(f"the opening stock was refused: {answer.text[:300]}")
                time.sleep(1)
            ledger.accepted(str(e["event_id"]) for e in batch)


def _during(start: list[ApiCounts], end: list[ApiCounts], when: str) -> list[str]:
    """Each API's event answers over a stretch: for fault 5, API b's 503s."""
    notes = []
    for api, (a, b) in enumerate(zip(end, start, strict=True)):
        diff = a.minus(b)
        answers = ", ".join(f"{code}: {n}" for code, n in sorted(diff.events.items()))
        notes.append(f"api {'ab'[api]} {when}: event batches {answers or 'none'}")
    return notes


def _hold_answers(load: Load, before: dict[int, dict[str, int]]) -> list[str]:
    notes = []
    for api, counts in sorted(load.hold_answers.by_api.items()):
        diff = {k: n - before.get(api, {}).get(k, 0) for k, n in counts.items()}
        shown = ", ".join(f"{k}: {n}" for k, n in sorted(diff.items()) if n)
        notes.append(f"api {'ab'[api]} hold answers: {shown or 'none'}")
    return notes


def _whole_run(rows: Sequence[Row], totals: Verdict, restarts: int) -> Row:
    """The last check's totals, over the whole run."""
    row = Row("whole run (last check)")
    row.events_accepted = sum(r.events_accepted for r in rows)
    row.lost, row.twice = totals.lost, totals.twice
    row.oversold_units, row.holds_off = totals.oversold_units, totals.holds_off
    row.holds_granted = sum(r.holds_granted for r in rows)
    row.reads_503 = sum(r.reads_503 for r in rows)
    row.reads_wrong = sum(r.reads_wrong for r in rows)
    row.restarts = restarts  # those after the last fault's check too
    times = [r.right_again_s for r in rows]
    row.right_again_s = (
        None if None in times else max((t for t in times if t is not None), default=0.0)
    )
    row.events_per_s = sum(r.events_per_s for r in rows) / len(rows) if rows else 0.0
    return row

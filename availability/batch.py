"""Applying a batch of events: the loop both shells run, so they count outcomes alike.

Each SKU's state is loaded once per batch and written once, however many of its events
the batch holds: that coalescing is most of the speed of both modes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from msgspec import Struct

from .events import Count, Event
from .processing import DEFAULT_WINDOWS, Outcome, Windows, apply_event
from .state import SkuState


class DeadLetter(Struct, frozen=True):
    index: int  # position of the event in the batch
    reason: str


class CountDrift(Struct, frozen=True):
    index: int  # position of the count in the batch
    location: str
    units: int  # the books at the count's time minus counted: > 0 shrink, < 0 surplus


class BatchResult(Struct):
    touched: dict[str, SkuState]
    dead_letters: list[DeadLetter]
    outcomes: Counter[tuple[str, str]]  # (event type, outcome) -> events
    drifts: list[CountDrift]
    oversold_change: int
    # (index, outcome) of every count in the batch: an ERP snapshot's report tells its rows'
    # outcomes apart from the other events'.
    count_outcomes: list[tuple[int, str]] = []


def event_type(event: Event) -> str:
    return event.__struct_config__.tag  # type: ignore[return-value]


def apply_events(
    load: Callable[[str], SkuState],
    events: Sequence[Event],
    now_us: int,
    windows: Windows = DEFAULT_WINDOWS,
) -> BatchResult:
    result = BatchResult(
        touched={}, dead_letters=[], outcomes=Counter(), drifts=[], oversold_change=0
    )
    count_outcomes = result.count_outcomes
    touched = result.touched
    for index, event in enumerate(events):
        state = touched.get(event.sku)
        if state is None:
            state = touched[event.sku] = load(event.sku)
        applied = apply_event(state, event, now_us, windows)
        result.outcomes[(event_type(event), applied.outcome.value)] += 1
        if isinstance(event, Count):
            count_outcomes.append((index, applied.outcome.value))
        if applied.outcome is Outcome.DEAD_LETTERED:
            result.dead_letters.append(DeadLetter(index, applied.reason or "dead-lettered"))
        elif applied.drift is not None:
            result.drifts.append(CountDrift(index, event.location, applied.drift))
        result.oversold_change += applied.oversold_change
    return result

"""Throttled fan-out to a channel's feed (SPEC section 7).

A channel's feed gets every change of a SKU's channel quantity, throttled: at most
`max_per_second` items for the channel and at most one item per SKU per `min_interval_ms`.
While a SKU waits its turn, a newer value replaces the older one (coalescing), so throttling
delays a change but never loses the last word: once offers stop and the pump keeps taking,
every SKU's last published value is its newest offered value.

Time is an argument in integer microseconds, never read from a clock: the pump that owns a
`ChannelThrottle` passes `now` in and sleeps until `next_due_at()`.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from itertools import count, repeat
from typing import Final

from msgspec import Struct

from .timeutil import MICROS_PER_SECOND

MICROS_PER_MILLISECOND: Final = 1000


class ThrottledItem(Struct, frozen=True, gc=False):
    """One entry of a channel's feed: a SKU's channel quantity as of `version`."""

    sku: str
    sellable: int
    version: int
    at: int  # µs, when the item entered the feed: the `now` of the take_due that took it
    changed_at: int  # µs, when its value was offered; `at - changed_at` is the feed lag


@dataclass(slots=True)
class _SkuFeed:
    """What the throttle knows of one SKU; kept after publishing, so a replay is a no-op."""

    version: int  # newest accepted version, whether published, pending or unchanged
    sellable: int  # newest accepted value: the pending one while `waiting`
    changed_at: int  # when `sellable` was offered
    waiting: bool  # in the line (ready or cooling) with a value to publish
    published_sellable: int | None = None  # None until first published
    published_at: int = 0


def rate_budget(max_per_second: float) -> tuple[int, int]:
    """(burst, window_us): at most `burst` items in any `window_us` microseconds.

    This is the exact reading of "at most max_per_second items in any window [t, t + 1 s)"
    on integer microseconds. At 1/s or more, the burst is floor(rate) per second: at 2.5/s
    a third item inside one second would break the limit for that second, so 2.5/s publishes
    2 per second. Below 1/s, items are at least 1/rate seconds apart, rounded up to the µs.
    """
    if not (math.isfinite(max_per_second) and max_per_second > 0):
        raise ValueError(f"max_per_second must be positive and finite, not {max_per_second!r}")
    rate = Fraction(max_per_second)  # exact, so 0.1/s spaces items exactly 10 s apart
    if rate >= 1:
        return math.floor(rate), MICROS_PER_SECOND
    return 1, math.ceil(MICROS_PER_SECOND / rate)


def _interval_us(min_interval_ms: int) -> int:
    if min_interval_ms < 0:
        raise ValueError(f"min_interval_ms must be 0 or more, not {min_interval_ms!r}")
    return min_interval_ms * MICROS_PER_MILLISECOND


class ChannelThrottle:
    """The throttle in front of one channel's feed.

    - `offer(sku, sellable, version, now)`: a SKU's channel quantity changed. An offer whose
      version is at or below the newest one seen for the SKU is ignored (counted in `stale`).
      While the SKU waits, the offer replaces its pending value (`coalesced`) and the SKU
      keeps its place in line. An offer equal to the SKU's last published value while
      nothing is pending is dropped (`unchanged`): the feed carries changes of quantity, and
      a rules change that re-offers every SKU must not spend the budget on items that tell
      the channel nothing. Such an offer's version is not published; consumers see the
      version of the last change they were sent. A pending value that changes back to the
      published one before its turn is still published when its turn comes: a consumer may
      have read the value in between from a snapshot (which shows current quantities), and
      only this item corrects it.
    - `take_due(now, limit)`: the items publishable at `now`, in fair order, recorded as
      published at `now`. Fairness: SKUs go in the order they became free to go (offered,
      and past their min interval); a published SKU that changes again rejoins at the
      back, so a hot SKU gets one item per pass over the line and cannot starve the others.
    - `next_due_at()`: the earliest µs at which `take_due` could return an item, or None
      when nothing waits.

    Limits, exact on integer microseconds: in any window [t, t + 1 s) at most
    `max_per_second` items (see `rate_budget`), and a SKU's consecutive items at least
    `min_interval_ms` apart. The scheme is a sliding-window log of the last `burst` publish
    times: an item may go when fewer than `burst` went in the last window. Unlike fixed
    spacing, it lets a pump that wakes late send what is due in one batch, still within
    the limit, instead of losing the slots it slept through.
    Time never runs backwards here: a `now` earlier than one already seen counts as that one.

    Memory is one small record per SKU ever offered (bounded by the catalogue); costs are
    O(1) per offer and item, O(log n) for a SKU that waits out its min interval.
    """

    def __init__(self, max_per_second: float, min_interval_ms: int = 0) -> None:
        self._burst, self._window = rate_budget(max_per_second)
        self._min_interval = _interval_us(min_interval_ms)
        self._max_per_second = max_per_second
        self._min_interval_ms = min_interval_ms
        self._skus: dict[str, _SkuFeed] = {}
        self._ready: deque[str] = deque()  # the fair line: waiting SKUs free to go now
        self._cooling: list[tuple[int, int, str]] = []  # heap: (free at, arrival, sku)
        self._arrivals = count()  # ties in the heap go first come, first served
        self._recent: deque[int] = deque()  # publish times inside the window, at most burst
        self._last_published_at: int | None = None
        self._clock: int | None = None
        self.published = 0
        self.coalesced = 0  # offers that replaced a pending value
        self.stale = 0  # offers at or below the newest version seen: ignored
        self.unchanged = 0  # values dropped because they equal the last published one

    @property
    def max_per_second(self) -> float:
        return self._max_per_second

    @property
    def min_interval_ms(self) -> int:
        return self._min_interval_ms

    @property
    def backlog(self) -> int:
        """SKUs waiting with a value to publish."""
        return len(self._ready) + len(self._cooling)

    def offer(self, sku: str, sellable: int, version: int, now: int) -> None:
        """A SKU's channel quantity is `sellable` as of `version` (see the class docstring)."""
        now = self._tick(now)
        entry = self._skus.get(sku)
        if entry is None:
            self._skus[sku] = _SkuFeed(version, sellable, now, waiting=True)
            self._join_line(sku)
            return
        if version <= entry.version:
            self.stale += 1
            return
        if entry.waiting:
            self.coalesced += 1
        elif sellable == entry.published_sellable:
            entry.version = version  # remembered, so an older offer arriving late is stale
            self.unchanged += 1
            return
        else:
            entry.waiting = True
            free_at = entry.published_at + self._min_interval
            if free_at <= now:
                self._join_line(sku)
            else:
                heapq.heappush(self._cooling, (free_at, next(self._arrivals), sku))
        entry.version, entry.sellable, entry.changed_at = version, sellable, now

    def knows(self, sku: str) -> bool:
        """Whether the SKU was ever offered or remembered here."""
        return sku in self._skus

    def remember(self, sku: str, sellable: int, version: int) -> None:
        """The feed already carries `sellable` as of `version` for the SKU, published before
        this throttle existed (a worker taking over a partition reads it back): later offers
        are compared with it. A SKU the throttle already knows is left as it is."""
        if sku not in self._skus:
            self._skus[sku] = _SkuFeed(
                version, sellable, 0, waiting=False, published_sellable=sellable
            )

    def take_due(self, now: int, limit: int | None = None) -> list[ThrottledItem]:
        """The items publishable at `now` (at most `limit`), in fair order, recorded as
        published at `now`. What the limits hold back stays in line, in its place."""
        now = self._tick(now)
        self._promote(now)
        recent, window = self._recent, self._window
        while recent and recent[0] + window <= now:
            recent.popleft()
        room = self._burst - len(recent)
        if limit is not None:
            room = min(room, limit)
        items: list[ThrottledItem] = []
        ready, skus = self._ready, self._skus
        while ready and len(items) < room:
            sku = ready.popleft()
            entry = skus[sku]
            entry.waiting = False
            entry.published_sellable = entry.sellable
            entry.published_at = now
            items.append(ThrottledItem(sku, entry.sellable, entry.version, now, entry.changed_at))
        if items:
            recent.extend(repeat(now, len(items)))
            self._last_published_at = now
            self.published += len(items)
        return items

    def next_due_at(self) -> int | None:
        """The earliest µs at which `take_due` could return an item; None when nothing waits.

        It may be at or before the last `now` seen (something is due already).
        """
        if self._ready and self._clock is not None:
            due = self._clock
        elif self._cooling:
            due = self._cooling[0][0]
        else:
            return None
        if len(self._recent) >= self._burst:  # never more: take_due and reconfigure trim it
            due = max(due, self._recent[0] + self._window)
        return due

    def reconfigure(self, max_per_second: float, min_interval_ms: int) -> None:
        """New limits (a rules change): pending values keep their place in line, and the new
        limits count the items already published. A SKU that the new min interval holds
        back rejoins the line at the back when its interval has passed."""
        self._burst, self._window = rate_budget(max_per_second)
        interval = _interval_us(min_interval_ms)
        self._max_per_second, self._min_interval_ms = max_per_second, min_interval_ms
        recent = self._recent
        if not recent and self._last_published_at is not None:
            recent.append(self._last_published_at)  # a longer window may still reach it
        while len(recent) > self._burst:
            recent.popleft()
        if interval != self._min_interval:
            self._min_interval = interval
            self._requeue()

    def _tick(self, now: int) -> int:
        if self._clock is not None and now < self._clock:
            return self._clock
        self._clock = now
        return now

    def _join_line(self, sku: str) -> None:
        if self._cooling and self._clock is not None:
            self._promote(self._clock)  # who was free earlier stands ahead
        self._ready.append(sku)

    def _promote(self, now: int) -> None:
        cooling, ready = self._cooling, self._ready
        while cooling and cooling[0][0] <= now:
            ready.append(heapq.heappop(cooling)[2])

    def _requeue(self) -> None:
        """Recompute who is free to go under a changed min interval, keeping line order."""
        clock = self._clock if self._clock is not None else 0
        ready: deque[str] = deque()
        cooling: list[tuple[int, int, str]] = []
        for sku in self._ready:
            entry = self._skus[sku]
            free_at = entry.published_at + self._min_interval
            if entry.published_sellable is None or free_at <= clock:
                ready.append(sku)
            else:
                cooling.append((free_at, next(self._arrivals), sku))
        for _, arrival, sku in self._cooling:
            free_at = self._skus[sku].published_at + self._min_interval
            cooling.append((free_at, arrival, sku))
        heapq.heapify(cooling)
        self._ready, self._cooling = ready, cooling

"""What a channel feed answers (SPEC 5 and 7), the same in both modes.

A cursor is opaque to consumers: each mode makes its own (a sequence number in the embedded
mode, a Redis stream id in the streaming mode) and refuses one it did not make. A cursor
names the last item a consumer has; a read returns the items after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

from msgspec import Struct

MAX_FEED_LIMIT: Final = 1000
DEFAULT_FEED_LIMIT: Final = 100
MAX_WAIT_MS: Final = 30_000
MAX_SNAPSHOT_LIMIT: Final = 1000
DEFAULT_SNAPSHOT_LIMIT: Final = 500


class FeedItem(Struct, frozen=True, gc=False):
    """One published change of a SKU's channel quantity; `at` is when it entered the feed."""

    sku: str
    sellable: int
    version: int
    at: str


class FeedPage(Struct, frozen=True, gc=False):
    items: list[FeedItem]
    cursor: str  # the last item returned, or the cursor asked with when there was none


class SnapshotItem(Struct, frozen=True, gc=False):
    sku: str
    sellable: int
    version: int


class SnapshotPage(Struct, frozen=True, gc=False, omit_defaults=False):
    """Every SKU's current channel quantity, a page at a time, in SKU order. `cursor` is the
    feed position to follow from once every page is read: changes after it are in the feed,
    and a consumer keeps, per SKU, whichever of snapshot and feed has the higher version."""

    items: list[SnapshotItem]
    cursor: str
    next_page_token: str | None


class FeedObserver(Protocol):
    """What a fan-out reports, for the metrics of the process that runs it."""

    def feed_published(self, channel: str, lags_seconds: Sequence[float]) -> None:
        """Items appended to the channel's feed, each with its change -> feed lag."""

    def feed_coalesced(self, channel: str, count: int) -> None:
        """Changes that replaced a value still waiting its turn."""

    def feed_backlog(self, channel: str, backlog: int) -> None:
        """SKUs whose value waits for its turn in the channel's feed, now."""


class NoFeedObserver:
    def feed_published(self, channel: str, lags_seconds: Sequence[float]) -> None:
        pass

    def feed_coalesced(self, channel: str, count: int) -> None:
        pass

    def feed_backlog(self, channel: str, backlog: int) -> None:
        pass

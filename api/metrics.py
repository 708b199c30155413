"""Prometheus metrics of the API process, in a registry of its own (one per app)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from availability.batch import BatchResult

LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
DRIFT_BUCKETS: Final = (0, 1, 2, 5, 10, 20, 50, 100, 500, 1000, 10_000)


class ApiMetrics:
    def __init__(self, oversold_positions: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "availability_events",
            "Events by type and outcome (applied, duplicate, stale, dead_lettered, invalid,"
            " accepted when only enqueued)",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.oversold = Gauge(
            "availability_oversold_positions",
            "Positions whose on_hand minus reserved is below zero",
            registry=self.registry,
        )
        self.oversold.set_function(oversold_positions)
        self.drift = Histogram(
            "availability_count_drift_units",
            "Absolute drift of applied counts: book on_hand at the count's time minus counted",
            buckets=DRIFT_BUCKETS,
            registry=self.registry,
        )
        self.drift_by_location = Counter(
            "availability_count_drift_by_location_units",
            "Units of drift of applied counts by location: shrink (the books above the shelf)"
            " or surplus (below)",
            ["location", "direction"],
            registry=self.registry,
        )
        self.counts_by_location = Counter(
            "availability_counts_applied_by_location",
            "Counts applied by location (ERP snapshot rows and single count events)",
            ["location"],
            registry=self.registry,
        )
        self.requests = Histogram(
            "availability_http_request_duration_seconds",
            "HTTP request duration by route template, method and status",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

        # The embedded mode's fan-out; in the streaming mode the workers export these.
        self.feed_items = Counter(
            "availability_feed_published",
            "Items appended to the channel's feed",
            ["channel"],
            registry=self.registry,
        )
        self.feed_coalesced_changes = Counter(
            "availability_feed_coalesced",
            "Channel quantity changes replaced by a newer one before their turn",
            ["channel"],
            registry=self.registry,
        )
        self.feed_backlog_skus = Gauge(
            "availability_feed_backlog",
            "SKUs whose newest channel quantity waits for its turn in the channel's feed",
            ["channel"],
            registry=self.registry,
        )
        self.feed_lag = Histogram(
            "availability_feed_lag_seconds",
            "From a channel quantity's change to its item in the channel's feed",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def feed_published(self, channel: str, lags_seconds: Sequence[float]) -> None:
        self.feed_items.labels(channel).inc(len(lags_seconds))
        histogram = self.feed_lag.labels(channel)
        for lag in lags_seconds:
            histogram.observe(lag)

    def feed_coalesced(self, channel: str, count: int) -> None:
        self.feed_coalesced_changes.labels(channel).inc(count)

    def feed_backlog(self, channel: str, backlog: int) -> None:
        self.feed_backlog_skus.labels(channel).set(backlog)

    def record_batch(self, result: BatchResult | None, types: dict[str, int]) -> None:
        if result is None:
            for event_type, count in types.items():
                self.events.labels(event_type, "accepted").inc(count)
            return
        for (event_type, outcome), count in result.outcomes.items():
            self.events.labels(event_type, outcome).inc(count)
        for drift in result.drifts:
            self.drift.observe(abs(drift.units))
            self.counts_by_location.labels(drift.location).inc()
            if drift.units:
                direction = "shrink" if drift.units > 0 else "surplus"
                self.drift_by_location.labels(drift.location, direction).inc(abs(drift.units))

    def record_invalid(self, types: dict[str, int]) -> None:
        for event_type, count in types.items():
            self.events.labels(event_type, "invalid").inc(count)


class RequestTimer:
    """Pure ASGI middleware timing each request under its route template, not its raw path."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # Each (route, method, status)'s histogram: `labels()` finds it again under a lock,
        # which cost about as much as observing (profiled under a cached read's load).
        self._histograms: dict[tuple[str, str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route: Any = scope.get("route")
            template = route.path if route is not None else "unmatched"
            key = (template, scope["method"], status)
            histogram = self._histograms.get(key)
            if histogram is None:
                histogram = self._histograms[key] = self.metrics.requests.labels(
                    template, key[1], str(status)
                )
            histogram.observe(time.perf_counter() - started)

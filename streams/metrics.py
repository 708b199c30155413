"""The worker's Prometheus metrics, served on AVAIL_METRICS_PORT."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from availability.batch import BatchResult

LAG_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DRIFT_BUCKETS: Final = (0, 1, 2, 5, 10, 20, 50, 100, 500, 1000, 10_000)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "availability_events",
            "Events by type and outcome (applied, duplicate, stale, dead_lettered, invalid)",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "availability_dead_letters", "Messages sent to the DLQ topic", registry=self.registry
        )
        self.oversold = Gauge(
            "availability_oversold_positions",
            "Positions of this worker's partitions whose on_hand minus reserved is below zero",
            registry=self.registry,
        )
        self.drift = Histogram(
            "availability_count_drift_units",
            "Absolute drift of applied counts",
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
        self.sync_lag = Histogram(
            "availability_sync_lag_seconds",
            "From an event's occurred_at to its effect being readable in Redis",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "availability_stream_batch_seconds",
            "Time to apply, store and publish one batch",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.changelog_failures = Counter(
            "availability_changelog_write_failures",
            "Changelog record batches Kafka did not take: the worker stops on the first",
            registry=self.registry,
        )
        self.redis_failures = Counter(
            "availability_redis_write_failures",
            "Redis calls of the read-model writer that failed; each is retried after a backoff "
            "(up to 2 s) while the stream waits",
            registry=self.registry,
        )
        self.published_ahead = Counter(
            "availability_published_ahead_of_table",
            "SKUs whose answer in Redis has a newer version than this worker's table: only a "
            "lost table write can cause it",
            registry=self.registry,
        )
        self.rebuilds = Counter(
            "availability_read_model_rebuilds",
            "Partitions republished whole to Redis (takeover, restart, flush)",
            registry=self.registry,
        )

        self.feed_backlog_skus = Gauge(
            "availability_feed_backlog",
            "SKUs whose newest channel quantity waits for its turn in the channel's feed",
            ["channel"],
            registry=self.registry,
        )
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
        self.feed_lag = Histogram(
            "availability_feed_lag_seconds",
            "From a channel quantity's change to its item in the channel's feed",
            ["channel"],
            buckets=LAG_BUCKETS,
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

    def record(self, result: BatchResult) -> None:
        for (event_type, outcome), count in result.outcomes.items():
            self.events.labels(event_type, outcome).inc(count)
        for drift in result.drifts:
            self.drift.observe(abs(drift.units))
            self.counts_by_location.labels(drift.location).inc()
            if drift.units:
                direction = "shrink" if drift.units > 0 else "surplus"
                self.drift_by_location.labels(drift.location, direction).inc(abs(drift.units))
        self.oversold.inc(result.oversold_change)

"""The faust-streaming app of `availability worker`: fetched batches, one table, a publisher.

Every inventory topic and the control topic have the same partition count and are keyed
by SKU, so partition p of each lands on the same worker, which is the single writer of
its SKUs in the table `sku-state` (RocksDB, with a changelog topic and standby replicas).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Final

import faust
import redis.asyncio as aioredis
from faust.types import TP
from prometheus_client import start_http_server

from availability import Settings
from availability.control import ExpireHolds, control_encoder
from availability.layout import HEAD, HeadFigures, decode_figures, head_key
from availability.memory import settle_garbage_collector
from availability.published import Quantities
from availability.state import SkuFigures
from availability.timeutil import MICROS_PER_SECOND
from availability.topics import STATE_TABLE, Names, min_in_sync, partition_for

from .changelog import ChangelogFailure, ChangelogWriter
from .durable import AfterDurable
from .fanout import FeedPump
from .fencing import ChangelogProducers, past_last_records
from .metrics import WorkerMetrics
from .processor import Processor, Record, RulesHolder
from .publisher import RedisPublisher
from .rules_follower import RulesFollower
from .table import PartitionedTable
from .transport import BatchDelivery, Fencing, RecordBatch, Transport, producer_durable

log = logging.getLogger("availability.worker")

BATCH_MAX: Final = 2000  # events per batch: bounds a batch's latency and memory
YOUNG_GC_THRESHOLD: Final = 50_000  # see maintain(): settle_garbage_collector
MAINTENANCE_EVERY: Final = 1.0  # seconds between checks that Redis holds our partitions
HOLD_EXPIRY_EVERY: Final = 0.25  # seconds between looks for a hold whose time is up
EXPIRY_RESEND_S: Final = 5.0  # an ExpireHolds not handled by then (lost in a rebalance) again
# The changelog goes out a record batch per partition at a time (streams/changelog.py): room
# for a round's records in one, under Kafka's default 1 MB message limit.
CHANGELOG_BATCH_BYTES: Final = 512 * 1024
UNMARK_TIMEOUT_S: Final = 2.0  # a failing worker's last word to Redis, if Redis answers


def wall_clock_micros() -> int:
    return time.time_ns() // 1000


class FaustDeadLetters:
    def __init__(self, topic: faust.TopicT) -> None:
        self._topic = topic

    def send(
        self,
        raw: bytes | None,
        key: bytes | None,
        reason: str,
        topic: str,
        partition: int,
        offset: int,
    ) -> None:
        log.warning("dead-letter %s[%d]@%d: %s", topic, partition, offset, reason)
        headers = [
            ("reason", reason.encode()),
            ("source_topic", topic.encode()),
            ("source_partition", str(partition).encode()),
            ("source_offset", str(offset).encode()),
        ]
        self._topic.send_soon(key=key, value=raw, headers=headers)


class Worker:
    """Everything one worker process runs, wired from the settings."""

    def __init__(
        self,
        settings: Settings,
        instance_id: str,
        kafka_options: Mapping[str, Any] | None = None,
        broker_credentials: Any = None,
    ) -> None:
        """`kafka_options` for the worker's own aiokafka clients, `broker_credentials` for
        faust's: both from the security settings (service/worker.py)."""
        self.settings = settings
        self.instance_id = instance_id
        self.names = Names(settings.topic_prefix)
        self.metrics = WorkerMetrics()
        self.rules = RulesHolder()
        # Copies of each topic faust creates (the table's changelog when missing, its own
        # assignor topic, the feed topics), as the others have (service/worker.py).
        self.replication = max(1, settings.replication_factor)
        self.app = faust.App(
            settings.app_id,
            broker=f"kafka://{settings.kafka_bootstrap}",
            broker_credentials=broker_credentials,
            store="rocksdb://",
            datadir=settings.data_dir,
            topic_partitions=settings.partitions,
            topic_replication_factor=self.replication,
            table_standby_replicas=settings.standby_replicas,
            producer_acks=-1,
            consumer_auto_offset_reset="earliest",
            web_enabled=False,
            key_serializer="raw",
            value_serializer="raw",
            # Changelog records go out in batches rather than one produce request each.
            producer_linger=0.001,
            producer_max_batch_size=CHANGELOG_BATCH_BYTES,
            # A killed worker's partitions move once its session times out: 10 s rather
            # than faust's 60 s keeps a takeover within seconds of a crash.
            broker_session_timeout=10.0,
            broker_heartbeat_interval=3.0,
        )
        # Before anything builds faust's own: see streams/transport.py for what it changes.
        self.transport = Transport(self.app.conf.broker_consumer, self.app)
        self.app.transport = self.transport
        raw: dict[str, Any] = {
            "key_type": bytes,
            "value_type": bytes,
            "key_serializer": "raw",
            "value_serializer": "raw",
        }
        self.source = self.app.topic(
            *self.names.inventory_topics,
            self.names.control_topic,
            partitions=settings.partitions,
            **raw,
        )
        # Serializers come from the app's raw defaults: records are msgpack made by the core.
        faust_table = self.app.Table(
            STATE_TABLE,
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
            extra_topic_configs=min_in_sync(self.replication),
        )
        store: Any = faust_table.data  # faust's RocksDB store
        self.failed: ChangelogFailure | None = None  # set when a changelog write failed
        self._stopping: asyncio.Task[None] | None = None
        changelog_topic = faust_table.changelog_topic.get_topic_name()
        self.kafka_options = dict(kafka_options or {})
        self.producers = ChangelogProducers(
            settings.kafka_bootstrap, changelog_topic, CHANGELOG_BATCH_BYTES, self.kafka_options
        )
        self.changelog = ChangelogWriter(
            changelog_topic,
            self.producers.__getitem__,
            store.set_persisted_offset,
            CHANGELOG_BATCH_BYTES,
            self.changelog_failed,
        )
        self.table = PartitionedTable(faust_table, self.changelog)
        dlq = self.app.topic(self.names.dlq_topic, **raw)
        self.control = self.app.topic(self.names.control_topic, **raw)
        self._expiry_sent: dict[int, float] = {}  # partition -> when an ExpireHolds went
        self._settled = False  # whether the garbage collector was settled after start-up
        self.processor = Processor(
            self.names,
            settings.partitions,
            self.table,
            FaustDeadLetters(dlq),
            self.rules,
            settings.windows,
            wall_clock_micros,
            cache_skus=settings.cache_skus,
        )
        self.redis = aioredis.Redis.from_url(
            settings.redis_url, **settings.redis_options(settings.redis_url)
        )
        self.publisher = RedisPublisher(
            self.redis, self.names.redis_namespace, self.metrics.redis_failures.inc
        )
        self.publisher.on_published.append(self.observe_published)
        self.publisher.on_published.append(self.offer_to_feeds)
        self.publisher.on_ahead.append(self.published_ahead)
        self.after_durable = AfterDurable(self.durable, self.publisher)
        self.follower = RulesFollower(
            settings.kafka_bootstrap,
            self.names.rules_topic,
            self.rules,
            kafka_options,
        )
        self.raw_topic = raw
        self.feed_topics: dict[str, faust.TopicT] = {}
        self.fanout = FeedPump(
            self.redis,
            self.names.redis_namespace,
            settings.partitions,
            settings.feed_retention,
            self.send_to_feed_topic,
            wall_clock_micros,
            self.metrics,
        )
        self._fanout_rules: object = None  # the compiled rules the fan-out was set up with
        self._wire()

    def _wire(self) -> None:
        app = self.app
        # The source is subscribed like an agent's topic, but its records come to `handle`
        # a fetch at a time, from the consumer itself (streams/transport.py). One caller,
        # one partition's records in order: the single writer faust #606 asks agents for.
        app.topics.add(self.source)
        self.transport.batches = BatchDelivery(
            topics=frozenset(self.source.topics),
            handle=self.handle,
            max_records=BATCH_MAX,
            ready=self.ready_for_more,
            durable=self.durable,
        )
        self.transport.fencing = Fencing(
            assigned=self.partitions_assigned,
            revoked=self.partitions_revoked,
            past_last_records=self.past_last_records,
        )
        app.on_before_shutdown.connect(self.close_producers)

        @app.task  # type: ignore[untyped-decorator]  # mode's decorators are untyped
        async def quiet_logging() -> None:
            # mode's worker leaves the root logger at NOTSET, so every library's debug
            # records were built (and dropped) on the hot path: a few percent of a batch.
            logging.getLogger().setLevel(self.settings.log_level.upper())

        @app.task  # type: ignore[untyped-decorator]
        async def follow_rules() -> None:
            await self.follower.run()

        @app.task  # type: ignore[untyped-decorator]
        async def publish_to_redis() -> None:
            await self.publisher.run()

        @app.task  # type: ignore[untyped-decorator]
        async def produce_changelog() -> None:
            await self.changelog.run()

        @app.task  # type: ignore[untyped-decorator]
        async def publish_when_durable() -> None:
            await self.after_durable.run()

        @app.timer(MAINTENANCE_EVERY)  # type: ignore[untyped-decorator]
        async def maintain_read_model() -> None:
            await self.maintain()

        @app.timer(HOLD_EXPIRY_EVERY)  # type: ignore[untyped-decorator]
        async def expire_holds() -> None:
            await self.send_hold_expiries()

        @app.task  # type: ignore[untyped-decorator]
        async def pump_feeds() -> None:
            await self.fanout.run()

        @app.task  # type: ignore[untyped-decorator]
        async def serve_metrics() -> None:
            start_http_server(self.settings.metrics_port, self.settings.host, self.metrics.registry)

    async def ready_for_more(self) -> None:
        """Before each fetch: the rules are followed, and the changelog keeps up."""
        await self.follower.caught_up.wait()
        await self.changelog.ebb()

    async def durable(self) -> None:
        """Every record produced so far is acknowledged by Kafka: the changelog's, then the
        rest (dead letters, control messages) through faust's producer. Raises
        ChangelogFailure once a changelog write failed: no commit or publish goes past it."""
        await self.changelog.acknowledged()
        await producer_durable(self.app)

    async def partitions_assigned(self, assigned: AbstractSet[TP]) -> None:
        """Start the changelog producers of the partitions this worker now owns, before
        faust recovers them: whoever wrote them before is fenced (streams/fencing.py)."""
        owned = {tp.partition for tp in assigned if tp.topic in self.source.topics}
        await self.producers.release(self.producers.owned() - owned)
        await self.producers.claim(owned)

    async def partitions_revoked(self, revoked: AbstractSet[TP]) -> None:
        """Commit what the revoked partitions' changelogs still wait for: their next owner's
        producers would abort it."""
        gone = {tp.partition for tp in revoked if tp.topic in self.source.topics}
        # A failure was said already: the worker stops (changelog_failed) and recovers.
        with contextlib.suppress(ChangelogFailure):
            await self.changelog.acknowledged(gone & self.producers.owned())

    async def past_last_records(self, ends: Mapping[TP, int]) -> Mapping[TP, int]:
        found = await past_last_records(self.settings.kafka_bootstrap, ends, self.kafka_options)
        return {TP(tp.topic, tp.partition): offset for tp, offset in found.items()}

    async def close_producers(self, _: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """On faust's way out: the last transactions committed, then the producers stopped
        (one left open would hold the changelog's readers back until it timed out)."""
        with contextlib.suppress(ChangelogFailure):  # said already, and in the exit code
            await self.changelog.acknowledged()
        await self.producers.close()

    def changelog_failed(self, failure: ChangelogFailure) -> None:
        """The local table is ahead of the changelog now: stop, so that a restart drops it
        and recovers from the changelog, reapplying every event not committed."""
        log.error("changelog write failed, the worker stops: %s", failure)
        self.metrics.changelog_failures.inc()
        self.failed = failure
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop_after_failure(failure))

    async def _stop_after_failure(self, failure: ChangelogFailure) -> None:
        # Readers must not take this worker's partitions for ready while nobody owns them.
        owned = sorted(self.active_partitions())
        try:
            async with asyncio.timeout(UNMARK_TIMEOUT_S):
                await self.publisher.unmark_ready(owned, self.instance_id)
        except Exception as exc:  # Redis may be failing too: the stop matters more
            log.error("could not withdraw the ready marks of partitions %s: %r", owned, exc)
        await self.app.crash(failure)

    def handle(self, batch: RecordBatch) -> set[int]:
        """Apply one fetch's records, whole, before anything else runs (see BatchDelivery);
        returns the partitions left alone."""
        started = time.perf_counter()
        owned = self.active_partitions()
        by_partition: dict[int, list[Record]] = defaultdict(list)
        for tp, records in batch.items():
            by_partition[tp.partition] += records
        changed: dict[str, bytes] = {}
        replies: list[tuple[str, bytes]] = []
        reports: list[tuple[str, bytes]] = []
        left_alone: set[int] = set()
        self.processor.cache.follow_generation(self.app.consumer_generation_id)
        for partition, messages in by_partition.items():
            if partition not in owned:
                # Fetched before a rebalance took the partition away: its new owner reads
                # them again from the committed offset, and a second writer would corrupt it.
                log.info("skipped %d events of partition %d: not ours", len(messages), partition)
                left_alone.add(partition)
                continue
            try:
                with self.table.in_partition(partition):
                    outcome = self.processor.handle_partition(partition, messages)
            except BaseException:
                # The cached states may hold effects that the table never got.
                self.processor.cache.clear()
                raise
            changed.update(outcome.changed)
            replies += outcome.replies
            reports += outcome.reports
            for result in outcome.results:
                self.metrics.record(result)
            if outcome.invalid:
                self.metrics.events.labels("unknown", "invalid").inc(outcome.invalid)
                self.metrics.dead_letters.inc(outcome.invalid)
        # Replies and answers wait for the changelog (streams/durable.py); the worker does not.
        self.after_durable.add(changed, replies, self.rules.compiled, reports)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return left_alone

    def reassigning(self) -> bool:
        """Whether partitions are moving (a rebalance, or tables recovering after one):
        what this worker owns is not settled yet."""
        return bool(self.app.rebalancing or getattr(self.app, "in_recovery", False))

    async def send_hold_expiries(self) -> None:
        """Tell each of our partitions whose next hold is due to expire it, through its
        own control partition: the expiry is then applied in order, like an event."""
        if self.reassigning():
            return
        now, clock = wall_clock_micros(), time.monotonic()
        for partition in sorted(self.active_partitions()):
            due = self.processor.next_hold_due(partition)
            if due is None or due > now:
                self._expiry_sent.pop(partition, None)
                continue
            if clock - self._expiry_sent.get(partition, -EXPIRY_RESEND_S) < EXPIRY_RESEND_S:
                continue
            self._expiry_sent[partition] = clock
            await self.control.send(
                key=b"\x00expire", value=control_encoder.encode(ExpireHolds()), partition=partition
            )

    def follow_feed_rules(self) -> bool:
        """Set the fan-out up for the rules in force; True when a channel just got a feed,
        so every SKU of this worker's partitions must be offered to it."""
        compiled = self.rules.compiled
        if compiled is self._fanout_rules:
            return False
        self._fanout_rules = compiled
        return bool(self.fanout.configure(compiled))

    async def readopt_feeds(self) -> None:
        for partition in sorted(self.active_partitions()):
            states = self.partition_states(partition)
            try:
                await self.durable()  # as in rebuild: nothing the changelog may refuse
            except ChangelogFailure:
                return  # the worker is stopping
            await self.fanout.adopt(partition, states, self.rules.compiled)

    async def send_to_feed_topic(self, channel: str, sku: str, value: bytes) -> None:
        topic = self.feed_topics.get(channel)
        if topic is None:
            topic = self.app.topic(
                self.names.feed_topic(channel),
                partitions=self.settings.partitions,
                compacting=True,
                deleting=False,
                replicas=self.replication,
                config=min_in_sync(self.replication),
                **self.raw_topic,
            )
            await topic.maybe_declare()
            self.feed_topics[channel] = topic
        await topic.send(key=sku.encode(), value=value)

    def offer_to_feeds(
        self, states: Sequence[SkuFigures], quantities: Sequence[Quantities]
    ) -> None:
        """Offer changes to the feeds only once Redis holds them: a feed item must never be
        ahead of the answers a snapshot reads, or a consumer that snapshots after the item
        entered the feed, but before its answer was written, would keep the older value."""
        by_partition: dict[int, list[tuple[SkuFigures, Quantities]]] = defaultdict(list)
        for offer in zip(states, quantities, strict=True):
            partition = partition_for(offer[0].sku.encode(), self.settings.partitions)
            by_partition[partition].append(offer)
        for partition, offers in by_partition.items():
            self.fanout.changed(partition, offers)

    def observe_published(self, states: Sequence[SkuFigures], _: Sequence[Quantities]) -> None:
        now = time.time()
        for state in states:
            self.metrics.sync_lag.observe(max(0.0, now - state.newest_at / MICROS_PER_SECOND))

    def published_ahead(self, found: Sequence[tuple[SkuFigures, int]]) -> None:
        """Redis holds a newer version of these SKUs than was written: an alarm when it is
        newer than this worker's table too (the table lost writes), unless the partition
        moved meanwhile and its new owner wrote them. (A rebuild publishes states read
        before it waited for the changelog, and newer ones may be published meanwhile.)"""
        if self.reassigning():
            return
        owned = self.active_partitions()
        lost: list[tuple[SkuFigures, int, int]] = []
        for state, stored in found:
            partition = partition_for(state.sku.encode(), self.settings.partitions)
            if partition in owned and stored > (table := self.table_version(partition, state.sku)):
                lost.append((state, stored, table))
        if lost:
            self.metrics.published_ahead.inc(len(lost))
            state, stored, table = lost[0]
            log.error(
                "redis holds newer versions than the table for %d SKUs (%s at version %d, "
                "the table at %d, first of them): table writes were lost; see "
                "`availability sku-history`",
                len(lost),
                state.sku,
                stored,
                table,
            )

    def table_version(self, partition: int, sku: str) -> int:
        """The SKU's version in the table now."""
        head = self.table.reader(partition).get(head_key(sku))
        return -1 if head is None else decode_figures(head).version

    def active_partitions(self) -> set[int]:
        topics = set(self.names.inventory_topics)
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic in topics}

    async def maintain(self) -> None:
        """Republish every partition this worker owns but did not publish whole since it
        took it over (a start, a rebalance, a Redis flush), then mark it ready."""
        if self.reassigning() or self.failed is not None:
            return  # a failed worker is stopping: it marks nothing ready again
        if not self.follower.caught_up.is_set():
            return
        owned = self.active_partitions()
        self.fanout.drop(self.fanout.owned() - owned)
        for partition in set(self.processor.hold_expiries) - owned:
            del self.processor.hold_expiries[partition]  # its new owner takes them over
        if self.follow_feed_rules():
            await self.after_durable.handed_over()  # the new channel's answers first:
            await self.publisher.written()  # see offer_to_feeds
            await self.readopt_feeds()
        if not self._settled:
            # Recovered and following the rules: started. A worker under load keeps its
            # prefetched records alive (up to a few hundred thousand objects), and with
            # CPython's default thresholds its collections walked them over and over:
            # gc callbacks counted 1.9 s of collections while it applied 150,000 events
            # in about 14 s, and 0.5 s with this threshold.
            settle_garbage_collector(young_threshold=YOUNG_GC_THRESHOLD)
            self._settled = True
        owners = await self.publisher.ready_owners()
        for partition in sorted(owned):
            if owners.get(partition) == self.instance_id:
                continue
            await self.rebuild(partition)
        if self.publisher.healthy and owned:
            # Only while the answers' writer gets through: one that retries against a
            # Redis it cannot write lets the keys expire, and readers see it (/readyz).
            await self.publisher.still_writing(sorted(owned), self.instance_id)

    def partition_states(self, partition: int) -> list[HeadFigures]:
        """Every SKU of the partition as its head has it: what answers and feeds need."""
        return [decode_figures(value) for _, value in self.table.partition_items(partition, HEAD)]

    async def rebuild(self, partition: int) -> None:
        started = time.perf_counter()
        states = self.partition_states(partition)
        # The table may hold writes the changelog has not acknowledged yet: they go out
        # once it has, and never if it refused them (the worker is stopping then).
        try:
            await self.durable()
        except ChangelogFailure:
            return
        await self.publisher.publish(states, self.rules.compiled)
        if partition not in self.active_partitions() or self.failed is not None:
            return  # taken away while we published (its new owner rebuilds it), or stopping
        self.processor.remember_holds(partition, self.table.reader(partition))
        await self.fanout.adopt(partition, states, self.rules.compiled)
        await self.publisher.mark_ready(partition, self.instance_id)
        self.metrics.rebuilds.inc()
        log.info(
            "partition %d republished to redis: %d SKUs in %.2f s",
            partition,
            len(states),
            time.perf_counter() - started,
        )
        await asyncio.sleep(0)

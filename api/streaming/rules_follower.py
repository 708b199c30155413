"""The rules in force in the streaming mode: the latest document of the compacted rules topic.

Every API process follows the topic, so a PUT on any of them reaches all. A PUT writes the
document to the rules topic first, and its offset there becomes its revision (it only
grows); then it tells every worker with a RulesChanged on each partition of the control
topic, so each worker applies it in order with its partition's events. A worker keeps the
highest revision it has seen, so two PUTs racing on two API processes end, everywhere, on
the one the rules topic holds last.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from availability import InvalidRules, NotReady, Rules, UnknownChannel, decode_rules, encode_rules
from availability.control import RulesChanged, control_encoder
from availability.rules import EMPTY_RULES
from availability.topics import Names

from .kafka_link import KafkaLink, Record
from .tasks import cancel_and_wait

log = logging.getLogger("availability.api.rules")

RULES_KEY: Final = b"rules"  # one key: compaction keeps only the latest document
POLL_MS: Final = 500
# Reading a compacted one-key topic to its end takes a few records; this bounds a start
# against a broker that answers metadata but not fetches.
CATCH_UP_TIMEOUT_S: Final = 30.0
RETRY_AFTER_ERROR_S: Final = 1.0


class RulesFollower:
    def __init__(
        self, kafka: KafkaLink, names: Names, partitions: int, rules_at_start: Rules | None
    ) -> None:
        self._kafka = kafka
        self._names = names
        self._partitions = partitions
        self._rules_at_start = rules_at_start
        self._rules = EMPTY_RULES
        self._revision = -1  # the rules topic offset of self._rules; -1: none yet
        self._ready = False
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._publishing = asyncio.Lock()  # one PUT at a time from this process

    @property
    def ready(self) -> bool:
        """The rules topic was read to its end and the rules of --rules are published."""
        return self._ready

    async def start(self) -> None:
        """Read the rules topic to its end, publish the rules given at start if they differ
        from it, then follow it in the background. Raises KafkaError or TimeoutError when
        Kafka can't be reached; calling it again then goes on where it stopped."""
        if self._consumer is None:
            self._consumer = await self._catch_up()
            self._task = asyncio.create_task(self._follow(self._consumer), name="rules-follower")
        if self._rules_at_start is not None:
            await self.publish_if_changed(self._rules_at_start)
        self._ready = True

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    # -- RulesAdmin ------------------------------------------------------------------------

    async def rules(self) -> Rules:
        self._require_ready()
        return self._rules

    async def replace_rules(self, rules: Rules) -> Rules:
        self._require_ready()
        async with self._publishing:
            await self._publish(rules)
        return rules

    # -- ChannelCatalog --------------------------------------------------------------------

    def has_channel(self, channel: str) -> bool:
        self._require_ready()
        return channel in self._rules.channels

    def has_feed(self, channel: str) -> bool:
        """Whether `channel` has a feed; UnknownChannel when the rules don't name it."""
        self._require_ready()
        rule = self._rules.channels.get(channel)
        if rule is None:
            raise UnknownChannel(f"channel {channel!r} is not in the rules")
        return rule.feed is not None

    # -- publishing ------------------------------------------------------------------------

    async def publish_if_changed(self, rules: Rules) -> None:
        """Publish `rules` unless they are the latest document already: restarting an API
        with the same --rules file changes no SKU's version."""
        async with self._publishing:
            if rules != self._rules or self._revision < 0:
                await self._publish(rules)

    async def _publish(self, rules: Rules) -> None:
        [stored] = await self._kafka.send_all(
            [Record(self._names.rules_topic, RULES_KEY, encode_rules(rules), partition=0)],
            "the rules were not replaced: the old rules stay",
        )
        revision = stored.offset
        announcement = control_encoder.encode(RulesChanged(revision, rules))
        await self._kafka.send_all(
            [
                Record(self._names.control_topic, RULES_KEY, announcement, partition)
                for partition in range(self._partitions)
            ],
            f"the rules were stored (revision {revision}) but not every worker was told of"
            " them: PUT them again",
        )
        self._adopt(rules, revision)
        log.info("rules revision %d published to %d partitions", revision, self._partitions)

    # -- following -------------------------------------------------------------------------

    async def _catch_up(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._kafka.bootstrap,
            **self._kafka.security,
            group_id=None,  # no group: every API process reads the whole topic
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            async with asyncio.timeout(CATCH_UP_TIMEOUT_S):
                await consumer.start()
                partition = TopicPartition(self._names.rules_topic, 0)
                # Before assigning: this retries quietly while the leader isn't serving yet,
                # where the offset reset that assigning starts would log each retry as an error.
                end = (await consumer.end_offsets([partition]))[partition]
                consumer.assign([partition])
                await consumer.seek_to_beginning(partition)
                while await consumer.position(partition) < end:
                    self._take(await consumer.getmany(partition, timeout_ms=POLL_MS))
        except BaseException:
            await consumer.stop()
            raise
        log.info("rules topic read to its end: revision %d", self._revision)
        return consumer

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=POLL_MS)
            except KafkaError as exc:
                # The consumer reconnects by itself; keep the rules we have meanwhile.
                log.warning("reading the rules topic failed (%s); retrying", exc)
                await asyncio.sleep(RETRY_AFTER_ERROR_S)
                continue
            self._take(batches)

    def _take(self, batches: dict[Any, list[Any]]) -> None:
        for records in batches.values():
            for record in records:
                self._take_record(record.offset, record.value)

    def _take_record(self, offset: int, value: bytes | None) -> None:
        if offset <= self._revision:
            return  # this process published it, or read it already
        if value is None:  # a tombstone: someone deleted the document
            self._adopt(EMPTY_RULES, offset)
            return
        try:
            rules = decode_rules(value)
        except InvalidRules as exc:
            # Written by something other than this service (or a newer version of it): keep
            # the rules we have rather than serve nothing.
            log.error("rules topic offset %d holds an invalid document, ignored: %s", offset, exc)
            return
        self._adopt(rules, offset)

    def _adopt(self, rules: Rules, revision: int) -> None:
        if revision > self._revision:
            self._rules, self._revision = rules, revision

    def _require_ready(self) -> None:
        if not self._ready:
            raise NotReady("the rules in force are not known yet: the rules topic is being read")

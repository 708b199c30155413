"""Every worker follows the compacted rules topic from its start, so it knows the rules in
force before it publishes its first answer; control messages bring changes to each
partition in order with its events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from availability import InvalidRules, decode_rules

from .processor import RulesHolder

log = logging.getLogger("availability.worker")


class RulesFollower:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        holder: RulesHolder,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._security = dict(security or {})
        self._partition = TopicPartition(topic, 0)
        self._holder = holder
        self.caught_up = asyncio.Event()

    async def run(self) -> None:
        """Read the topic from the start, set `caught_up` at its end, then keep following."""
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                enable_auto_commit=False,
                group_id=None,
                **self._security,
            )
            try:
                await consumer.start()
                consumer.assign([self._partition])
                await consumer.seek_to_beginning(self._partition)
                end = (await consumer.end_offsets([self._partition]))[self._partition]
                if end == 0:
                    self.caught_up.set()
                while True:
                    batch = await consumer.getmany(self._partition, timeout_ms=500)
                    for message in batch.get(self._partition, []):
                        self._offer(message.offset, message.value)
                        if message.offset + 1 >= end:
                            self.caught_up.set()
            except KafkaError as exc:
                log.warning("rules topic unreachable, retrying: %s", exc)
                await asyncio.sleep(1)
            finally:
                await consumer.stop()

    def _offer(self, offset: int, value: bytes | None) -> None:
        if value is None:
            return
        try:
            rules = decode_rules(value)
        except InvalidRules as exc:  # the API validates; this is a foreign producer's slip
            log.error("ignoring invalid rules at offset %d: %s", offset, exc)
            return
        if self._holder.offer(offset, rules):
            log.info("rules revision %d in force", offset)

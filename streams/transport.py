"""faust's aiokafka transport, with one fix: after a rebalance, a source partition that has
no committed offset yet is read again from its beginning.

At a rebalance faust drops the events already fetched but not yet processed, and relies on
"seek to the committed offset" to fetch them again. aiokafka skips that seek when the
committed offset is missing (or 0), so the fetch position stays after the dropped events
and they are never processed: the first commit after the rebalance then covers them. It
happens to every partition that had no commit when the group rebalanced: a new deployment,
or a quiet topic. Reading such a partition from its beginning (the `earliest` reset the
worker is configured with) delivers those events again; the per-SKU dedup ids make the
events already applied count once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP


class RewindingConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed: Mapping[TP, int] = await self.call_thread(self._seek_to_committed_or_start)
        return committed

    async def _seek_to_committed_or_start(self) -> Mapping[Any, int | None]:
        consumer = self._ensure_consumer()
        committed: Mapping[Any, int | None] = await consumer.seek_to_committed()
        changelogs = self.app.tables.changelog_topics  # faust reads those from its own offsets
        uncommitted = [
            tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs
        ]
        if uncommitted:
            await consumer.seek_to_beginning(*uncommitted)
        return committed


class RewindingConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return RewindingConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = RewindingConsumer

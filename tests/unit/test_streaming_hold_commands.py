"""The streaming API's hold commands name a reply list the writers accept. A writer
dead-letters a command whose reply list is not one of the API's (availability/control.py),
so a hold sent with one would never be decided."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import cast

import msgspec
import pytest
from redis.asyncio import Redis

from api.streaming.hold_replies import HoldReplies
from api.streaming.kafka_holds import KafkaHolds
from api.streaming.kafka_link import Acked, KafkaLink, Record
from availability.control import (
    HoldCommand,
    HoldReply,
    RulesChanged,
    control_decoder,
    reply_list,
    reply_to_error,
)
from availability.holds import HoldLineRequest, HoldRequest, HoldStatus
from availability.topics import Names, partition_for

PARTITIONS = 8
DECIDE_S = 5.0  # a request's timeout: every command here is decided at once


class FakeRedis:
    """The few calls KafkaHolds and HoldReplies make: strings and lists in memory."""

    def __init__(self) -> None:
        self.strings: dict[str, bytes] = {}
        self.lists: dict[str, list[bytes]] = defaultdict(list)

    async def get(self, key: str) -> bytes | None:
        return self.strings.get(key)

    async def set(self, key: str, value: bytes, ex: int, nx: bool) -> bool | None:
        if nx and key in self.strings:
            return None
        self.strings[key] = value
        return True

    async def blmpop(
        self, wait_s: float, numkeys: int, *keys: str, direction: str, count: int
    ) -> tuple[bytes, list[bytes]] | None:
        for key in keys:
            if self.lists[key]:
                taken, self.lists[key] = self.lists[key][:count], self.lists[key][count:]
                return key.encode(), taken
        await asyncio.sleep(0.001)
        return None


class Writers:
    """A KafkaLink whose every hold command is decided at once by its partition's writer.
    A command the real writer would refuse (its reply list is not the API's) fails the test
    at once, with the writer's reason."""

    def __init__(self, redis: FakeRedis, namespace: str) -> None:
        self._redis = redis
        self._namespace = namespace
        self.commands: list[HoldCommand] = []

    async def send_all(self, records: Sequence[Record], consequence: str) -> list[Acked]:
        for record in records:
            command = control_decoder.decode(record.value)
            assert not isinstance(command, RulesChanged), command
            hold_command = cast(HoldCommand, command)
            self.commands.append(hold_command)
            error = reply_to_error(self._namespace, hold_command)
            assert error is None, f"a writer would dead-letter {hold_command}: {error}"
            reply = HoldReply(record.partition, True, request_id=hold_command.request_id)
            key = reply_list(self._namespace, hold_command)
            self._redis.lists[key].append(msgspec.json.encode(reply))
        return [Acked(r.topic, r.partition, n) for n, r in enumerate(records)]


class EveryChannel:
    def has_channel(self, channel: str) -> bool:
        return True


def skus_on_partitions(count: int) -> list[str]:
    """One SKU on each of `count` partitions."""
    found: dict[int, str] = {}
    for n in range(10_000):
        found.setdefault(partition_for(f"SKU-{n}".encode(), PARTITIONS), f"SKU-{n}")
        if len(found) == count:
            break
    return list(found.values())


@pytest.mark.parametrize("prefix", ["", "prod-", "eu.west_1-"])
@pytest.mark.parametrize("partitions", [1, 3], ids=["one-partition", "across-partitions"])
async def test_every_command_the_api_sends_names_a_reply_list_the_writers_accept(
    prefix: str, partitions: int
) -> None:
    names = Names(prefix)
    redis = FakeRedis()
    writers = Writers(redis, names.redis_namespace)
    replies = HoldReplies(cast(Redis, redis), names.redis_namespace)
    holds = KafkaHolds(
        cast(KafkaLink, writers),
        cast(Redis, redis),
        replies,
        names,
        PARTITIONS,
        EveryChannel(),
        DECIDE_S,
    )
    lines = [HoldLineRequest(sku, 1) for sku in skus_on_partitions(partitions)]
    replies.start()
    try:
        committed = await holds.place_hold(HoldRequest("web", lines, ttl_s=60, hold_id="H1"))
        assert committed.status is HoldStatus.HELD
        await holds.commit_hold("H1", "W-1")
        await holds.place_hold(HoldRequest("web", lines, ttl_s=60, hold_id="H2"))
        await holds.release_hold("H2")
    finally:
        await replies.stop()

    kinds = {type(command).__name__ for command in writers.commands}
    expected = {"PlaceHold", "CommitHold", "ReleaseHold"}
    assert kinds == (expected | {"ExtendHold"} if partitions > 1 else expected)
    assert {reply_list(names.redis_namespace, c) for c in writers.commands} == {replies.key}

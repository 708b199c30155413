"""ensure_topics against a real Kafka: every topic of a deployment created once, with its
partition count, the rules topic compacted; existing topics with another count refused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from api.streaming import TopicsMismatch, ensure_topics
from availability.topics import Names
from tests.support.streaming import KAFKA, Stack

pytestmark = pytest.mark.integration


async def describe(names: Names) -> tuple[dict[str, int], dict[str, str]]:
    """Partition counts of the deployment's topics, and the rules topic's configs."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(names.prefix)]
        counts = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(topics)}
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, names.rules_topic)]
        )
        entries: list[Any] = response.resources[0][4]
        return counts, {entry[0]: entry[1] for entry in entries}
    finally:
        await admin.close()


def test_every_topic_is_created_with_its_partitions_and_the_rules_topic_compacted(
    fresh_stack: Stack,
) -> None:
    names = fresh_stack.names

    async def three_processes_starting_at_once() -> None:
        await asyncio.gather(*(ensure_topics(KAFKA, names, 6) for _ in range(3)))

    asyncio.run(three_processes_starting_at_once())
    asyncio.run(ensure_topics(KAFKA, names, 6))  # and again at a restart

    counts, rules_configs = asyncio.run(describe(names))

    keyed_by_sku = [*names.inventory_topics, names.control_topic, names.dlq_topic]
    assert counts == {topic: 6 for topic in keyed_by_sku} | {names.rules_topic: 1}
    assert rules_configs["cleanup.policy"] == "compact"


def test_topics_that_exist_with_another_partition_count_are_refused(fresh_stack: Stack) -> None:
    asyncio.run(ensure_topics(KAFKA, fresh_stack.names, 4))

    with pytest.raises(TopicsMismatch, match=r"inventory\.sales has 4, not 8"):
        asyncio.run(ensure_topics(KAFKA, fresh_stack.names, 8))

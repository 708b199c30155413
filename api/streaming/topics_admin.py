"""Create the topics of the streaming mode when they are missing, and check the ones that exist.

Every topic keyed by SKU (the inventory topics, the control topic, the dead letters) has the
same partition count, so that partition p of each belongs to the one worker owning p and
`partition_for(sku, partitions)` names it everywhere. The rules topic is one compacted
partition: its latest document is the rules in force, and its offsets are their revisions.
Creation is idempotent: the API processes and the workers all call this at start.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from availability import AvailabilityError
from availability.topics import Names

# Three copies survive one broker lost while another is restarted; a smaller cluster (one
# broker locally) gets one copy per broker. aiokafka speaks CreateTopics up to v3, which
# cannot ask for the broker's default replication factor, so it is chosen here.
PREFERRED_REPLICATION: Final = 3
ADMIN_TIMEOUT_MS: Final = 10_000
_TOPIC_ALREADY_EXISTS: Final = 36
_COMPACTED: Final = {"cleanup.policy": "compact"}


class TopicsMismatch(AvailabilityError):
    """A topic exists with another partition count than AVAIL_PARTITIONS: SKUs would be
    looked for on the wrong partition. Set AVAIL_PARTITIONS to the topics' count, or use
    another AVAIL_TOPIC_PREFIX."""


class TopicsNotCreated(AvailabilityError):
    """Kafka refused to create a topic (permissions, or a broker setting); the message says
    which and why."""


def wanted_topics(names: Names, partitions: int) -> dict[str, int]:
    """Every topic the streaming mode needs, with its partition count."""
    keyed_by_sku = [*names.inventory_topics, names.control_topic, names.dlq_topic]
    return {topic: partitions for topic in keyed_by_sku} | {names.rules_topic: 1}


async def ensure_topics(bootstrap: str, names: Names, partitions: int) -> None:
    """Create the missing topics of `names` and return once Kafka serves them; raise
    TopicsMismatch when one exists with another partition count. Raises aiokafka's
    KafkaError (or TimeoutError) when Kafka can't be reached."""
    wanted = wanted_topics(names, partitions)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=ADMIN_TIMEOUT_MS)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        replication = min(PREFERRED_REPLICATION, len(cluster["brokers"]))
        response = await admin.create_topics(
            [
                NewTopic(
                    topic,
                    count,
                    replication,
                    topic_configs=_COMPACTED if topic == names.rules_topic else None,
                )
                for topic, count in wanted.items()
            ],
            timeout_ms=ADMIN_TIMEOUT_MS,
        )
        unserved, existing = _created_and_existing(response)
        if existing:
            # One created by another process a moment ago may not be described yet.
            unserved += _check_partition_counts(wanted, await admin.describe_topics(existing))
    finally:
        await admin.close()
    if unserved:
        await _wait_until_served(bootstrap, {topic: wanted[topic] for topic in unserved})


def _created_and_existing(response: Any) -> tuple[list[str], list[str]]:
    created, existing, refused = [], [], []
    for entry in response.topic_errors:
        topic, code = entry[0], entry[1]
        if code == 0:
            created.append(topic)
        elif code == _TOPIC_ALREADY_EXISTS:
            existing.append(topic)
        else:
            message = entry[2] if len(entry) > 2 else None  # CreateTopics v0 has no message
            refused.append(f"{topic}: {message or f'error code {code}'}")
    if refused:
        raise TopicsNotCreated("Kafka refused to create " + "; ".join(refused))
    return created, existing


def _check_partition_counts(wanted: dict[str, int], described: list[dict[str, Any]]) -> list[str]:
    """Raise TopicsMismatch for a topic with another partition count; return the topics
    that could not be described yet (still being created)."""
    wrong, pending = [], []
    for topic in described:
        name, count = topic["topic"], len(topic["partitions"])
        if topic["error_code"]:
            pending.append(name)
        elif count != wanted[name]:
            wrong.append(f"{name} has {count}, not {wanted[name]}")
    if wrong:
        raise TopicsMismatch("topics exist with other partition counts: " + "; ".join(wrong))
    return pending


async def _wait_until_served(bootstrap: str, topics: dict[str, int]) -> None:
    """Return once every partition's leader answers. For a moment after creation a leader
    is named in the metadata but does not serve yet: producers and consumers retry then,
    but log each retry as an error or a warning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, request_timeout_ms=ADMIN_TIMEOUT_MS
    )
    try:
        await consumer.start()
        async with asyncio.timeout(ADMIN_TIMEOUT_MS / 1000):
            # Asking for the end offsets retries quietly until every leader answers.
            await consumer.end_offsets(
                [TopicPartition(topic, p) for topic, count in topics.items() for p in range(count)]
            )
    finally:
        await consumer.stop()

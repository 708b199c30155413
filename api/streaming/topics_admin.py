"""Create the topics of the streaming mode when they are missing, and check the ones that exist.

Every topic keyed by SKU (the inventory topics, the control topic, the dead letters) has the
same partition count, so that partition p of each belongs to the one worker owning p and
`partition_for(sku, partitions)` names it everywhere. The rules topic is one compacted
partition: its latest document is the rules in force, and its offsets are their revisions.
Creation is idempotent: the API processes and the workers all call this at start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from availability import AvailabilityError
from availability.topics import Names, min_in_sync

# Three copies survive one broker lost while another is restarted; a smaller cluster (one
# broker locally) gets one copy per broker. aiokafka speaks CreateTopics up to v3, which
# cannot ask for the broker's default replication factor, so it is chosen here.
PREFERRED_REPLICATION: Final = 3
ADMIN_TIMEOUT_MS: Final = 10_000
_TOPIC_ALREADY_EXISTS: Final = 36


class TopicsMismatch(AvailabilityError):
    """A topic exists with another partition count than AVAIL_PARTITIONS: SKUs would be
    looked for on the wrong partition. Set AVAIL_PARTITIONS to the topics' count, or use
    another AVAIL_TOPIC_PREFIX."""


class TopicsUnderReplicated(AvailabilityError):
    """A topic exists with fewer replicas than AVAIL_REPLICATION_FACTOR asks: losing a
    broker could lose what it holds. Add replicas to it (kafka-reassign-partitions), or set
    AVAIL_REPLICATION_FACTOR to what it has."""


class TopicsNotCreated(AvailabilityError):
    """Kafka refused to create a topic (permissions, or a broker setting), or the cluster
    has fewer brokers than AVAIL_REPLICATION_FACTOR; the message says which and why."""


@dataclass(frozen=True)
class TopicSpec:
    partitions: int
    compacted: bool = False


def wanted_topics(names: Names, partitions: int) -> dict[str, TopicSpec]:
    """Every topic the streaming mode needs, with its partition count."""
    keyed_by_sku = [*names.inventory_topics, names.control_topic, names.dlq_topic]
    return {topic: TopicSpec(partitions) for topic in keyed_by_sku} | {
        names.rules_topic: TopicSpec(1, compacted=True)
    }


def replication_for(asked: int, brokers: int) -> int:
    """The replication factor in force: `asked` (0: min(3, brokers)), if the cluster can
    hold that many copies."""
    if asked == 0:
        return min(PREFERRED_REPLICATION, brokers)
    if asked > brokers:
        raise TopicsNotCreated(
            f"AVAIL_REPLICATION_FACTOR is {asked}, but the cluster has {brokers} broker(s)"
        )
    return asked


def topic_config(replication: int, compacted: bool = False) -> dict[str, str]:
    config = min_in_sync(replication)
    if compacted:
        config["cleanup.policy"] = "compact"
    return config


async def ensure_topics(
    bootstrap: str,
    names: Names,
    partitions: int,
    *,
    replication_factor: int = 0,
    more: Mapping[str, TopicSpec] | None = None,
    security: Mapping[str, Any] | None = None,
) -> int:
    """Create the missing topics of `names` (and `more`) and return, once Kafka serves them,
    the replication factor in force (`replication_factor`, or min(3, brokers) for 0). Raise
    TopicsMismatch when one exists with another partition count, TopicsUnderReplicated when
    one has fewer replicas. Raises aiokafka's KafkaError (or TimeoutError) when Kafka can't
    be reached."""
    wanted = wanted_topics(names, partitions) | dict(more or {})
    security = security or {}  # kafka_security.kafka_client_options
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=ADMIN_TIMEOUT_MS, **security
    )
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        replication = replication_for(replication_factor, len(cluster["brokers"]))
        response = await admin.create_topics(
            [
                NewTopic(
                    topic,
                    spec.partitions,
                    replication,
                    topic_configs=topic_config(replication, spec.compacted),
                )
                for topic, spec in wanted.items()
            ],
            timeout_ms=ADMIN_TIMEOUT_MS,
        )
        unserved, existing = _created_and_existing(response)
        if existing:
            # One created by another process a moment ago may not be described yet.
            described = await admin.describe_topics(existing)
            unserved += _check_existing(wanted, replication, described)
    finally:
        await admin.close()
    if unserved:
        served = {topic: wanted[topic].partitions for topic in unserved}
        await _wait_until_served(bootstrap, served, security)
    return replication


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


def _check_existing(
    wanted: Mapping[str, TopicSpec], replication: int, described: list[dict[str, Any]]
) -> list[str]:
    """Raise TopicsMismatch for a topic with another partition count, TopicsUnderReplicated
    for one with fewer replicas; return the topics that could not be described yet (still
    being created)."""
    wrong, thin, pending = [], [], []
    for topic in described:
        name, partitions = topic["topic"], topic["partitions"]
        if topic["error_code"]:
            pending.append(name)
            continue
        if len(partitions) != wanted[name].partitions:
            wrong.append(f"{name} has {len(partitions)}, not {wanted[name].partitions}")
        copies = min(len(partition["replicas"]) for partition in partitions)
        if copies < replication:
            thin.append(f"{name} has {copies}, not {replication}")
    if wrong:
        raise TopicsMismatch("topics exist with other partition counts: " + "; ".join(wrong))
    if thin:
        raise TopicsUnderReplicated("topics exist with fewer replicas: " + "; ".join(thin))
    return pending


async def _wait_until_served(
    bootstrap: str, topics: dict[str, int], security: Mapping[str, Any]
) -> None:
    """Return once every partition's leader answers. For a moment after creation a leader
    is named in the metadata but does not serve yet: producers and consumers retry then,
    but log each retry as an error or a warning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, request_timeout_ms=ADMIN_TIMEOUT_MS, **security
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

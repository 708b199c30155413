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

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from availability import AvailabilityError
from availability.topics import Names

# Three copies survive one broker lost while another is restarted; a smaller cluster (one
# broker locally) gets one copy per broker. aiokafka speaks CreateTopics up to v3, which
# cannot ask for the broker's default replication factor, so it is chosen here.
PREFERRED_REPLICATION: Final = 3
ADMIN_TIMEOUT_MS: Final = 10_000
LEADER_POLL_S: Final = 0.1
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
    """Create the missing topics of `names`; raise TopicsMismatch when one exists with
    another partition count. Raises aiokafka's KafkaError when Kafka can't be reached."""
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
        refused = _refusals(response)
        if refused:
            raise TopicsNotCreated("Kafka refused to create " + "; ".join(refused))
        described = await _described_with_leaders(admin, list(wanted))
    finally:
        await admin.close()
    _check_partition_counts(wanted, described)


async def _described_with_leaders(
    admin: AIOKafkaAdminClient, topics: list[str]
) -> list[dict[str, Any]]:
    """The topics' metadata once every partition has a leader: a topic just created has
    none for a moment, and a client using it then logs errors and retries."""
    deadline = asyncio.get_running_loop().time() + ADMIN_TIMEOUT_MS / 1000
    while True:
        described: list[dict[str, Any]] = await admin.describe_topics(topics)
        leaderless = [
            topic["topic"]
            for topic in described
            if topic["error_code"]
            or any(p["error_code"] or p["leader"] < 0 for p in topic["partitions"])
        ]
        if not leaderless:
            return described
        if asyncio.get_running_loop().time() > deadline:
            raise TopicsNotCreated("topics without a leader yet: " + ", ".join(leaderless))
        await asyncio.sleep(LEADER_POLL_S)


def _refusals(response: Any) -> list[str]:
    """What went wrong per topic, other than the topic already existing."""
    refusals = []
    for entry in response.topic_errors:
        topic, code = entry[0], entry[1]
        if code in (0, _TOPIC_ALREADY_EXISTS):
            continue
        message = entry[2] if len(entry) > 2 else None  # CreateTopics v0 has no message
        refusals.append(f"{topic}: {message or f'error code {code}'}")
    return refusals


def _check_partition_counts(wanted: dict[str, int], described: list[dict[str, Any]]) -> None:
    wrong = [
        f"{topic['topic']} has {len(topic['partitions'])}, not {wanted[topic['topic']]}"
        for topic in described
        if topic["topic"] in wanted and len(topic["partitions"]) != wanted[topic["topic"]]
    ]
    if wrong:
        raise TopicsMismatch("topics exist with other partition counts: " + "; ".join(wrong))

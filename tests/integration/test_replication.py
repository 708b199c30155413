"""Production's shape: a cluster of three brokers, every topic of the service with three
replicas and two in sync, producers at acks=all. One broker is killed and events, holds and
reads go on; a topic with fewer replicas than asked is refused at start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from api.streaming import TopicsNotCreated, TopicsUnderReplicated, ensure_topics
from api.streaming.kafka_link import ACK_TIMEOUT_S
from api.streaming.runtime import HOLD_DECISION_TIMEOUT_S
from availability.topics import Names
from tests.support.events import event
from tests.support.holds import hold_body, line
from tests.support.kafka_cluster import KafkaCluster
from tests.support.server import ApiServer
from tests.support.streaming import Stack, WorkerProcess

from .helpers import wait_readiness

pytestmark = pytest.mark.integration

CONVERGE_S = 90.0
# The API answers within its own bounds (Kafka's acknowledgement, then a hold's decision);
# the client waits longer, so a slow answer is the API's 503, never a client time-out.
CLIENT_TIMEOUT_S = ACK_TIMEOUT_S + HOLD_DECISION_TIMEOUT_S + 15
SKUS = [f"REP-{n}" for n in range(20)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    started = KafkaCluster(tmp_path_factory.mktemp("cluster")).start()
    yield started
    started.stop()


def test_every_topic_gets_three_replicas_two_in_sync_and_a_thinner_one_is_refused(
    cluster: KafkaCluster,
) -> None:
    names = Names(f"rep{time.monotonic_ns()}-")
    assert asyncio.run(ensure_topics(cluster.bootstrap, names, 4)) == 3

    topics = asyncio.run(describe(cluster, names.prefix))
    assert len(topics) == len(names.inventory_topics) + 3  # control, dead letters, rules
    assert all(copies == [3] for copies, _ in topics.values()), topics
    assert all(in_sync == "2" for _, in_sync in topics.values()), topics

    thin = Names(f"thin{time.monotonic_ns()}-")
    assert asyncio.run(ensure_topics(cluster.bootstrap, thin, 4, replication_factor=1)) == 1
    with pytest.raises(TopicsUnderReplicated, match=r"inventory\.sales has 1, not 3"):
        asyncio.run(ensure_topics(cluster.bootstrap, thin, 4))
    with pytest.raises(TopicsNotCreated, match=r"is 4, but the cluster has 3 broker"):
        asyncio.run(ensure_topics(cluster.bootstrap, names, 4, replication_factor=4))


def test_events_holds_and_reads_go_on_with_a_broker_killed(
    cluster: KafkaCluster,
    fresh_stack: Stack,
    start_api: Callable[..., ApiServer],
    rules_path: Path,
    tmp_path: Path,
) -> None:
    on_cluster = {"AVAIL_KAFKA_BOOTSTRAP": cluster.bootstrap}
    worker = WorkerProcess(fresh_stack, tmp_path / "worker", env=on_cluster).start()
    try:
        api = start_api(rules_file=rules_path, env=on_cluster)
        wait_readiness(api, 200, timeout_s=120)
        with api.client(timeout=CLIENT_TIMEOUT_S) as http:
            accepted(http, "/v1/events", [event("receipt", sku, "DC1", qty=10) for sku in SKUS])
            converge(http, dict.fromkeys(SKUS, 10))

            # Every topic of the deployment, the worker's table changelog included.
            topics = asyncio.run(describe(cluster, fresh_stack.tag))
            assert f"{fresh_stack.tag}app-sku-state-changelog" in topics
            assert all(copies == [3] for copies, _ in topics.values()), topics
            assert all(in_sync == "2" for _, in_sync in topics.values()), topics

            cluster.stop_broker(asyncio.run(cluster.busiest_leader(fresh_stack.tag)), hard=True)

            accepted(http, "/v1/events", [event("sale", sku, "DC1", qty=3) for sku in SKUS])
            hold = accepted(http, "/v1/holds", hold_body(line(SKUS[0], 2)))
            assert hold["hold_id"]
            converge(http, {SKUS[0]: 5} | dict.fromkeys(SKUS[1:], 7))
        assert worker.running, worker.log_tail()
    finally:
        worker.stop()


def accepted(http: httpx.Client, path: str, body: Any, within_s: float = 60.0) -> Any:
    """POST until it is taken: while leaders move off a killed broker the API may answer
    503 (its bounded wait for acks=all ran out), never anything else."""
    deadline = time.monotonic() + within_s
    while True:
        answer = http.post(path, json=body)
        if answer.status_code in (201, 202):
            return answer.json()
        assert answer.status_code == 503, answer.text
        assert time.monotonic() < deadline, f"still refused after {within_s:.0f} s: {answer.text}"
        time.sleep(1)


def converge(http: httpx.Client, expected: dict[str, int]) -> None:
    deadline = time.monotonic() + CONVERGE_S
    got: dict[str, Any] = {}
    while time.monotonic() < deadline:
        answers = {
            s: http.get(f"/v1/availability/{s}", params={"channel": "web"}) for s in expected
        }
        got = {
            s: a.json().get("sellable") if a.status_code == 200 else a.status_code
            for s, a in answers.items()
        }
        if got == expected:
            return
        time.sleep(0.5)
    pytest.fail(f"answers {got}, expected {expected}")


async def describe(cluster: KafkaCluster, prefix: str) -> dict[str, tuple[list[int], str]]:
    """Topic -> (the distinct replica counts of its partitions, its min.insync.replicas)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        described = await admin.describe_topics(names)
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
        in_sync = {
            resource[3]: next(e[1] for e in resource[4] if e[0] == "min.insync.replicas")
            for response in configs
            for resource in response.resources
        }
        return {
            t["topic"]: (sorted({len(p["replicas"]) for p in t["partitions"]}), in_sync[t["topic"]])
            for t in described
        }
    finally:
        await admin.close()

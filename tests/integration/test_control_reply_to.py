"""A hold command on the control topic names the Redis list its reply goes to. A worker
pushes only to the API's reply lists: a command naming any other key is dead-lettered with
its reason, unapplied, and the key is left as it was (real Kafka, Redis and worker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from availability.control import PlaceHold, ReleaseHold, control_encoder
from availability.holds import HoldLineRequest
from availability.published import reply_key
from tests.support.streaming import (
    Stack,
    WorkerProcess,
    create_topics,
    produce,
    read_topic,
    run,
    wait_until,
)

pytestmark = pytest.mark.integration

FAR_FUTURE_US = 4_000_000_000_000_000


@pytest.fixture
def worker(fresh_stack: Stack, tmp_path: Path) -> Iterator[WorkerProcess]:
    run(create_topics(fresh_stack))
    process = WorkerProcess(fresh_stack, tmp_path / "worker", standby_replicas=0).start()
    yield process
    process.stop()


def test_a_hold_command_naming_a_key_outside_the_reply_lists_is_dead_lettered(
    fresh_stack: Stack, worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    names = fresh_stack.names
    victim = f"{names.redis_namespace}:victim"  # any key a producer might pick
    redis_client.set(victim, b"keep")
    own_list = reply_key(names.redis_namespace, "api-test")
    foreign = control_encoder.encode(
        PlaceHold("r1", "H1", "web", [HoldLineRequest("SKU-1", 1)], FAR_FUTURE_US, victim)
    )
    # After it on the same partition (the SKU's), so its reply says the first was handled.
    allowed = control_encoder.encode(ReleaseHold("r2", "H9", ["SKU-1"], own_list))

    control = names.control_topic
    run(produce(fresh_stack, [(control, b"SKU-1", foreign), (control, b"SKU-1", allowed)]))

    assert wait_until(lambda: redis_client.llen(own_list) == 1, 120), worker.log_tail()
    assert wait_until(lambda: run(read_topic(names.dlq_topic)), 30), worker.log_tail()
    dead = run(read_topic(names.dlq_topic))
    assert [record.value for record in dead] == [foreign]
    reason = dict(dead[0].headers)["reason"].decode()
    assert reason.startswith("invalid control message: the reply list")
    assert victim in reason
    assert redis_client.get(victim) == b"keep"
    assert redis_client.ttl(victim) == -1  # no expiry set on it either

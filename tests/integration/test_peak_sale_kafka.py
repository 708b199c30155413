"""The peak sale's stores and warehouses that produce straight to Kafka (`KafkaEvents` in
loadtests/locustfile.py), run headless for a few seconds against a deployment's real
topics: every batch locust counts is on the topics, whole and once, each event keyed by its
SKU on the topic of its type, and none failed."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from loadtests.peak_sale import Scenario, run_locust
from tests.support.streaming import Stack, create_topics, read_topic, run

pytestmark = pytest.mark.integration

BATCH = 50


def test_events_produced_straight_to_kafka_all_land_keyed_by_sku(
    fresh_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(create_topics(fresh_stack))
    monkeypatch.setenv("LOADTEST_EVENT_BATCH", str(BATCH))
    scenario = Scenario(
        users=1,
        spawn_rate=1,
        seconds=4,
        kafka="127.0.0.1:9092",
        topic_prefix=fresh_stack.tag,
        user_classes=("KafkaEvents",),
    )

    # No HTTP user runs: locust only needs a host to start.
    outcome = run_locust("http://127.0.0.1:9", scenario, tmp_path, uuid.uuid4().hex[:8])

    assert outcome.failures == []
    assert outcome.errors == []
    batches = sum(row.requests for row in outcome.rows if row.kind == "KAFKA")
    assert batches > 0
    landed = []
    for topic in fresh_stack.names.inventory_topics:
        for record in run(read_topic(topic)):
            event = json.loads(record.value)
            assert record.key == event["sku"].encode()
            assert topic == fresh_stack.names.event_topic(event["type"])
            landed.append(event["event_id"])
    assert len(landed) == len(set(landed))
    # The one user's last batch may be produced as locust stops it, before it is counted.
    assert len(landed) in (batches * BATCH, (batches + 1) * BATCH)

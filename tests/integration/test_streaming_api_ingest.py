"""POST /v1/events in the streaming mode, read back from a real Kafka: every event on its
type's topic, keyed by SKU, on Kafka's partition of the SKU, as the bytes it was sent as;
202 only once Kafka has them all, 503 when it can't be reached."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from availability.topics import partition_for
from tests.support.events import event, unique_sku
from tests.support.server import ApiServer, free_port
from tests.support.streaming import KAFKA, Stack, read_topic, run

from .conftest import StartApi
from .helpers import error_code, readiness

pytestmark = pytest.mark.integration


def every_type(sku: str) -> list[dict[str, Any]]:
    return [
        event("sale", sku, qty=1),
        event("order", sku, qty=2, order_id="O-1", channel="web"),
        event("cancel", sku, qty=1, order_id="O-1"),
        event("pick", sku, qty=1, order_id="O-1"),
        event("return", sku, qty=1, disposition="sellable"),
        event("transfer_out", sku, "DC1", qty=3, transfer_id="T-1", to_location="S001"),
        event("transfer_in", sku, qty=3, transfer_id="T-1"),
        event("receipt", sku, "DC1", qty=10, po_id="PO-1"),
        event("count", sku, counted=7, minute=5),
        event("adjust", sku, delta=-1, reason="found damaged"),
    ]


def body_of(items: list[bytes]) -> bytes:
    """A JSON array of exactly these item bytes, with some whitespace between them."""
    return b"[\n  " + b" ,\n  ".join(items) + b"\n]"


def all_records(stack: Stack) -> list[Any]:
    async def read() -> list[Any]:
        found: list[Any] = []
        for topic in stack.names.inventory_topics:
            found += await read_topic(topic)
        return found

    result: list[Any] = run(read())
    return result


def end_offsets_total(stack: Stack) -> int:
    """Records on the inventory topics now: no waiting, only what Kafka acknowledged."""

    async def total() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, group_id=None)
        await consumer.start()
        try:
            partitions = [
                TopicPartition(topic, p)
                for topic in stack.names.inventory_topics
                for p in range(stack.partitions)
            ]
            return sum((await consumer.end_offsets(partitions)).values())
        finally:
            await consumer.stop()

    return asyncio.run(total())


def test_every_event_is_on_its_types_topic_keyed_by_sku_on_its_partition_as_sent(
    ready_api: ApiServer, fresh_stack: Stack
) -> None:
    skus = [unique_sku() for _ in range(3)]
    sent = [event_ for sku in skus for event_ in every_type(sku)]
    # Odd spacing, key order and an unknown field: the bytes on Kafka are the bytes sent.
    items = [
        json.dumps(dict(reversed(e.items())) | {"note": "kept"}, indent=i % 3 or None).encode()
        for i, e in enumerate(sent)
    ]

    with ready_api.client() as http:
        response = http.post(
            "/v1/events", content=body_of(items), headers={"content-type": "application/json"}
        )
    records = all_records(fresh_stack)

    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": len(sent)}
    assert sorted(r.value for r in records) == sorted(items)
    by_value = {item: e for item, e in zip(items, sent, strict=True)}
    for record in records:
        original = by_value[record.value]
        assert record.topic == fresh_stack.names.event_topic(original["type"])
        assert record.key == original["sku"].encode()
        assert record.partition == partition_for(record.key, fresh_stack.partitions)


def test_an_event_with_a_whole_float_goes_on_with_integers_and_the_others_as_sent(
    ready_api: ApiServer, fresh_stack: Stack
) -> None:
    sku = unique_sku()
    as_sent = json.dumps(event("receipt", sku, "DC1", qty=4), indent=1).encode()
    with_float = json.dumps(event("receipt", sku, "S001", qty=0)).replace('"qty": 0', '"qty": 3.0')

    with ready_api.client() as http:
        response = http.post(
            "/v1/events",
            content=body_of([as_sent, with_float.encode()]),
            headers={"content-type": "application/json"},
        )
    records = {record.value for record in all_records(fresh_stack)}

    assert response.status_code == 202, response.text
    # Compact, in the order sent, `3.0` written as `3`: what a worker decodes as an integer.
    rewritten = json.dumps(json.loads(with_float) | {"qty": 3}, separators=(",", ":"))
    assert records == {as_sent, rewritten.encode()}


def set_topic_configs(topic: str, configs: dict[str, str]) -> None:
    """Replace the topic's configs (AlterConfigs: what isn't named returns to the default)."""

    async def alter() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
        await admin.start()
        try:
            resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)
            await admin.alter_configs([resource])
        finally:
            await admin.close()

    asyncio.run(alter())


def test_a_batch_kafka_refuses_part_of_is_answered_503_never_202(
    ready_api: ApiServer, fresh_stack: Stack
) -> None:
    """Kafka refuses records over a topic's max.message.bytes only in its answer to the
    produce request: an API that answered before reading every answer would say 202."""
    sales = fresh_stack.names.event_topic("sale")
    set_topic_configs(sales, {"max.message.bytes": "64"})
    batch = [event("receipt", unique_sku(), qty=1), event("sale", unique_sku(), qty=1)]

    with ready_api.client() as http:
        refused = http.post("/v1/events", json=batch)
        set_topic_configs(sales, {})
        accepted = http.post("/v1/events", json=batch)

    assert refused.status_code == 503
    assert error_code(refused) == "not_ready"
    assert "not accepted" in refused.json()["error"]["message"]
    assert accepted.status_code == 202


def test_the_answer_comes_only_once_kafka_has_acknowledged_every_event(
    ready_api: ApiServer, fresh_stack: Stack
) -> None:
    sku = unique_sku()
    total = 0
    with ready_api.client() as http:
        for size in (1, 10, 250):
            batch = [event("receipt", sku, qty=1) for _ in range(size)]
            response = http.post("/v1/events", json=batch)
            assert response.status_code == 202
            total += size
            # Read at once, without waiting: Kafka must already hold the whole batch.
            assert end_offsets_total(fresh_stack) == total


def test_accepted_events_are_counted_by_type_as_accepted(ready_api: ApiServer) -> None:
    sku = unique_sku()
    events = [*every_type(sku), event("sale", sku, qty=1)]

    with ready_api.client() as http:
        assert http.post("/v1/events", json=events).status_code == 202
        metrics = http.get("/metrics").text

    expected = Counter(e["type"] for e in events)
    for event_type, count in expected.items():
        line = f'availability_events_total{{outcome="accepted",type="{event_type}"}} {count}.0'
        assert line in metrics
    assert "availability_oversold_positions 0.0" in metrics


def test_an_invalid_event_refuses_the_batch_and_nothing_of_it_reaches_kafka(
    ready_api: ApiServer, fresh_stack: Stack
) -> None:
    sku = unique_sku()
    batch = [event("receipt", sku, qty=5), event("sale", sku, qty=0)]

    with ready_api.client() as http:
        response = http.post("/v1/events", json=batch)

    assert response.status_code == 422
    assert error_code(response) == "invalid_events"
    assert end_offsets_total(fresh_stack) == 0


def test_events_are_refused_503_and_not_accepted_while_kafka_cannot_be_reached(
    start_api: StartApi,
) -> None:
    server = start_api(env={"AVAIL_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})

    with server.client() as http:
        response = http.post("/v1/events", json=[event("receipt", unique_sku(), qty=5)])
        healthz = http.get("/healthz")

    assert response.status_code == 503
    assert error_code(response) == "not_ready"
    assert "not accepted" in response.json()["error"]["message"]
    assert healthz.status_code == 200
    status, checks = readiness(server)
    assert status == 503
    assert checks["kafka"] is False

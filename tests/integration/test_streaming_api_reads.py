"""The streaming API's reads, over real HTTP, from a real Redis filled exactly as the workers
fill it: published answers are sent byte for byte, what is missing is answered 0 only when
the SKU's partition is published whole, and refused with 503 otherwise."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from availability import Rules, rules_from_object
from availability.published import sku_key
from availability.topics import partition_for
from tests.support.events import event
from tests.support.read_model import mark_ready, publish, sku_in_partition, state_of
from tests.support.server import ApiServer
from tests.support.streaming import Stack

from .helpers import RULES, error_code

pytestmark = pytest.mark.integration

PUBLISHED_RULES: Rules = rules_from_object(RULES)


def stocked(sku: str) -> list[dict[str, Any]]:
    return [
        event("receipt", sku, "DC1", minute=1, qty=40),
        event("receipt", sku, "S001", minute=2, qty=6),
        event("order", sku, "DC1", minute=3, qty=3, order_id="W-1"),
    ]


def published(client: redis.Redis, stack: Stack, sku: str) -> dict[str, bytes]:
    return publish(client, stack.names, state_of(sku, stocked(sku)), PUBLISHED_RULES)


def not_ready_partition(client: redis.Redis, stack: Stack, partition: int) -> None:
    """Every partition published but `partition`: its worker is still rebuilding it."""
    client.hdel(f"{stack.names.redis_namespace}:ready", str(partition))


def test_a_published_answer_is_sent_as_its_stored_bytes(
    ready_api: ApiServer, fresh_stack: Stack, redis_client: redis.Redis
) -> None:
    sku = sku_in_partition(0, fresh_stack.partitions)
    fields = published(redis_client, fresh_stack, sku)

    with ready_api.client() as http:
        web = http.get(f"/v1/availability/{sku}", params={"channel": "web"})
        amazon = http.get(f"/v1/availability/{sku}", params={"channel": "amazon"})

    assert web.status_code == 200
    assert web.headers["content-type"] == "application/json"
    assert web.content == fields["c:web"].encode()
    assert web.json()["sellable"] == 37 + 5
    assert amazon.content == fields["c:amazon"].encode()
    assert amazon.json()["sellable"] == 37 // 2 - 2


def test_the_breakdown_is_paged_from_the_published_locations_at_the_answer_version(
    ready_api: ApiServer, fresh_stack: Stack, redis_client: redis.Redis
) -> None:
    sku = sku_in_partition(0, fresh_stack.partitions)
    fields = published(redis_client, fresh_stack, sku)
    never_seen = sku_in_partition(0, fresh_stack.partitions)
    paged = {"channel": "web", "include": "locations", "limit": 1}

    with ready_api.client() as http:
        first = http.get(f"/v1/availability/{sku}", params=paged).json()
        rest = http.get(f"/v1/availability/{sku}", params=paged | {"after": "DC1"}).json()
        nothing = http.get(f"/v1/availability/{never_seen}", params=paged).json()
        batch = http.post(
            "/v1/availability/batch",
            json={"channel": "web", "skus": [sku], "include": "locations", "limit": 1},
        ).json()

    plain = json.loads(fields["c:web"])
    assert "locations" not in plain
    assert json.loads(fields["l:web"]) == [
        {"location": "DC1", "sellable": 37},
        {"location": "S001", "sellable": 5},
    ]
    assert first == plain | {
        "locations": [{"location": "DC1", "sellable": 37}],
        "next_after": "DC1",
    }
    assert rest == plain | {"locations": [{"location": "S001", "sellable": 5}]}
    assert batch["items"] == [first]
    assert (nothing["version"], nothing["locations"]) == (0, [])


def test_a_breakdown_a_worker_has_not_published_is_refused_not_answered_empty(
    ready_api: ApiServer, fresh_stack: Stack, redis_client: redis.Redis
) -> None:
    """A hash written by a worker of an earlier build has the channel answer, no locations."""
    sku = sku_in_partition(1, fresh_stack.partitions)
    published(redis_client, fresh_stack, sku)
    redis_client.hdel(sku_key(fresh_stack.names.redis_namespace, sku), "l:web")

    with ready_api.client() as http:
        plain = http.get(f"/v1/availability/{sku}", params={"channel": "web"})
        listed = http.get(
            f"/v1/availability/{sku}", params={"channel": "web", "include": "locations"}
        )

    assert plain.status_code == 200
    assert listed.status_code == 503
    assert error_code(listed) == "not_ready"
    assert "locations for channel 'web' are not published" in listed.json()["error"]["message"]


def test_a_sku_missing_from_a_published_partition_answers_0_at_version_0(
    ready_api: ApiServer, fresh_stack: Stack
) -> None:
    sku = sku_in_partition(1, fresh_stack.partitions)

    with ready_api.client() as http:
        response = http.get(f"/v1/availability/{sku}", params={"channel": "web"})

    assert response.status_code == 200
    assert response.json() == {
        "sku": sku,
        "channel": "web",
        "sellable": 0,
        "version": 0,
        "updated_at": None,
    }


def test_a_sku_missing_from_a_partition_not_yet_published_is_refused_not_answered_0(
    ready_api: ApiServer, fresh_stack: Stack, redis_client: redis.Redis
) -> None:
    partition = 2
    not_ready_partition(redis_client, fresh_stack, partition)
    missing = sku_in_partition(partition, fresh_stack.partitions)
    present = sku_in_partition(partition, fresh_stack.partitions)
    fields = published(redis_client, fresh_stack, present)

    with ready_api.client() as http:
        refused = http.get(f"/v1/availability/{missing}", params={"channel": "web"})
        positions = http.get(f"/v1/positions/{missing}")
        served = http.get(f"/v1/availability/{present}", params={"channel": "web"})

    assert refused.status_code == 503
    assert error_code(refused) == "not_ready"
    assert refused.headers["retry-after"] == "1"
    assert "may have stock" in refused.json()["error"]["message"]
    assert positions.status_code == 503
    # A SKU the workers did publish is served even while the rest of its partition is not.
    assert served.content == fields["c:web"].encode()


def test_a_channel_not_in_the_rules_is_404_unknown_channel(ready_api: ApiServer) -> None:
    with ready_api.client() as http:
        response = http.get("/v1/availability/SKU-1", params={"channel": "ebay"})
        batch = http.post("/v1/availability/batch", json={"channel": "ebay", "skus": ["SKU-1"]})

    assert response.status_code == 404
    assert error_code(response) == "unknown_channel"
    assert batch.status_code == 404


def test_a_channel_the_workers_have_not_published_yet_is_refused_not_answered_0(
    ready_api: ApiServer, fresh_stack: Stack, redis_client: redis.Redis
) -> None:
    """The hash was published under rules without `pickup`: the workers are still applying
    the rules change that added it."""
    sku = sku_in_partition(0, fresh_stack.partitions)
    publish(
        redis_client,
        fresh_stack.names,
        state_of(sku, stocked(sku)),
        rules_from_object(RULES | {"channels": {"web": RULES["channels"]["web"]}}),
    )

    with ready_api.client() as http:
        response = http.get(f"/v1/availability/{sku}", params={"channel": "pickup"})

    assert response.status_code == 503
    assert error_code(response) == "not_ready"


def test_a_location_is_answered_from_its_own_field_and_an_unlisted_one_is_0_at_the_version(
    ready_api: ApiServer, fresh_stack: Stack, redis_client: redis.Redis
) -> None:
    sku = sku_in_partition(3, fresh_stack.partitions)
    fields = published(redis_client, fresh_stack, sku)
    version = int(fields["v"])

    with ready_api.client() as http:
        at_store = http.get(
            f"/v1/availability/{sku}", params={"channel": "pickup", "location": "S001"}
        )
        no_position = http.get(
            f"/v1/availability/{sku}", params={"channel": "pickup", "location": "S002"}
        )
        not_eligible = http.get(
            f"/v1/availability/{sku}", params={"channel": "pickup", "location": "DC1"}
        )
        never_seen = http.get(
            f"/v1/availability/{sku_in_partition(3, fresh_stack.partitions)}",
            params={"channel": "pickup", "location": "S001"},
        )

    assert at_store.content == fields["c:pickup:S001"].encode()
    assert at_store.json()["sellable"] == 5
    for unlisted, location in ((no_position, "S002"), (not_eligible, "DC1")):
        assert unlisted.status_code == 200
        assert unlisted.json() == {
            "sku": sku,
            "channel": "pickup",
            "location": location,
            "sellable": 0,
            "locations": [],
            "version": version,
            "updated_at": fields["u"],
        }
    assert never_seen.json()["version"] == 0
    assert never_seen.json()["location"] == "S001"


def test_a_batch_answers_every_sku_in_request_order(
    ready_api: ApiServer, fresh_stack: Stack, redis_client: redis.Redis
) -> None:
    partitions = fresh_stack.partitions
    skus = [sku_in_partition(i % partitions, partitions, f"B{i}") for i in range(12)]
    stored = {sku: published(redis_client, fresh_stack, sku) for sku in skus[::2]}
    asked = [*reversed(skus), skus[0]]  # any order, and a SKU twice

    with ready_api.client() as http:
        response = http.post("/v1/availability/batch", json={"channel": "web", "skus": asked})

    assert response.status_code == 200
    items = response.json()["items"]
    assert [item["sku"] for item in items] == asked
    for sku, item in zip(asked, items, strict=True):
        if sku in stored:
            assert item["sellable"] == 42
            assert item["version"] == int(stored[sku]["v"])
        else:
            assert (item["sellable"], item["version"]) == (0, 0)


def test_a_batch_with_one_sku_not_yet_published_is_refused_whole(
    ready_api: ApiServer, fresh_stack: Stack, redis_client: redis.Redis
) -> None:
    partitions = fresh_stack.partitions
    not_ready_partition(redis_client, fresh_stack, 1)
    ready_skus = [sku_in_partition(p, partitions) for p in (0, 2, 3)]
    for sku in ready_skus:
        published(redis_client, fresh_stack, sku)
    missing = sku_in_partition(1, partitions)

    with ready_api.client() as http:
        response = http.post(
            "/v1/availability/batch", json={"channel": "web", "skus": [*ready_skus, missing]}
        )

    assert response.status_code == 503
    assert error_code(response) == "not_ready"
    assert missing in response.json()["error"]["message"]


def test_positions_are_sent_as_published_and_a_sku_never_seen_has_none(
    ready_api: ApiServer, fresh_stack: Stack, redis_client: redis.Redis
) -> None:
    sku = sku_in_partition(0, fresh_stack.partitions)
    fields = published(redis_client, fresh_stack, sku)
    never_seen = sku_in_partition(0, fresh_stack.partitions)

    with ready_api.client() as http:
        stored = http.get(f"/v1/positions/{sku}")
        empty = http.get(f"/v1/positions/{never_seen}")

    assert stored.content == fields["p"].encode()
    assert [p["location"] for p in stored.json()["positions"]] == ["DC1", "S001"]
    assert empty.json() == {"sku": never_seen, "version": 0, "positions": []}


def test_the_partition_the_api_checks_is_kafkas_partition_of_the_sku(
    ready_api: ApiServer, fresh_stack: Stack, redis_client: redis.Redis
) -> None:
    """Only the SKU's own partition decides: every other one missing changes nothing."""
    sku = "SKU-partition-check"
    own = partition_for(sku.encode(), fresh_stack.partitions)
    redis_client.delete(f"{fresh_stack.names.redis_namespace}:ready")
    mark_ready(redis_client, fresh_stack.names, [own])
    assert not redis_client.exists(sku_key(fresh_stack.names.redis_namespace, sku))

    with ready_api.client() as http:
        response = http.get(f"/v1/availability/{sku}", params={"channel": "web"})

    assert response.status_code == 200
    assert response.json()["version"] == 0

"""/readyz and /healthz of the streaming API against a real Kafka and Redis: ready only when
Redis and Kafka answer, the rules are known and every partition is published; alive, and
refusing with 503, whatever is missing."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.events import unique_sku
from tests.support.read_model import forget_namespace, mark_ready
from tests.support.server import free_port
from tests.support.streaming import KAFKA, REDIS_URL, Stack, WorkerProcess
from tests.support.tcp_proxy import TcpProxy

from .conftest import StartApi
from .helpers import error_code, readiness, wait_check, wait_readiness

pytestmark = pytest.mark.integration


def test_ready_once_every_partition_is_published_and_not_after_redis_is_flushed(
    start_api: StartApi, fresh_stack: Stack, redis_client: redis.Redis
) -> None:
    server = start_api()
    partitions = range(fresh_stack.partitions)
    mark_ready(redis_client, fresh_stack.names, partitions[:-1])

    assert wait_check(server, "rules", True) == (
        503,
        {"redis": True, "kafka": True, "rules": True, "partitions": False, "writers": False},
    )
    mark_ready(redis_client, fresh_stack.names, partitions[-1:])
    assert wait_readiness(server, 200) == {
        "redis": True,
        "kafka": True,
        "rules": True,
        "partitions": True,
        "writers": True,
    }
    forget_namespace(redis_client, fresh_stack.names)
    assert readiness(server) == (
        503,
        {"redis": True, "kafka": True, "rules": True, "partitions": False, "writers": False},
    )
    with server.client() as http:
        assert http.get("/healthz").status_code == 200


def test_an_api_started_before_kafka_is_reachable_becomes_ready_when_it_is(
    start_api: StartApi, fresh_stack: Stack, redis_client: redis.Redis
) -> None:
    port = free_port()
    mark_ready(redis_client, fresh_stack.names, range(fresh_stack.partitions))
    server = start_api(env={"AVAIL_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"})

    status, checks = readiness(server)
    assert status == 503
    assert checks["kafka"] is False
    assert checks["rules"] is False
    with server.client() as http:
        assert http.get("/healthz").status_code == 200
        assert error_code(http.get("/v1/rules")) == "not_ready"

    # Kafka appears at the address the API was given: it connects on its own.
    host, kafka_port = KAFKA.split(":")
    proxy = TcpProxy(port, (host, int(kafka_port))).start()
    try:
        assert wait_readiness(server, 200)["kafka"] is True
        with server.client() as http:
            sku = unique_sku()
            response = http.get(f"/v1/availability/{sku}", params={"channel": "web"})
        assert error_code(response) == "unknown_channel"  # no rules were ever published
    finally:
        proxy.stop()


def test_reads_are_refused_503_and_readyz_names_redis_while_it_cannot_be_reached(
    start_api: StartApi, rules_path: Path
) -> None:
    server = start_api(
        env={"AVAIL_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, rules_file=rules_path
    )

    status, checks = wait_check(server, "rules", True)
    with server.client() as http:
        response = http.get(f"/v1/availability/{unique_sku()}", params={"channel": "web"})

    assert status == 503
    assert checks == {
        "redis": False,
        "kafka": True,
        "rules": True,
        "partitions": False,
        "writers": False,
    }
    assert response.status_code == 503
    assert error_code(response) == "not_ready"
    assert "Redis" in response.json()["error"]["message"]


def test_a_worker_that_cannot_write_redis_makes_readyz_say_so_until_it_can_again(
    start_api: StartApi, fresh_stack: Stack, rules_path: Path, tmp_path: Path
) -> None:
    """The worker reaches Redis through a proxy that is cut, the API directly: the worker's
    writes fail and are retried (counted in its metrics), its alive keys expire, and /readyz
    says `writers: false` while Redis itself answers; once the proxy is back, ready again."""
    port = free_port()
    redis_host, redis_port = REDIS_URL.removeprefix("redis://").split("/")[0].split(":")
    proxy = TcpProxy(port, (redis_host, int(redis_port))).start()
    worker = WorkerProcess(
        fresh_stack,
        tmp_path / "worker",
        standby_replicas=0,
        env={"AVAIL_REDIS_URL": f"redis://127.0.0.1:{port}/0"},
    ).start()
    try:
        server = start_api(rules_file=rules_path)
        assert wait_readiness(server, 200, timeout_s=90)["writers"] is True

        proxy.stop()
        status, checks = wait_check(server, "writers", False, timeout_s=60)
        assert status == 503
        assert checks["redis"] is True  # Redis answers the API: the worker's writes fail
        metrics = httpx.get(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5).text
        failures = re.search(r"^availability_redis_write_failures_total (\S+)$", metrics, re.M)
        assert failures is not None, metrics
        assert float(failures[1]) >= 1

        proxy = TcpProxy(port, (redis_host, int(redis_port))).start()
        assert wait_readiness(server, 200, timeout_s=60)["writers"] is True
        assert worker.running, worker.log_tail()
    finally:
        proxy.stop()
        worker.stop()

"""Integration tests run against the real Kafka and Redis of `scripts/services.sh`; when they
are down the tests fail, saying how to start them. Each test gets a deployment of its own
(topics and Redis keys under a fresh prefix), removed afterwards."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient

from tests.support.read_model import forget_namespace, mark_ready
from tests.support.server import ApiServer, server_pool
from tests.support.streaming import KAFKA, REDIS_URL, Stack

from .helpers import RULES, wait_readiness

# What a clean process never writes: an unexpected exception, a leaked client or task.
LOG_ALARMS = ("Traceback", "Warning:", "Unclosed", "was never awaited", "Task was destroyed")

StartApi = Callable[..., ApiServer]


@pytest.fixture(scope="session", autouse=True)
def services_are_up() -> None:
    problems = []
    host, port = KAFKA.split(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError as exc:
        problems.append(f"Kafka at {KAFKA}: {exc}")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        problems.append(f"Redis at {REDIS_URL}: {exc}")
    finally:
        client.close()
    if problems:
        pytest.fail(
            "integration tests need Kafka and Redis: "
            + "; ".join(problems)
            + ". Start them with `bash scripts/services.sh start all`.",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest_asyncio.fixture
async def async_redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
def fresh_stack(redis_client: redis.Redis) -> Iterator[Stack]:
    """A deployment no other test sees; its topics and keys are deleted afterwards."""
    stack = Stack()
    yield stack
    forget_namespace(redis_client, stack.names)
    asyncio.run(_delete_topics(stack.tag))


async def _delete_topics(prefix: str) -> None:
    """Every topic of the deployment: its own, the workers' changelogs, the channel feeds."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    try:
        await admin.start()
        if doomed := [topic for topic in await admin.list_topics() if topic.startswith(prefix)]:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(RULES))
    return path


@pytest.fixture
def start_api(tmp_path: Path, fresh_stack: Stack) -> Iterator[StartApi]:
    """Start `availability api` on the test's deployment (started = /healthz answers);
    `env` adds or overrides AVAIL_* variables. Each is stopped afterwards, and its log must
    hold no traceback and no warning."""
    with server_pool() as pool:

        def start(*, env: dict[str, str] | None = None, **kwargs: Any) -> ApiServer:
            server = ApiServer(
                tmp_path / f"api{len(pool)}", env=fresh_stack.env | (env or {}), **kwargs
            )
            pool.append(server)
            server.start()
            return server

        yield start
        for server in pool:
            server.stop()
    for server in pool:
        alarms = [line for line in server.log().splitlines() if any(a in line for a in LOG_ALARMS)]
        assert not alarms, f"{server.log_path.name} says:\n{server.log_tail()}"


@pytest.fixture
def ready_api(
    start_api: StartApi, fresh_stack: Stack, redis_client: redis.Redis, rules_path: Path
) -> ApiServer:
    """An API started with RULES, on a deployment whose every partition is published."""
    mark_ready(redis_client, fresh_stack.names, range(fresh_stack.partitions))
    server = start_api(rules_file=rules_path)
    wait_readiness(server, 200)
    return server


_FIGURES = pytest.StashKey[dict[str, str]]()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, str]:
    """Figures a test measures (name -> value), printed at the end of the run."""
    return request.config.stash.setdefault(_FIGURES, {})


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    measured = config.stash.get(_FIGURES, {})
    if measured:
        terminalreporter.section("figures measured by the integration tests")
        for name, value in measured.items():
            terminalreporter.write_line(f"{name}: {value}")

"""The streaming API's connections and their lifetime.

Redis connects lazily, per request, so a Redis outage only refuses reads. Kafka is connected
in a background task that retries until it succeeds (topics, producer, rules topic, rules
given at start): the process starts and serves /healthz whatever the state of Kafka, and
/readyz says what is missing meanwhile. Shutdown closes everything it opened.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final

from aiokafka.errors import KafkaError
from fastapi import FastAPI
from redis.asyncio import BlockingConnectionPool, Redis

from availability import AvailabilityError, Rules
from availability.feeds import MAX_WAIT_MS
from availability.memory import settle_garbage_collector
from availability.topics import Names

from .health import StreamingHealth
from .hold_replies import HoldReplies
from .kafka_holds import KafkaHolds
from .kafka_ingest import KafkaIngest
from .kafka_link import KafkaLink
from .kafka_security import refusal, refused_by_security
from .redis_feeds import RedisFeeds
from .redis_read_model import RedisReadModel
from .rules_follower import RulesFollower
from .snapshots import StreamingSnapshots
from .tasks import cancel_and_wait
from .topics_admin import ensure_topics

log = logging.getLogger("availability.api.streaming")

RETRY_FIRST_S: Final = 0.5
RETRY_MAX_S: Final = 10.0
# Connections per process: every request holds one for one round trip, so this bounds
# Redis connections at about the requests in flight, and a burst waits for a free one.
REDIS_MAX_CONNECTIONS: Final = 64
REDIS_WAIT_S: Final = 2.0  # for a free connection, before the read answers 503
REDIS_SOCKET_TIMEOUT_S: Final = 2.0
# Feed long-polls block a connection each for up to 30 s: a pool of their own, so they
# never hold the connections storefront reads need; beyond it a long-poll waits for one.
LONG_POLL_CONNECTIONS: Final = 256
LONG_POLL_SOCKET_TIMEOUT_S: Final = MAX_WAIT_MS / 1000 + 5
# How long a hold waits for its partitions' writers before answering 503 (and releasing
# whatever they held): a worker's batch, a changelog acknowledgement and a rebalance's
# first seconds fit; a storefront's checkout timeout is usually longer.
HOLD_DECISION_TIMEOUT_S: Final = 5.0


def _redis_pool(
    url: str, options: Mapping[str, Any], connections: int, wait_s: float, socket_timeout_s: float
) -> Redis:
    """A client on a bounded pool: past `connections` in use, a caller waits up to `wait_s`.
    `options`: a password, a CA file (Settings.redis_options)."""
    return Redis.from_pool(
        BlockingConnectionPool.from_url(
            url,
            max_connections=connections,
            timeout=wait_s,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S,
            **options,
        )
    )


class StreamingRuntime:
    def __init__(
        self,
        *,
        kafka_bootstrap: str,
        redis_url: str,
        kafka_security: Mapping[str, Any] | None = None,
        names: Names,
        redis_options: Mapping[str, Any] | None = None,
        answers_redis_url: str = "",
        answers_redis_options: Mapping[str, Any] | None = None,
        partitions: int,
        replication_factor: int = 0,
        rules_at_start: Rules | None = None,
    ) -> None:
        self.names = names
        self.partitions = partitions
        self.replication_factor = replication_factor
        options = redis_options or {}
        self.redis = _redis_pool(
            redis_url, options, REDIS_MAX_CONNECTIONS, REDIS_WAIT_S, REDIS_SOCKET_TIMEOUT_S
        )
        # Answers may come from a replica: storefront reads scale without the primary.
        # Holds, feeds and readiness read the primary, which the workers write.
        self.answers_redis = (
            _redis_pool(
                answers_redis_url,
                answers_redis_options or {},
                REDIS_MAX_CONNECTIONS,
                REDIS_WAIT_S,
                REDIS_SOCKET_TIMEOUT_S,
            )
            if answers_redis_url
            else self.redis
        )
        self.long_polls = _redis_pool(
            redis_url,
            options,
            LONG_POLL_CONNECTIONS,
            LONG_POLL_SOCKET_TIMEOUT_S,
            LONG_POLL_SOCKET_TIMEOUT_S,
        )
        self.kafka = KafkaLink(kafka_bootstrap, kafka_security)
        self.rules = RulesFollower(self.kafka, names, partitions, rules_at_start)
        namespace = names.redis_namespace
        self.read = RedisReadModel(self.answers_redis, namespace, partitions, self.rules)
        self.feeds = RedisFeeds(self.redis, self.long_polls, namespace, partitions, self.rules)
        self.ingest = KafkaIngest(self.kafka, names, partitions)
        self.hold_replies = HoldReplies(self.long_polls, namespace)
        self.holds = KafkaHolds(
            self.kafka,
            self.redis,
            self.hold_replies,
            names,
            partitions,
            self.rules,
            HOLD_DECISION_TIMEOUT_S,
        )
        self.snapshots = StreamingSnapshots(self.redis, namespace, self.kafka, names, partitions)
        self.health = StreamingHealth(self.redis, namespace, partitions, self.kafka, self.rules)
        self._connecting: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        self._connecting = asyncio.create_task(self._connect(), name="connect-kafka")
        self.hold_replies.start()
        try:
            yield
        finally:
            await self.close()

    async def close(self) -> None:
        task, self._connecting = self._connecting, None
        await cancel_and_wait(task)
        await self.hold_replies.stop()
        await self.rules.stop()
        await self.kafka.close()
        await self.redis.aclose()
        if self.answers_redis is not self.redis:
            await self.answers_redis.aclose()
        await self.long_polls.aclose()

    async def _connect(self) -> None:
        delay = RETRY_FIRST_S
        while True:
            try:
                await ensure_topics(
                    self.kafka.bootstrap,
                    self.names,
                    self.partitions,
                    replication_factor=self.replication_factor,
                    security=self.kafka.security,
                )
                await self.kafka.connect()
                await self.rules.start()
            except AvailabilityError as exc:  # topics it cannot use as they are
                log.warning(
                    "Kafka at %s is not usable yet (%s); retrying in %.1f s",
                    self.kafka.bootstrap,
                    exc,
                    delay,
                )
            except (KafkaError, OSError, TimeoutError) as exc:
                bootstrap, security = self.kafka.bootstrap, self.kafka.security
                reason = await refused_by_security(bootstrap, security)
                if reason is not None:
                    # Not an outage: the brokers refuse these settings, and will go on
                    # refusing them. The process stops, saying what to check.
                    log.error("%s; the API stops", refusal(bootstrap, security, reason))
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
                log.warning("%s; retrying in %.1f s", refusal(bootstrap, security, exc), delay)
            except Exception:
                # Not an outage we know of, but the process must not stay unready for good
                # because of one: say what it was, and try again.
                log.exception("connecting to Kafka failed; retrying in %.1f s", delay)
            else:
                log.info("streaming API connected to Kafka at %s", self.kafka.bootstrap)
                settle_garbage_collector()  # started: see availability/memory.py
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

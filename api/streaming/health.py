"""/readyz in the streaming mode: ready when Redis answers, Kafka answers, the rules in force
are known, every partition's SKUs are published (a worker owns each and has written all of
it since it took it over; a flushed Redis, or workers still rebuilding, are not ready), and
every partition's worker is writing Redis (its alive key renewed within 15 s)."""

from __future__ import annotations

import asyncio
from typing import Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from availability.published import alive_key, ready_key

from .kafka_link import KafkaLink
from .rules_follower import RulesFollower

PROBE_TIMEOUT_S: Final = 2.0


class StreamingHealth:
    def __init__(
        self,
        redis: Redis,
        namespace: str,
        partitions: int,
        kafka: KafkaLink,
        rules: RulesFollower,
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._partitions = partitions
        self._kafka = kafka
        self._rules = rules

    async def readiness(self) -> dict[str, bool]:
        # Side by side: a probe waits for the slower check, not for their sum.
        (redis_up, published, writing), kafka_up = await asyncio.gather(
            self._redis_checks(), self._kafka.reachable()
        )
        return {
            "redis": redis_up,
            "kafka": kafka_up,
            "rules": self._rules.ready,
            "partitions": published,
            "writers": writing,
        }

    async def _redis_checks(self) -> tuple[bool, bool, bool]:
        """Whether Redis answers, whether every partition is in the ready hash, and whether
        every partition's worker has written Redis in the last WRITER_ALIVE_MS (its alive
        key is there: a worker whose writes fail, retried meanwhile, renews none)."""
        fields = [str(p) for p in range(self._partitions)]
        alive = [alive_key(self._namespace, p) for p in range(self._partitions)]
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.ping()
                    pipe.hmget(ready_key(self._namespace), fields)
                    pipe.mget(alive)
                    _, workers, writers = await pipe.execute()
        except (RedisError, TimeoutError):
            return False, False, False
        return True, all(workers), all(writers)

    def oversold_positions(self) -> int:
        # The workers hold the positions and export this gauge themselves; an API process
        # reports 0 so that summing over every process counts each position once.
        return 0

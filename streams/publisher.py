"""Publishing SKU answers to Redis: one pipelined round trip per batch, newest version wins.

A Lua script replaces a SKU's hash only when the new version is higher, so a slow writer
(a rebuild, a worker losing its partition) can never put an older answer back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from availability import SkuState
from availability.published import published_fields, ready_key, sku_key
from availability.rules import CompiledRules

log = logging.getLogger("availability.worker")

_REPLACE_IF_NEWER: Final = """
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '-1')
if current >= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""
MAX_BACKOFF_SECONDS: Final = 2.0
CHUNK: Final = 500  # SKUs per round trip: bounds the pipeline's memory on a rebuild


class RedisPublisher:
    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self._client = client
        self._namespace = namespace
        self._script = client.register_script(_REPLACE_IF_NEWER)
        self.healthy = True

    async def publish(self, states: Sequence[SkuState], rules: CompiledRules) -> None:
        for start in range(0, len(states), CHUNK):
            chunk = states[start : start + CHUNK]
            await self._retrying(lambda chunk=chunk: self._publish_once(chunk, rules))

    async def _publish_once(self, states: Sequence[SkuState], rules: CompiledRules) -> None:
        pipe = self._client.pipeline(transaction=False)
        for state in states:
            fields = published_fields(state, rules)
            args: list[Any] = [state.version]
            for name, value in fields.items():
                args += [name, value]
            await self._script(keys=[sku_key(self._namespace, state.sku)], args=args, client=pipe)
        await pipe.execute()

    async def mark_ready(self, partition: int, owner: str) -> None:
        await self._retrying(
            lambda: self._client.hset(ready_key(self._namespace), str(partition), owner)
        )

    async def ready_owners(self) -> dict[int, str]:
        raw = await self._retrying(lambda: self._client.hgetall(ready_key(self._namespace)))
        return {int(k): v.decode() for k, v in raw.items()}

    async def _retrying(self, attempt: Any) -> Any:
        """Redis down blocks the stream rather than dropping an answer: the table already
        holds the truth, and the next successful publish carries the newest version."""
        backoff = 0.05
        while True:
            try:
                result = await attempt()
            except (RedisError, OSError) as exc:
                if self.healthy:
                    log.warning("redis unreachable, retrying: %s", exc)
                self.healthy = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            if not self.healthy:
                log.info("redis reachable again")
            self.healthy = True
            return result

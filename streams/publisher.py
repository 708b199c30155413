"""Publishing SKU answers to Redis: pipelined, coalesced per SKU, newest version wins.

The worker hands changed SKUs over and goes on with its next batch while a background task
writes them; a SKU changed again before its write keeps only its newest state, so a hot
SKU costs one write per round trip, not one per event. Nothing is lost by not waiting: the
table holds the truth, and a worker that dies with writes pending republishes all of its
partitions when it (or another worker) takes them over.

A Lua script replaces a SKU's hash only when the new version is higher, so a slow writer
(a rebuild, a worker losing its partition) can never put an older answer back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from availability import SkuState
from availability.published import published_fields, ready_key, sku_key
from availability.rules import CompiledRules

log = logging.getLogger("availability.worker")

# ARGV[1] is the version, ARGV[2] the fields as one msgpack map: packing two arguments
# instead of forty per SKU was a tenth of a worker's time in redis-py's command packing.
_REPLACE_IF_NEWER: Final = """
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '-1')
if current >= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
local flat = {}
for name, value in pairs(cmsgpack.unpack(ARGV[2])) do
  flat[#flat + 1] = name
  flat[#flat + 1] = value
  if #flat >= 1000 then redis.call('HSET', KEYS[1], unpack(flat)); flat = {} end
end
if #flat > 0 then redis.call('HSET', KEYS[1], unpack(flat)) end
return 1
"""
MAX_BACKOFF_SECONDS: Final = 2.0
REPLY_TTL_S: Final = 60
CHUNK: Final = 500  # SKUs per round trip: bounds the pipeline's memory on a rebuild
# SKUs waiting for their write beyond which the worker waits too: Redis sets the pace.
MAX_PENDING: Final = 20_000


_pack: Final = msgspec.msgpack.Encoder().encode


class RedisPublisher:
    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self._client = client
        self._namespace = namespace
        self._script = client.register_script(_REPLACE_IF_NEWER)
        self.healthy = True
        self._pending: dict[str, SkuState] = {}
        self._rules: CompiledRules | None = None
        self._wake = asyncio.Event()
        self._writing = False
        self.on_published: list[Any] = []  # callbacks(states) after each successful write

    async def submit(self, states: Sequence[SkuState], rules: CompiledRules) -> None:
        """Queue the SKUs' newest states for the background writer."""
        for state in states:
            self._pending[state.sku] = state
        self._rules = rules
        if self._pending:
            self._wake.set()
        while len(self._pending) > MAX_PENDING:  # noqa: ASYNC110 - a rare backpressure wait
            await asyncio.sleep(0.001)

    async def run(self) -> None:
        """The background writer: one pipelined round trip for whatever is pending."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                states, self._pending = list(self._pending.values()), {}
                assert self._rules is not None
                self._writing = True
                try:
                    await self.publish(states, self._rules)
                finally:
                    self._writing = False
                for callback in self.on_published:
                    callback(states)

    async def written(self) -> None:
        """Wait until every state submitted so far is in Redis."""
        while self._pending or self._writing:  # noqa: ASYNC110 - rare: a new feed channel
            await asyncio.sleep(0.01)

    async def publish(self, states: Sequence[SkuState], rules: CompiledRules) -> None:
        for start in range(0, len(states), CHUNK):
            chunk = states[start : start + CHUNK]
            await self._retrying(lambda chunk=chunk: self._publish_once(chunk, rules))

    async def _publish_once(self, states: Sequence[SkuState], rules: CompiledRules) -> None:
        pipe = self._client.pipeline(transaction=False)
        for state in states:
            # As msgpack strings: Redis's cmsgpack predates the bin type.
            fields = _pack({k: v.decode() for k, v in published_fields(state, rules).items()})
            key = sku_key(self._namespace, state.sku)
            await self._script(keys=[key], args=[state.version, fields], client=pipe)
        await pipe.execute()

    async def reply(self, replies: Sequence[tuple[str, bytes]]) -> None:
        """Hold replies, once their effects are durable, each to the list an API waits on.
        A reply nobody reads (the API gave up) goes away after REPLY_TTL_S."""

        async def send() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, value in replies:
                    pipe.rpush(key, value)
                    pipe.expire(key, REPLY_TTL_S)
                await pipe.execute()

        await self._retrying(send)

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

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
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from availability.layout import decode_figures
from availability.published import (
    WRITER_ALIVE_MS,
    Quantities,
    alive_key,
    ready_key,
    render,
    sku_key,
)
from availability.rules import CompiledRules
from availability.state import SkuFigures

log = logging.getLogger("availability.worker")

# KEYS are the SKUs' hashes; ARGV[1] one msgpack array of [version, fields] per key.
# One call writes SKUS_PER_CALL SKUs: with a call per SKU, redis-py's packing of commands
# and parsing of replies were about 15% of a worker's time. Keys of several SKUs in one
# call need one Redis (a primary, with replicas or Sentinel); on Redis Cluster the calls
# would have to be grouped by hash slot (the keys are hash-tagged by SKU for that).
_REPLACE_IF_NEWER: Final = """
local items = cmsgpack.unpack(ARGV[1])
local written = 0
local ahead = {}
for i, key in ipairs(KEYS) do
  local version, fields = items[i][1], items[i][2]
  local current = tonumber(redis.call('HGET', key, 'v') or '-1')
  if current < version then
    redis.call('DEL', key)
    local flat = {}
    for name, value in pairs(fields) do
      flat[#flat + 1] = name
      flat[#flat + 1] = value
      if #flat >= 1000 then redis.call('HSET', key, unpack(flat)); flat = {} end
    end
    if #flat > 0 then redis.call('HSET', key, unpack(flat)) end
    written = written + 1
  elseif current > version then
    ahead[#ahead + 1] = {i, current}
  end
end
return {written, ahead}
"""
# A script runs alone in Redis: small calls keep the API's reads flowing between them.
SKUS_PER_CALL: Final = 32
MAX_BACKOFF_SECONDS: Final = 2.0
REPLY_TTL_S: Final = 60
CHUNK: Final = 500  # SKUs per round trip: bounds the pipeline's memory on a rebuild
# SKUs waiting for their write beyond which the worker waits too: Redis sets the pace.
MAX_PENDING: Final = 20_000


_pack: Final = msgspec.msgpack.Encoder().encode


class RedisPublisher:
    def __init__(
        self,
        client: aioredis.Redis,
        namespace: str,
        on_failure: Callable[[], None] = lambda: None,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._script = client.register_script(_REPLACE_IF_NEWER)
        self.healthy = True
        self._on_failure = on_failure  # each failed Redis call (retried after a backoff)
        self._pending: dict[str, bytes] = {}  # SKU -> its newest record
        self._rules: CompiledRules | None = None
        self._wake = asyncio.Event()
        self._writing = False
        # After each successful write: callback(states, each one's channel quantities).
        self.on_published: list[Callable[[Sequence[SkuFigures], Sequence[Quantities]], None]] = []
        # (state, the version Redis holds) for each state whose SKU Redis holds newer.
        self.on_ahead: list[Callable[[Sequence[tuple[SkuFigures, int]]], None]] = []

    async def submit(self, records: Mapping[str, bytes], rules: CompiledRules) -> None:
        """Queue the SKUs' newest head records (by SKU) for the background writer."""
        self._pending.update(records)
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
                # Decoded here, once per write: a SKU changed by many batches meanwhile
                # costs one decode, and the worker's own states stay its own. The head's
                # figures alone are what answers are made of.
                states = [decode_figures(head) for head in self._pending.values()]
                self._pending = {}
                assert self._rules is not None
                self._writing = True
                try:
                    quantities = await self.publish(states, self._rules)
                finally:
                    self._writing = False
                for callback in self.on_published:
                    callback(states, quantities)

    async def written(self) -> None:
        """Wait until every state submitted so far is in Redis."""
        while self._pending or self._writing:  # noqa: ASYNC110 - rare: a new feed channel
            await asyncio.sleep(0.01)

    async def publish(self, states: Sequence[SkuFigures], rules: CompiledRules) -> list[Quantities]:
        """Write the SKUs' answers; returns each one's channel quantities, as rendered."""
        quantities: list[Quantities] = []
        for start in range(0, len(states), CHUNK):
            chunk = states[start : start + CHUNK]
            quantities += await self._retrying(lambda chunk=chunk: self._publish_once(chunk, rules))
        return quantities

    async def _publish_once(
        self, states: Sequence[SkuFigures], rules: CompiledRules
    ) -> list[Quantities]:
        pipe = self._client.pipeline(transaction=False)
        quantities = []
        for start in range(0, len(states), SKUS_PER_CALL):
            keys, items = [], []
            for state in states[start : start + SKUS_PER_CALL]:
                rendered = render(state, rules)
                quantities.append(rendered.quantities)
                keys.append(sku_key(self._namespace, state.sku))
                # Text, so msgpack strings: Redis's cmsgpack predates the bin type.
                items.append((state.version, rendered.fields))
            await self._script(keys=keys, args=[_pack(items)], client=pipe)
        replies = await pipe.execute()
        ahead = [
            (states[call * SKUS_PER_CALL + index - 1], stored)
            for call, (_, behind) in enumerate(replies)
            for index, stored in behind
        ]
        if ahead:
            for callback in self.on_ahead:
                callback(ahead)
        return quantities

    async def reply(self, replies: Sequence[tuple[str, bytes]]) -> None:
        """Hold replies, once their effects are durable, each to the list an API waits on.
        A reply nobody reads (the API gave up) goes away after REPLY_TTL_S."""
        await self._push(replies, REPLY_TTL_S)

    async def append(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Items pushed to the end of Redis lists that are kept (ERP snapshot reports)."""
        await self._push(items, None)

    async def _push(self, items: Sequence[tuple[str, bytes]], expire_s: int | None) -> None:
        async def send() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, value in items:
                    pipe.rpush(key, value)
                    if expire_s is not None:
                        pipe.expire(key, expire_s)
                await pipe.execute()

        await self._retrying(send)

    async def mark_ready(self, partition: int, owner: str) -> None:
        await self._retrying(
            lambda: self._client.hset(ready_key(self._namespace), str(partition), owner)
        )

    async def unmark_ready(self, partitions: Sequence[int], owner: str) -> None:
        """Withdraw this worker's ready marks of `partitions` (those another took are kept).
        Tried once: it is a failing worker's last word."""
        key = ready_key(self._namespace)
        owners = await self._client.hmget(key, [str(p) for p in partitions])
        mine = [str(p) for p, who in zip(partitions, owners, strict=True) if who == owner.encode()]
        if mine:
            await self._client.hdel(key, *mine)
            await self._client.delete(*(alive_key(self._namespace, int(p)) for p in mine))

    async def still_writing(self, partitions: Sequence[int], owner: str) -> None:
        """Renew the partitions' alive keys: this worker writes Redis (readers see a
        partition whose key expired as not ready)."""

        async def renew() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                for partition in partitions:
                    pipe.set(alive_key(self._namespace, partition), owner, px=WRITER_ALIVE_MS)
                await pipe.execute()

        await self._retrying(renew)

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
                self._on_failure()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            if not self.healthy:
                log.info("redis reachable again")
            self.healthy = True
            return result

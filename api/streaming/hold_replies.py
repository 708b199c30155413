"""The writers' replies to this API process's hold commands, read by one task.

Every command names this process's Redis list as its `reply_to`; one blocking pop takes
whatever replies are there and hands each to the request waiting on its `request_id`. A
blocking pop per request held a Redis connection per hold in flight and cost each hold a
round trip of its own. A reply nobody waits for any more (its request timed out and
released the hold) is dropped; the list expires a minute after the last push, so a list
whose API process is gone goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from typing import Final, cast

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from availability.control import HoldReply, hold_reply_decoder
from availability.published import reply_key

from .tasks import cancel_and_wait

log = logging.getLogger("availability.api.holds")

POP_WAIT_S: Final = 1  # a blocking pop's wait: under the pool's socket timeout
POP_COUNT: Final = 256  # replies taken at once
RETRY_MAX_S: Final = 2.0


class ReplyWaiter:
    """The replies to one request, one per partition it asked."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.replies: dict[int, HoldReply] = {}
        self.complete = asyncio.Event()

    def add(self, reply: HoldReply) -> None:
        self.replies[reply.partition] = reply
        if len(self.replies) >= self.expected:
            self.complete.set()


class HoldReplies:
    def __init__(self, redis: Redis, namespace: str) -> None:
        self._redis = redis  # a pool whose socket timeout outlasts POP_WAIT_S
        # A writer pushes only to a reply_key whose id is at most 64 letters, digits, '-' or
        # '_' (availability.control.reply_to_error); it dead-letters any other command.
        self.key = reply_key(namespace, f"api-{uuid.uuid4().hex}")
        self._waiting: dict[str, ReplyWaiter] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="hold-replies")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    @contextlib.contextmanager
    def expect(self, request_id: str, partitions: int) -> Iterator[ReplyWaiter]:
        """Wait for `partitions` replies to `request_id`, from before its commands are sent."""
        waiter = self._waiting[request_id] = ReplyWaiter(partitions)
        try:
            yield waiter
        finally:
            del self._waiting[request_id]

    async def _listen(self) -> None:
        delay = 0.05
        while True:
            try:
                found = await self._redis.blmpop(
                    POP_WAIT_S, 1, self.key, direction="LEFT", count=POP_COUNT
                )
            except RedisError as exc:
                # The replies wait in the list; requests whose replies come too late
                # answer 503 and release what they asked for.
                log.warning("hold replies cannot be read (%s); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            delay = 0.05
            if found is None:
                continue
            _, popped = cast(tuple[bytes, list[bytes]], found)
            for raw in popped:
                try:
                    reply = hold_reply_decoder.decode(raw)
                except msgspec.DecodeError as exc:
                    log.error("dropped a hold reply that is not one (%s): %r", exc, raw[:200])
                    continue
                waiter = self._waiting.get(reply.request_id)
                if waiter is not None:
                    waiter.add(reply)

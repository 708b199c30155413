"""What a batch tells the world goes out only once its changelog records are acknowledged.

A granted hold must survive a crash before the API says so, and Redis must never show a
version the changelog could still lose: a worker restarted after a kill -9 would compute
that version again from the redelivered events, maybe otherwise (the clock moved), and
the replace-if-newer write would keep the lost one. So the replies and the changed SKUs
of every batch wait here for the changelog's acknowledgement (`Worker.durable`), in the
order they were applied, while the worker goes on with its next batches. One wait covers
every batch applied before it: under load the batches of one Kafka round trip go out
together, and a SKU changed by several keeps only its newest state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence

from availability.rules import CompiledRules

from .publisher import RedisPublisher


class AfterDurable:
    def __init__(self, durable: Callable[[], Awaitable[None]], publisher: RedisPublisher) -> None:
        self._durable = durable
        self._publisher = publisher
        self._replies: list[tuple[str, bytes]] = []
        self._reports: list[tuple[str, bytes]] = []
        self._changed: dict[str, bytes] = {}
        self._rules: CompiledRules | None = None
        self._waiting = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def add(
        self,
        changed: Mapping[str, bytes],
        replies: Sequence[tuple[str, bytes]],
        rules: CompiledRules,
        reports: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """A batch applied to the table: its changed SKUs' records (by SKU), its hold
        replies and its ERP snapshot reports, to go out."""
        self._changed.update(changed)
        self._replies += replies
        self._reports += reports
        self._rules = rules
        if self._changed or self._replies or self._reports:
            self._idle.clear()
            self._waiting.set()

    async def run(self) -> None:
        while True:
            await self._waiting.wait()
            self._waiting.clear()
            replies, self._replies = self._replies, []
            reports, self._reports = self._reports, []
            changed, self._changed = self._changed, {}
            rules = self._rules
            await self._durable()
            if replies:
                await self._publisher.reply(replies)
            if reports:
                await self._publisher.append(reports)
            if changed and rules is not None:
                await self._publisher.submit(changed, rules)
            if not self._waiting.is_set():
                self._idle.set()

    async def handed_over(self) -> None:
        """Wait until everything added so far is durable and with the publisher."""
        await self._idle.wait()

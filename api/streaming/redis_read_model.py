"""Reads in the streaming mode: the answers the workers publish to Redis, sent as they are.

A question is one pipelined round trip: the SKUs' fields and the ready hash. An answer the
workers published is sent as its stored bytes. What is missing is answered from the rules
of `availability.published`, and never with a zero that could be wrong: a SKU missing from
Redis is "never seen" only when its partition is ready (a worker has published all of it);
until then it may have stock the workers have not published yet, and the read is refused
with NotReady (503), as it is when the SKU's answer for a channel the API knows is missing
(a rules change the workers are still applying).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

import msgspec
from msgspec import Raw
from redis.asyncio import Redis
from redis.exceptions import RedisError

from availability import Availability, NotReady, Positions, UnknownChannel
from availability.published import (
    POSITIONS_FIELD,
    UPDATED_FIELD,
    VERSION_FIELD,
    answer_field,
    locations_field,
    never_seen_answer,
    ready_key,
    sku_key,
    unlisted_location_answer,
)
from availability.topics import partition_for
from availability.views import LocationsAsk, LocationSellable, with_locations

from ..ports import AvailabilityAnswer, PositionsAnswer

Row = list[bytes | None]

_RETRY: Final = "retry shortly"
_answer_decoder: Final = msgspec.json.Decoder(Availability)
_locations_decoder: Final = msgspec.json.Decoder(list[LocationSellable])


class ChannelCatalog(Protocol):
    def has_channel(self, channel: str) -> bool:
        """Whether the rules in force name `channel`; NotReady until they are known."""
        ...


class RedisReadModel:
    def __init__(
        self, redis: Redis, namespace: str, partitions: int, catalog: ChannelCatalog
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._partitions = partitions
        self._catalog = catalog

    async def availability(
        self, sku: str, channel: str, location: str | None, ask: LocationsAsk | None = None
    ) -> AvailabilityAnswer:
        [answer] = await self.availability_batch([sku], channel, location, ask)
        return answer

    async def availability_batch(
        self,
        skus: Sequence[str],
        channel: str,
        location: str | None,
        ask: LocationsAsk | None = None,
    ) -> list[AvailabilityAnswer]:
        if not self._catalog.has_channel(channel):
            raise UnknownChannel(f"channel {channel!r} is not in the rules")
        fields = [answer_field(channel), VERSION_FIELD, UPDATED_FIELD]
        if location is not None:
            fields.append(answer_field(channel, location))
        elif ask is not None:
            fields.append(locations_field(channel))
        rows, ready = await self._fetch(skus, fields)
        answers = [
            _availability(sku, channel, location, row, ready)
            for sku, row in zip(skus, rows, strict=True)
        ]
        if location is not None or ask is None:
            return answers
        return [
            _paged(answer, row[-1], ask, channel) for answer, row in zip(answers, rows, strict=True)
        ]

    async def positions(self, sku: str) -> PositionsAnswer:
        [(stored, version)], ready = await self._fetch([sku], [POSITIONS_FIELD, VERSION_FIELD])
        if stored is not None:
            return Raw(stored)
        if version is None and sku in ready:
            return Positions(sku=sku, version=0, positions=[])
        raise NotReady(_not_published(sku, version is not None))

    async def _fetch(self, skus: Sequence[str], fields: list[str]) -> tuple[list[Row], set[str]]:
        """Each SKU's `fields`, and which of the SKUs' partitions are ready, in one round
        trip."""
        partitions = {sku: partition_for(sku.encode(), self._partitions) for sku in skus}
        asked = sorted(set(partitions.values()))
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for sku in skus:
                    pipe.hmget(sku_key(self._namespace, sku), fields)
                pipe.hmget(ready_key(self._namespace), [str(p) for p in asked])
                replies: list[Row] = await pipe.execute()
        except RedisError as exc:
            raise NotReady(f"Redis cannot be reached ({exc}); {_RETRY}") from exc
        ready_partitions = {p for p, worker in zip(asked, replies[-1], strict=True) if worker}
        ready = {sku for sku, p in partitions.items() if p in ready_partitions}
        return replies[:-1], ready


def _availability(
    sku: str, channel: str, location: str | None, row: Row, ready: set[str]
) -> AvailabilityAnswer:
    whole, version, updated, *at_location = row
    if version is None:  # no hash: the workers have published nothing of this SKU
        if sku in ready:
            return never_seen_answer(sku, channel, location)
        raise NotReady(_not_published(sku, seen=False))
    if whole is None:
        raise NotReady(
            f"SKU {sku}'s answers for channel {channel!r} are not published yet (the workers"
            f" are applying a rules change); {_RETRY}"
        )
    if location is None:
        return Raw(whole)
    if at_location[0] is not None:
        return Raw(at_location[0])
    # The SKU has no position at the location, or the location isn't eligible: SPEC 3
    # says its pool is 0, at the SKU's current version.
    return unlisted_location_answer(
        sku, channel, location, int(version), (updated or b"").decode() or None
    )


def _paged(
    answer: AvailabilityAnswer, stored: bytes | None, ask: LocationsAsk, channel: str
) -> Availability:
    """The channel answer with the page `ask` names of the breakdown the workers published
    beside it (in the same hash, so at the same version)."""
    if isinstance(answer, Availability):  # never seen: no locations
        return with_locations(answer, [], ask)
    whole = _answer_decoder.decode(answer)
    if stored is None:
        raise NotReady(
            f"SKU {whole.sku}'s locations for channel {channel!r} are not published yet (a"
            f" worker of an earlier build wrote its answers); {_RETRY}"
        )
    return with_locations(whole, _locations_decoder.decode(stored), ask)


def _not_published(sku: str, seen: bool) -> str:
    if seen:
        return f"SKU {sku}'s positions are not published yet; {_RETRY}"
    return (
        f"SKU {sku} is not published yet: the workers are still publishing its partition"
        f" (after a start or a rebalance), so it may have stock; {_RETRY}"
    )

"""Feeds in the streaming mode: the Redis streams the workers' fan-out appends to.

A cursor is a stream entry id. The fan-out trims the stream to the feed's retention as it
grows and records the newest entry it trimmed (`TRIMMED_FIELD` of the feed's last-version
hash: Redis 7.0 does not count trimming in XINFO's max-deleted-entry-id); a cursor older
than that has missed items and is refused with CursorExpired (410), and the consumer starts
again from a snapshot. A long-poll is an XREAD
that blocks on its own connection pool: a blocked read holds its connection for up to 30 s,
which the short reads of storefronts must never wait behind.

A snapshot pages through the SKU hashes with SCAN (a SKU may come twice; a consumer keeps
the higher version) and reads each SKU's published answer for the channel.
"""

from __future__ import annotations

import re
from typing import Any, Final, Protocol

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from availability import NotReady
from availability.errors import CursorExpired, InvalidCursor, NoFeed
from availability.feeds import FeedItem, FeedPage, SnapshotItem, SnapshotPage
from availability.published import (
    TRIMMED_FIELD,
    VERSION_FIELD,
    answer_field,
    feed_last_key,
    feed_stream_key,
    ready_key,
)

_ENTRY_ID: Final = re.compile(r"^(\d{1,20})-(\d{1,20})$")
_PAGE_TOKEN: Final = re.compile(r"^(\d{1,20}-\d{1,20})\.(\d{1,20})$")
_START: Final = "0-0"
_RETRY: Final = "retry shortly"


class FeedCatalog(Protocol):
    def has_feed(self, channel: str) -> bool:
        """Whether the channel has a feed; UnknownChannel when the rules don't name it."""
        ...


class _Answer(msgspec.Struct):
    sellable: int


_answer_decoder: Final = msgspec.json.Decoder(_Answer)


def _entry_id(text: str) -> tuple[int, int]:
    found = _ENTRY_ID.match(text)
    if found is None:
        raise InvalidCursor(f"{text!r} is not a cursor of this feed; use one it returned")
    return int(found[1]), int(found[2])


class RedisFeeds:
    def __init__(
        self,
        redis: Redis,
        blocking: Redis,
        namespace: str,
        partitions: int,
        catalog: FeedCatalog,
    ) -> None:
        self._redis = redis
        self._blocking = blocking
        self._namespace = namespace
        self._partitions = partitions
        self._catalog = catalog

    def _require_feed(self, channel: str) -> str:
        if not self._catalog.has_feed(channel):
            raise NoFeed(f"channel {channel!r} has no feed in the rules")
        return feed_stream_key(self._namespace, channel)

    async def feed(self, channel: str, cursor: str | None, limit: int, wait_ms: int) -> FeedPage:
        key = self._require_feed(channel)
        if cursor:
            _entry_id(cursor)  # refused before anything is read
        try:
            entries = await self._read(channel, key, cursor or None, limit)
            if not entries and wait_ms > 0:
                # Only a wake-up: the fan-out appends and trims in one script, so what a
                # blocked read sees may already have lost items; the read after it checks.
                woke = await self._blocking.xread({key: cursor or _START}, count=1, block=wait_ms)
                if woke:
                    entries = await self._read(channel, key, cursor or None, limit)
        except RedisError as exc:
            raise NotReady(f"Redis cannot be reached ({exc}); {_RETRY}") from exc
        items = [_feed_item(fields) for _, fields in entries]
        last = entries[-1][0].decode() if entries else cursor or _START
        return FeedPage(items, last)

    async def _read(self, channel: str, key: str, cursor: str | None, limit: int) -> list[Any]:
        """The items after the cursor (without one, from the oldest kept), read in one
        transaction with the trim mark and the stream's head: checked apart, a trim between
        the check and the read would hide items from a consumer near the retention's edge
        without a 410."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(feed_last_key(self._namespace, channel), TRIMMED_FIELD)
            pipe.exists(key)
            pipe.xinfo_stream(key)
            pipe.xrange(key, min=f"({cursor}" if cursor else "-", count=limit)
            trimmed, exists, info, entries = await pipe.execute(raise_on_error=False)
        if cursor is not None:
            _check_cursor(cursor, trimmed, bool(exists), info)
        if isinstance(entries, Exception):
            raise entries
        # redis-py's stubs type stream replies loosely: [(id, {field: value})] here.
        return list(entries or [])

    async def feed_snapshot(self, channel: str, page_token: str | None, limit: int) -> SnapshotPage:
        key = self._require_feed(channel)
        try:
            if page_token is None:
                await self._require_ready()
                cursor, scan = await self._head(key) or _START, 0
            else:
                found = _PAGE_TOKEN.match(page_token)
                if found is None:
                    raise InvalidCursor(f"{page_token!r} is not a page token of this feed")
                cursor, scan = found[1], int(found[2])
            scan, keys = await self._redis.scan(
                scan, match=f"{self._namespace}:{{*}}", count=limit, _type="hash"
            )
            field = answer_field(channel)
            async with self._redis.pipeline(transaction=False) as pipe:
                for sku_key in keys:
                    pipe.hmget(sku_key, [VERSION_FIELD, field])
                rows = await pipe.execute()
        except RedisError as exc:
            raise NotReady(f"Redis cannot be reached ({exc}); {_RETRY}") from exc
        items = []
        for sku_key, (version, answer) in zip(keys, rows, strict=True):
            if version is None or answer is None:
                continue  # deleted since the scan, or a rules change still being applied
            sku = _text(sku_key).split("{", 1)[1][:-1]
            sellable = _answer_decoder.decode(answer).sellable
            items.append(SnapshotItem(sku, sellable, int(version)))
        items.sort(key=lambda item: item.sku)
        next_token = None if scan == 0 else f"{cursor}.{scan}"
        return SnapshotPage(items, cursor, next_token)

    async def _head(self, key: str) -> str | None:
        """The id of the newest entry ever added to the stream; None when there is none."""
        try:
            info = await self._redis.xinfo_stream(key)
        except ResponseError:  # no such key
            return None
        return _text(info["last-generated-id"])

    async def _require_ready(self) -> None:
        owners = await self._redis.hlen(ready_key(self._namespace))
        if owners < self._partitions:
            raise NotReady(
                "the workers are still publishing some partitions, so a snapshot could miss"
                f" SKUs; {_RETRY}"
            )


def _check_cursor(cursor: str, trimmed: Any, exists: bool, info: Any) -> None:
    """Refuse a cursor the feed can't continue from, given what one transaction read: the
    trim mark, whether the stream exists, and its XINFO."""
    wanted = _entry_id(cursor)
    if not exists:  # nothing was ever published, or Redis was reset since
        if wanted != (0, 0):
            raise CursorExpired(
                f"cursor {cursor} is from a feed that no longer exists (Redis was reset);"
                " start again from a snapshot"
            )
        return
    for reply in (trimmed, info):
        if isinstance(reply, Exception):
            raise reply
    if wanted > _entry_id(_text(info["last-generated-id"])):
        raise InvalidCursor(f"cursor {cursor} is ahead of this feed; use one it returned")
    if trimmed is not None and wanted < _entry_id(_text(trimmed)):
        raise CursorExpired(
            f"cursor {cursor} is older than the feed's retention; start again from a snapshot"
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _feed_item(fields: dict[bytes, bytes]) -> FeedItem:
    return FeedItem(
        sku=fields[b"sku"].decode(),
        sellable=int(fields[b"sellable"]),
        version=int(fields[b"version"]),
        at=fields[b"at"].decode(),
    )

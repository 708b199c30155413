"""The API process's one reader of hold replies, on a real Redis."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
from redis.asyncio import Redis

from api.streaming.hold_replies import HoldReplies
from availability.control import HoldReply
from availability.holds import Shortfall
from tests.support.streaming import REDIS_URL


async def _exchange() -> tuple[dict[int, HoldReply], int]:
    client = Redis.from_url(REDIS_URL)
    replies = HoldReplies(client, f"test-{uuid.uuid4().hex[:8]}")
    replies.start()
    try:
        with replies.expect("wanted", 2) as waiter:
            encode = msgspec.json.encode
            await client.rpush(
                replies.key,
                b"not a reply",  # dropped, and the reader goes on
                encode(HoldReply(0, True, request_id="gone")),  # nobody waits: dropped
                encode(HoldReply(3, True, request_id="wanted")),
            )
            await asyncio.sleep(0.05)
            assert not waiter.complete.is_set()  # one partition of two so far
            short = HoldReply(5, False, shortfalls=[Shortfall("S", 2, 1)], request_id="wanted")
            await client.rpush(replies.key, encode(short))
            await asyncio.wait_for(waiter.complete.wait(), 5)
        return waiter.replies, await client.llen(replies.key)
    finally:
        await replies.stop()
        await client.delete(replies.key)
        await client.aclose()


def test_each_reply_reaches_the_request_waiting_on_it_and_nothing_else_stops_the_reader() -> None:
    got, left = asyncio.run(_exchange())
    assert sorted(got) == [3, 5]
    assert got[3].done
    assert not got[5].done
    assert got[5].shortfalls == [Shortfall("S", 2, 1)]
    assert left == 0  # everything was taken off the list

"""Channel feeds (SPEC 5 and 7): what marketplace publishers follow, throttled to the rate
their marketplace takes, with a snapshot to start from."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from availability.feeds import (
    DEFAULT_FEED_LIMIT,
    DEFAULT_SNAPSHOT_LIMIT,
    MAX_FEED_LIMIT,
    MAX_SNAPSHOT_LIMIT,
    MAX_WAIT_MS,
)
from availability.ids import CHANNEL_PATTERN

from ..deps import Services, check_ids, documented_pattern
from ..encoding import json_response
from ..openapi import answer, errors
from ..ports import Feeds

_TOKEN: Final = r"^[!-~]{1,300}$"  # printable ASCII: each mode makes its own tokens
_AUTH_ERRORS: Final = (
    (401, "unauthorized: no valid key"),
    (403, "forbidden: the key lacks `read`"),
)
_CHANNEL_ERRORS: Final = (
    (404, "unknown_channel: the channel is not in the rules"),
    (404, "no_feed: the channel has no `feed` in the rules"),
)

ChannelPath = Annotated[
    str,
    Path(
        description=f"a channel with a feed: {CHANNEL_PATTERN}",
        json_schema_extra=documented_pattern(CHANNEL_PATTERN),
    ),
]


def feeds_router(services: Services, feeds: Feeds) -> APIRouter:
    router = APIRouter(tags=["feeds"], dependencies=[services.scope("read")])  # type: ignore[list-item]

    @router.get(
        "/v1/feeds/{channel}",
        summary="The channel's changes after a cursor; long-polls up to wait_ms when none",
        responses={
            **answer(
                200, "the items after the cursor, and the cursor to ask with next", "FeedPage"
            ),
            **errors(
                *_CHANNEL_ERRORS,
                (410, "cursor_expired: older than the feed's retention; start from a snapshot"),
                (422, "invalid_cursor: not a cursor of this feed"),
                (422, "invalid_request: a bad channel, limit or wait_ms"),
                *_AUTH_ERRORS,
            ),
        },
    )
    async def get_feed(
        channel: ChannelPath,
        cursor: Annotated[
            str | None,
            Query(pattern=_TOKEN, description="the last cursor returned; none: the oldest kept"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_FEED_LIMIT)] = DEFAULT_FEED_LIMIT,
        wait_ms: Annotated[int, Query(ge=0, le=MAX_WAIT_MS)] = 0,
    ) -> Response:
        check_ids(channel=channel)
        return json_response(await feeds.feed(channel, cursor, limit, wait_ms))

    @router.get(
        "/v1/feeds/{channel}/snapshot",
        summary="Every SKU's current channel quantity, paged, with the cursor to follow from",
        responses={
            **answer(
                200, "a page of SKUs in SKU order; next_page_token null on the last", "SnapshotPage"
            ),
            **errors(
                *_CHANNEL_ERRORS,
                (422, "invalid_cursor: a page token this feed did not make"),
                (422, "invalid_request: a bad channel or limit"),
                *_AUTH_ERRORS,
            ),
        },
    )
    async def get_snapshot(
        channel: ChannelPath,
        page_token: Annotated[str | None, Query(pattern=_TOKEN)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_SNAPSHOT_LIMIT)] = DEFAULT_SNAPSHOT_LIMIT,
    ) -> Response:
        check_ids(channel=channel)
        return json_response(await feeds.feed_snapshot(channel, page_token, limit))

    return router

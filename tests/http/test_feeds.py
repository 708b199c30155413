"""Channel feed refusals over real HTTP against `availability serve`; what feeds deliver is
tested in both modes in tests/integration/test_feeds.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.events import event, unique_sku
from tests.support.feeds import Follower

from .conftest import StartServer
from .helpers import RULES, post_events

FAST = {"max_per_second": 5000, "min_interval_ms": 0}
FEED_RULES: dict[str, Any] = {
    **RULES,
    "channels": {
        **RULES["channels"],
        "web": {"location_types": ["dc", "store"], "feed": FAST},
        "slow": {"location_types": ["dc"], "feed": {"max_per_second": 20, "min_interval_ms": 0}},
    },
}


def rules_file(tmp_path: Path, rules: dict[str, Any]) -> Path:
    path = tmp_path / "feed-rules.json"
    path.write_text(json.dumps(rules))
    return path


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/v1/feeds/pickup", {}, 404, "no_feed"),
        ("/v1/feeds/nowhere", {}, 404, "unknown_channel"),
        ("/v1/feeds/pickup/snapshot", {}, 404, "no_feed"),
        ("/v1/feeds/web", {"cursor": "not-a-cursor"}, 422, "invalid_cursor"),
        ("/v1/feeds/web", {"cursor": "999999999"}, 422, "invalid_cursor"),
        ("/v1/feeds/web/snapshot", {"page_token": "garbage"}, 422, "invalid_cursor"),
        ("/v1/feeds/web", {"limit": 0}, 422, "invalid_request"),
        ("/v1/feeds/web", {"limit": 1001}, 422, "invalid_request"),
        ("/v1/feeds/web", {"wait_ms": 30_001}, 422, "invalid_request"),
        ("/v1/feeds/web", {"wait_ms": -1}, 422, "invalid_request"),
        ("/v1/feeds/Bad Channel", {}, 422, "invalid_request"),
    ],
)
def test_feed_refusals_say_what_was_wrong(
    feed_server_client: httpx.Client, path: str, params: dict[str, Any], status: int, code: str
) -> None:
    answer = feed_server_client.get(path, params=params)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code


def test_feeds_need_the_read_scope(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(
        rules_file=rules_file(tmp_path, FEED_RULES),
        env={"AVAIL_API_KEYS": "reader:read,writer:write"},
    )
    with server.client() as anonymous:
        assert anonymous.get("/v1/feeds/web").status_code == 401
    with server.client("writer") as writer:
        assert writer.get("/v1/feeds/web/snapshot").status_code == 403
    with server.client("reader") as reader:
        assert reader.get("/v1/feeds/web").status_code == 200


@pytest.fixture(scope="module")
def feed_server_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.support.server import Server, server_pool

    directory = tmp_path_factory.mktemp("feeds")
    with server_pool() as pool:
        server = Server(directory / "data", rules_file=rules_file(directory, FEED_RULES))
        pool.append(server)
        server.start()
        with server.client() as http:
            yield http


def test_the_fan_out_reports_its_items_lag_and_backlog_per_channel(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(rules_file=rules_file(tmp_path, FEED_RULES))
    skus = [unique_sku("MET") for _ in range(3)]
    with server.client() as http:
        post_events(http, [event("receipt", sku, "DC1", qty=2) for sku in skus])
        follower = Follower(http, "web")
        deadline = time.monotonic() + 30
        while len(follower.values) < len(skus) and time.monotonic() < deadline:
            follower.poll(wait_ms=1000)
        text = http.get("/metrics").text
    assert 'availability_feed_published_total{channel="web"} 3.0' in text
    assert 'availability_feed_lag_seconds_count{channel="web"} 3.0' in text
    assert 'availability_feed_backlog{channel="web"} 0.0' in text

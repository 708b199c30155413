"""Who may do what (SPEC section 8): keys with scopes, open probes, no open bind without keys."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.events import event, unique_sku
from tests.support.server import Server, free_port, run_cli, server_pool

from .helpers import RULES, error_of

KEYS = "r1:read,w1:write+read,h1:hold,a1:admin"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, rules_path: Path) -> Iterator[Server]:
    with server_pool() as pool:
        data_dir = tmp_path_factory.mktemp("keyed") / "data"
        server = Server(data_dir, env={"AVAIL_API_KEYS": KEYS}, rules_file=rules_path)
        pool.append(server)
        yield server.start()


@pytest.fixture(scope="module")
def anonymous(keyed: Server) -> Iterator[httpx.Client]:
    with keyed.client() as http:
        yield http


def call(client: httpx.Client, route: str) -> httpx.Response:
    """One call of each /v1 route, with a valid body where it takes one."""
    sku = unique_sku()
    calls: dict[str, tuple[str, str, Any]] = {
        "get-availability": ("GET", f"/v1/availability/{sku}?channel=web", None),
        "batch-availability": ("POST", "/v1/availability/batch", {"channel": "web", "skus": [sku]}),
        "get-positions": ("GET", f"/v1/positions/{sku}", None),
        "post-events": ("POST", "/v1/events", [event("receipt", sku, qty=1)]),
        "get-rules": ("GET", "/v1/rules", None),
        "put-rules": ("PUT", "/v1/rules", RULES),
        "post-holds": (
            "POST",
            "/v1/holds",
            {"channel": "web", "lines": [{"sku": sku, "qty": 1}], "ttl_s": 60},
        ),
        "delete-hold": ("DELETE", f"/v1/holds/{sku}", None),
    }
    method, path, body = calls[route]
    return client.request(method, path, json=body)


V1_ROUTES = [
    "get-availability",
    "batch-availability",
    "get-positions",
    "post-events",
    "get-rules",
    "put-rules",
    "post-holds",
    "delete-hold",
]
HOLD_ROUTES = ["post-holds", "delete-hold"]
READ_ROUTES = ["get-availability", "batch-availability", "get-positions", "get-rules"]
# Past the key check, a hold on a SKU never stocked is judged on its merits: 409, and a
# release of a hold never placed 404.
SUCCESS = {"post-events": 202, "post-holds": 409, "delete-hold": 404}


@pytest.mark.parametrize("route", V1_ROUTES)
def test_every_v1_call_without_a_key_is_401(anonymous: httpx.Client, route: str) -> None:
    response = call(anonymous, route)

    error_of(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    ["Bearer nope", "Bearer", "r1", "Basic cjE6", "Bearer r1x", "Bearer w1:write"],
)
def test_a_wrong_or_malformed_key_is_401(keyed: Server, header: str) -> None:
    with httpx.Client(base_url=keyed.url, headers={"Authorization": header}) as client:
        error_of(call(client, "get-positions"), 401, "unauthorized")


def test_a_missing_key_is_401_before_the_body_is_judged(anonymous: httpx.Client) -> None:
    response = anonymous.post("/v1/events", content=b"[{not json")

    error_of(response, 401, "unauthorized")


@pytest.mark.parametrize("route", READ_ROUTES)
def test_a_read_key_may_read(keyed: Server, route: str) -> None:
    with keyed.client("r1") as client:
        assert call(client, route).status_code == 200


@pytest.mark.parametrize(
    ("route", "scope"),
    [
        ("post-events", "write"),
        ("put-rules", "admin"),
        ("post-holds", "hold"),
        ("delete-hold", "hold"),
    ],
)
def test_a_read_key_may_not_write_or_change_rules(keyed: Server, route: str, scope: str) -> None:
    with keyed.client("r1") as client:
        error = error_of(call(client, route), 403, "forbidden")

    assert scope in error["message"]


@pytest.mark.parametrize("route", HOLD_ROUTES)
def test_a_hold_key_may_hold_and_release(keyed: Server, route: str) -> None:
    with keyed.client("h1") as client:
        assert call(client, route).status_code == SUCCESS[route]


@pytest.mark.parametrize("route", ["post-events", "get-availability"])
def test_a_hold_key_may_neither_write_nor_read(keyed: Server, route: str) -> None:
    with keyed.client("h1") as client:
        error_of(call(client, route), 403, "forbidden")


@pytest.mark.parametrize(
    ("key", "method", "path", "body", "status", "code"),
    [
        (None, "GET", "/v1/availability/SKU-1", None, 401, "unauthorized"),
        (None, "POST", "/v1/availability/batch", b"{not json", 401, "unauthorized"),
        ("h1", "GET", "/v1/availability/SKU 1", None, 403, "forbidden"),
        ("h1", "POST", "/v1/availability/batch", b"{not json", 403, "forbidden"),
        ("r1", "GET", "/v1/availability/SKU-1", None, 422, "invalid_request"),
        ("r1", "POST", "/v1/availability/batch", b"{not json", 400, "malformed_json"),
    ],
    ids=["none-get", "none-batch", "hold-get", "hold-batch", "read-get", "read-batch"],
)
def test_a_read_judges_the_key_before_the_question(
    keyed: Server,
    key: str | None,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    code: str,
) -> None:
    """Each question here is bad (no channel, a bad SKU, no JSON): only a read key gets
    as far as hearing so."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=keyed.url, headers=headers) as client:
        response = client.request(method, path, content=body)

    error_of(response, status, code)


def test_a_refused_write_applies_nothing(keyed: Server) -> None:
    sku = unique_sku()
    with keyed.client("r1") as reader:
        refused = reader.post("/v1/events", json=[event("receipt", sku, qty=5)])
        error_of(refused, 403, "forbidden")
        assert reader.get(f"/v1/positions/{sku}").json()["version"] == 0


@pytest.mark.parametrize("route", [*READ_ROUTES, "post-events"])
def test_a_write_and_read_key_may_post_events_and_read(keyed: Server, route: str) -> None:
    with keyed.client("w1") as client:
        assert call(client, route).status_code == SUCCESS.get(route, 200)


def test_a_write_key_may_not_put_rules(keyed: Server) -> None:
    with keyed.client("w1") as client:
        before = client.get("/v1/rules").json()
        error_of(call(client, "put-rules"), 403, "forbidden")
        assert client.get("/v1/rules").json() == before


@pytest.mark.parametrize("route", V1_ROUTES)
def test_an_admin_key_may_do_everything(keyed: Server, route: str) -> None:
    with keyed.client("a1") as client:
        assert call(client, route).status_code == SUCCESS.get(route, 200)


def test_an_admin_write_is_visible_to_a_reader(keyed: Server) -> None:
    sku = unique_sku()
    with keyed.client("a1") as admin, keyed.client("r1") as reader:
        assert call(admin, "put-rules").status_code == 200
        assert (
            admin.post("/v1/events", json=[event("receipt", sku, "DC1", qty=5)]).status_code == 202
        )
        answer = reader.get(f"/v1/availability/{sku}", params={"channel": "web"}).json()

    assert answer["sellable"] == 5


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_stay_open_without_a_key(anonymous: httpx.Client, path: str) -> None:
    assert anonymous.get(path).status_code == 200


def test_an_unknown_path_is_404_not_found(anonymous: httpx.Client) -> None:
    error_of(anonymous.get("/v1/nothing-here"), 404, "not_found")


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--host", "0.0.0.0"], {}),
        (["--host", "0.0.0.0"], {"AVAIL_API_KEYS": ""}),
        ([], {"AVAIL_HOST": "0.0.0.0"}),
        (["--host", "::"], {}),
        (["--host", "127.evil.example"], {}),
    ],
    ids=["flag", "empty-keys", "env", "ipv6-any", "name-like-loopback"],
)
def test_serve_refuses_a_non_loopback_address_without_keys(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    data_dir = tmp_path / "data"
    command = ["serve", *args, "--port", str(free_port()), "--data-dir", str(data_dir)]

    started = time.monotonic()
    result = run_cli(command, env=env, timeout=15)

    assert time.monotonic() - started < 10
    assert result.returncode != 0
    assert "refusing to bind" in result.stderr
    assert "AVAIL_API_KEYS" in result.stderr
    assert not data_dir.exists()  # it stopped before opening anything


def test_serve_refuses_malformed_keys_and_says_which(tmp_path: Path) -> None:
    command = ["serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "data")]

    result = run_cli(command, env={"AVAIL_API_KEYS": "r1:read,w1:root"}, timeout=15)

    assert result.returncode != 0
    assert "AVAIL_API_KEYS" in result.stderr
    assert "root" in result.stderr
    assert "w1" not in result.stderr  # keys are never printed


def test_keys_are_never_logged(keyed: Server) -> None:
    with keyed.client("w1") as writer, keyed.client("nope-key") as stranger:
        writer.put("/v1/rules", json=RULES)
        stranger.get("/v1/rules")

    log = keyed.log()
    assert log  # the server did write one
    assert "nope-key" not in log
    assert "w1:write" not in log
    assert "Bearer" not in log

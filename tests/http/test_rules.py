"""GET/PUT /v1/rules and `serve --rules FILE` (SPEC sections 4 and 5).

These tests change the rules, so they run on a server of this module's own and each one
first puts the baseline rules it starts from.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.events import event, unique_sku
from tests.support.server import Server, free_port, run_cli, server_pool

from .conftest import StartServer
from .helpers import RULES, availability, error_of, position, positions, post_events

BASELINE: dict[str, Any] = {
    "default_location_type": "store",
    "locations": {"DC1": {"type": "dc"}, "S001": {"type": "store"}},
    "safety_stock": [{"location_type": "store", "units": 1}],
    "channels": {
        "web": {"location_types": ["dc", "store"]},
        "pickup": {"location_types": ["store"]},
    },
}


@pytest.fixture(scope="module")
def rules_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with server_pool() as pool:
        own = Server(tmp_path_factory.mktemp("rules-server") / "data")
        pool.append(own)
        own.start()
        with own.client() as http:
            yield http


def put_rules(client: httpx.Client, document: dict[str, Any]) -> httpx.Response:
    return client.put("/v1/rules", json=document)


@pytest.fixture
def baseline(rules_client: httpx.Client) -> httpx.Client:
    response = put_rules(rules_client, BASELINE)
    assert response.status_code == 200, response.text
    return rules_client


def test_put_rules_answers_200_with_the_document_and_get_returns_it(
    baseline: httpx.Client,
) -> None:
    document = BASELINE | {"channels": {"web": {"share": 0.5, "cap": 10, "buffer": 1}}}

    response = put_rules(baseline, document)

    assert response.status_code == 200
    assert response.json() == document
    assert baseline.get("/v1/rules").json() == document


def test_put_rules_answers_the_document_with_its_defaults(baseline: httpx.Client) -> None:
    response = put_rules(baseline, {"channels": {"web": {}}})

    assert response.status_code == 200
    assert response.json() == {
        "default_location_type": "store",
        "locations": {},
        "safety_stock": [],
        "channels": {"web": {}},
    }


def test_a_rules_change_bumps_the_version_of_skus_whose_answers_change_only(
    baseline: httpx.Client,
) -> None:
    changed, same_store, at_dc = unique_sku(), unique_sku(), unique_sku()
    post_events(
        baseline,
        [
            event("receipt", changed, "S001", qty=10),
            event("receipt", same_store, "S001", qty=10),
            event("receipt", at_dc, "DC1", qty=10),
        ],
    )
    before = {sku: positions(baseline, sku)["version"] for sku in (changed, same_store, at_dc)}
    assert availability(baseline, changed, "web")["sellable"] == 9

    # Safety stock of 4 for one SKU: only that SKU answers differently.
    rules = [{"location_type": "store", "units": 1}, {"sku": changed, "units": 4}]
    assert put_rules(baseline, BASELINE | {"safety_stock": rules}).status_code == 200

    answer = availability(baseline, changed, "web")
    assert answer["sellable"] == 6
    assert answer["version"] == before[changed] + 1
    assert position(baseline, changed, "S001")["safety_stock"] == 4
    assert availability(baseline, same_store, "web")["version"] == before[same_store]
    assert availability(baseline, at_dc, "web")["version"] == before[at_dc]


def test_a_safety_stock_change_shows_in_positions_with_a_new_version(
    baseline: httpx.Client,
) -> None:
    sold_out, at_dc = unique_sku(), unique_sku()
    post_events(
        baseline,
        [
            event("receipt", sold_out, "S001", qty=1),
            event("sale", sold_out, "S001", qty=1),
            event("receipt", at_dc, "DC1", qty=10),
        ],
    )

    stores = [{"location_type": "store", "units": 4}]
    assert put_rules(baseline, BASELINE | {"safety_stock": stores}).status_code == 200

    # Sellable stays 0, but the position's safety_stock a reader sees changed.
    answer = positions(baseline, sold_out)
    assert answer["version"] == 3
    assert answer["positions"][0]["safety_stock"] == 4
    assert positions(baseline, at_dc)["version"] == 1


def test_putting_the_same_rules_again_bumps_no_version(baseline: httpx.Client) -> None:
    sku = unique_sku()
    post_events(baseline, [event("receipt", sku, "S001", qty=10)])

    assert put_rules(baseline, BASELINE).status_code == 200

    assert positions(baseline, sku)["version"] == 1


def test_a_channel_share_change_shows_in_availability_at_once(baseline: httpx.Client) -> None:
    sku = unique_sku()
    post_events(baseline, [event("receipt", sku, "DC1", qty=100)])

    channels = {"web": {"location_types": ["dc"], "share": 0.57}}
    assert put_rules(baseline, BASELINE | {"channels": channels}).status_code == 200

    answer = availability(baseline, sku, "web")
    assert (answer["sellable"], answer["version"]) == (57, 2)


INVALID_RULES: list[tuple[str, dict[str, Any], str]] = [
    ("share-over-1", {"channels": {"web": {"share": 1.5}}}, "share"),
    ("negative-units", {"safety_stock": [{"units": -1}]}, "units"),
    ("negative-cap", {"channels": {"web": {"cap": -1}}}, "cap"),
    ("unknown-location-type", {"locations": {"X": {"type": "warehouse"}}}, "type"),
    ("bad-channel-name", {"channels": {"Web Shop": {}}}, "channels"),
    ("unknown-field", {"chanels": {}}, "chanels"),
    ("feed-rate-zero", {"channels": {"web": {"feed": {"max_per_second": 0}}}}, "max_per_second"),
    ("units-a-string", {"safety_stock": [{"units": "3"}]}, "units"),
]


@pytest.mark.parametrize(
    ("document", "named"),
    [case[1:] for case in INVALID_RULES],
    ids=[case[0] for case in INVALID_RULES],
)
def test_invalid_rules_are_422_invalid_rules_and_the_old_rules_stay(
    baseline: httpx.Client, document: dict[str, Any], named: str
) -> None:
    sku = unique_sku()
    post_events(baseline, [event("receipt", sku, "S001", qty=10)])

    response = put_rules(baseline, document)

    error = error_of(response, 422, "invalid_rules")
    assert named in error["message"]
    assert baseline.get("/v1/rules").json() == BASELINE
    answer = availability(baseline, sku, "web")
    assert (answer["sellable"], answer["version"]) == (9, 1)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"channels": {', 400, "malformed_json"),
        (b"[]", 422, "invalid_rules"),
        (b'"rules"', 422, "invalid_rules"),
    ],
    ids=["malformed", "an-array", "a-string"],
)
def test_a_rules_body_that_is_not_a_json_object_is_refused(
    baseline: httpx.Client, body: bytes, status: int, code: str
) -> None:
    response = baseline.put("/v1/rules", content=body)

    error_of(response, status, code)
    assert baseline.get("/v1/rules").json() == BASELINE


# -- --rules FILE at start ------------------------------------------------------------------


def test_a_json_rules_file_is_applied_at_start(tmp_path: Path, start_server: StartServer) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(RULES))

    with start_server(rules_file=path).client() as client:
        assert client.get("/v1/rules").json() == RULES
        sku = unique_sku()
        post_events(client, [event("receipt", sku, "DC1", qty=100)])
        assert availability(client, sku, "amazon")["sellable"] == 55


def test_a_yaml_rules_file_is_applied_at_start(tmp_path: Path, start_server: StartServer) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(RULES))

    with start_server(rules_file=path).client() as client:
        assert client.get("/v1/rules").json() == RULES
        sku = unique_sku()
        post_events(client, [event("receipt", sku, "S002", qty=10)])
        assert availability(client, sku, "pickup")["sellable"] == 7  # S002 safety stock 3


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("rules.json", '{"channels": {"web": {"share": 2}}}', "share"),
        ("rules.json", '{"channels": ', "not valid JSON"),
        ("rules.yaml", "channels:\n  web:\n    cap: -3\n", "cap"),
        ("rules.yaml", "channels: [unclosed\n", "not valid YAML"),
        ("rules.yml", "- just\n- a list\n", "object"),
    ],
    ids=["json-invalid", "json-malformed", "yaml-invalid", "yaml-malformed", "yaml-not-a-map"],
)
def test_an_invalid_rules_file_makes_serve_exit_with_a_message(
    tmp_path: Path, name: str, text: str, says: str
) -> None:
    path = tmp_path / name
    path.write_text(text)

    result = run_cli(
        [
            "serve",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "data"),
            "--rules",
            str(path),
        ]
    )

    assert result.returncode != 0
    assert "invalid rules" in result.stderr
    assert says in result.stderr


def test_a_missing_rules_file_makes_serve_exit_with_a_message(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"

    result = run_cli(
        [
            "serve",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "data"),
            "--rules",
            str(missing),
        ]
    )

    assert result.returncode != 0
    assert str(missing) in result.stderr

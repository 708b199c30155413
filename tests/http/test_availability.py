"""GET /v1/availability/{sku} and POST /v1/availability/batch (SPEC sections 3 and 5)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.events import event, unique_sku

from .helpers import availability, error_of, post_events


def test_a_sku_never_seen_answers_zero_at_version_zero(client: httpx.Client, sku: str) -> None:
    response = client.get(f"/v1/availability/{sku}", params={"channel": "web"})

    assert response.status_code == 200
    body = response.json()
    assert body["sku"] == sku
    assert body["channel"] == "web"
    assert body["sellable"] == 0
    assert body["version"] == 0
    assert "locations" not in body
    assert "location" not in body
    with_locations = availability(client, sku, "web", include="locations")
    assert with_locations == body | {"locations": []}


def test_availability_answers_every_field_after_events(client: httpx.Client, sku: str) -> None:
    post_events(client, [event("receipt", sku, "DC1", qty=10)])

    body = availability(client, sku, "web")

    assert set(body) == {"sku", "channel", "sellable", "version", "updated_at"}
    assert body["sellable"] == 10
    assert body["version"] == 1
    assert body["updated_at"].endswith("Z")
    listed = availability(client, sku, "web", include="locations")
    assert listed == body | {"locations": [{"location": "DC1", "sellable": 10}]}


def test_the_locations_list_holds_eligible_locations_with_their_own_sellable(
    client: httpx.Client, sku: str
) -> None:
    post_events(
        client,
        [
            event("receipt", sku, "DC1", qty=10),
            event("receipt", sku, "S001", qty=6),  # a store: safety stock 1
            event("receipt", sku, "D001", qty=4),  # dropship: not eligible for web
        ],
    )

    web = availability(client, sku, "web", include="locations")
    pickup = availability(client, sku, "pickup", include="locations")

    assert web["locations"] == [
        {"location": "DC1", "sellable": 10},
        {"location": "S001", "sellable": 5},
    ]
    assert web["sellable"] == 15
    assert pickup["locations"] == [{"location": "S001", "sellable": 5}]
    assert pickup["sellable"] == 5
    assert availability(client, sku, "marketplace")["sellable"] == 4


def test_asking_with_a_location_answers_that_location_only(client: httpx.Client, sku: str) -> None:
    post_events(
        client,
        [event("receipt", sku, "S001", qty=6), event("receipt", sku, "S003", qty=9)],
    )

    body = availability(client, sku, "pickup", location="S003")

    assert body["location"] == "S003"
    assert body["sellable"] == 8
    assert body["locations"] == [{"location": "S003", "sellable": 8}]


def test_asking_at_a_location_the_channel_does_not_serve_answers_zero(
    client: httpx.Client, sku: str
) -> None:
    post_events(client, [event("receipt", sku, "DC1", qty=10)])

    body = availability(client, sku, "pickup", location="DC1")

    assert body["sellable"] == 0
    assert body["locations"] == []
    assert body["location"] == "DC1"


def test_asking_at_a_location_without_a_position_answers_zero(
    client: httpx.Client, sku: str
) -> None:
    post_events(client, [event("receipt", sku, "S001", qty=10)])

    body = availability(client, sku, "web", location="S002")

    assert body["sellable"] == 0
    assert body["locations"] == []
    assert body["version"] == 1


def test_an_unknown_channel_is_404_unknown_channel(client: httpx.Client, sku: str) -> None:
    response = client.get(f"/v1/availability/{sku}", params={"channel": "nosuch"})

    error = error_of(response, 404, "unknown_channel")
    assert "nosuch" in error["message"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/availability/A B", {"channel": "web"}, "sku"),
        (f"/v1/availability/{'A' * 65}", {"channel": "web"}, "sku"),
        ("/v1/availability/SKU-1", {"channel": "Web"}, "channel"),
        ("/v1/availability/SKU-1", {"channel": "c" * 33}, "channel"),
        ("/v1/availability/SKU-1", {"channel": "web", "location": "S 1"}, "location"),
        ("/v1/availability/SKU-1", {"channel": "web", "location": "L" * 65}, "location"),
        ("/v1/availability/SKU-1", {}, "channel"),
    ],
    ids=[
        "sku-with-space",
        "sku-65-chars",
        "channel-uppercase",
        "channel-33-chars",
        "location-with-space",
        "location-65-chars",
        "channel-missing",
    ],
)
def test_bad_ids_in_path_or_query_are_422_invalid_request(
    client: httpx.Client, path: str, params: dict[str, str], field: str
) -> None:
    error = error_of(client.get(path, params=params), 422, "invalid_request")

    assert [detail["field"] for detail in error["details"]] == [field]


def test_a_sku_of_64_characters_is_accepted(client: httpx.Client) -> None:
    sku = unique_sku().ljust(64, "x")

    response = client.get(f"/v1/availability/{sku}", params={"channel": "web"})

    assert response.status_code == 200
    assert response.json()["sku"] == sku


def test_batch_answers_in_request_order(client: httpx.Client) -> None:
    skus = [unique_sku(f"B{i}") for i in range(5)]
    post_events(client, [event("receipt", s, "DC1", qty=i + 1) for i, s in enumerate(skus)])
    never_seen = unique_sku("NEVER")
    asked = [skus[3], never_seen, skus[0], skus[4], skus[1]]

    response = client.post("/v1/availability/batch", json={"channel": "web", "skus": asked})

    assert response.status_code == 200
    items = response.json()["items"]
    assert [item["sku"] for item in items] == asked
    assert [item["sellable"] for item in items] == [4, 0, 1, 5, 2]
    assert items[1]["version"] == 0
    # The same objects as the single-SKU answer.
    assert items[0] == availability(client, skus[3], "web")


def test_batch_with_a_location_answers_that_location(client: httpx.Client) -> None:
    first, second = unique_sku(), unique_sku()
    post_events(
        client,
        [
            event("receipt", first, "S001", qty=5),
            event("receipt", first, "S003", qty=20),
            event("receipt", second, "S003", qty=3),
        ],
    )

    response = client.post(
        "/v1/availability/batch",
        json={"channel": "pickup", "skus": [first, second], "location": "S001"},
    )

    assert response.status_code == 200
    items = response.json()["items"]
    assert [(i["sku"], i["location"], i["sellable"]) for i in items] == [
        (first, "S001", 4),
        (second, "S001", 0),
    ]


@pytest.mark.parametrize("count", [1, 500])
def test_batch_accepts_1_to_500_skus(client: httpx.Client, count: int) -> None:
    skus = [unique_sku() for _ in range(count)]

    response = client.post("/v1/availability/batch", json={"channel": "web", "skus": skus})

    assert response.status_code == 200
    assert [item["sku"] for item in response.json()["items"]] == skus


@pytest.mark.parametrize("count", [0, 501])
def test_batch_refuses_0_or_over_500_skus(client: httpx.Client, count: int) -> None:
    skus = [unique_sku() for _ in range(count)]

    response = client.post("/v1/availability/batch", json={"channel": "web", "skus": skus})

    error = error_of(response, 422, "invalid_request")
    assert error["details"][0]["field"] == "skus"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "web", "skus": ["ok", "not ok"]}, "skus[1]"),
        ({"channel": "Web!", "skus": ["ok"]}, "channel"),
        ({"channel": "web", "skus": ["ok"], "location": "S 1"}, "location"),
        ({"skus": ["ok"]}, "channel"),
        ({"channel": "web", "skus": "ok"}, "skus"),
        ({"channel": "web", "skus": [1]}, "skus[0]"),
    ],
    ids=["bad-sku", "bad-channel", "bad-location", "no-channel", "skus-not-list", "sku-not-str"],
)
def test_batch_refuses_bad_questions_naming_the_field(
    client: httpx.Client, body: dict[str, object], field: str
) -> None:
    response = client.post("/v1/availability/batch", json=body)

    error = error_of(response, 422, "invalid_request")
    assert [detail["field"] for detail in error["details"]] == [field]


def test_batch_with_an_unknown_channel_is_404(client: httpx.Client) -> None:
    response = client.post("/v1/availability/batch", json={"channel": "nosuch", "skus": ["A"]})

    error_of(response, 404, "unknown_channel")


def test_batch_with_malformed_json_is_400(client: httpx.Client) -> None:
    response = client.post("/v1/availability/batch", content=b'{"channel": "web", "skus": [')

    error_of(response, 400, "malformed_json")


# -- The per-location breakdown: asked for, paged by location id, bounded. ----------------


def _stocked_at_stores(client: httpx.Client, sku: str, stores: int) -> list[dict[str, Any]]:
    """Stock at `stores` unlisted stores (safety stock 1); their breakdown, in id order."""
    receipts = [event("receipt", sku, f"X{i:03}", qty=i + 2) for i in range(stores)]
    post_events(client, receipts)
    return [{"location": f"X{i:03}", "sellable": i + 1} for i in range(stores)]


def test_include_locations_pages_the_whole_breakdown_by_location_id(
    client: httpx.Client, sku: str
) -> None:
    listed = _stocked_at_stores(client, sku, 7)
    plain = availability(client, sku, "pickup")

    pages, after = [], None
    for _ in range(10):  # 3 pages expected: a cursor that never ends fails, not hangs
        page = availability(
            client,
            sku,
            "pickup",
            include="locations",
            limit=3,
            **({"after": after} if after else {}),
        )
        pages.append(page.pop("locations"))
        after = page.pop("next_after", None)
        assert page == plain  # the channel answer itself is the same on every page
        if after is None:
            break
    else:
        pytest.fail(f"no last page after 10: {pages}")

    assert [len(page) for page in pages] == [3, 3, 1]
    assert [entry for page in pages for entry in page] == listed
    assert plain["sellable"] == sum(entry["sellable"] for entry in listed)


def test_include_locations_without_a_limit_gives_100(client: httpx.Client, sku: str) -> None:
    listed = _stocked_at_stores(client, sku, 101)

    body = availability(client, sku, "pickup", include="locations")

    assert body["locations"] == listed[:100]
    assert body["next_after"] == "X099"


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"include": "positions"}, "include", "locations"),
        ({"include": "locations", "limit": "0"}, "limit", "greater than or equal to 1"),
        ({"include": "locations", "limit": "1001"}, "limit", "less than or equal to 1000"),
        ({"include": "locations", "after": "S 1"}, "after", "A-Z"),
        ({"after": "S001"}, "after", "only with include=locations"),
        ({"limit": "5"}, "limit", "only with include=locations"),
        ({"include": "locations", "location": "S001"}, "include", "not with location"),
    ],
    ids=["unknown-include", "limit-0", "limit-over-1000", "bad-after", "after-alone",
         "limit-alone", "with-a-location"],
)  # fmt: skip
def test_a_bad_breakdown_question_is_422_naming_the_parameter(
    client: httpx.Client, sku: str, params: dict[str, str], field: str, says: str
) -> None:
    response = client.get(f"/v1/availability/{sku}", params={"channel": "web", **params})

    error = error_of(response, 422, "invalid_request")
    assert [detail["field"] for detail in error["details"]] == [field]
    assert says in error["details"][0]["message"]


def test_a_batch_with_include_gives_each_item_its_first_page(client: httpx.Client) -> None:
    wide, narrow, never = unique_sku("W"), unique_sku("N"), unique_sku("NEVER")
    listed = _stocked_at_stores(client, wide, 5)
    post_events(client, [event("receipt", narrow, "S001", qty=3)])
    question = {"channel": "pickup", "skus": [wide, narrow, never]}

    plain = client.post("/v1/availability/batch", json=question).json()["items"]
    items = client.post(
        "/v1/availability/batch", json=question | {"include": "locations", "limit": 2}
    ).json()["items"]

    assert all("locations" not in item for item in plain)
    assert items == [
        plain[0] | {"locations": listed[:2], "next_after": "X001"},
        plain[1] | {"locations": [{"location": "S001", "sellable": 2}]},
        plain[2] | {"locations": []},
    ]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"include": "locations", "limit": 101}, "limit"),
        ({"include": "everything"}, "include"),
        ({"limit": 5}, "limit"),
        ({"include": "locations", "location": "S001"}, "include"),
    ],
    ids=["limit-over-100", "unknown-include", "limit-alone", "with-a-location"],
)
def test_a_bad_batch_breakdown_is_422_naming_the_field(
    client: httpx.Client, extra: dict[str, object], field: str
) -> None:
    question = {"channel": "web", "skus": ["A"]} | extra

    error = error_of(client.post("/v1/availability/batch", json=question), 422, "invalid_request")

    assert [detail["field"] for detail in error["details"]] == [field]


# -- The two reads are answered in front of FastAPI (api/fast_reads.py), or handed to it: --
# -- where it decides or hands over, the answers are FastAPI's. ---------------------------


@pytest.mark.parametrize(
    ("query", "status"),
    [("channel=nosuch&channel=web", 200), ("channel=web&channel=nosuch", 404)],
    ids=["last-is-known", "last-is-unknown"],
)
def test_a_repeated_query_parameter_counts_its_last_value(
    client: httpx.Client, sku: str, query: str, status: int
) -> None:
    assert client.get(f"/v1/availability/{sku}?{query}").status_code == status


def test_unknown_query_parameters_are_ignored(client: httpx.Client, sku: str) -> None:
    response = client.get(f"/v1/availability/{sku}?channel=web&colour=red")

    assert response.status_code == 200
    assert response.json()["sku"] == sku


def test_a_blank_location_is_a_bad_location(client: httpx.Client, sku: str) -> None:
    error = error_of(
        client.get(f"/v1/availability/{sku}?channel=web&location="), 422, "invalid_request"
    )

    assert [detail["field"] for detail in error["details"]] == ["location"]


def test_a_missing_channel_is_named_like_any_missing_parameter(
    client: httpx.Client, sku: str
) -> None:
    error = error_of(client.get(f"/v1/availability/{sku}"), 422, "invalid_request")

    assert error["details"] == [{"field": "channel", "message": "Field required"}]


@pytest.mark.parametrize(
    ("path", "sku"),
    [("/v1/availability/SKU%2D1", "SKU-1"), ("/v1/availability/batch", "batch")],
    ids=["percent-encoded", "named-batch"],
)
def test_the_sku_is_the_decoded_path_segment(client: httpx.Client, path: str, sku: str) -> None:
    response = client.get(path, params={"channel": "web"})

    assert response.status_code == 200
    assert response.json()["sku"] == sku


def test_a_sku_ending_in_an_encoded_newline_is_422(client: httpx.Client) -> None:
    error = error_of(client.get("/v1/availability/SKU-1%0A?channel=web"), 422, "invalid_request")

    assert [detail["field"] for detail in error["details"]] == ["sku"]


def test_a_trailing_slash_is_redirected_without_it(client: httpx.Client, sku: str) -> None:
    response = client.get(f"/v1/availability/{sku}/?channel=web")

    assert response.status_code == 307
    assert response.headers["location"].endswith(f"/v1/availability/{sku}?channel=web")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("HEAD", "/v1/availability/SKU-1?channel=web"),
        ("POST", "/v1/availability/SKU-1?channel=web"),
        ("PUT", "/v1/availability/batch"),
        ("GET", "/v1/availability/"),
    ],
    ids=["head-one", "post-one", "put-batch", "no-sku"],
)
def test_other_requests_on_the_read_paths_are_answered_as_ever(
    client: httpx.Client, method: str, path: str
) -> None:
    response = client.request(method, path)

    expected = 404 if path.endswith("/") else 405
    assert response.status_code == expected
    if method != "HEAD":  # a HEAD answer has no body
        error_of(response, expected, "not_found" if expected == 404 else "method_not_allowed")

"""The rules document (SPEC section 4): validation as a whole, safety stock by specificity."""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

import pytest

from availability.errors import InvalidRules
from availability.rules import (
    EMPTY_RULES,
    CompiledRules,
    Rules,
    decode_rules,
    encode_rules,
    rules_from_object,
)

from .factories import DC, DROPSHIP, OTHER_SKU, SKU, STORE, STORE_2, compiled

SPEC_EXAMPLE: dict[str, Any] = {
    "default_location_type": "store",
    "locations": {"DC1": {"type": "dc"}, "S001": {"type": "store"}},
    "safety_stock": [
        {"units": 0},
        {"location_type": "store", "units": 1},
        {"sku": "SKU-1", "units": 5},
        {"sku": "SKU-1", "location": "DC1", "units": 10},
    ],
    "channels": {
        "web": {"location_types": ["dc", "store"]},
        "pickup": {"location_types": ["store"]},
        "amazon": {
            "location_types": ["dc"],
            "share": 0.5,
            "cap": 100,
            "buffer": 2,
            "zero_below": 3,
            "feed": {"max_per_second": 50, "min_interval_ms": 1000},
        },
    },
}


def test_the_spec_example_is_valid_and_round_trips() -> None:
    rules = decode_rules(json.dumps(SPEC_EXAMPLE).encode())

    assert set(rules.channels) == {"web", "pickup", "amazon"}
    assert rules.channels["amazon"].feed is not None
    assert rules.channels["amazon"].feed.min_interval_ms == 1000
    assert decode_rules(encode_rules(rules)) == rules
    assert json.loads(encode_rules(rules)) == SPEC_EXAMPLE


def test_an_empty_document_means_no_rules() -> None:
    rules = decode_rules(b"{}")

    assert rules == EMPTY_RULES
    assert rules.default_location_type == "store"
    assert CompiledRules(rules).safety_stock(SKU, STORE) == 0


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({"channels": {"web": {"share": 0}}}, id="share-0"),
        pytest.param({"channels": {"web": {"share": 1}}}, id="share-1-as-int"),
        pytest.param({"channels": {"web": {"cap": 0, "buffer": 0, "zero_below": 0}}}, id="zeros"),
        pytest.param(
            {"channels": {"web": {"feed": {"max_per_second": 0.5, "min_interval_ms": 0}}}},
            id="feed-slow-and-no-interval",
        ),
        pytest.param({"channels": {"click_and-collect2": {}}}, id="channel-name-alphabet"),
        pytest.param({"channels": {"c" * 32: {}}}, id="channel-name-32"),
        pytest.param({"locations": {"D001": {"type": "dropship"}}}, id="dropship"),
        pytest.param(
            {"safety_stock": [{"sku": "SKU-1", "location_type": "dc", "units": 3}]},
            id="sku-and-type",
        ),
    ],
)
def test_boundary_documents_are_valid(document: dict[str, Any]) -> None:
    assert isinstance(rules_from_object(document), Rules)


def _channel(**rule: Any) -> dict[str, Any]:
    return {"channels": {"web": rule}}


def _safety(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"safety_stock": list(rules)}


BAD_RULES = [
    # (id, document, text the message must contain to name what is wrong)
    ("units-negative", _safety({"units": -1}), "safety_stock[0].units"),
    ("units-float", _safety({"units": 1.5}), "units"),
    ("units-string", _safety({"units": "5"}), "units"),
    ("units-missing", _safety({"sku": "SKU-1"}), "units"),
    ("cap-negative", _channel(cap=-1), "cap"),
    ("cap-float", _channel(cap=2.5), "cap"),
    ("buffer-negative", _channel(buffer=-1), "buffer"),
    ("buffer-float", _channel(buffer=0.5), "buffer"),
    ("zero_below-negative", _channel(zero_below=-3), "zero_below"),
    ("zero_below-string", _channel(zero_below="3"), "zero_below"),
    ("share-negative", _channel(share=-0.1), "share"),
    ("share-above-1", _channel(share=1.01), "share"),
    ("share-percent", _channel(share=57), "share"),
    ("share-string", _channel(share="0.5"), "share"),
    ("share-bool", _channel(share=True), "share"),
    ("max_per_second-zero", _channel(feed={"max_per_second": 0}), "max_per_second"),
    ("max_per_second-negative", _channel(feed={"max_per_second": -5}), "max_per_second"),
    ("max_per_second-missing", _channel(feed={"min_interval_ms": 10}), "max_per_second"),
    (
        "min_interval_ms-negative",
        _channel(feed={"max_per_second": 5, "min_interval_ms": -1}),
        "min_interval_ms",
    ),
    ("location-type-unknown", {"locations": {"X1": {"type": "warehouse"}}}, "type"),
    ("location-type-missing", {"locations": {"X1": {}}}, "type"),
    ("location-id-bad", {"locations": {"X 1": {"type": "dc"}}}, "locations"),
    ("default_location_type-unknown", {"default_location_type": "mall"}, "default_location_type"),
    (
        "channel-location_types-unknown",
        _channel(location_types=["dc", "mall"]),
        "location_types[1]",
    ),
    ("channel-locations-bad-id", _channel(locations=["S 1"]), "locations[0]"),
    (
        "safety-location_type-unknown",
        _safety({"location_type": "shop", "units": 1}),
        "location_type",
    ),
    ("safety-sku-bad", _safety({"sku": "SKU 1", "units": 1}), "sku"),
    ("channel-name-uppercase", {"channels": {"Web": {}}}, "channels"),
    ("channel-name-space", {"channels": {"web shop": {}}}, "channels"),
    ("channel-name-33", {"channels": {"c" * 33: {}}}, "channels"),
    ("channel-name-empty", {"channels": {"": {}}}, "channels"),
    (
        "safety-location-and-location_type",
        _safety({"units": 1}, {"location": "S001", "location_type": "store", "units": 2}),
        "safety_stock[1]",
    ),
    (
        "safety-same-scope-twice",
        _safety({"sku": "SKU-1", "units": 1}, {"sku": "SKU-1", "units": 2}),
        "safety_stock[1]",
    ),
    ("safety-two-defaults", _safety({"units": 1}, {"units": 2}), "safety_stock[1]"),
    ("unknown-top-level-field", {"channel": {}}, "`channel`"),
    ("unknown-channel-field", _channel(shares=0.5), "`shares`"),
    ("unknown-feed-field", _channel(feed={"max_per_second": 1, "burst": 5}), "`burst`"),
    ("unknown-safety-field", _safety({"units": 1, "store": "S001"}), "`store`"),
    ("unknown-location-field", {"locations": {"S001": {"type": "store", "tz": "UTC"}}}, "`tz`"),
    ("channels-not-an-object", {"channels": ["web"]}, "channels"),
    ("safety_stock-not-a-list", {"safety_stock": {"units": 1}}, "safety_stock"),
]


@pytest.mark.parametrize(
    ("document", "names"), [pytest.param(doc, names, id=name) for name, doc, names in BAD_RULES]
)
def test_an_invalid_rules_document_is_refused_naming_the_field(
    document: dict[str, Any], names: str
) -> None:
    with pytest.raises(InvalidRules) as refused:
        decode_rules(json.dumps(document).encode())

    assert names in str(refused.value)


def test_safety_stock_with_both_location_and_location_type_says_why() -> None:
    with pytest.raises(InvalidRules, match="location or location_type, not both"):
        rules_from_object(_safety({"location": "S001", "location_type": "store", "units": 2}))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"[]", id="array"),
        pytest.param(b"{", id="truncated"),
    ],
)
def test_a_body_that_is_not_a_rules_object_is_invalid_rules(body: bytes) -> None:
    with pytest.raises(InvalidRules):
        decode_rules(body)


def test_an_already_parsed_document_is_validated_like_json() -> None:
    # The YAML path: a parsed document goes through the same checks.
    with pytest.raises(InvalidRules, match="share"):
        rules_from_object(_channel(share=2))

    assert rules_from_object(SPEC_EXAMPLE) == decode_rules(json.dumps(SPEC_EXAMPLE).encode())


# -- safety stock ----------------------------------------------------------------------------

DC_2 = "DC2"

# One rule at every level, each with its own figure so a sum could never pass for a match.
EVERY_LEVEL = compiled(
    locations={
        DC: {"type": "dc"},
        DC_2: {"type": "dc"},
        STORE: {"type": "store"},
        STORE_2: {"type": "store"},
        DROPSHIP: {"type": "dropship"},
    },
    safety_stock=[
        {"units": 1},
        {"location_type": "store", "units": 2},
        {"location_type": "dc", "units": 3},
        {"location": STORE_2, "units": 4},
        {"sku": SKU, "units": 5},
        {"sku": SKU, "location_type": "dc", "units": 6},
        {"sku": SKU, "location": DC, "units": 7},
    ],
)


@pytest.mark.parametrize(
    ("sku", "location", "units"),
    [
        pytest.param(SKU, DC, 7, id="sku+location-beats-all"),
        pytest.param(SKU, DC_2, 6, id="sku+location_type-beats-sku"),
        pytest.param(SKU, STORE, 5, id="sku-beats-location_type"),
        pytest.param(SKU, STORE_2, 5, id="sku-beats-location"),
        pytest.param(SKU, DROPSHIP, 5, id="sku-beats-default"),
        pytest.param(OTHER_SKU, STORE_2, 4, id="location-beats-location_type"),
        pytest.param(OTHER_SKU, DC, 3, id="location_type-dc"),
        pytest.param(OTHER_SKU, STORE, 2, id="location_type-store"),
        pytest.param(OTHER_SKU, DROPSHIP, 1, id="default-when-nothing-else-matches"),
        pytest.param(OTHER_SKU, "UNLISTED", 2, id="unlisted-location-takes-default-type"),
    ],
)
def test_the_most_specific_safety_stock_rule_wins_never_summed(
    sku: str, location: str, units: int
) -> None:
    assert EVERY_LEVEL.safety_stock(sku, location) == units


def test_the_rule_order_in_the_document_does_not_matter() -> None:
    reversed_rules = compiled(
        locations={DC: {"type": "dc"}},
        safety_stock=[
            {"sku": SKU, "location": DC, "units": 7},
            {"location_type": "dc", "units": 3},
            {"units": 1},
        ],
    )

    assert reversed_rules.safety_stock(SKU, DC) == 7
    assert reversed_rules.safety_stock(OTHER_SKU, DC) == 3
    assert reversed_rules.safety_stock(OTHER_SKU, STORE) == 1


def test_a_sku_rule_for_another_location_falls_back_to_the_general_levels() -> None:
    rules = compiled(
        safety_stock=[
            {"sku": SKU, "location": DC, "units": 7},
            {"location_type": "store", "units": 2},
        ]
    )

    assert rules.safety_stock(SKU, STORE) == 2
    assert rules.safety_stock(SKU, DC) == 7


def test_without_a_default_rule_safety_stock_is_zero() -> None:
    rules = compiled(safety_stock=[{"sku": SKU, "units": 5}])

    assert rules.safety_stock(OTHER_SKU, STORE) == 0


def test_unlisted_locations_take_the_default_location_type() -> None:
    rules = compiled(
        default_location_type="dropship",
        locations={STORE: {"type": "store"}},
        safety_stock=[{"location_type": "dropship", "units": 9}],
    )

    assert rules.location_type("SUPPLIER-9") == "dropship"
    assert rules.location_type(STORE) == "store"
    assert rules.safety_stock(SKU, "SUPPLIER-9") == 9
    assert rules.safety_stock(SKU, STORE) == 0


# -- channels --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("share", "fraction"),
    [
        pytest.param(0.57, Fraction(57, 100), id="0.57"),
        pytest.param(0.29, Fraction(29, 100), id="0.29"),
        pytest.param(0.1, Fraction(1, 10), id="0.1"),
        pytest.param(1, Fraction(1), id="1"),
        pytest.param(0, Fraction(0), id="0"),
        pytest.param(1e-7, Fraction(1, 10_000_000), id="1e-7"),
    ],
)
def test_a_share_compiles_to_the_exact_decimal_it_was_written_as(
    share: float, fraction: Fraction
) -> None:
    channel = compiled(channels={"web": {"share": share}}).channels["web"]

    assert Fraction(channel.share_numerator, channel.share_denominator) == fraction

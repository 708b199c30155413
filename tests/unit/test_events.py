"""Event validation (SPEC section 2): every field's constraint, named by field and index."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from availability.events import (
    EVENT_TYPES,
    MAX_CLOCK_SKEW_MICROS,
    Adjust,
    Cancel,
    Count,
    Order,
    Pick,
    Receipt,
    Return,
    Sale,
    TransferIn,
    TransferOut,
    clock_error,
    decode_event,
    decode_message,
    decode_raw_list,
)
from availability.ids import is_channel, is_location, is_sku

from .factories import MISSING, T0_US, decode_all, decode_one, sale, wire

# Server time a minute after the events of `wire()`: no clock rule bites unless asked.
NOW = T0_US + 60 * 1_000_000

STRUCT_BY_TYPE = {
    "sale": Sale,
    "order": Order,
    "cancel": Cancel,
    "pick": Pick,
    "return": Return,
    "transfer_out": TransferOut,
    "transfer_in": TransferIn,
    "receipt": Receipt,
    "adjust": Adjust,
    "count": Count,
}


def test_every_spec_event_type_has_a_struct() -> None:
    assert set(EVENT_TYPES) == set(STRUCT_BY_TYPE)


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_a_valid_event_of_each_type_decodes_to_its_struct(type_: str) -> None:
    events, errors = decode_one(wire(type_), NOW)

    assert errors == []
    assert len(events) == 1
    assert type(events[0]) is STRUCT_BY_TYPE[type_]
    assert events[0].sku == "SKU-1"
    assert events[0].occurred_us == T0_US


@pytest.mark.parametrize(
    ("document", "check"),
    [
        pytest.param(
            wire("pick", order_id=MISSING),
            lambda e: e.order_id is None,
            id="pick-without-order_id",
        ),
        pytest.param(wire("pick"), lambda e: e.order_id == "O-1", id="pick-with-order_id"),
        pytest.param(
            wire("order", channel=MISSING), lambda e: e.channel is None, id="order-without-channel"
        ),
        pytest.param(
            wire("receipt", po_id=MISSING), lambda e: e.po_id is None, id="receipt-without-po_id"
        ),
        pytest.param(wire("sale", source=MISSING), lambda e: e.source is None, id="no-source"),
        pytest.param(
            wire("return", disposition="damaged"),
            lambda e: e.disposition == "damaged",
            id="return-damaged",
        ),
        pytest.param(wire("count", counted=0), lambda e: e.counted == 0, id="count-of-zero"),
        pytest.param(wire("sale", qty=1_000_000), lambda e: e.qty == 1_000_000, id="qty-max"),
        pytest.param(
            wire("adjust", delta=-1_000_000), lambda e: e.delta == -1_000_000, id="delta-min"
        ),
        pytest.param(
            wire("adjust", delta=1_000_000), lambda e: e.delta == 1_000_000, id="delta-max"
        ),
        pytest.param(
            wire("sale", event_id="x" * 128), lambda e: len(e.event_id) == 128, id="event_id-128"
        ),
        pytest.param(
            wire("sale", event_id="café ☕ #1"),
            lambda e: e.event_id == "café ☕ #1",
            id="event_id-unicode",
        ),
        pytest.param(wire("sale", sku="A" * 64), lambda e: len(e.sku) == 64, id="sku-64"),
        pytest.param(
            wire("sale", sku="a.B_c:9-z"), lambda e: e.sku == "a.B_c:9-z", id="sku-alphabet"
        ),
        pytest.param(
            wire("sale", occurred_at="2026-11-22T12:00:00+02:00"),
            lambda e: e.occurred_us == T0_US,
            id="occurred_at-with-offset",
        ),
        pytest.param(
            wire("sale", schema_v2_field={"x": 1}),
            lambda e: e.qty == 1,
            id="unknown-field-ignored-for-newer-producers",
        ),
    ],
)
def test_optional_fields_and_boundaries_are_accepted(document: dict[str, Any], check: Any) -> None:
    events, errors = decode_one(document, NOW)

    assert errors == []
    assert check(events[0])


BAD_EVENTS = [
    # (id, document, field the error must name)
    ("event_id-empty", wire("sale", event_id=""), "event_id"),
    ("event_id-129-chars", wire("sale", event_id="x" * 129), "event_id"),
    ("event_id-control-char", wire("sale", event_id="a\x00b"), "event_id"),
    ("event_id-inner-newline", wire("sale", event_id="a\nb"), "event_id"),
    ("event_id-trailing-newline", wire("sale", event_id="abc\n"), "event_id"),
    ("event_id-not-a-string", wire("sale", event_id=42), "event_id"),
    ("event_id-missing", wire("sale", event_id=MISSING), "event_id"),
    ("sku-empty", wire("sale", sku=""), "sku"),
    ("sku-65-chars", wire("sale", sku="A" * 65), "sku"),
    ("sku-space", wire("sale", sku="SKU 1"), "sku"),
    ("sku-slash", wire("sale", sku="SKU/1"), "sku"),
    ("sku-trailing-newline", wire("sale", sku="SKU-1\n"), "sku"),
    ("sku-not-a-string", wire("sale", sku=7), "sku"),
    ("sku-missing", wire("sale", sku=MISSING), "sku"),
    ("location-bad-alphabet", wire("sale", location="Store #1"), "location"),
    ("location-65-chars", wire("sale", location="L" * 65), "location"),
    ("location-missing", wire("sale", location=MISSING), "location"),
    ("occurred_at-no-offset", wire("sale", occurred_at="2026-11-22T10:00:00"), "occurred_at"),
    ("occurred_at-date-only", wire("sale", occurred_at="2026-11-22"), "occurred_at"),
    ("occurred_at-not-a-date", wire("sale", occurred_at="yesterday"), "occurred_at"),
    ("occurred_at-epoch-number", wire("sale", occurred_at=1_795_000_000), "occurred_at"),
    ("occurred_at-missing", wire("sale", occurred_at=MISSING), "occurred_at"),
    ("source-not-a-string", wire("sale", source=3), "source"),
    ("type-unknown", wire("refund"), "type"),
    ("type-not-a-string", wire("sale", type=5), "type"),
    ("type-missing", wire("sale", type=MISSING), "type"),
    ("qty-zero", wire("sale", qty=0), "qty"),
    ("qty-negative", wire("receipt", qty=-1), "qty"),
    ("qty-over-a-million", wire("order", qty=1_000_001), "qty"),
    ("qty-string", wire("pick", qty="1"), "qty"),
    ("qty-float", wire("sale", qty=1.5), "qty"),
    ("qty-integral-float", wire("sale", qty=2.0), "qty"),
    ("qty-bool", wire("sale", qty=True), "qty"),
    ("qty-null", wire("sale", qty=None), "qty"),
    ("qty-missing-on-sale", wire("sale", qty=MISSING), "qty"),
    ("qty-missing-on-transfer_in", wire("transfer_in", qty=MISSING), "qty"),
    ("order-order_id-missing", wire("order", order_id=MISSING), "order_id"),
    ("order-order_id-empty", wire("order", order_id=""), "order_id"),
    ("order-channel-uppercase", wire("order", channel="Web"), "channel"),
    ("order-channel-33-chars", wire("order", channel="w" * 33), "channel"),
    ("cancel-order_id-missing", wire("cancel", order_id=MISSING), "order_id"),
    ("pick-order_id-control-char", wire("pick", order_id="O\t1"), "order_id"),
    ("return-disposition-unknown", wire("return", disposition="lost"), "disposition"),
    ("return-disposition-missing", wire("return", disposition=MISSING), "disposition"),
    ("transfer_out-transfer_id-missing", wire("transfer_out", transfer_id=MISSING), "transfer_id"),
    ("transfer_out-to_location-bad", wire("transfer_out", to_location="DC 1"), "to_location"),
    ("transfer_out-to_location-missing", wire("transfer_out", to_location=MISSING), "to_location"),
    (
        "transfer_in-transfer_id-129-chars",
        wire("transfer_in", transfer_id="t" * 129),
        "transfer_id",
    ),
    ("receipt-po_id-empty", wire("receipt", po_id=""), "po_id"),
    ("adjust-delta-zero", wire("adjust", delta=0), "delta"),
    ("adjust-delta-over-a-million", wire("adjust", delta=1_000_001), "delta"),
    ("adjust-delta-under-minus-a-million", wire("adjust", delta=-1_000_001), "delta"),
    ("adjust-delta-float", wire("adjust", delta=0.5), "delta"),
    ("adjust-delta-missing", wire("adjust", delta=MISSING), "delta"),
    ("adjust-reason-empty", wire("adjust", reason=""), "reason"),
    ("adjust-reason-missing", wire("adjust", reason=MISSING), "reason"),
    ("count-counted-negative", wire("count", counted=-1), "counted"),
    ("count-counted-string", wire("count", counted="12"), "counted"),
    ("count-counted-missing", wire("count", counted=MISSING), "counted"),
]


@pytest.mark.parametrize(
    ("document", "field"), [pytest.param(doc, field, id=name) for name, doc, field in BAD_EVENTS]
)
def test_an_invalid_event_is_refused_with_the_field_that_is_wrong(
    document: dict[str, Any], field: str
) -> None:
    events, errors = decode_one(document, NOW)

    assert events == []
    assert [(e.index, e.field) for e in errors] == [(0, field)]
    assert errors[0].message  # a reason a producer can act on, never blank


def test_an_item_that_is_not_an_object_is_refused_as_a_whole() -> None:
    events, errors = decode_one([1, 2], NOW)

    assert events == []
    assert [(e.index, e.field) for e in errors] == [(0, "")]
    assert "object" in errors[0].message


def test_a_batch_names_every_invalid_item_by_its_index_and_keeps_the_valid_ones() -> None:
    batch = [
        wire("sale"),
        wire("sale", qty=0),
        wire("count", counted=3),
        wire("adjust", delta=0),
        wire("sale", occurred_at="2026-11-22T10:00:00"),
    ]

    events, errors = decode_all(batch, NOW)

    assert [type(e) for e in events] == [Sale, Count]
    assert [(e.index, e.field) for e in errors] == [(1, "qty"), (3, "delta"), (4, "occurred_at")]


def test_an_adjust_of_zero_says_it_must_be_non_zero() -> None:
    _, errors = decode_one(wire("adjust", delta=0), NOW)

    assert errors[0].message == "must be non-zero"


class TestClockRule:
    """SPEC 2 rule 4: more than 5 minutes ahead of the server clock is invalid."""

    @pytest.mark.parametrize(
        ("ahead_us", "refused"),
        [
            pytest.param(-7 * 86_400_000_000, False, id="a-week-in-the-past"),
            pytest.param(0, False, id="now"),
            pytest.param(MAX_CLOCK_SKEW_MICROS, False, id="exactly-5-minutes-ahead"),
            pytest.param(MAX_CLOCK_SKEW_MICROS + 1, True, id="5-minutes-and-1us-ahead"),
            pytest.param(3_600_000_000, True, id="an-hour-ahead"),
        ],
    )
    def test_an_event_from_the_future_is_refused_beyond_five_minutes(
        self, ahead_us: int, refused: bool
    ) -> None:
        now = T0_US - ahead_us  # the event happens at T0, `ahead_us` after the server's now

        events, errors = decode_one(wire("count"), now)

        assert (clock_error(sale(1), now) is not None) is refused
        if refused:
            assert events == []
            assert [(e.index, e.field) for e in errors] == [(0, "occurred_at")]
            assert "5 minutes ahead" in errors[0].message
        else:
            assert errors == []
            assert len(events) == 1

    def test_the_offset_is_honoured_when_judging_the_clock(self) -> None:
        # 12:04+02:00 is 10:04Z: four minutes ahead of a server at 10:00Z, so still valid.
        events, errors = decode_one(wire("sale", occurred_at="2026-11-22T12:04:00+02:00"), T0_US)

        assert errors == []
        assert len(events) == 1


def test_decode_event_raises_on_an_invalid_event() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$\.qty"):
        decode_event(msgspec.json.encode(wire("sale", qty=0)))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"type": "sale"}', id="an-object"),
        pytest.param(b"[1, 2", id="truncated"),
        pytest.param(b"not json", id="not-json"),
    ],
)
def test_a_body_that_is_not_a_json_array_cannot_be_split(body: bytes) -> None:
    with pytest.raises(msgspec.MsgspecError):
        decode_raw_list(body)


def test_a_json_array_splits_into_its_raw_items() -> None:
    items = decode_raw_list(b'[{"a": 1}, 2, "x"]')

    assert [bytes(item) for item in items] == [b'{"a": 1}', b"2", b'"x"']


@pytest.mark.parametrize(
    ("check", "value", "valid"),
    [
        pytest.param(is_sku, "SKU-1.a_b:c", True, id="sku-ok"),
        pytest.param(is_sku, "SKU-1\n", False, id="sku-trailing-newline"),
        pytest.param(is_sku, "", False, id="sku-empty"),
        pytest.param(is_location, "S" * 64, True, id="location-64"),
        pytest.param(is_location, "S" * 65, False, id="location-65"),
        pytest.param(is_channel, "click_and-collect2", True, id="channel-ok"),
        pytest.param(is_channel, "Web", False, id="channel-uppercase"),
        pytest.param(is_channel, "web\n", False, id="channel-trailing-newline"),
        pytest.param(is_channel, "w" * 33, False, id="channel-33"),
    ],
)
def test_id_checks_follow_the_spec_alphabets(check: Any, value: str, valid: bool) -> None:
    assert check(value) is valid


def test_a_message_nested_too_deeply_is_a_reason_to_dead_letter_not_a_crash() -> None:
    """A producer other than the API may write anything to Kafka: the worker dead-letters
    it with this reason and goes on (msgspec would raise RecursionError)."""
    deep = b'{"type": "sale", "x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    event, reason = decode_message(deep)
    assert event is None
    assert reason == "invalid event: JSON nested too deeply"

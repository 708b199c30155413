"""The batch question's shortcut (api.routes.reads.decode_question) decodes and refuses
exactly as BatchQuestion's decoder does: the same question, or the same refusal."""

from __future__ import annotations

import json
from typing import Any, Final

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from api.body import decode_json
from api.errors import ApiError
from api.routes.reads import decode_question
from api.schemas import MAX_BATCH_SKUS, BatchQuestion
from availability.ids import are_skus, is_sku

PROPERTY: Final = settings(max_examples=400, deadline=None)
_strict: Final = msgspec.json.Decoder(BatchQuestion)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` nine times in ten: most questions must get past the id checks to test them."""
    return st.integers(0, 9).flatmap(lambda n: bad if n == 0 else good)


skus = st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True)
channels = st.from_regex(r"[a-z0-9_-]{1,32}", fullmatch=True)
# Ids near the edges of their alphabets and lengths, and anything at all.
bad_ids = st.one_of(
    st.sampled_from(["x" * 65, "", "Web", "SKU 1", "SKU-1\n", "\nSKU-1", "SKU\n1", "ß", '"']),
    st.text(alphabet="AZaz09._:- \n\\é", max_size=66),
)
values = st.one_of(skus, bad_ids, st.none(), st.integers(), st.lists(skus, max_size=3))
# A field given twice, unknown, or with its name escaped (still the same field to JSON).
names = st.sampled_from(["channel", "skus", "location", "colour", "\\u0063hannel", "sk\\u0075s"])
extras = mostly(st.just([]), st.lists(st.tuples(names, values), min_size=1, max_size=2))


def body_of(fields: list[tuple[str, Any]]) -> bytes:
    members = ", ".join(f'"{name}": {json.dumps(value)}' for name, value in fields)
    return ("{" + members + "}").encode()


def outcome(decode: Any, body: bytes) -> tuple[Any, ...]:
    try:
        question = decode(body)
    except ApiError as refusal:
        return ("refused", refusal.status, refusal.code, refusal.message, refusal.details)
    return ("answered", question.channel, list(question.skus), question.location)


def strictly(body: bytes) -> Any:
    return decode_json(body, _strict)


@PROPERTY
@given(
    channel=mostly(channels, bad_ids),
    skus=st.lists(mostly(skus, bad_ids), max_size=6),
    location=st.one_of(st.none(), mostly(skus, bad_ids)),
    extra=extras,
)
# Each check of the shortcut, pinned: a bad location, a SKU a newline splits in two, a
# bad channel, a field given twice (its first value bad), and so with its name escaped.
@example(channel="web", skus=["SKU-1"], location="S 1", extra=[])
@example(channel="web", skus=["SKU\n1"], location=None, extra=[])
@example(channel="Web", skus=["SKU-1"], location=None, extra=[])
@example(channel="BAD!", skus=["SKU-1"], location=None, extra=[("channel", "web")])
@example(channel="web", skus=["SKU-1\n"], location=None, extra=[("skus", ["SKU-1"])])
@example(channel="BAD!", skus=["SKU-1"], location=None, extra=[("\\u0063hannel", "web")])
def test_a_question_is_decoded_or_refused_as_batchquestion_would(
    channel: str, skus: list[str], location: str | None, extra: list[tuple[str, Any]]
) -> None:
    body = body_of([("channel", channel), ("skus", skus), ("location", location), *extra])

    assert outcome(decode_question, body) == outcome(strictly, body)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'{"channel": "web", "skus": [',
        b'{"channel": "web"}',
        b'{"skus": ["SKU-1"]}',
        b'{"channel": "web", "skus": []}',
        body_of([("channel", "web"), ("skus", ["S"] * (MAX_BATCH_SKUS + 1))]),
        body_of([("channel", "web"), ("skus", ["S"] * MAX_BATCH_SKUS)]),
        b'{"channel": "w\\u0065b", "skus": ["SKU-1"]}',
    ],
    ids=["empty", "array", "cut", "no-skus", "no-channel", "0-skus", "501", "500", "escaped"],
)
def test_a_body_at_the_edges_is_decoded_or_refused_as_batchquestion_would(body: bytes) -> None:
    assert outcome(decode_question, body) == outcome(strictly, body)


@given(st.lists(mostly(skus, bad_ids), max_size=8))
@example(["SKU\n1"])
@example(["SKU-1", "SKU-1\n"])
@example([])
def test_skus_checked_together_are_skus_checked_one_by_one(values: list[str]) -> None:
    assert are_skus(values) == (bool(values) and all(is_sku(value) for value in values))

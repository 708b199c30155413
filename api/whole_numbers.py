"""Whole numbers written as floats (`2.0`, `1e3`), taken as the integers they are.

JSON Schema's `integer` is any number without a fractional part, so the OpenAPI document
(made from the same Structs) admits `"qty": 2.0`, which many a client's JSON encoder writes;
msgspec, decoding strictly, takes only `2` and refused it with 422. A body refused for a
float where an integer goes is decoded once more with its whole floats written as integers:
on the refusal path only, so the hot path pays nothing. Events go on (to the log, to Kafka)
as rewritten, so every reader after the API meets integers only.
"""

from __future__ import annotations

from typing import Final

import msgspec

from availability.decoding import ANY_JSON, decoded

# What msgspec says of a float where an integer goes (`int`, `int | null`, ...).
_FLOAT_REFUSED: Final = "got `float`"
# Past 2**53 a float no longer says which integer was meant: left as it is, and refused.
_EXACT: Final = 2**53
_encoder: Final = msgspec.json.Encoder()


def refused_a_float(message: str) -> bool:
    return _FLOAT_REFUSED in message


def whole_numbers_as_ints(body: bytes) -> bytes | None:
    """`body` with every whole float written as an integer; None when it holds none or is
    not JSON (its refusal stands as it is)."""
    try:
        found, document = _rewritten(decoded(ANY_JSON, body))
        return _encoder.encode(document) if found else None
    except (msgspec.MsgspecError, RecursionError, UnicodeError):
        return None


def _rewritten(value: object) -> tuple[bool, object]:
    if isinstance(value, float):
        if value.is_integer() and abs(value) <= _EXACT:
            return True, int(value)
        return False, value
    if isinstance(value, list):
        items = [_rewritten(item) for item in value]
        return any(found for found, _ in items), [item for _, item in items]
    if isinstance(value, dict):
        fields = {key: _rewritten(item) for key, item in value.items()}
        found = any(found for found, _ in fields.values())
        return found, {key: item for key, (_, item) in fields.items()}
    return False, value

"""Decoding what comes from outside (request bodies, Kafka messages, rules documents).

msgspec recurses into nested arrays and objects, and a body nested a thousand levels deep
(2 KB of brackets) raises RecursionError, which no caller expects: the API answered 500,
and a worker would have stopped on such a message. Here it is malformed JSON like any other.
"""

from __future__ import annotations

from typing import Final, TypeVar

import msgspec

T = TypeVar("T")

NESTED_TOO_DEEP: Final = "JSON nested too deeply"
ANY_JSON: Final = msgspec.json.Decoder()  # whatever JSON it is: a well-formedness check


def decoded(decoder: msgspec.json.Decoder[T], data: bytes | str) -> T:
    """`decoder.decode(data)`; too deep a nesting raises msgspec.DecodeError, as malformed
    JSON does."""
    try:
        return decoder.decode(data)
    except RecursionError:
        raise msgspec.DecodeError(NESTED_TOO_DEEP) from None

"""A rules document's integers stop where the worker's table format (MessagePack) can carry
them: one past it is refused like any invalid rule, never taken and then fatal to every
worker that follows the rules."""

from __future__ import annotations

import json

import msgspec
import pytest

from availability import InvalidRules, decode_rules
from availability.rules import MAX_RULE_INT


def rules_with(value: int) -> bytes:
    return json.dumps(
        {
            "safety_stock": [{"units": value}],
            "channels": {
                "web": {
                    "cap": value,
                    "buffer": value,
                    "zero_below": value,
                    "feed": {"max_per_second": 1, "min_interval_ms": value},
                }
            },
        }
    ).encode()


def test_the_largest_integers_are_taken_and_fit_the_workers_table() -> None:
    rules = decode_rules(rules_with(MAX_RULE_INT))

    assert msgspec.msgpack.decode(msgspec.msgpack.encode(rules), type=type(rules)) == rules


@pytest.mark.parametrize("value", [MAX_RULE_INT + 1, 2**64, 10**30])
def test_an_integer_past_them_is_refused(value: int) -> None:
    with pytest.raises(InvalidRules, match=r"Expected `int` <= 9223372036854775807"):
        decode_rules(rules_with(value))

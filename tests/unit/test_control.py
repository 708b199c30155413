"""A hold command's reply goes only to one of the API's reply lists: whoever can produce to
the control topic must not make a writer push to (and set the expiry of) any other key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from availability.control import (
    REPLY_ID_MAX_CHARS,
    CommitHold,
    ExtendHold,
    HoldCommand,
    PlaceHold,
    ReleaseHold,
    reply_list,
    reply_to_error,
)
from availability.holds import HoldLineRequest
from availability.published import reply_key

NS = "av"
API_LIST = reply_key(NS, "api-0123456789abcdef0123456789abcdef")  # as HoldReplies makes it


def every_command(request_id: str, reply_to: str) -> list[HoldCommand]:
    return [
        PlaceHold(request_id, "H1", "web", [HoldLineRequest("SKU-1", 1)], 10, reply_to),
        ExtendHold(request_id, "H1", ["SKU-1"], 10, reply_to),
        ReleaseHold(request_id, "H1", ["SKU-1"], reply_to),
        CommitHold(request_id, "H1", "W-1", "web", ["SKU-1"], reply_to),
    ]


@pytest.mark.parametrize(
    ("request_id", "reply_to"),
    [
        pytest.param("0123456789abcdef0123456789abcdef", API_LIST, id="api-process-list"),
        pytest.param("", API_LIST, id="release-sent-alone"),
        pytest.param("0123456789abcdef0123456789abcdef", "", id="api-before-reply-to"),
        pytest.param("", "", id="api-before-reply-to-release-alone"),
        pytest.param("r", reply_key(NS, "A_z-9" * 12 + "abcd"), id="longest-id"),
    ],
)
def test_a_reply_to_one_of_the_api_reply_lists_is_allowed(request_id: str, reply_to: str) -> None:
    for command in every_command(request_id, reply_to):
        assert reply_to_error(NS, command) is None
        assert reply_list(NS, command) == (reply_to or reply_key(NS, request_id))


@pytest.mark.parametrize(
    ("request_id", "reply_to"),
    [
        pytest.param("r1", f"{NS}:{{SKU-1}}", id="a-sku-hash"),
        pytest.param("r1", f"{NS}:ready", id="the-ready-marks"),
        pytest.param("r1", f"{NS}:feed:{{web}}", id="a-feed"),
        pytest.param("r1", "session:42", id="an-unrelated-key"),
        pytest.param("r1", reply_key("prod-av", "api-1"), id="another-namespace"),
        pytest.param("r1", reply_key(NS.upper(), "api-1"), id="namespace-in-another-case"),
        pytest.param("r1", f"{NS}:reply:{{api-1}}:more}}", id="past-the-hash-tag"),
        pytest.param("r1", f"{NS}:reply:{{api-1", id="unclosed"),
        pytest.param("r1", f"{NS}:reply:api-1", id="no-hash-tag"),
        pytest.param("r1", f" {API_LIST}", id="leading-space"),
        pytest.param("r1", f"{API_LIST}\n", id="trailing-newline"),
        pytest.param("r1", reply_key(NS, "api 1"), id="space-in-id"),
        pytest.param("r1", reply_key(NS, "x" * (REPLY_ID_MAX_CHARS + 1)), id="id-too-long"),
        pytest.param("x}:{SKU-1", "", id="legacy-request-id-past-the-hash-tag"),
    ],
)
def test_a_reply_anywhere_else_is_refused_and_says_why(request_id: str, reply_to: str) -> None:
    for command in every_command(request_id, reply_to):
        error = reply_to_error(NS, command)
        assert error is not None, command
        assert repr(reply_list(NS, command)) in error
        assert f"from its {'reply_to' if reply_to else 'request_id'}" in error
        assert f"{NS}:reply:{{<id>}}" in error  # the shape it must have


def test_a_refusal_quotes_a_long_key_only_in_part() -> None:
    error = reply_to_error(NS, ReleaseHold("r1", "H1", ["SKU-1"], "k" * 10_000))
    assert error is not None
    assert len(error) < 400


@given(
    namespace=st.text(max_size=30),
    reply_id=st.text("abcdefXYZ0123456789-_", max_size=REPLY_ID_MAX_CHARS),
)
def test_every_reply_list_of_any_namespace_is_allowed(namespace: str, reply_id: str) -> None:
    command = ReleaseHold("", "H1", ["SKU-1"], reply_key(namespace, reply_id))
    assert reply_to_error(namespace, command) is None
    other = reply_key(namespace + "x", reply_id)
    assert reply_to_error(namespace, ReleaseHold("", "H1", ["SKU-1"], other)) is not None

"""The identifier alphabets of SPEC section 1, as msgspec constraints shared by every wire type."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Literal

from msgspec import Meta

_SKU = r"[A-Za-z0-9._:-]{1,64}"
# Python's `$` also matches just before a final newline, which would let "SKU-1\n" through;
# `$(?!\n)` refuses it and, unlike `\Z`, means the same in the ECMAScript regexes of JSON
# Schema and OpenAPI.
SKU_PATTERN = rf"^{_SKU}$(?!\n)"
CHANNEL_PATTERN = r"^[a-z0-9_-]{1,32}$(?!\n)"
# "Printable": no C0/C1 control characters, no DEL.
DOCUMENT_ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]{1,128}$(?!\n)"

# What each pattern means, in the words an error message should use.
PATTERN_MEANINGS = {
    SKU_PATTERN: "1 to 64 of A-Z a-z 0-9 . _ : -",
    CHANNEL_PATTERN: "1 to 32 of a-z 0-9 _ -",
    DOCUMENT_ID_PATTERN: "1 to 128 printable characters",
}

Sku = Annotated[str, Meta(pattern=SKU_PATTERN, description=PATTERN_MEANINGS[SKU_PATTERN])]
LocationId = Annotated[str, Meta(pattern=SKU_PATTERN, description=PATTERN_MEANINGS[SKU_PATTERN])]
ChannelName = Annotated[
    str, Meta(pattern=CHANNEL_PATTERN, description=PATTERN_MEANINGS[CHANNEL_PATTERN])
]
DocumentId = Annotated[
    str, Meta(pattern=DOCUMENT_ID_PATTERN, description=PATTERN_MEANINGS[DOCUMENT_ID_PATTERN])
]
LocationType = Literal["store", "dc", "dropship"]

_SKU_RE = re.compile(SKU_PATTERN)
_SKUS_RE = re.compile(rf"{_SKU}(?:\n{_SKU})*")  # SKUs joined by newlines (are_skus)
_CHANNEL_RE = re.compile(CHANNEL_PATTERN)
_DOCUMENT_ID_RE = re.compile(DOCUMENT_ID_PATTERN)


def is_sku(value: str) -> bool:
    return _SKU_RE.match(value) is not None


def are_skus(values: Sequence[str]) -> bool:
    """Whether every value is a SKU, checked at once: one regex over the values joined is
    several times faster than one match a value (a batch question's hundreds). A value
    holding the newline that joins them would read as two: the count refuses it."""
    joined = "\n".join(values)
    return joined.count("\n") == len(values) - 1 and _SKUS_RE.fullmatch(joined) is not None


def is_location(value: str) -> bool:
    return _SKU_RE.match(value) is not None


def is_channel(value: str) -> bool:
    return _CHANNEL_RE.match(value) is not None


def is_document_id(value: str) -> bool:
    return _DOCUMENT_ID_RE.match(value) is not None

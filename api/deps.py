"""What the routes are wired with: the mode's ports, the key checker, metrics and a clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query

from availability.ids import (
    CHANNEL_PATTERN,
    PATTERN_MEANINGS,
    SKU_PATTERN,
    is_channel,
    is_location,
    is_sku,
)

from .auth import Authorizer
from .errors import ApiError
from .metrics import ApiMetrics
from .ports import Health, Ingest, ReadModel, RulesAdmin


@dataclass(frozen=True)
class Services:
    read: ReadModel
    ingest: Ingest
    rules: RulesAdmin
    health: Health
    auth: Authorizer
    metrics: ApiMetrics
    clock_micros: Callable[[], int]

    def scope(self, name: str) -> object:
        """A dependency that refuses the request unless its key has scope `name`."""
        return Depends(self.auth.require(name))


def documented_pattern(pattern: str) -> dict[str, str]:
    """The `pattern` of a path or query parameter in the OpenAPI document only: `check_ids`
    checks it, faster than pydantic would. Without it the document admitted any string,
    which the routes refuse with 422."""
    return {"pattern": pattern}


SkuPath = Annotated[
    str,
    Path(description=f"a SKU: {SKU_PATTERN}", json_schema_extra=documented_pattern(SKU_PATTERN)),
]
ChannelQuery = Annotated[
    str,
    Query(
        description=f"a channel of the rules: {CHANNEL_PATTERN}",
        json_schema_extra=documented_pattern(CHANNEL_PATTERN),
    ),
]
LocationQuery = Annotated[
    str | None,
    Query(
        description=f"ask for one location (pickup at a store): {SKU_PATTERN}",
        json_schema_extra=documented_pattern(SKU_PATTERN),
    ),
]


def check_ids(
    sku: str | None = None, channel: str | None = None, location: str | None = None
) -> None:
    """Refuse malformed ids with 422, naming each bad one (faster than pydantic patterns)."""
    problems = []
    if sku is not None and not is_sku(sku):
        problems.append({"field": "sku", "message": f"Expected {PATTERN_MEANINGS[SKU_PATTERN]}"})
    if channel is not None and not is_channel(channel):
        meaning = PATTERN_MEANINGS[CHANNEL_PATTERN]
        problems.append({"field": "channel", "message": f"Expected {meaning}"})
    if location is not None and not is_location(location):
        meaning = PATTERN_MEANINGS[SKU_PATTERN]
        problems.append({"field": "location", "message": f"Expected {meaning}"})
    if problems:
        raise ApiError(422, "invalid_request", "the request is invalid", problems)

"""The rules document (SPEC section 4): locations, safety stock and channels, validated whole.

`compile_rules` turns the document into lookups the hot path can use: safety stock by
specificity (sku+location, sku+location_type, sku, location, location_type, default; the
most specific wins, never summed) and each channel's share as an exact fraction.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Final

import msgspec
from msgspec import Meta, Struct

from .decoding import decoded
from .errors import InvalidRules
from .events import split_error
from .ids import ChannelName, LocationId, LocationType, Sku

# At most what every encoder of the rules carries: a worker keeps them in its table as
# MessagePack, whose integers stop at 2**64 - 1, and a larger one (which JSON and the API
# took) stopped every worker that followed the rules, at each restart again. msgspec's
# bounds stop at int64, whose largest is far past any count of units or milliseconds.
MAX_RULE_INT: Final = 2**63 - 1
NonNegative = Annotated[int, Meta(ge=0, le=MAX_RULE_INT)]
Share = Annotated[float, Meta(ge=0, le=1)]


class FeedRule(Struct, frozen=True, forbid_unknown_fields=True):
    max_per_second: Annotated[float, Meta(gt=0)]
    min_interval_ms: NonNegative = 0


class ChannelRule(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    location_types: list[LocationType] | None = None
    locations: list[LocationId] | None = None
    share: Share = 1.0
    cap: NonNegative | None = None
    buffer: NonNegative = 0
    zero_below: NonNegative = 0
    feed: FeedRule | None = None


class SafetyStockRule(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    units: NonNegative
    sku: Sku | None = None
    location: LocationId | None = None
    location_type: LocationType | None = None


class LocationRule(Struct, frozen=True, forbid_unknown_fields=True):
    type: LocationType


class Rules(Struct, frozen=True, forbid_unknown_fields=True):
    default_location_type: LocationType = "store"
    locations: dict[LocationId, LocationRule] = {}
    safety_stock: list[SafetyStockRule] = []
    channels: dict[ChannelName, ChannelRule] = {}


EMPTY_RULES: Final = Rules()
_rules_decoder: Final = msgspec.json.Decoder(Rules)
_rules_encoder: Final = msgspec.json.Encoder()


def encode_rules(rules: Rules) -> bytes:
    return _rules_encoder.encode(rules)


def decode_rules(document: bytes) -> Rules:
    """Parse and validate a JSON rules document; InvalidRules says what is wrong and where."""
    try:
        rules = decoded(_rules_decoder, document)
    except msgspec.MsgspecError as exc:
        field, message = split_error(exc)
        raise InvalidRules(f"{field}: {message}" if field else message) from exc
    _check_safety_stock(rules)
    return rules


def rules_from_object(document: object) -> Rules:
    """Validate an already-parsed document (from YAML, say) exactly like a JSON one."""
    return decode_rules(_rules_encoder.encode(document))


def _check_safety_stock(rules: Rules) -> None:
    seen: set[tuple[str | None, str | None, str | None]] = set()
    for index, rule in enumerate(rules.safety_stock):
        if rule.location is not None and rule.location_type is not None:
            raise InvalidRules(f"safety_stock[{index}]: give location or location_type, not both")
        key = (rule.sku, rule.location, rule.location_type)
        if key in seen:
            raise InvalidRules(f"safety_stock[{index}]: a rule for the same scope comes earlier")
        seen.add(key)


class CompiledChannel(Struct, frozen=True):
    name: str
    rule: ChannelRule
    all_locations: bool
    location_types: frozenset[str]
    locations: frozenset[str]
    share_numerator: int
    share_denominator: int

    def is_eligible(self, location: str, location_type: str) -> bool:
        return (
            self.all_locations or location_type in self.location_types or location in self.locations
        )


class CompiledRules:
    """Rules turned into dictionary lookups; built once per rules change."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.default_location_type = rules.default_location_type
        self.location_types = {loc: spec.type for loc, spec in rules.locations.items()}
        self.channels = {
            name: _compile_channel(name, rule) for name, rule in rules.channels.items()
        }
        self._by_sku_location: dict[tuple[str, str], int] = {}
        self._by_sku_type: dict[tuple[str, str], int] = {}
        self._by_sku: dict[str, int] = {}
        self._by_location: dict[str, int] = {}
        self._by_type: dict[str, int] = {}
        self._default = 0
        for rule in rules.safety_stock:
            if rule.sku is not None and rule.location is not None:
                self._by_sku_location[(rule.sku, rule.location)] = rule.units
            elif rule.sku is not None and rule.location_type is not None:
                self._by_sku_type[(rule.sku, rule.location_type)] = rule.units
            elif rule.sku is not None:
                self._by_sku[rule.sku] = rule.units
            elif rule.location is not None:
                self._by_location[rule.location] = rule.units
            elif rule.location_type is not None:
                self._by_type[rule.location_type] = rule.units
            else:
                self._default = rule.units
        self._skus_with_rules = (
            frozenset(self._by_sku)
            | {s for s, _ in self._by_sku_location}
            | {s for s, _ in self._by_sku_type}
        )

    def location_type(self, location: str) -> str:
        return self.location_types.get(location, self.default_location_type)

    def safety_stock(self, sku: str, location: str) -> int:
        location_type = self.location_type(location)
        if sku in self._skus_with_rules:
            units = self._by_sku_location.get((sku, location))
            if units is None:
                units = self._by_sku_type.get((sku, location_type))
            if units is None:
                units = self._by_sku.get(sku)
            if units is not None:
                return units
        units = self._by_location.get(location)
        if units is None:
            units = self._by_type.get(location_type, self._default)
        return units


def _compile_channel(name: str, rule: ChannelRule) -> CompiledChannel:
    # str() of a float is its shortest round-tripping decimal, so 0.57 becomes exactly 57/100.
    share = Fraction(str(rule.share))
    return CompiledChannel(
        name=name,
        rule=rule,
        all_locations=rule.location_types is None and rule.locations is None,
        location_types=frozenset(rule.location_types or ()),
        locations=frozenset(rule.locations or ()),
        share_numerator=share.numerator,
        share_denominator=share.denominator,
    )

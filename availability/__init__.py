"""The availability core: events, positions, rules and channel quantities, as pure functions.

It imports only the standard library and msgspec: no clock, no I/O, no logging. The
embedded engine and the stream workers are thin shells around it.
"""

from .batch import BatchResult, DeadLetter, apply_events
from .errors import AvailabilityError, InvalidEvent, InvalidRules, NotReady, UnknownChannel
from .events import Event, FieldError, decode_batch_items, decode_event, decode_raw_list
from .processing import Applied, Outcome, Windows, apply_event, compact
from .rules import CompiledRules, Rules, decode_rules, encode_rules, rules_from_object
from .settings import ApiKey, Settings
from .state import Position, SkuState, decode_state, encode_state
from .views import Availability, Positions, availability, channel_quantities, positions

__all__ = [
    "ApiKey",
    "Applied",
    "Availability",
    "AvailabilityError",
    "BatchResult",
    "CompiledRules",
    "DeadLetter",
    "Event",
    "FieldError",
    "InvalidEvent",
    "InvalidRules",
    "NotReady",
    "Outcome",
    "Position",
    "Positions",
    "Rules",
    "Settings",
    "SkuState",
    "UnknownChannel",
    "Windows",
    "apply_event",
    "apply_events",
    "availability",
    "channel_quantities",
    "compact",
    "decode_batch_items",
    "decode_event",
    "decode_raw_list",
    "decode_rules",
    "decode_state",
    "encode_rules",
    "encode_state",
    "positions",
    "rules_from_object",
]

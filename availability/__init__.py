"""The availability core: events, positions, rules and channel quantities, as pure functions.

It imports only the standard library and msgspec: no clock, no I/O, no logging. The
embedded engine and the stream workers are thin shells around it.
"""

from .batch import BatchResult, DeadLetter, apply_events
from .errors import AvailabilityError, InvalidEvent, InvalidRules, NotReady, UnknownChannel
from .events import Event, FieldError, decode_batch_items, decode_event, decode_raw_list
from .layout import answers_state, decode_figures, decode_head, load_state, sku_records, written
from .processing import Applied, Outcome, Windows, apply_event, compact
from .rules import CompiledRules, Rules, decode_rules, encode_rules, rules_from_object
from .settings import ApiKey, Settings
from .state import Position, SkuState
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
    "answers_state",
    "apply_events",
    "availability",
    "channel_quantities",
    "compact",
    "decode_batch_items",
    "decode_event",
    "decode_figures",
    "decode_head",
    "decode_raw_list",
    "decode_rules",
    "encode_rules",
    "load_state",
    "positions",
    "rules_from_object",
    "sku_records",
    "written",
]

"""Messages to the single writer of each partition, sent to every partition of the control
topic so each is handled in order with that partition's events (SPEC section 4: a rules
change applies to every SKU, and the version of each SKU it changes grows)."""

from __future__ import annotations

from typing import Final

import msgspec
from msgspec import Struct

from .rules import Rules


class RulesChanged(Struct, frozen=True, tag="rules_changed", tag_field="type"):
    revision: int  # the offset of this document in the rules topic: it only grows
    rules: Rules


Control = RulesChanged

control_decoder: Final[msgspec.json.Decoder[Control]] = msgspec.json.Decoder(Control)
control_encoder: Final = msgspec.json.Encoder()

"""Messages to the single writer of each partition, on the control topic, each handled in
order with that partition's events: a rules change (on every partition: SPEC section 4, the
version of each SKU it changes grows), and the checkout hold commands of SPEC 6, on the
partition of their SKUs. A hold command names where its reply goes (`reply_to`, a Redis
list: the one list every reply to its API process arrives on), and the writer answers once
the command's effect is durable in its table."""

from __future__ import annotations

from typing import Final

import msgspec
from msgspec import Struct

from .holds import CommittedLine, HoldLineRequest, Shortfall
from .published import reply_key
from .rules import Rules


class RulesChanged(Struct, frozen=True, tag="rules_changed", tag_field="type"):
    revision: int  # the offset of this document in the rules topic: it only grows
    rules: Rules


class PlaceHold(Struct, frozen=True, tag="place_hold", tag_field="type"):
    """Hold this partition's lines of a hold until `expires_at` (µs), or none of them."""

    request_id: str
    hold_id: str
    channel: str
    lines: list[HoldLineRequest]
    expires_at: int
    reply_to: str = ""


class ExtendHold(Struct, frozen=True, tag="extend_hold", tag_field="type"):
    """A multi-partition hold granted everywhere: from tentative to its real expiry."""

    request_id: str
    hold_id: str
    skus: list[str]
    expires_at: int
    reply_to: str = ""


class ReleaseHold(Struct, frozen=True, tag="release_hold", tag_field="type"):
    request_id: str
    hold_id: str
    skus: list[str]
    reply_to: str = ""


class CommitHold(Struct, frozen=True, tag="commit_hold", tag_field="type"):
    request_id: str
    hold_id: str
    order_id: str
    channel: str
    skus: list[str]
    reply_to: str = ""


class ExpireHolds(Struct, frozen=True, tag="expire_holds", tag_field="type"):
    """Sent by a worker to its own partition when a hold there is due: the expiry is then
    a write in the partition's order, like any other."""


HoldCommand = PlaceHold | ExtendHold | ReleaseHold | CommitHold
Control = RulesChanged | PlaceHold | ExtendHold | ReleaseHold | CommitHold | ExpireHolds


class HoldReply(Struct, frozen=True, omit_defaults=True):
    """One partition's answer to a hold command."""

    partition: int
    done: bool  # held, extended, released or committed; False: short (place) or no such hold
    shortfalls: list[Shortfall] = []
    committed: list[CommittedLine] = []
    request_id: str = ""  # the command's: what the API process waits on it by


def reply_list(namespace: str, command: HoldCommand) -> str:
    """The Redis list a command's reply goes to: its `reply_to`, or (sent by an API of before
    `reply_to`) a list of the request's own."""
    return command.reply_to or reply_key(namespace, command.request_id)


hold_reply_decoder: Final = msgspec.json.Decoder(HoldReply)

control_decoder: Final[msgspec.json.Decoder[Control]] = msgspec.json.Decoder(Control)
control_encoder: Final = msgspec.json.Encoder()

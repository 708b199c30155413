"""Messages to the single writer of each partition, on the control topic, each handled in
order with that partition's events: a rules change (on every partition: SPEC section 4, the
version of each SKU it changes grows), and the checkout hold commands of SPEC 6, on the
partition of their SKUs. A hold command names where its reply goes (`reply_to`, a Redis
list: the one list every reply to its API process arrives on), and the writer answers once
the command's effect is durable in its table. Only a list of the API's reply namespace
(`reply_key`) may be named: whoever can produce to the control topic must not make a writer
push to (and set the expiry of) any other Redis key."""

from __future__ import annotations

import re
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
    """Hold this partition's lines of a hold until `expires_at` (µs), or none of them.

    `decide_by` (µs, 0 for none): past it, the API that sent the command has answered that
    nothing is held. A record Kafka did not acknowledge in time may still be written, much
    later, after the client retried and released: placed then, it would hold units nobody
    knows of until its expiry. The writer refuses it (HOLD_CLOCK_TOLERANCE_S apart)."""

    request_id: str
    hold_id: str
    channel: str
    lines: list[HoldLineRequest]
    expires_at: int
    reply_to: str = ""
    decide_by: int = 0


# How far apart an API's clock and a writer's may be when a writer judges `decide_by`.
HOLD_CLOCK_TOLERANCE_S: Final = 2.0


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


# The id in a reply list's key (`reply_key`): an API process's (`api-` and a uuid's hex)
# or, from an API of before `reply_to`, a request's (a uuid's hex; empty for a release
# sent alone). Letters, digits, `-` and `_` only, so no id can close the key's hash tag and
# go on past it; a bounded length, so a key stays short.
REPLY_ID_MAX_CHARS: Final = 64
_REPLY_ID: Final = re.compile(rf"[A-Za-z0-9_-]{{0,{REPLY_ID_MAX_CHARS}}}")
_ID_MARK: Final = "\x00"  # stands for the id when the shape of a reply key is worked out


def reply_list(namespace: str, command: HoldCommand) -> str:
    """The Redis list a command's reply goes to: its `reply_to`, or (sent by an API of before
    `reply_to`) a list of the request's own. Check it with `reply_to_error` first."""
    return command.reply_to or reply_key(namespace, command.request_id)


def reply_to_error(namespace: str, command: HoldCommand) -> str | None:
    """Why a writer must not push `command`'s reply to `reply_list` (None: it may): the list
    must be one of the API's reply lists in `namespace`, `reply_key(namespace, id)` with an
    id that `_REPLY_ID` matches. A command sent by another producer could otherwise have the
    writer push to, and set the expiry of, any Redis key, such as a SKU's answers."""
    key = reply_list(namespace, command)
    head, _, tail = reply_key(namespace, _ID_MARK).rpartition(_ID_MARK)
    if (
        len(key) >= len(head) + len(tail)
        and key.startswith(head)
        and key.endswith(tail)
        and _REPLY_ID.fullmatch(key[len(head) : len(key) - len(tail)])
    ):
        return None
    named_by = "reply_to" if command.reply_to else "request_id"
    return (
        f"the reply list {key[:200]!r} (from its {named_by}) is not one of the API's:"
        f" {head}<id>{tail}, the id of at most {REPLY_ID_MAX_CHARS} letters, digits, '-' or '_'"
    )


hold_reply_decoder: Final = msgspec.json.Decoder(HoldReply)

control_decoder: Final[msgspec.json.Decoder[Control]] = msgspec.json.Decoder(Control)
control_encoder: Final = msgspec.json.Encoder()

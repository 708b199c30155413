"""The check after a fault, with the writes paused: the published read model and the APIs'
answers against the event log folded by the core (`log_fold.py`), and the hold SKUs against
what every hold answer promised (`checkout.py`).

Definitions, per check (the suite reports each fault's increase over the check before):

- **lost**: an event answered 202 that the service does not count. Two kinds, both
  measured exactly:
  - *lost before Kafka*: its event_id is in no inventory topic (the `Ledger`: every serial
    answered 202, every serial read back from the log);
  - *lost after Kafka*: it is in the log but the published state does not count it. The core
    raises a SKU's version by exactly one for each event it applies (a duplicate or a stale
    count raises nothing), and the fold applies the log once; so for each event SKU,
    `published version - fold version` is `counted twice - lost`. A negative difference is
    that many events lost, a positive one that many counted twice. A SKU whose version
    matches but whose positions differ holds at least one of each: it counts one lost and
    one twice. A SKU missing from Redis has lost every event the fold applied to it.
    Events still unapplied when the settle timeout ends are counted lost: they were not
    counted in time.
- **counted twice**: as above, an event a SKU's published version counts more than once.
- **oversold units**: over every position, units reserved beyond on hand, as published;
  and for hold SKUs, units the holds answered 201 (and commits answered 200) promised
  beyond the stock received, whatever was published.
- **holds off**: hold SKUs whose published reserved units are outside what the answers
  allow: at least every hold granted and not yet expired plus every committed one, at most
  that plus the holds whose fate is unknown (`HoldBook.reserved_bounds`).
- **right**: every event SKU's published version and positions equal the fold's, every
  channel answer of both APIs equals the core's for the fold's state, the hold SKUs are
  within their bounds with their receipts on hand, and nothing is lost, twice or oversold.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import msgspec
import redis

from availability import CompiledRules, channel_quantities, positions
from availability.published import POSITIONS_FIELD, sku_key
from tests.support.streaming import Stack

from .checkout import HoldBook
from .log_fold import Ledger, LogFold
from .workload import HOLD_LOCATION

BATCH_SKUS: Final = 500  # the most POST /v1/availability/batch takes
EXAMPLES: Final = 8


@dataclass
class Verdict:
    lost_before_kafka: int = 0
    lost_after_kafka: int = 0
    twice: int = 0
    oversold_units: int = 0
    holds_off: int = 0
    wrong_answers: int = 0  # channel answers of the APIs that differ from the fold's
    unanswered: int = 0  # channel answers the APIs could not give (503 or no answer)
    examples: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.lost_before_kafka + self.lost_after_kafka

    @property
    def right(self) -> bool:
        return not (self.lost or self.twice or self.oversold_units or self.holds_off) and not (
            self.wrong_answers or self.unanswered
        )

    def note(self, text: str) -> None:
        if len(self.examples) < EXAMPLES:
            self.examples.append(text)


class Checker:
    def __init__(
        self,
        stack: Stack,
        fold: LogFold,
        ledger: Ledger,
        book: HoldBook,
        rules: CompiledRules,
        event_skus: Sequence[str],
        api_urls: Sequence[str],
    ) -> None:
        self.stack = stack
        self.fold = fold
        self.ledger = ledger
        self.book = book
        self.rules = rules
        self.event_skus = list(event_skus)
        self.api_urls = list(api_urls)

    def check(self) -> Verdict:
        self.fold.catch_up()
        verdict = Verdict(lost_before_kafka=self.ledger.lost_before_kafka())
        self._events(verdict)
        self._holds(verdict)
        self._answers(verdict)
        return verdict

    def _published(self, skus: Sequence[str]) -> dict[str, dict[str, Any]]:
        """SKU -> its published positions document (`{sku, version, positions}`)."""
        client = redis.Redis.from_url(self.stack.redis_url)
        try:
            pipe = client.pipeline(transaction=False)
            for sku in skus:
                pipe.hget(sku_key(self.stack.names.redis_namespace, sku), POSITIONS_FIELD)
            found = pipe.execute()
        finally:
            client.close()
        return {sku: json.loads(raw) for sku, raw in zip(skus, found, strict=True) if raw}

    def _events(self, verdict: Verdict) -> None:
        states = self.fold.states
        skus = [sku for sku in self.event_skus if sku in states]
        published = self._published(skus)
        for sku in skus:
            expected = msgspec.to_builtins(positions(states[sku], self.rules))
            want = expected["version"]
            document = published.get(sku)
            if document is None:
                verdict.lost_after_kafka += want
                verdict.note(f"{sku}: not in Redis; the log has {want} events for it")
                continue
            got = document["version"]
            if got < want:
                verdict.lost_after_kafka += want - got
            elif got > want:
                verdict.twice += got - want
            elif document != expected:
                verdict.lost_after_kafka += 1
                verdict.twice += 1
            if document != expected:
                verdict.note(f"{sku}: {_diff(document, expected)}")
            for p in document["positions"]:
                verdict.oversold_units += max(0, p["reserved"] - p["on_hand"])

    def _holds(self, verdict: Verdict) -> None:
        bounds = self.book.reserved_bounds(time.time())
        published = self._published(list(bounds))
        states = self.fold.states
        for sku, (low, extra) in bounds.items():
            stock = states[sku].positions[HOLD_LOCATION].on_hand if sku in states else 0
            verdict.oversold_units += max(0, low - stock)
            document = published.get(sku, {"positions": []})
            position = next(
                (p for p in document["positions"] if p["location"] == HOLD_LOCATION), None
            )
            if position is None:
                verdict.holds_off += 1
                verdict.note(f"{sku}: not in Redis")
                continue
            reserved, on_hand = position["reserved"], position["on_hand"]
            verdict.oversold_units += max(0, reserved - on_hand)
            if not low <= reserved <= low + extra or on_hand != stock:
                verdict.holds_off += 1
                verdict.note(
                    f"{sku}: reserved {reserved} on hand {on_hand}; the answers allow"
                    f" {low} to {low + extra} reserved, the log {stock} on hand; holds:"
                    f" {self.book.story(sku, time.time())}"
                )

    def _answers(self, verdict: Verdict) -> None:
        states = self.fold.states
        skus = [sku for sku in self.event_skus if sku in states]
        expected = {sku: channel_quantities(states[sku], self.rules) for sku in skus}
        for url in self.api_urls:
            with httpx.Client(base_url=url, timeout=30, trust_env=False) as http:
                for channel in self.rules.channels:
                    for start in range(0, len(skus), BATCH_SKUS):
                        part = skus[start : start + BATCH_SKUS]
                        self._compare(http, url, channel, part, expected, verdict)

    @staticmethod
    def _compare(
        http: httpx.Client,
        url: str,
        channel: str,
        skus: list[str],
        expected: dict[str, dict[str, int]],
        verdict: Verdict,
    ) -> None:
        try:
            answer = http.post("/v1/availability/batch", json={"channel": channel, "skus": skus})
        except httpx.HTTPError as exc:
            verdict.unanswered += len(skus)
            verdict.note(f"{url} batch {channel}: {exc!r}")
            return
        if answer.status_code != 200:
            verdict.unanswered += len(skus)
            verdict.note(f"{url} batch {channel}: {answer.status_code} {answer.text[:200]}")
            return
        for sku, item in zip(skus, answer.json()["items"], strict=True):
            if item["sellable"] != expected[sku][channel]:
                verdict.wrong_answers += 1
                verdict.note(
                    f"{url} {sku} {channel}: {item['sellable']}, the log's {expected[sku][channel]}"
                )


def _diff(got: dict[str, Any], want: dict[str, Any]) -> str:
    """What differs between a published positions document and the fold's, in short."""
    differs = [f"version {got['version']}, the log's {want['version']}"]
    mine = {p["location"]: p for p in got["positions"]}
    theirs = {p["location"]: p for p in want["positions"]}
    for place in sorted(set(mine) | set(theirs)):
        a, b = mine.get(place, {}), theirs.get(place, {})
        fields = [
            f"{k} {a.get(k)} vs {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
        ]
        if fields:
            differs.append(f"{place}: {', '.join(fields)}")
    return "; ".join(differs)[:600]

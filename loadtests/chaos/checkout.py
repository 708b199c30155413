"""Checkout holds as storefronts place them, each with its fate drawn in advance (committed,
released, left to expire by a short TTL, or kept), and the book of what every answer
promised: from it, the units each hold SKU must have reserved at a given moment.

A hold is asked again with the same hold_id after a 503, through the other API first (a
repeated hold_id gets the first decision, and holds nothing twice), so almost every hold
ends decided: granted (201) or refused (409). Commits and releases are retried after a 503
as well. What stays undecided after its retry budget counts as "maybe held" until it must
have run out; so does a granted hold within EXPIRY_GRACE_S of its expiry (the writer
expires it by a message in its partition's order, a fraction of a second late, or later
while a worker recovers)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final

import httpx

from api.streaming.kafka_holds import TENTATIVE_S

from .workload import HOLD_LOCATION, hold_sku

RETRY_BUDGET_S: Final = 40.0  # a 503 is retried this long: past a fault's 20 s
RETRY_PAUSE_S: Final = 0.5
EXPIRY_GRACE_S: Final = 15.0
KEPT_TTL_S: Final = 3600  # the longest TTL a hold may have: held to the end of the run
DECIDED_TTL_S: Final = 600  # holds committed or released right after their 201


class Fate(StrEnum):
    COMMIT = "commit"
    RELEASE = "release"
    EXPIRE = "expire"
    KEEP = "keep"


class Status(StrEnum):
    ASKING = "asking"  # no decision yet
    UNDECIDED = "undecided"  # no decision within the retry budget: maybe held
    REFUSED = "refused"
    HELD = "held"
    COMMITTED = "committed"
    MAYBE_COMMITTED = "maybe committed"  # the commit's answer never came
    RELEASED = "released"
    MAYBE_RELEASED = "maybe released"  # the release's answer never came


@dataclass
class Hold:
    hold_id: str
    lines: list[tuple[str, int]]  # (sku, qty), all at HOLD_LOCATION
    fate: Fate
    ttl_s: int
    asked_at: float  # wall clock, s
    status: Status = Status.ASKING
    expires_at: float = 0.0  # wall clock, s, from the 201

    def body(self) -> dict[str, object]:
        lines = [{"sku": s, "qty": q, "location": HOLD_LOCATION} for s, q in self.lines]
        return {"channel": "web", "lines": lines, "ttl_s": self.ttl_s, "hold_id": self.hold_id}


@dataclass
class HoldAnswers:
    """The answers the holds got, by API (index) and status code."""

    by_api: defaultdict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))


class HoldBook:
    def __init__(self, hold_skus: int, short_ttl_s: int, seed: int = 23) -> None:
        self.skus = [hold_sku(n) for n in range(hold_skus)]
        self.short_ttl_s = short_ttl_s
        self.random = random.Random(seed)
        self.holds: list[Hold] = []
        self._lock = threading.Lock()

    def draw(self) -> Hold:
        r = self.random
        fate = r.choices(list(Fate), weights=[35, 30, 25, 10])[0]
        ttl = {Fate.EXPIRE: self.short_ttl_s, Fate.KEEP: KEPT_TTL_S}.get(fate, DECIDED_TTL_S)
        skus = r.sample(self.skus, r.choice([1, 1, 2]))
        hold = Hold(
            f"h-{uuid.uuid4().hex[:16]}",
            [(s, r.randint(1, 3)) for s in skus],
            fate,
            ttl,
            time.time(),
        )
        with self._lock:
            self.holds.append(hold)
        return hold

    def granted(self) -> int:
        """Holds answered 201."""
        with self._lock:
            return sum(
                h.status not in (Status.ASKING, Status.UNDECIDED, Status.REFUSED)
                for h in self.holds
            )

    def reserved_bounds(self, now: float) -> dict[str, tuple[int, int]]:
        """SKU -> (units certainly reserved now, units maybe reserved too) at HOLD_LOCATION,
        by what the answers said: a committed hold is an order (reserved until picked, and
        the load picks none); a granted hold is held until its expiry."""
        bounds = {sku: [0, 0] for sku in self.skus}
        with self._lock:
            holds = list(self.holds)
        for hold in holds:
            certain, maybe = self._reserves(hold, now)
            for sku, qty in hold.lines:
                bounds[sku][0] += qty * certain
                bounds[sku][1] += qty * maybe
        return {sku: (low, extra) for sku, (low, extra) in bounds.items()}

    def story(self, sku: str, now: float) -> str:
        """The holds of a SKU as the answers left them: what a mismatch is read against."""
        with self._lock:
            holds = [h for h in self.holds if any(s == sku for s, _ in h.lines)]
        return "; ".join(
            f"{h.hold_id} {dict(h.lines)[sku]}u {h.fate}/{h.status} ttl {h.ttl_s}s"
            f" asked {h.asked_at - now:+.0f}s"
            + (f" expires {h.expires_at - now:+.0f}s" if h.expires_at else "")
            for h in holds
            if h.status is not Status.REFUSED
        )

    @staticmethod
    def _reserves(hold: Hold, now: float) -> tuple[bool, bool]:
        """(certainly reserves its lines, maybe reserves them)."""
        status = hold.status
        if status is Status.COMMITTED:
            return True, False
        if status in (Status.HELD, Status.MAYBE_COMMITTED):
            if hold.expires_at > now + 1:
                return True, False
            # A commit whose answer never came is an order, or a hold that ran out.
            recent = hold.expires_at > now - EXPIRY_GRACE_S
            return False, recent or status is Status.MAYBE_COMMITTED
        if status in (Status.ASKING, Status.UNDECIDED):
            runs_out = hold.asked_at + RETRY_BUDGET_S + max(hold.ttl_s, TENTATIVE_S)
            return False, now < runs_out + EXPIRY_GRACE_S
        if status is Status.MAYBE_RELEASED:
            return False, hold.expires_at > now - EXPIRY_GRACE_S
        return False, False  # refused, released


def _expiry(answer: httpx.Response) -> float:
    return datetime.fromisoformat(answer.json()["expires_at"]).timestamp()


@dataclass
class Outcome:
    answer: httpx.Response | None  # the last answer; None: only 503s until the budget's end
    unsure: bool  # an earlier attempt may have been applied (a 503 or no answer)


async def _with_retries(
    clients: Sequence[httpx.AsyncClient],
    first: int,
    method: str,
    path: str,
    body: object,
    answers: HoldAnswers,
    kind: str,
) -> Outcome:
    """The request through API `first`, and after each 503 (or a connection failure)
    through the next one, until any other answer or the budget's end."""
    deadline = time.monotonic() + RETRY_BUDGET_S
    api, unsure = first, False
    while True:
        try:
            answer = await clients[api].request(method, path, json=body)
            answers.by_api[api][f"{kind} {answer.status_code}"] += 1
            if answer.status_code != 503:
                return Outcome(answer, unsure)
        except httpx.HTTPError:
            answers.by_api[api][f"{kind} failed"] += 1
        unsure = True
        if time.monotonic() > deadline:
            return Outcome(None, unsure)
        api = (api + 1) % len(clients)
        await asyncio.sleep(RETRY_PAUSE_S)


async def live_through(
    hold: Hold, clients: Sequence[httpx.AsyncClient], first: int, answers: HoldAnswers
) -> None:
    """Place the hold, then commit or release it as its fate says."""
    placed = (
        await _with_retries(clients, first, "POST", "/v1/holds", hold.body(), answers, "hold")
    ).answer
    if placed is None or placed.status_code not in (201, 409):
        hold.status = Status.UNDECIDED
        return
    if placed.status_code == 409:
        hold.status = Status.REFUSED
        return
    hold.expires_at, hold.status = _expiry(placed), Status.HELD
    if hold.fate not in (Fate.COMMIT, Fate.RELEASE):
        return
    await asyncio.sleep(random.uniform(0.1, 1.0))  # a shopper's pause at checkout
    path = f"/v1/holds/{hold.hold_id}"
    if hold.fate is Fate.COMMIT:
        done = await _with_retries(
            clients, first, "POST", f"{path}/commit", {"order_id": hold.hold_id}, answers, "commit"
        )
        settled, unknown = Status.COMMITTED, Status.MAYBE_COMMITTED
    else:
        done = await _with_retries(clients, first, "DELETE", path, None, answers, "release")
        settled, unknown = Status.RELEASED, Status.MAYBE_RELEASED
    if done.answer is not None and done.answer.status_code == 200:
        hold.status = settled
    elif done.answer is None or done.unsure:
        # No answer; or a 404 after a 503: the attempt that answered 503 may have been
        # applied, and a Redis flush since then forgot the hold's record.
        hold.status = unknown
    # A 404 at the first attempt: the hold's record is gone (a Redis flush forgets them),
    # the hold is not: it stays held until its expiry, as the status already says.

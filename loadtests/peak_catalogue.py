"""What a peak sale runs on, shared by the locust scenarios and their runner, so that the
SKUs the users ask for are the ones the setup stocked, under the rules it put.

The catalogue is `workload`'s: SKUs `SKU-000000`... over its eight locations and rules
(channels `web`, `pickup`, and `amazon` with a feed). On top of it, a few doorbusters
(`DOOR-0000`...) with a handful of units at DC1 only: checkout holds race for them, sell
them out, and are then refused (409), as at the opening minute of a sale. Store and
warehouse events never touch the doorbusters, so none of their positions can be oversold
except by a hold that should have been refused.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .workload import RULES, EventMix, sku_name

FEED_CHANNEL = "amazon"  # the channel of workload.RULES with a feed
DOORBUSTER_LOCATION = "DC1"
DOORBUSTER_STOCK = 4  # units of each doorbuster: a few seconds of holds sell them out
DOORBUSTER_HOLD_SHARE = 0.3  # of the holds, the share that goes for a doorbuster
# The stats name of a hold refused for want of stock: an expected answer, kept apart.
SOLD_OUT = "/v1/holds (409 sold out)"


@dataclass(frozen=True)
class Catalogue:
    """`skus` regular SKUs and `doorbusters` scarce ones of `doorbuster_stock` units."""

    skus: int = 2_000
    doorbusters: int = 10
    doorbuster_stock: int = DOORBUSTER_STOCK

    def sku(self, rnd: random.Random) -> str:
        return sku_name(rnd.randrange(self.skus))

    def doorbuster(self, index: int) -> str:
        return f"DOOR-{index:04d}"

    def doorbuster_names(self) -> list[str]:
        return [self.doorbuster(n) for n in range(self.doorbusters)]

    def stock_batches(self, run: str, size: int = 1_000) -> list[list[dict[str, Any]]]:
        """Receipts for every location of every SKU, and the doorbusters' few units."""
        mix = EventMix(self.skus, id_prefix=f"stock-{run}")
        events = [event for index in range(self.skus) for event in mix.stock(index)]
        for name in self.doorbuster_names():
            receipt = mix.receipt(name, DOORBUSTER_LOCATION, self.doorbuster_stock)
            events.append(receipt)
        return [events[i : i + size] for i in range(0, len(events), size)]

    def hold_body(self, rnd: random.Random, ttl_s: int) -> dict[str, Any]:
        """A cart at checkout: one doorbuster, or one to three regular SKUs."""
        if self.doorbusters and rnd.random() < DOORBUSTER_HOLD_SHARE:
            lines = [{"sku": self.doorbuster(rnd.randrange(self.doorbusters)), "qty": 1}]
        else:
            lines = [
                {"sku": self.sku(rnd), "qty": rnd.randint(1, 3)} for _ in range(rnd.randint(1, 3))
            ]
        return {"channel": "web", "ttl_s": ttl_s, "lines": lines}


def implied_quantity(channel: str, positions: list[dict[str, Any]]) -> int:
    """A channel's quantity as SPEC 3 derives it from a SKU's positions (no holds without a
    location): the figure a GET must answer once such holds have ended."""
    rules = RULES["channels"][channel]
    types = {name: spec["type"] for name, spec in RULES["locations"].items()}
    eligible = [
        p["sellable"]
        for p in positions
        if types.get(p["location"], RULES["default_location_type"]) in rules["location_types"]
    ]
    quantity = int(sum(eligible) * Fraction(str(rules.get("share", 1))))
    if "cap" in rules:
        quantity = min(quantity, rules["cap"])
    quantity -= rules.get("buffer", 0)
    if quantity < rules.get("zero_below", 0):
        quantity = 0
    return max(quantity, 0)

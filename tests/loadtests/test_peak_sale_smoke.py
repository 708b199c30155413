"""A short peak sale (`loadtests/peak_sale.py`) against a fresh embedded server over real
HTTP: every kind of request the scenarios make runs and none fails (a hold refused for a
sold-out doorbuster is an expected answer), and afterwards the service's state is whole."""

from __future__ import annotations

from pathlib import Path

from loadtests.peak_catalogue import SOLD_OUT, Catalogue
from loadtests.peak_sale import Scenario, peak_sale

# One doorbuster of two units: a few seconds of holds sell it out, so 409s are certain.
SMOKE = Scenario(
    users=8,  # 2 publishers and 2 event senders (fixed counts), 4 storefronts
    spawn_rate=8,
    seconds=15,
    catalogue=Catalogue(skus=500, doorbusters=1, doorbuster_stock=2),
    hold_ttl_s=3,  # the holds left open when the run stops expire before the check ends
    feed_wait_ms=2_000,
)

EVERY_KIND = (
    "/v1/availability/[sku]",
    "/v1/availability/batch",
    "/v1/holds",
    SOLD_OUT,
    "/v1/holds/[id]/commit",
    "/v1/holds/[id]",
    "/v1/feeds/[channel]/snapshot",
    "/v1/feeds/[channel]",
    "/v1/events",
)


def test_a_short_peak_sale_runs_every_request_without_failure(tmp_path: Path) -> None:
    outcome = peak_sale(SMOKE, host=None, workdir=tmp_path)

    assert outcome.failures == []
    assert outcome.errors == []
    missing = [name for name in EVERY_KIND if outcome.requests(name) == 0]
    assert missing == [], f"never ran: {missing}; ran: {outcome.rows}"
    # Channel quantities equal what the positions imply, and no doorbuster is oversold.
    assert outcome.problems == []

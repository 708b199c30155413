"""Schemathesis against a live server: every route must answer only what its OpenAPI
document (`GET /openapi.json`) says, in status, content type, headers and body.

Both modes load the document from the running process, so what is checked is what a client
is told. Generated values are steered to the ones the server knows (the channels of RULES,
SKUs given stock by `seed`, the locations of RULES) part of the time, so that requests reach
the answers past "unknown channel" and "never seen"; the rest stays schemathesis' own, valid
and invalid alike. The run is bounded and derandomized: the same requests every time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
import schemathesis
import schemathesis.engine
from schemathesis import Case, Response
from schemathesis.core.failures import Failure
from schemathesis.engine import events

from .contract_excuses import excuse_for
from .server import Server

# A small deployment: every location type, a channel of each kind and one with a feed, so
# that the feed routes answer 200 and not only 404 no_feed.
FEED_CHANNEL: Final = "amazon"
RULES: Final[dict[str, Any]] = {
    "default_location_type": "store",
    "locations": {"DC1": {"type": "dc"}, "S001": {"type": "store"}, "D001": {"type": "dropship"}},
    "safety_stock": [{"units": 0}, {"location_type": "store", "units": 1}],
    "channels": {
        "web": {"location_types": ["dc", "store"]},
        "pickup": {"location_types": ["store"]},
        FEED_CHANNEL: {
            "location_types": ["dc"],
            "share": 0.5,
            "buffer": 2,
            "feed": {"max_per_second": 1000, "min_interval_ms": 0},
        },
        "marketplace": {"locations": ["D001"]},
    },
}
CHANNELS: Final = tuple(RULES["channels"])
LOCATIONS: Final = tuple(RULES["locations"])
SKUS: Final = ("CT-SKU-1", "CT-SKU-2", "CT-SKU-3")
# Enough that a generated hold of a real SKU mostly fits (a line asks 1 to 1,000,000).
SEEDED_QTY: Final = 1_000_000

# Keys the servers under test are started with (AVAIL_API_KEYS) when auth is on; the run
# uses the admin key, which every route takes, and checks the refusals without it.
ADMIN_KEY: Final = "contract-admin"
API_KEYS: Final = f"{ADMIN_KEY}:admin,contract-reader:read"

# Examples per operation in the fuzzing phase (the coverage phase's are its own boundary
# and type cases, a fixed set), stateful scenarios and their length: enough to reach every
# route's answers, few enough that a mode's run stays within a minute or so on two cores
# (each request is a real round trip; the streaming ones go through Kafka and a worker).
MAX_EXAMPLES: Final = 20
STATEFUL_SCENARIOS: Final = 60
STATEFUL_STEPS: Final = 6
# How often a steered parameter takes a known value instead of a generated one.
REAL_VALUE_PROBABILITY: Final = 0.7
# Long-polls: a feed asked with a cursor at its end waits up to `wait_ms` (30 s at most) for
# an item. Every generated `wait_ms` is one of these, so no request waits longer than a
# second; the long-poll itself is tested in tests/http/test_feeds.py and
# tests/integration/test_feeds.py. Invalid values
# (negative, over 30,000, not a number) are still generated and must be refused.
WAIT_MS_VALUES: Final = (0, 1, 1000)
REQUEST_TIMEOUT_S: Final = 10
# A hold's lifetime as a storefront asks it: the simplest generated one, 1 s, has run out
# before the next call of a sequence releases or commits it.
CHECKOUT_TTLS_S: Final = (60, 600, 3600)


def _steered(dictionary: str, probability: float = REAL_VALUE_PROBABILITY) -> dict[str, Any]:
    return {"dictionary": dictionary, "probability": probability}


def recent_times() -> list[str]:
    """Times an event may carry: from 1970 to 5 minutes ahead of the server's clock, which a
    generated `date-time` (years 1 to 9999) almost never is. Recent, so the dedup window
    takes them too."""
    now = datetime.now(UTC).replace(microsecond=0)
    moments = (now - timedelta(hours=hours) for hours in (0, 1, 30))
    return [moment.isoformat().replace("+00:00", "Z") for moment in moments]


def config(*, api_key: str | None) -> schemathesis.Config:
    """Every phase and every check, bounded, derandomized, steered to real values."""
    project: dict[str, Any] = {
        # Nothing learnt in a run carries to the next: every run is the same.
        "cache": {"enabled": False},
        "request-timeout": REQUEST_TIMEOUT_S,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
        },
        "phases": {
            "stateful": {
                "max-steps": STATEFUL_STEPS,
                # Sequences of calls that are taken, so that each reaches the next: a hold
                # placed, then released or committed. Invalid requests are the business of
                # the coverage and fuzzing phases.
                "generation": {"max-examples": STATEFUL_SCENARIOS, "mode": "positive"},
            }
        },
        # Every check schemathesis has but max_response_time, which needs a wall-clock limit
        # (tests here check behaviour, never time).
        "checks": {"enabled": True},
        "dictionaries": {
            "channels": {"values": list(CHANNELS)},
            "feed_channels": {"values": [FEED_CHANNEL]},
            "skus": {"values": list(SKUS)},
            "locations": {"values": list(LOCATIONS)},
            "wait_ms": {"values": list(WAIT_MS_VALUES)},
            "recent_times": {"values": recent_times()},
            "checkout_ttls": {"values": list(CHECKOUT_TTLS_S)},
        },
        "parameters": {
            "path.sku": _steered("skus"),
            "query.channel": _steered("channels"),
            "query.location": _steered("locations"),
            "path.channel": _steered("feed_channels"),
            "query.wait_ms": _steered("wait_ms", 1.0),
            "body.channel": _steered("channels"),
            "body.location": _steered("locations"),
            "body.skus[*]": _steered("skus"),
            "body.lines[*].sku": _steered("skus"),
            "body.lines[*].location": _steered("locations"),
            "body.ttl_s": _steered("checkout_ttls"),
            "body.[*].sku": _steered("skus"),
            "body.[*].location": _steered("locations"),
            "body.[*].occurred_at": _steered("recent_times"),
        },
    }
    if api_key is not None:
        project["auth"] = {"openapi": {"bearer": {"bearer": api_key}}}
    return schemathesis.Config.from_dict(project)


def load_schema(server: Server, *, api_key: str | None) -> schemathesis.BaseSchema:
    """The OpenAPI document the running `server` serves, with the configuration above."""
    return schemathesis.openapi.from_url(
        f"{server.url}/openapi.json", config=config(api_key=api_key)
    )


def seed(http: httpx.Client) -> None:
    """Stock for every SKU of SKUS at every location of RULES."""
    earlier = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0)
    events = [
        {
            "event_id": f"contract-seed-{sku}-{location}",
            "type": "receipt",
            "sku": sku,
            "location": location,
            "occurred_at": earlier.isoformat().replace("+00:00", "Z"),
            "qty": SEEDED_QTY,
        }
        for sku in SKUS
        for location in LOCATIONS
    ]
    response = http.post("/v1/events", json=events)
    assert response.status_code == 202, response.text


def keep_rules(schema: schemathesis.BaseSchema, http: httpx.Client) -> None:
    """Put RULES back after every PUT /v1/rules: a generated document it took replaced the
    channels (and their feed) the steering relies on, and every route tested after it would
    meet unknown channels only."""

    def after_call(context: Any, case: Case, response: Any) -> None:
        if case.operation.method.upper() == "PUT" and case.operation.path == "/v1/rules":
            restored = http.put("/v1/rules", json=RULES)
            assert restored.status_code == 200, restored.text

    schema.hook(after_call)


def excuse_by_design(schema: schemathesis.BaseSchema, report: Report) -> None:
    """Drop the failures `contract_excuses` explains (and count them), keep every other."""

    def filter_failure(context: Any, failure: Failure, case: Case, response: Response) -> bool:
        excuse = excuse_for(failure, case, response)
        if excuse is not None:
            report.excused[excuse] += 1
        return excuse is None

    schema.hook(filter_failure)


@dataclass
class Report:
    """What a run did and found."""

    requests: Counter[str] = field(default_factory=Counter)  # by phase
    scenarios: Counter[str] = field(default_factory=Counter)  # by phase
    problems: list[str] = field(default_factory=list)
    excused: Counter[str] = field(default_factory=Counter)  # by excuse
    statuses: Counter[str] = field(default_factory=Counter)  # by operation and status

    def summary(self) -> str:
        phases = ", ".join(
            f"{phase}: {self.requests[phase]} requests in {self.scenarios[phase]} scenarios"
            for phase in self.requests
        )
        excused = ", ".join(f"{kind}: {n}" for kind, n in self.excused.items()) or "none"
        taken = ", ".join(
            f"{answer}: {n}" for answer, n in sorted(self.statuses.items()) if " 2" in answer
        )
        return (
            f"{sum(self.requests.values())} requests ({phases}); answered 2xx: {taken};"
            f" excused by design: {excused}"
        )


def run(schema: schemathesis.BaseSchema) -> Report:
    """Every phase (examples, coverage, fuzzing, stateful) over every operation, as
    `schemathesis run` does, with every check; what failed, with how to reproduce it."""
    report = Report()
    excuse_by_design(schema, report)
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            report.scenarios[event.phase.value] += 1
            report.requests[event.phase.value] += len(recorder.interactions)
            for case_id, interaction in recorder.interactions.items():
                answered = interaction.response.status_code if interaction.response else None
                label = recorder.cases[case_id].value.operation.label
                report.statuses[f"{label} {answered}"] += 1
            for checks in recorder.checks.values():
                for node in checks:
                    if node.failure_info is not None:
                        failure = node.failure_info.failure
                        report.problems.append(
                            f"{recorder.label} ({event.phase.value}, {node.name}):"
                            f" {failure.title}: {failure.message}\n"
                            f"    {node.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError):
            report.problems.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            raise event.exception
    return report

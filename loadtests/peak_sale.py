"""A peak sale against a local stack: set it up, run the locust scenarios headless for a
bounded time, print what they measured, and check the service's state afterwards.

    python -m loadtests.peak_sale [--host http://127.0.0.1:8000] [--users 20]
        [--spawn-rate 10] [--seconds 60] [--csv var/peak] [--kafka 127.0.0.1:9092
        --topic-prefix P]

Without `--host` it starts an embedded server of its own (a fresh data directory, stopped
at the end). Either way it puts `workload.RULES` (their `amazon` channel has the feed),
stocks the catalogue of `peak_catalogue`, and waits until the stock is readable, so the
users ask for what the target holds. `--kafka` adds the users that produce straight to the
inventory topics of `--topic-prefix`: use it against the streaming mode's API, with that
deployment's `AVAIL_TOPIC_PREFIX`.

Afterwards, once the holds still open have expired: for the doorbusters and a sample of
SKUs, every channel's quantity equals what the SKU's positions imply (SPEC 3), and no
doorbuster position is oversold (only holds touch them). The sampled SKUs' oversold
positions are reported, not failed: store events may oversell (SPEC 3, a business
exception), and the event mix's transfers out of DC1 do on the hottest SKUs within a
minute. Exit 0 when no request failed, no user raised, and the state holds. Only
127.0.0.1 is ever a target.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from .peak_catalogue import DOORBUSTER_STOCK, Catalogue, implied_quantity
from .stack import HOST, embedded_server, free_port
from .workload import RULES, sku_name

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
STOCK_VISIBLE_TIMEOUT_S = 120  # the streaming mode applies the stock asynchronously
CHECK_GRACE_S = 10  # beyond the holds' lifetime, for expiries to run and reads to catch up
CHECKED_SKUS = 20  # of the regular SKUs, the hottest (most events) and some others


@dataclass(frozen=True)
class Row:
    kind: str
    name: str
    requests: int
    failures: int
    per_second: float
    p50_ms: float
    p99_ms: float


@dataclass
class Outcome:
    rows: list[Row] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # locust's failures, by request
    errors: list[str] = field(default_factory=list)  # exceptions raised in the users
    problems: list[str] = field(default_factory=list)  # what the state check found
    notes: list[str] = field(default_factory=list)  # worth a look, not a failure

    @property
    def ok(self) -> bool:
        return not (self.failures or self.errors or self.problems)

    def requests(self, name: str) -> int:
        return sum(row.requests for row in self.rows if row.name == name)


@dataclass(frozen=True)
class Scenario:
    users: int = 20
    spawn_rate: float = 10
    seconds: int = 60
    catalogue: Catalogue = field(default_factory=Catalogue)
    hold_ttl_s: int = 60
    feed_wait_ms: int = 10_000
    kafka: str = ""
    topic_prefix: str = ""
    csv: Path | None = None  # also keep locust's own CSV files under this prefix
    user_classes: tuple[str, ...] = ()  # only these locustfile users (default: every one)

    def env(self, run: str, results: Path) -> dict[str, str]:
        env = {
            "PYTHONPATH": str(ROOT),
            "LOADTEST_RUN": run,
            "LOADTEST_RESULTS": str(results),
            "LOADTEST_SKUS": str(self.catalogue.skus),
            "LOADTEST_DOORBUSTERS": str(self.catalogue.doorbusters),
            "LOADTEST_HOLD_TTL_S": str(self.hold_ttl_s),
            "LOADTEST_FEED_WAIT_MS": str(self.feed_wait_ms),
        }
        if self.kafka:
            env |= {"LOADTEST_KAFKA": self.kafka, "LOADTEST_TOPIC_PREFIX": self.topic_prefix}
        return env


def check_local(url: str) -> None:
    if urlsplit(url).hostname != HOST:
        raise SystemExit(f"peak_sale: targets only {HOST}, not {url}")


def set_up(http: httpx.Client, catalogue: Catalogue, run: str) -> None:
    http.put("/v1/rules", json=RULES).raise_for_status()
    for batch in catalogue.stock_batches(run):
        http.post("/v1/events", json=batch).raise_for_status()
    last = [sku_name(catalogue.skus - 1), *catalogue.doorbuster_names()[-1:]]
    deadline = time.monotonic() + STOCK_VISIBLE_TIMEOUT_S
    while time.monotonic() < deadline:
        answers = [http.get(f"/v1/availability/{sku}", params={"channel": "web"}) for sku in last]
        if all(a.status_code == 200 and a.json()["sellable"] > 0 for a in answers):
            return
        time.sleep(0.2)
    raise RuntimeError("the stock never became readable")


def run_locust(url: str, scenario: Scenario, workdir: Path, run: str) -> Outcome:
    results = workdir / "locust.json"
    command = [
        *(sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"),
        *("--users", str(scenario.users), "--spawn-rate", str(scenario.spawn_rate)),
        *("--run-time", f"{scenario.seconds}s", "--host", url, "--only-summary"),
    ]
    if scenario.csv:
        command += ["--csv", str(scenario.csv.resolve())]
    command += scenario.user_classes
    env = {**os.environ, **scenario.env(run, results)}
    with (workdir / "locust.log").open("wb") as log:
        # Locust exits 1 when a request failed: the results say which, so its code is not read.
        subprocess.run(
            command, env=env, cwd=ROOT, stdout=log, stderr=log, timeout=scenario.seconds + 60
        )
    if not results.exists():
        tail = (workdir / "locust.log").read_text()[-2000:]
        raise RuntimeError(f"locust wrote no results; its log ends:\n{tail}")
    return read_results(results)


def read_results(path: Path) -> Outcome:
    found = json.loads(path.read_text())
    rows = [Row(**row) for row in found["rows"]]
    return Outcome(rows=rows, failures=found["failures"], errors=found["errors"])


def check_state(http: httpx.Client, scenario: Scenario) -> tuple[list[str], list[str]]:
    """Problems and notes: every checked SKU's channel quantities against its positions,
    read at one version, until they agree or the holds still open have had time to expire;
    then the oversold positions, a problem for a doorbuster and a note for another SKU."""
    catalogue = scenario.catalogue
    doorbusters = catalogue.doorbuster_names()
    hot = [sku_name(n) for n in range(min(CHECKED_SKUS // 2, catalogue.skus))]
    spread = [sku_name(n) for n in range(0, catalogue.skus, max(1, catalogue.skus // 10))]
    deadline = time.monotonic() + scenario.hold_ttl_s + CHECK_GRACE_S
    notes: list[str] = []
    while True:
        positions = {sku: read_positions(http, sku) for sku in [*doorbusters, *hot, *spread]}
        problems = [p for sku, held in positions.items() for p in compare(http, sku, held)]
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for sku, held in positions.items():
        for position in held["positions"]:
            if position["oversold"]:
                found = f"{sku} oversold at {position['location']}: {json.dumps(position)}"
                (problems if sku in doorbusters else notes).append(found)
    return problems, notes


def read_positions(http: httpx.Client, sku: str) -> dict[str, Any]:
    found: dict[str, Any] = http.get(f"/v1/positions/{sku}").raise_for_status().json()
    return found


def compare(http: httpx.Client, sku: str, positions: dict[str, Any]) -> list[str]:
    problems = []
    for channel in RULES["channels"]:
        answer = http.get(f"/v1/availability/{sku}", params={"channel": channel})
        read = answer.raise_for_status().json()
        implied = implied_quantity(channel, positions["positions"])
        if read["version"] != positions["version"]:
            problems.append(f"{sku} changed between reads (version {read['version']})")
        elif read["sellable"] != implied:
            problems.append(
                f"{sku} {channel}: GET answers {read['sellable']}, its positions imply {implied}"
            )
    return problems


@contextlib.contextmanager
def target(host: str | None, workdir: Path) -> Iterator[str]:
    if host:
        check_local(host)
        yield host.rstrip("/")
        return
    rules = workdir / "rules.json"
    rules.write_text(json.dumps(RULES))
    port = free_port()
    with embedded_server(port, workdir / "data", rules, log=workdir / "server.log"):
        yield f"http://{HOST}:{port}"


def peak_sale(scenario: Scenario, host: str | None, workdir: Path) -> Outcome:
    run = uuid.uuid4().hex[:8]
    with (
        target(host, workdir) as url,
        httpx.Client(base_url=url, timeout=30, trust_env=False) as http,
    ):
        set_up(http, scenario.catalogue, run)
        outcome = run_locust(url, scenario, workdir, run)
        outcome.problems, outcome.notes = check_state(http, scenario)
    return outcome


def print_summary(outcome: Outcome, seconds: int) -> None:
    print(f"{'request':<44} {'count':>8} {'fail':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for row in outcome.rows:
        print(
            f"{row.kind + ' ' + row.name:<44} {row.requests:>8} {row.failures:>6}"
            f" {row.per_second:>8.1f} {row.p50_ms:>8.0f} {row.p99_ms:>8.0f}"
        )
    total = sum(row.requests for row in outcome.rows)
    print(f"{total:,} requests in {seconds} s ({total / seconds:,.0f}/s)")
    for title, lines in (
        ("failures", outcome.failures),
        ("exceptions in the users", outcome.errors),
        ("state check", outcome.problems),
        ("notes", outcome.notes),
    ):
        print(f"{title}: {'none' if not lines else len(lines)}")
        for line in lines[:20]:
            print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", help=f"a running service on {HOST} (default: start one)")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--skus", type=int, default=2_000)
    parser.add_argument("--doorbusters", type=int, default=10)
    parser.add_argument("--doorbuster-stock", type=int, default=DOORBUSTER_STOCK)
    parser.add_argument("--hold-ttl", type=int, default=60, help="holds' ttl_s")
    parser.add_argument("--csv", type=Path, help="keep locust's CSV files under this prefix")
    parser.add_argument("--kafka", default="", help=f"e.g. {HOST}:9092: also produce there")
    parser.add_argument("--topic-prefix", default="", help="the deployment's topic prefix")
    args = parser.parse_args()
    if args.kafka:
        check_local(f"kafka://{args.kafka}")
    scenario = Scenario(
        users=args.users,
        spawn_rate=args.spawn_rate,
        seconds=args.seconds,
        catalogue=Catalogue(args.skus, args.doorbusters, args.doorbuster_stock),
        hold_ttl_s=args.hold_ttl,
        kafka=args.kafka,
        topic_prefix=args.topic_prefix,
        csv=args.csv,
    )
    with tempfile.TemporaryDirectory(prefix="avail-peak-") as tmp:
        outcome = peak_sale(scenario, args.host, Path(tmp))
    print_summary(outcome, args.seconds)
    sys.exit(0 if outcome.ok else 1)


if __name__ == "__main__":
    main()

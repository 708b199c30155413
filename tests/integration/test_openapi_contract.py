"""The streaming mode (`availability api` against Kafka and Redis, one worker, no API keys)
answers only what its OpenAPI document says, route by route and along sequences of calls
(tests/support/contract.py); the embedded mode's run is tests/http/test_openapi_contract.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import contract
from tests.support.server import ApiServer
from tests.support.streaming import Stack, WorkerProcess, wait_until

from .helpers import wait_readiness

pytestmark = pytest.mark.integration

VISIBLE_TIMEOUT_S = 60.0


@pytest.fixture
def worker(fresh_stack: Stack, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(fresh_stack, tmp_path / "worker", standby_replicas=0).start()
    yield process
    process.stop()


def seeded_stock_is_visible(http: httpx.Client) -> bool:
    """The worker has applied the seed and published it: reads meet real stock."""
    answers = [
        http.get(f"/v1/availability/{sku}", params={"channel": "web"}) for sku in contract.SKUS
    ]
    return all(a.status_code == 200 and a.json()["sellable"] > 0 for a in answers)


def test_every_route_answers_only_what_its_openapi_document_says(
    start_api: Callable[..., ApiServer],
    worker: WorkerProcess,
    tmp_path: Path,
    figures: dict[str, str],
) -> None:
    rules = tmp_path / "contract-rules.json"
    rules.write_text(json.dumps(contract.RULES))
    api = start_api(rules_file=rules)
    wait_readiness(api, 200, timeout_s=90)
    with api.client() as http:
        contract.seed(http)
        assert wait_until(lambda: seeded_stock_is_visible(http), VISIBLE_TIMEOUT_S), (
            worker.log_tail()
        )
        schema = contract.load_schema(api, api_key=None)
        contract.keep_rules(schema, http)
        report = contract.run(schema)
    figures["schemathesis, streaming mode"] = report.summary()
    assert not report.problems, "\n".join(report.problems)

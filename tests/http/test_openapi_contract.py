"""The embedded mode (`availability serve`, with API keys) answers only what its OpenAPI
document says, route by route and along sequences of calls (tests/support/contract.py); the
streaming mode's run is tests/integration/test_openapi_contract.py."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import contract
from tests.support.server import Server, server_pool


def test_every_route_answers_only_what_its_openapi_document_says(tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(contract.RULES))
    keys = {"AVAIL_API_KEYS": contract.API_KEYS}
    with server_pool() as pool:
        server = Server(tmp_path / "data", rules_file=rules, env=keys)
        pool.append(server.start())
        with server.client(contract.ADMIN_KEY) as admin:
            contract.seed(admin)
            schema = contract.load_schema(server, api_key=contract.ADMIN_KEY)
            contract.keep_rules(schema, admin)
            report = contract.run(schema)
    print(report.summary())  # shown with -s, or with the failure
    assert not report.problems, "\n".join(report.problems)
    assert "Traceback" not in server.log(), server.log_tail()

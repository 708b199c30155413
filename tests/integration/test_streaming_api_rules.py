"""The rules in the streaming mode, read back from a real Kafka: a document on the compacted
rules topic, its offset as its revision, and one RulesChanged on every control partition;
every API process follows the topic."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from availability import encode_rules, rules_from_object
from availability.control import RulesChanged, control_decoder
from availability.rules import EMPTY_RULES
from tests.support.server import ApiServer
from tests.support.streaming import Stack, read_topic, run

from .conftest import StartApi
from .helpers import RULES, error_code

pytestmark = pytest.mark.integration

FOLLOW_TIMEOUT_S = 10.0
MORE_RULES: dict[str, Any] = RULES | {
    "channels": RULES["channels"] | {"marketplace": {"locations": ["D001"]}}
}


def rules_records(stack: Stack) -> list[Any]:
    records: list[Any] = run(read_topic(stack.names.rules_topic))
    return records


def announcements(stack: Stack) -> list[tuple[int, RulesChanged]]:
    """(partition, message) of every message on the control topic."""
    records = run(read_topic(stack.names.control_topic))
    return [(r.partition, control_decoder.decode(r.value)) for r in records]


def test_a_put_stores_the_document_and_announces_it_once_on_every_control_partition(
    ready_api: ApiServer, fresh_stack: Stack
) -> None:
    with ready_api.client() as http:
        response = http.put("/v1/rules", json=MORE_RULES)
        got = http.get("/v1/rules")

    assert response.status_code == 200
    assert response.json() == MORE_RULES
    assert got.json() == MORE_RULES
    stored = rules_records(fresh_stack)
    assert [r.key for r in stored] == [b"rules", b"rules"]  # the start's rules, then the PUT
    assert rules_from_object(json.loads(stored[-1].value)) == rules_from_object(MORE_RULES)
    revision = stored[-1].offset
    announced = [(p, m) for p, m in announcements(fresh_stack) if m.revision == revision]
    assert sorted(p for p, _ in announced) == list(range(fresh_stack.partitions))
    assert all(m.rules == rules_from_object(MORE_RULES) for _, m in announced)
    # The start's rules were announced the same way, with their own (lower) revision.
    assert Counter(m.revision for _, m in announcements(fresh_stack)) == {
        stored[0].offset: fresh_stack.partitions,
        revision: fresh_stack.partitions,
    }


def test_rules_given_at_start_are_published_only_when_they_differ_from_the_last(
    start_api: StartApi, fresh_stack: Stack, rules_path: Path, tmp_path: Path
) -> None:
    first = start_api(rules_file=rules_path)
    assert wait_rules_ready(first)
    first.stop()
    again = start_api(rules_file=rules_path)
    assert wait_rules_ready(again)
    again.stop()
    changed_path = tmp_path / "more.yaml"
    changed_path.write_text(json.dumps(MORE_RULES))  # JSON is YAML too
    changed = start_api(rules_file=changed_path)
    assert wait_rules_ready(changed)

    stored = rules_records(fresh_stack)
    assert [json.loads(r.value) for r in stored] == [
        json.loads(encode_rules(rules_from_object(RULES))),
        json.loads(encode_rules(rules_from_object(MORE_RULES))),
    ]
    assert len(announcements(fresh_stack)) == 2 * fresh_stack.partitions
    with changed.client() as http:
        assert http.get("/v1/rules").json() == MORE_RULES


def wait_rules_ready(server: ApiServer) -> bool:
    deadline = time.monotonic() + FOLLOW_TIMEOUT_S
    while time.monotonic() < deadline:
        with server.client() as http:
            if http.get("/v1/rules").status_code == 200:
                return True
        time.sleep(0.1)
    return False


def test_rules_put_on_one_api_process_are_followed_by_another(
    ready_api: ApiServer, start_api: StartApi
) -> None:
    other = start_api()
    assert wait_rules_ready(other)

    with ready_api.client() as http:
        assert http.put("/v1/rules", json=MORE_RULES).status_code == 200
    deadline = time.monotonic() + FOLLOW_TIMEOUT_S
    with other.client() as http:
        while http.get("/v1/rules").json() != MORE_RULES:
            assert time.monotonic() < deadline, "the other API never saw the new rules"
            time.sleep(0.1)
        # The channel the PUT added is known there too: not 404 (503 until published).
        response = http.get("/v1/availability/SKU-1", params={"channel": "marketplace"})
        assert response.status_code != 404


def test_invalid_rules_are_refused_and_nothing_is_published(
    ready_api: ApiServer, fresh_stack: Stack
) -> None:
    invalid = RULES | {"channels": {"web": {"share": 1.5}}}

    with ready_api.client() as http:
        response = http.put("/v1/rules", json=invalid)
        kept = http.get("/v1/rules").json()

    assert response.status_code == 422
    assert error_code(response) == "invalid_rules"
    assert kept == RULES
    assert len(rules_records(fresh_stack)) == 1
    assert len(announcements(fresh_stack)) == fresh_stack.partitions


def test_with_no_rules_ever_published_the_rules_are_empty(start_api: StartApi) -> None:
    server = start_api()
    assert wait_rules_ready(server)

    with server.client() as http:
        rules = http.get("/v1/rules")
        read = http.get("/v1/availability/SKU-1", params={"channel": "web"})

    assert rules.json() == json.loads(encode_rules(EMPTY_RULES))
    assert read.status_code == 404

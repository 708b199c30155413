"""The operator commands of the streaming mode, run as the real `availability` command against
the real Kafka and Redis and a real worker: replaying dead letters after a fix (once, however
often the replay runs), rebuilding the Redis read model, and a SKU's history for support
(and, without any of those, how it reads a SKU's records of the table's changelog)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from aiokafka import AIOKafkaProducer

from availability import SkuState, apply_event, decode_event, sku_records, written
from availability.layout import chunk_key
from availability.published import ready_key, sku_key
from service.ops.sku_history import TableRecords
from tests.support.read_model import sku_in_partition
from tests.support.server import run_cli
from tests.support.streaming import (
    KAFKA,
    Stack,
    WorkerProcess,
    create_topics,
    event_messages,
    expected_positions,
    produce,
    published_positions,
    read_topic,
    reference_states,
    run,
    wait_until,
)

pytestmark = pytest.mark.integration

CONVERGE_S = 60.0
COMMAND_TIMEOUT_S = 120.0

Headers = list[tuple[str, bytes]]


@pytest.fixture
def stack(fresh_stack: Stack) -> Stack:
    """A deployment of its own, its topics created; removed afterwards (see conftest)."""
    run(create_topics(fresh_stack))
    return fresh_stack


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def ops(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `availability <args>` with the deployment's settings, as an operator would."""
    return run_cli(args, env=stack.env, timeout=COMMAND_TIMEOUT_S)


def said(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def at(minutes_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


def receipt(event_id: str, sku: str, minutes_ago: float, qty: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "receipt",
        "sku": sku,
        "location": "DC1",
        "occurred_at": at(minutes_ago),
        "qty": qty,
    }


def on_hand(stack: Stack, sku: str, location: str = "DC1") -> int | None:
    found = published_positions(stack, [sku]).get(sku, {}).get(location)
    return None if found is None else int(found["on_hand"])


def messages_in(topic: str) -> list[tuple[bytes | None, bytes | None]]:
    return [(record.key, record.value) for record in run(read_topic(topic))]


async def produce_letters(topic: str, letters: Sequence[tuple[bytes, bytes, Headers]]) -> None:
    """Dead letters written by hand, as an operator would after fixing a producer, all on
    partition 0 so their order is known."""
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value, headers in letters:
            await producer.send_and_wait(topic, value, key=key, partition=0, headers=headers)
    finally:
        await producer.stop()


def letter_headers(reason: str, source_topic: str | None) -> Headers:
    headers = [("reason", reason.encode())]
    if source_topic is not None:
        headers.append(("source_topic", source_topic.encode()))
    return [*headers, ("source_partition", b"0"), ("source_offset", b"0")]


def test_dead_letters_replayed_after_the_fix_apply_once_however_often_the_replay_runs(
    stack: Stack, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    # A dedup window set too tight dead-letters a late receipt; the fix is the right window.
    worker = WorkerProcess(
        stack, tmp_path / "w1", standby_replicas=0, env={"AVAIL_DEDUP_WINDOW_HOURS": "1"}
    )
    workers.append(worker.start())
    sku = "SKU-LATE"
    run(
        produce(
            stack,
            event_messages(
                stack, [receipt("rcv-new", sku, 10, qty=10), receipt("rcv-late", sku, 180, qty=7)]
            ),
        )
    )
    dlq, receipts = stack.names.dlq_topic, stack.names.event_topic("receipt")
    assert wait_until(lambda: len(messages_in(dlq)) == 1, CONVERGE_S), worker.log_tail()
    [letter] = run(read_topic(dlq))
    assert "dedup window" in dict(letter.headers)["reason"].decode()
    assert wait_until(lambda: on_hand(stack, sku) == 10, CONVERGE_S), worker.log_tail()

    dry = ops(stack, "dlq-replay", "--dry-run")
    assert dry.returncode == 0, said(dry)
    assert f"would replay 1 to {receipts}" in dry.stdout, said(dry)
    assert "older than the dedup window" in dry.stdout, said(dry)
    assert len(messages_in(receipts)) == 2, "a dry run produced something"

    worker.stop()
    worker.extra_env = {}  # the fix: the default 7-day dedup window
    worker.start()

    first = ops(stack, "dlq-replay")
    assert first.returncode == 0, said(first)
    assert "replayed 1," in first.stdout, said(first)
    assert wait_until(lambda: on_hand(stack, sku) == 17, CONVERGE_S), worker.log_tail()

    second = ops(stack, "dlq-replay")
    assert second.returncode == 0, said(second)
    assert "replayed 0," in second.stdout, said(second)

    # Replayed again on purpose: the event's id makes it a duplicate.
    again = ops(stack, "dlq-replay", "--from-beginning")
    assert again.returncode == 0, said(again)
    assert "replayed 1," in again.stdout, said(again)
    # On the same topic and partition, so the worker applies it after the second copy.
    run(produce(stack, event_messages(stack, [receipt("rcv-marker", sku, 5, qty=1)])))
    assert wait_until(lambda: on_hand(stack, sku) == 18, CONVERGE_S), worker.log_tail()
    time.sleep(1.0)
    assert on_hand(stack, sku) == 18
    assert [value for _, value in messages_in(receipts)].count(letter.value) == 3
    assert len(messages_in(dlq)) == 1, "a replayed letter was dead-lettered again"


def test_dry_run_and_filters_produce_nothing_they_should_not_and_foreign_letters_are_reported(
    stack: Stack,
) -> None:
    names = stack.names
    receipts, sales = names.event_topic("receipt"), names.event_topic("sale")
    ahead = "occurred_at is more than 5 minutes ahead of the server clock"
    good_receipt = json.dumps(receipt("r-1", "SKU-A", 1, qty=3)).encode()
    good_sale = json.dumps({**receipt("s-1", "SKU-B", 1, qty=1), "type": "sale"}).encode()
    run(
        produce_letters(
            names.dlq_topic,
            [
                (b"SKU-A", good_receipt, letter_headers(ahead, receipts)),
                (b"SKU-C", b"{}", letter_headers("invalid event", None)),
                (b"SKU-C", b"{}", letter_headers("invalid control message", names.control_topic)),
                (b"SKU-C", b"{}", letter_headers("invalid event", f"{stack.tag}elsewhere")),
                (b"SKU-B", good_sale, letter_headers("invalid event: fixed since", sales)),
            ],
        )
    )

    dry = ops(stack, "dlq-replay", "--dry-run")
    assert dry.returncode == 0, said(dry)
    assert f"would replay 1 to {receipts}" in dry.stdout, said(dry)
    assert f"would replay 1 to {sales}" in dry.stdout, said(dry)
    assert ahead in dry.stdout, said(dry)
    assert "skipped 3" in dry.stdout, said(dry)
    assert "@1: no source_topic header" in dry.stdout, said(dry)
    assert f"source_topic {names.control_topic!r} is not an inventory topic" in dry.stdout
    assert f"source_topic '{stack.tag}elsewhere' is not an inventory topic" in dry.stdout
    for topic in [*names.inventory_topics, names.control_topic]:
        assert messages_in(topic) == [], f"the dry run produced to {topic}"

    # A filter replays what it matches; what it leaves out stays for a later run.
    filtered = ops(stack, "dlq-replay", "--reason-contains", "5 minutes ahead")
    assert filtered.returncode == 0, said(filtered)
    assert "replayed 1, skipped 3, left out 1," in filtered.stdout, said(filtered)
    assert messages_in(receipts) == [(b"SKU-A", good_receipt)]
    assert messages_in(sales) == []

    rest = ops(stack, "dlq-replay")
    assert rest.returncode == 0, said(rest)
    assert "replayed 1, skipped 0, left out 0, of 1 " in rest.stdout, said(rest)
    assert messages_in(sales) == [(b"SKU-B", good_sale)]
    assert messages_in(receipts) == [(b"SKU-A", good_receipt)]
    for topic in [*names.inventory_topics, names.control_topic]:
        if topic not in {receipts, sales}:
            assert messages_in(topic) == [], f"a skipped letter went to {topic}"

    # --limit stops early, and the next run goes on from there.
    later = [json.dumps(receipt(f"r-{n}", "SKU-A", 1, qty=1)).encode() for n in (2, 3)]
    run(
        produce_letters(
            names.dlq_topic, [(b"SKU-A", value, letter_headers(ahead, receipts)) for value in later]
        )
    )
    limited = ops(stack, "dlq-replay", "--limit", "1")
    assert limited.returncode == 0, said(limited)
    assert "replayed 1, skipped 0, left out 0, of 1 " in limited.stdout, said(limited)
    assert messages_in(receipts)[1:] == [(b"SKU-A", later[0])]
    last = ops(stack, "dlq-replay")
    assert "replayed 1, skipped 0, left out 0, of 1 " in last.stdout, said(last)
    assert messages_in(receipts)[1:] == [(b"SKU-A", v) for v in later]
    assert "replayed 0," in ops(stack, "dlq-replay").stdout


def test_bad_usage_is_refused_with_exit_code_2_and_a_reason(stack: Stack) -> None:
    for args, reason in [
        (["dlq-replay", "--limit", "0"], "must be at least 1"),
        (["sku-history", "not a sku"], "not a SKU"),
        (["sku-history", "SKU-1", "--since", "yesterday"], "not an ISO 8601 time"),
        (["rebuild-read-model", "--partition", "99"], "no partition [99]"),
        (["rebuild-read-model", "--timeout", "0"], "must be above 0"),
    ]:
        result = ops(stack, *args)
        assert result.returncode == 2, said(result)
        assert reason in result.stderr, said(result)


def test_rebuild_republishes_every_partition_and_answers_stay_what_they_were(
    stack: Stack, workers: list[WorkerProcess], tmp_path: Path, redis_client: redis.Redis
) -> None:
    worker = WorkerProcess(stack, tmp_path / "w1", standby_replicas=0)
    workers.append(worker.start())
    events = [receipt(f"r-{n}", f"SKU-{n}", 10, qty=n + 1) for n in range(24)]
    run(produce(stack, event_messages(stack, events)))
    skus = {e["sku"] for e in events}
    expected = expected_positions(run(reference_states(stack)))
    assert wait_until(lambda: published_positions(stack, skus) == expected, CONVERGE_S)
    namespace = stack.names.redis_namespace
    marks = ready_key(namespace)
    assert wait_until(lambda: redis_client.hlen(marks) == stack.partitions, CONVERGE_S)
    before = {sku: redis_client.hgetall(sku_key(namespace, sku)) for sku in skus}
    # What a rebuild is for: answers lost from Redis (an eviction, a key deleted by hand).
    lost = sorted(skus)[:3]
    redis_client.delete(*[sku_key(namespace, sku) for sku in lost])
    redis_client.hdel(marks, "0")

    result = ops(stack, "rebuild-read-model", "--timeout", "60")

    assert result.returncode == 0, said(result) + worker.log_tail()
    assert f"all {stack.partitions} partitions republished and ready again" in result.stdout
    assert "cleared the ready marks" in result.stderr, said(result)
    assert redis_client.hlen(marks) == stack.partitions
    after = {sku: redis_client.hgetall(sku_key(namespace, sku)) for sku in skus}
    assert after == before


def test_rebuild_without_a_worker_times_out_naming_the_partitions(
    stack: Stack, redis_client: redis.Redis
) -> None:
    result = ops(stack, "rebuild-read-model", "--timeout", "1")
    assert result.returncode == 1, said(result)
    assert "timed out after 1 s: partitions [0, 1, 2, 3] are not ready" in result.stderr


def test_sku_history_shows_exactly_the_skus_events_in_order_its_documents_and_positions(
    stack: Stack, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    worker = WorkerProcess(stack, tmp_path / "w1", standby_replicas=0)
    workers.append(worker.start())
    sku = sku_in_partition(1, stack.partitions, "SKU-H")
    neighbour = sku_in_partition(1, stack.partitions, "SKU-N")  # same partition, not shown

    def ev(event_id: str, kind: str, minutes_ago: float, **fields: Any) -> dict[str, Any]:
        common = {"sku": sku, "location": "DC1", "occurred_at": at(minutes_ago)}
        return {"event_id": event_id, "type": kind, **common, **fields}

    mine = [
        ev("h1", "receipt", 30, qty=20),
        ev("h2", "order", 25, qty=4, order_id="W-9"),
        ev("h3", "pick", 20, qty=1, order_id="W-9"),
        ev("h4", "sale", 15, qty=2),
    ]
    mine += [
        dict(mine[-1]),  # delivered twice
        ev("h5", "transfer_out", 10, qty=3, transfer_id="T-1", to_location="S001"),
        ev("h6", "sale", -60, qty=1),  # an hour ahead: dead-lettered
    ]
    for event in mine:  # one at a time: Kafka's timestamps then follow the order sent
        run(produce(stack, event_messages(stack, [event, receipt("n", neighbour, 30, qty=1)])))
    expected = expected_positions(run(reference_states(stack)))
    assert wait_until(lambda: published_positions(stack, [sku]) == {sku: expected[sku]}, CONVERGE_S)

    result = ops(stack, "sku-history", sku, "--json")

    assert result.returncode == 0, said(result)
    history = json.loads(result.stdout)
    assert history["partition"] == 1
    shown = history["events"]
    assert [(e["event"]["event_id"], e["event"]["type"], e["event"]["qty"]) for e in shown] == [
        (m["event_id"], m["type"], m["qty"]) for m in mine
    ]
    assert [e["duplicate_of"] is not None for e in shown] == [False] * 4 + [True, False, False]
    assert "5 minutes ahead" in (shown[-1]["dead_lettered"] or "")
    assert all(e["dead_lettered"] is None for e in shown[:-1])
    stored = history["state"]
    assert (stored["version"], stored["dedup_ids"]) == (5, 5)  # h1 to h5, once each
    assert stored["positions"]["DC1"]["on_hand"] == 20 - 1 - 2 - 3
    assert stored["positions"]["DC1"]["reserved"] == 3
    assert stored["positions"]["S001"]["inbound"] == 3
    assert stored["records"] == 1  # a few items: the head holds them
    assert 0 < stored["largest_record_bytes"] < 4_096
    documents = stored["documents"]
    assert documents["DC1"]["orders"]["W-9"]["ordered"] == 4
    assert documents["DC1"]["orders"]["W-9"]["picked"] == 1
    assert documents["S001"]["transfers"]["T-1"]["shipped"] == 3
    published = {p["location"]: p for p in history["published"]["positions"]}
    assert published["DC1"]["on_hand"] == 20 - 1 - 2 - 3
    assert published["DC1"]["reserved"] == 3
    assert published["S001"]["inbound"] == 3

    text = ops(stack, "sku-history", sku)
    assert text.returncode == 0, said(text)
    ids = [f" {m['type']} {m['event_id']} at " for m in mine]
    positions = [text.stdout.index(i) for i in dict.fromkeys(ids)]
    assert positions == sorted(positions), text.stdout
    assert neighbour not in text.stdout
    assert "the worker's table: version 5, 5 dedup ids; 1 record (its head alone)" in text.stdout
    assert "  DC1 orders W-9: ordered 4, picked 1," in text.stdout

    since = ops(stack, "sku-history", sku, "--json", "--since", at(12))
    assert since.returncode == 0, said(since)
    assert [e["event"]["event_id"] for e in json.loads(since.stdout)["events"]] == ["h5", "h6"]


def test_sku_history_reads_each_keys_last_value_and_a_tombstone_deletes_the_key() -> None:
    sku, start = "SKU-T", datetime(2026, 11, 1, tzinfo=UTC)

    def receipt_at(n: int, when: datetime, of: str = sku) -> dict[str, Any]:
        return {**receipt(f"r{n}", of, 0, qty=1), "occurred_at": when.isoformat()}

    state, other = SkuState(sku=sku), SkuState(sku=f"{sku}X")  # a SKU whose name starts alike
    for n in range(100):
        event = receipt_at(n, start + timedelta(seconds=n))
        apply_event(state, decode_event(json.dumps(event).encode()), 0)
        apply_event(other, decode_event(json.dumps({**event, "sku": other.sku}).encode()), 0)
    first = sku_records(state)
    written(state)
    assert len(first) == 4  # 200 items (ids and effects): three sealed chunks, then the head
    # Eight days on, the first day's items are past the dedup window: their chunks go.
    late = receipt_at(100, start + timedelta(days=8))
    apply_event(state, decode_event(json.dumps(late).encode()), 0)
    second = sku_records(state)
    assert [value for _, value in second[:-1]] == [None] * 3

    table = TableRecords(sku)
    for key, value in [*first, *sku_records(other), *second]:
        table.add(key, value)
    stored = table.stored()

    assert stored is not None
    assert list(table.last) == [second[-1][0]]  # the head alone: its chunks were deleted
    assert chunk_key(sku, 0) not in table.last
    assert stored.records == 1
    assert stored.largest_record == len(second[-1][0]) + len(second[-1][1] or b"")
    assert (stored.state.version, stored.state.positions["DC1"].on_hand) == (101, 101)
    assert list(stored.state.seen) == ["r100"]
    assert TableRecords("SKU-NONE").stored() is None

"""The stream worker on a real Kafka and Redis: dead letters, a kill -9 mid-stream, a second
worker joining and the first one dying. After each, every published position must equal
what the event log, read back from Kafka and folded by the core, says it must be."""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from availability.published import ready_key
from availability.topics import STATE_TABLE, state_changelog_topic
from tests.support.streaming import (
    KAFKA,
    REDIS_URL,
    Stack,
    WorkerProcess,
    changelog_image,
    create_topics,
    event_messages,
    expected_positions,
    local_table_image,
    produce,
    published_positions,
    read_topic,
    reference_states,
    run,
    wait_until,
    with_faults,
)

pytestmark = pytest.mark.integration

CONVERGE_S = 120.0
LOST_WRITES = "redis holds newer versions than the table"


def event_mix(count: int, skus: int, seed: int, start_serial: int = 0) -> list[dict[str, Any]]:
    """Every event type, with orders, picks and transfers that share documents, counts,
    and one event in twenty sent twice."""
    rnd = random.Random(seed)
    base = datetime.now(UTC) - timedelta(minutes=50)
    events: list[dict[str, Any]] = []
    for n in range(start_serial, start_serial + count):
        sku, loc = f"SKU-{rnd.randrange(skus)}", f"L{rnd.randrange(3)}"
        at = (base + timedelta(milliseconds=n)).isoformat()
        e: dict[str, Any] = {"event_id": f"e{n}", "sku": sku, "location": loc, "occurred_at": at}
        roll = rnd.random()
        doc = f"D{rnd.randrange(30)}"
        if roll < 0.25:
            e |= {"type": "receipt", "qty": rnd.randint(1, 20)}
        elif roll < 0.45:
            e |= {"type": "sale", "qty": rnd.randint(1, 3)}
        elif roll < 0.6:
            e |= {"type": "order", "qty": rnd.randint(1, 3), "order_id": doc}
        elif roll < 0.68:
            e |= {"type": "pick", "qty": 1, "order_id": doc}
        elif roll < 0.73:
            e |= {"type": "cancel", "qty": 1, "order_id": doc}
        elif roll < 0.78:
            e |= {"type": "return", "qty": 1, "disposition": rnd.choice(["sellable", "damaged"])}
        elif roll < 0.84:
            e |= {"type": "transfer_out", "qty": 2, "transfer_id": doc, "to_location": "L9"}
        elif roll < 0.88:
            e |= {"type": "transfer_in", "qty": 2, "transfer_id": doc, "location": "L9"}
        elif roll < 0.95:
            e |= {"type": "adjust", "delta": rnd.choice([-2, -1, 1, 3]), "reason": "cycle"}
        else:
            e |= {"type": "count", "counted": rnd.randint(0, 40)}
        events.append(e)
        if rnd.random() < 0.05:
            events.append(dict(e))  # delivered twice
    return events


class Feeder:
    """Produces batches in the background, so workers die and join with events flowing."""

    def __init__(self, stack: Stack, batches: int, size: int, pause_s: float) -> None:
        self.stack, self.batches, self.size, self.pause_s = stack, batches, size, pause_s
        self.sent = 0
        self.skus: set[str] = set()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for batch in range(self.batches):
            events = event_mix(self.size, skus=60, seed=batch, start_serial=batch * self.size)
            self.skus.update(e["sku"] for e in events)
            run(produce(self.stack, event_messages(self.stack, events)))
            self.sent = batch + 1
            time.sleep(self.pause_s)

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.thread.join(timeout=120)

    def wait_for(self, batches: int) -> None:
        assert wait_until(lambda: self.sent >= batches, 60), f"only {self.sent} batches sent"


def assert_converges(stack: Stack, skus: set[str], workers: list[WorkerProcess]) -> None:
    expected = expected_positions(run(reference_states(stack)))
    assert set(expected) == skus

    def matches() -> bool:
        assert any(w.running for w in workers), "\n".join(w.log_tail() for w in workers)
        return published_positions(stack, skus) == expected

    if not wait_until(matches, CONVERGE_S, interval_s=0.5):
        published = published_positions(stack, skus)
        wrong = {
            s: (published.get(s), expected[s]) for s in expected if published.get(s) != expected[s]
        }
        logs = "\n".join(w.log_tail() for w in workers)
        pytest.fail(f"{len(wrong)} SKUs differ, e.g. {list(wrong.items())[:2]}\n{logs}")


@pytest.fixture
def stack(fresh_stack: Stack) -> Stack:
    run(create_topics(fresh_stack))
    return fresh_stack


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def test_bad_messages_are_dead_lettered_with_their_reason_and_the_worker_goes_on(
    stack: Stack, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    workers.append(WorkerProcess(stack, tmp_path / "w1").start())
    good = event_mix(40, skus=5, seed=1)
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    sale = stack.names.event_topic("sale")
    bad: list[tuple[str, bytes | None, bytes | None]] = [
        (sale, b"SKU-0", b"not json at all"),
        (sale, b"SKU-0", b'{"type": "sale", "event_id": "x1", "sku": "SKU-0"}'),
        (
            sale,
            b"SKU-0",
            b'{"type":"sale","event_id":"x2","sku":"SKU-0","location":"L0",'
            b'"occurred_at":"' + future.encode() + b'","qty":1}',
        ),
        (
            sale,
            b"SKU-1",
            b'{"type":"sale","event_id":"x3","sku":"SKU-0","location":"L0",'
            b'"occurred_at":"2026-01-01T00:00:00Z","qty":1}',
        ),
        (sale, b"SKU-0", None),
    ]
    run(produce(stack, [*bad, *event_messages(stack, good)]))

    assert_converges(stack, {e["sku"] for e in good}, workers)
    assert wait_until(lambda: len(run(read_topic(stack.names.dlq_topic))) >= len(bad), 30)
    dead = run(read_topic(stack.names.dlq_topic))
    assert sorted(record.value or b"" for record in dead) == sorted(
        value or b"" for _, _, value in bad
    )
    reasons = [dict(record.headers)["reason"].decode() for record in dead]
    assert all(reasons), reasons
    assert any("malformed" in r or "invalid" in r for r in reasons)
    assert any("5 minutes ahead" in r for r in reasons)
    assert any("message key must be the event's sku" in r for r in reasons)
    assert {dict(r.headers)["source_topic"] for r in dead} == {sale.encode()}


def test_a_worker_killed_mid_stream_loses_nothing_and_counts_nothing_twice(
    stack: Stack, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    worker = WorkerProcess(stack, tmp_path / "w1", standby_replicas=0).start()
    workers.append(worker)
    # Killed before it has even started, it would leave nothing to recover: wait for it.
    assert wait_until(lambda: "republished to redis" in worker.log_tail(200_000), 60), (
        worker.log_tail()
    )
    with Feeder(stack, batches=12, size=500, pause_s=0.3) as feeder:
        feeder.wait_for(5)
        worker.kill()
        feeder.wait_for(7)
        worker.start()
    assert_converges(stack, feeder.skus, workers)
    assert "last stop was not clean" in worker.log_tail(200_000)


def test_a_worker_recovering_on_a_backlog_goes_on_when_it_fetches_before_its_seek(
    stack: Stack, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    """At the end of a recovery from the changelog faust resumes the source partitions,
    then seeks them to their committed offsets. A fetch of the backlog in between used to
    wait for the rules follower, which starts only once the recovery is complete, while the
    seek waited for that delivery: the worker hung for good. A delay before every seek
    makes that fetch certain; a new data folder (a replaced machine) makes the worker
    recover, so its fetch loop runs during the seek."""
    before = event_mix(200, skus=20, seed=21)
    workers.append(WorkerProcess(stack, tmp_path / "w1", standby_replicas=0).start())
    run(produce(stack, event_messages(stack, before)))
    assert_converges(stack, {e["sku"] for e in before}, workers)
    workers[0].stop()

    after = event_mix(200, skus=20, seed=22, start_serial=10_000)
    run(produce(stack, event_messages(stack, after)))
    delayed_seeks = with_faults(FAULT_SEEK_DELAY_S="3")
    restarted = WorkerProcess(stack, tmp_path / "w2", standby_replicas=0, env=delayed_seeks)
    workers.append(restarted.start())
    assert_converges(stack, {e["sku"] for e in before + after}, [restarted])
    assert "fault injected: every seek waits 3 s first" in restarted.log_tail(200_000)


def test_a_second_worker_takes_partitions_and_then_takes_over_from_the_changelog(
    stack: Stack, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    first = WorkerProcess(stack, tmp_path / "w1").start()
    second = WorkerProcess(stack, tmp_path / "w2")
    workers += [first, second]
    with Feeder(stack, batches=16, size=400, pause_s=0.4) as feeder:
        feeder.wait_for(4)
        second.start()
        assert wait_until(lambda: "republished to redis" in second.log_tail(200_000), 60), (
            second.log_tail()
        )
        feeder.wait_for(10)
        first.kill()
    assert_converges(stack, feeder.skus, workers)
    assert all(LOST_WRITES not in w.log_tail(1_000_000) for w in workers)
    # Every record of the changelog is in the new owner's tables: a standby that skipped
    # some (fetched while the flow stopped) took over heads without their older chunks.
    assert second.stop() == 0
    changelog = run(read_topic(state_changelog_topic(stack.env["AVAIL_APP_ID"])))
    assert local_table_image(second.data_dir, STATE_TABLE) == changelog_image(changelog)


def test_a_worker_frozen_past_its_session_is_fenced_and_never_writes_the_partitions_it_lost(
    stack: Stack, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    """A worker frozen in the middle of a changelog write, records sent and not committed,
    past its session timeout: its partitions move to the other worker. Resumed, it must
    not write them any more. Its transaction was aborted when the new owner started the
    partition's producer, and its commit is refused: it stops, publishing nothing of it,
    and the changelog holds exactly what the new owner's table holds."""
    trigger = tmp_path / "freeze-now"
    zombie = WorkerProcess(
        stack, tmp_path / "w1", env=with_faults(FAULT_FREEZE_BEFORE_COMMIT=str(trigger))
    ).start()
    survivor = WorkerProcess(stack, tmp_path / "w2").start()
    workers += [zombie, survivor]
    for worker in workers:
        assert wait_until(lambda w=worker: "republished to redis" in w.log_tail(200_000), 90), (
            worker.log_tail()
        )
    with Feeder(stack, batches=14, size=400, pause_s=0.5) as feeder:
        feeder.wait_for(2)
        trigger.touch()
        assert wait_until(lambda: not trigger.exists(), 30), "the worker never froze"
        zombie_id = f"-{zombie.pid}-"

        def survivor_owns_all() -> bool:
            owners = redis.Redis.from_url(REDIS_URL).hgetall(ready_key(stack.names.redis_namespace))
            return len(owners) == stack.partitions and not any(
                zombie_id in owner.decode() for owner in owners.values()
            )

        assert wait_until(survivor_owns_all, 90), survivor.log_tail()
        feeder.wait_for(8)  # the survivor writes the partitions it took over
        zombie.resume()
        assert wait_until(lambda: not zombie.running, 60), zombie.log_tail()
    said = zombie.log_tail(200_000)
    assert "fault injected: frozen before a changelog commit" in said
    assert "is another worker's now" in said, said
    assert zombie.stop() != 0

    assert_converges(stack, feeder.skus, [survivor])
    assert LOST_WRITES not in survivor.log_tail(1_000_000)
    assert survivor.stop() == 0
    changelog = run(read_topic(state_changelog_topic(stack.env["AVAIL_APP_ID"])))
    assert local_table_image(survivor.data_dir, STATE_TABLE) == changelog_image(changelog)


def test_a_replication_factor_the_cluster_cannot_hold_stops_the_worker_at_start(
    stack: Stack, tmp_path: Path
) -> None:
    worker = WorkerProcess(stack, tmp_path / "w1", env={"AVAIL_REPLICATION_FACTOR": "2"}).start()
    assert wait_until(lambda: not worker.running, 60), worker.log_tail()
    assert worker.stop() == 2
    said = worker.log_tail()
    assert "TopicsNotCreated: AVAIL_REPLICATION_FACTOR is 2, but the cluster has 1 broker" in said
    assert "Traceback" not in said


def test_an_answer_in_redis_newer_than_the_table_raises_the_lost_writes_alarm(
    stack: Stack, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    """Only lost table writes put Redis ahead of the table: the worker says so in its log and
    in a metric, and goes on."""
    worker = WorkerProcess(stack, tmp_path / "w1").start()
    workers.append(worker)
    events = event_mix(60, skus=4, seed=21)
    run(produce(stack, event_messages(stack, events)))
    assert_converges(stack, {e["sku"] for e in events}, workers)
    assert LOST_WRITES not in worker.log_tail(1_000_000)

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.hset(f"{stack.names.redis_namespace}:{{SKU-0}}", "v", 1_000_000)
    finally:
        client.close()
    later = [e | {"event_id": f"later-{e['event_id']}"} for e in events if e["sku"] == "SKU-0"]
    run(produce(stack, event_messages(stack, later[:1])))

    assert wait_until(lambda: LOST_WRITES in worker.log_tail(1_000_000), 30), worker.log_tail()
    assert "SKU-0 at version 1000000" in worker.log_tail(1_000_000)
    metrics = httpx.get(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5).text
    counted = re.search(r"^availability_published_ahead_of_table_total (\S+)$", metrics, re.M)
    assert counted is not None, metrics
    assert float(counted[1]) >= 1, metrics
    assert worker.running


def test_transactions_are_applied_when_committed_never_when_aborted_and_committed_past(
    stack: Stack, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    """A transactional producer leaves a marker after each transaction, and an aborted
    transaction's records stay in the log: the worker reads committed records only, so it
    meets gaps in the offsets. Its commits must still cover every record it applied, past
    the gaps (a worker that booked nothing, or stopped at a gap, would commit no further:
    redelivery of everything after it)."""
    workers.append(WorkerProcess(stack, tmp_path / "w1").start())
    events = event_mix(90, skus=6, seed=3)
    never = event_mix(60, skus=6, seed=4, start_serial=1_000)  # the same SKUs, other events
    kept = [event_messages(stack, events[i::3]) for i in range(3)]  # three transactions
    run(produce_in_transactions(stack, kept[:1], event_messages(stack, never), kept[1:]))

    assert_converges(stack, {e["sku"] for e in events}, workers)
    topics = {stack.names.event_topic(e["type"]) for e in events}
    past_last_record: dict[TopicPartition, int] = {}
    for topic in topics:
        for record in run(read_topic(topic)):
            tp = TopicPartition(topic, record.partition)
            past_last_record[tp] = max(past_last_record.get(tp, 0), record.offset + 1)
    group = stack.env["AVAIL_APP_ID"]

    def committed_past_every_record() -> bool:
        committed = run(committed_offsets(group))
        return all(committed.get(tp, -1) >= end for tp, end in past_last_record.items())

    if not wait_until(committed_past_every_record, 30):
        committed = run(committed_offsets(group))
        short = {
            f"{tp.topic}[{tp.partition}]": (committed.get(tp), end)
            for tp, end in past_last_record.items()
            if committed.get(tp, -1) < end
        }
        pytest.fail(f"committed offsets short of the last record's (committed, wanted): {short}")


Messages = list[tuple[str, bytes, bytes]]


async def produce_in_transactions(
    stack: Stack, before: list[Messages], aborted: Messages, after: list[Messages]
) -> None:
    """A transaction per list of messages; `aborted` in one that is aborted, whose records
    are in the log (between markers) but must never be applied."""
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, transactional_id=f"{stack.tag}tx")
    await producer.start()
    try:
        for messages in before:
            async with producer.transaction():
                await send_all(producer, messages)
        await producer.begin_transaction()
        await send_all(producer, aborted)
        await producer.abort_transaction()
        for messages in after:
            async with producer.transaction():
                await send_all(producer, messages)
    finally:
        await producer.stop()


async def send_all(producer: AIOKafkaProducer, messages: Messages) -> None:
    for topic, key, value in messages:
        await producer.send(topic, value, key=key)


async def committed_offsets(group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return {tp: meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()

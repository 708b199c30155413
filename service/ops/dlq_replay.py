"""`availability dlq-replay`: send dead letters back to the topic they came from, once the
cause is fixed (a producer bug, a window set too tight, a clock put right).

Safe to run twice, in two ways. The replay has a consumer group of its own,
`<AVAIL_APP_ID>-dlq-replay`, and commits, per DLQ partition, the offset after the last
dead letter it has dealt with (produced back and acknowledged by every in-sync replica, or
skipped for good), so a second run starts where the first one ended and replays only newer
dead letters. And a dead letter carries its event's `event_id`, so replaying one twice
(`--from-beginning`, or a run that died between producing and committing) is a duplicate
the worker's dedup ignores, inside the dedup window.

A dead letter a filter leaves out (`--reason-contains`, `--limit`) is not dealt with: its
partition's committed position stays before it, so a later run still finds it, and the
letters of that partition replayed after it are offered again then (dedup again).
A dead letter without a `source_topic` header, or naming a topic that is not an inventory
topic of this deployment, or without a value, is never produced anywhere: it is reported.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from api.streaming.kafka_security import kafka_client_options
from availability import Settings
from availability.topics import Names

from .kafka_reading import ReadStalled, existing_partitions, read_to_end, remaining
from .progress import Progress, described, fail

COMMAND: Final = "dlq-replay"
GROUP_SUFFIX: Final = "-dlq-replay"
REPLAYED_FROM_HEADER: Final = "replayed_from"  # where the worker can tell a replay came from
SKIPPED_SHOWN: Final = 20  # skipped letters listed one by one; the rest only counted
LEFT_OUT: Final = "\x00left out"  # no topic is named so


@dataclass(frozen=True)
class ReplayOptions:
    dry_run: bool = False
    reason_contains: str | None = None
    limit: int | None = None
    from_beginning: bool = False


@dataclass
class Tally:
    read: int = 0
    replayed: Counter[tuple[str, str]] = field(default_factory=Counter)  # (topic, reason)
    skipped: list[str] = field(default_factory=list)  # what was wrong, one per letter
    left_out: int = 0

    @property
    def replayed_total(self) -> int:
        return sum(self.replayed.values())


def replay_group(settings: Settings) -> str:
    return settings.app_id + GROUP_SUFFIX


def header(record: Any, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            try:
                return bytes(value).decode()
            except UnicodeDecodeError:
                return None
    return None


def why_not_replayable(record: Any, names: Names) -> str | None:
    """Why this dead letter can never be produced back, or None when it can."""
    source = header(record, "source_topic")
    if source is None:
        return "no source_topic header (or not UTF-8)"
    if source not in names.inventory_topics:
        return f"source_topic {source!r} is not an inventory topic of this deployment"
    if record.value is None:
        return "no value to replay"
    return None


def wanted(record: Any, options: ReplayOptions) -> bool:
    return options.reason_contains is None or options.reason_contains in (
        header(record, "reason") or ""
    )


def where(record: Any) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"


async def replay_dead_letters(settings: Settings, options: ReplayOptions) -> int:
    names = Names(settings.topic_prefix)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        **kafka_client_options(settings),
        group_id=replay_group(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = (
        None
        if options.dry_run
        else AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            **kafka_client_options(settings),
        )
    )
    try:
        await consumer.start()
        if producer is not None:
            await producer.start()
        return await _replay(consumer, producer, names, settings, options)
    except (KafkaError, ReadStalled, OSError) as exc:
        fail(
            COMMAND,
            f"Kafka at {settings.kafka_bootstrap}: {described(exc)}; progress so far is kept",
        )
        return 1
    finally:
        if producer is not None:
            await producer.stop()
        await consumer.stop()


async def _replay(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer | None,
    names: Names,
    settings: Settings,
    options: ReplayOptions,
) -> int:
    dlq = names.dlq_topic
    numbers = existing_partitions(consumer, dlq)
    if not numbers:
        fail(COMMAND, f"topic {dlq} does not exist: check AVAIL_TOPIC_PREFIX")
        return 1
    partitions = [TopicPartition(dlq, p) for p in sorted(numbers)]
    consumer.assign(partitions)
    if options.from_beginning:
        await consumer.seek_to_beginning(*partitions)
    total = await remaining(consumer, partitions)
    tally = Tally()
    progress = Progress(COMMAND)
    progress.say(f"{total} dead letters to read from {dlq} (group {replay_group(settings)})")
    blocked: set[TopicPartition] = set()  # a left-out letter: commit nothing after it
    async for records in read_to_end(consumer, partitions):
        done: dict[TopicPartition, int] = {}
        sends = []
        for record in records:
            if options.limit is not None and tally.replayed_total >= options.limit:
                break
            tp = TopicPartition(record.topic, record.partition)
            destination = sort_out(record, names, options, tally, progress)
            if destination == LEFT_OUT:
                blocked.add(tp)
            elif destination is not None and producer is not None:
                sends.append(await _send(producer, destination, record))
            if tp not in blocked:
                done[tp] = record.offset + 1
        for sent in sends:
            await sent  # acknowledged by every in-sync replica before the commit below
        if producer is not None and done:
            await consumer.commit(done)
        verb = "would be replayed" if options.dry_run else "replayed"
        progress.tick(
            f"{tally.read} of {total} read, {tally.replayed_total} {verb}, "
            f"{len(tally.skipped)} skipped, {tally.left_out} left out"
        )
        if options.limit is not None and tally.replayed_total >= options.limit:
            break
    report(tally, names, options, progress)
    return 0


def sort_out(
    record: Any, names: Names, options: ReplayOptions, tally: Tally, progress: Progress
) -> str | None:
    """Count the letter in; the topic to replay it to, None to skip it (reported), or
    LEFT_OUT when a filter leaves it for a later run."""
    tally.read += 1
    problem = why_not_replayable(record, names)
    if problem is not None:
        tally.skipped.append(f"{where(record)}: {problem}")
        if len(tally.skipped) <= SKIPPED_SHOWN:
            progress.say(f"skipped {where(record)}: {problem}")
        return None
    if not wanted(record, options):
        tally.left_out += 1
        return LEFT_OUT
    source = header(record, "source_topic") or ""
    tally.replayed[(source, header(record, "reason") or "")] += 1
    return source


async def _send(producer: AIOKafkaProducer, topic: str, record: Any) -> Any:
    """Produce the letter's original bytes and key back to its topic; the partition comes
    from the key, as Kafka's default partitioner (and every producer of SKUs) picks it."""
    provenance = where(record).encode()
    return await producer.send(
        topic, record.value, key=record.key, headers=[(REPLAYED_FROM_HEADER, provenance)]
    )


def report(tally: Tally, names: Names, options: ReplayOptions, progress: Progress) -> None:
    verb = "would replay" if options.dry_run else "replayed"
    by_topic: dict[str, Counter[str]] = {}
    for (topic, reason), count in tally.replayed.items():
        by_topic.setdefault(topic, Counter())[reason] += count
    for topic in sorted(by_topic):
        print(f"{verb} {sum(by_topic[topic].values())} to {topic}:")
        for reason, count in by_topic[topic].most_common():
            print(f"  {count:>8}  {reason or '(no reason header)'}")
    if tally.skipped:
        print(f"skipped {len(tally.skipped)}, never produced anywhere:")
        for line in tally.skipped[:SKIPPED_SHOWN]:
            print(f"  {line}")
        if len(tally.skipped) > SKIPPED_SHOWN:
            print(f"  ... and {len(tally.skipped) - SKIPPED_SHOWN} more")
    if options.reason_contains is not None:
        print(f"left out by --reason-contains {options.reason_contains!r}: {tally.left_out}")
    committed = "nothing produced, nothing committed" if options.dry_run else "progress committed"
    summary = (
        f"{verb} {tally.replayed_total}, skipped {len(tally.skipped)}, left out "
        f"{tally.left_out}, of {tally.read} dead letters read from {names.dlq_topic}; {committed}"
    )
    print(f"{COMMAND}: {summary}")
    sys.stdout.flush()
    progress.say("done")

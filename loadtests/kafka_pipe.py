"""A Kafka producer for a locust user, in a process of its own.

    python -m loadtests.kafka_pipe --bootstrap 127.0.0.1:9092 [--topic-prefix P]

Locust monkey-patches the standard library for gevent, and the only Kafka client installed
is aiokafka, whose asyncio loop cannot share a process with gevent's hub. So each
`KafkaEvents` user drives one of these: it writes a batch of events as one JSON array a
line on stdin; this process produces every event to its inventory topic, keyed by SKU
(Kafka's default partitioner, as the API does), with acks=all and an idempotent producer,
and answers one line once all are acknowledged: `ok` or `error <reason>`. End of input
stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from aiokafka import AIOKafkaProducer

from availability.topics import Names


async def pipe(bootstrap: str, names: Names) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2
    )
    await producer.start()
    try:
        while line := await asyncio.to_thread(sys.stdin.buffer.readline):
            try:
                events = json.loads(line)
                sent = [
                    await producer.send(
                        names.event_topic(e["type"]), json.dumps(e).encode(), key=e["sku"].encode()
                    )
                    for e in events
                ]
                await asyncio.gather(*sent)
                answer = "ok"
            except Exception as exc:  # the user reports it as a failed request, and goes on
                answer = f"error {type(exc).__name__}: {exc}".replace("\n", " ")
            sys.stdout.write(answer + "\n")
            sys.stdout.flush()
    finally:
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic-prefix", default="")
    args = parser.parse_args()
    asyncio.run(pipe(args.bootstrap, Names(args.topic_prefix)))


if __name__ == "__main__":
    main()

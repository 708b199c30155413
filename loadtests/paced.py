"""An open-loop client: requests sent at a fixed rate whatever the answers do, on a pool of
keep-alive connections, each one's latency measured from when it was due to its answer. wrk
sends as fast as answers come back, so it cannot say what a given load costs in latency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .stack import HOST

CONNECTIONS = 64  # more than a paced run ever has in flight at once

# What to send: method, path and body (b"" for none).
Request = tuple[str, str, bytes]


class RawConnection:
    """One keep-alive HTTP/1.1 connection with nothing in between: an httpx client spends
    more per request than the request it measures, and at a few hundred requests a second
    its own queueing shows up in the latencies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        return cls(*await asyncio.open_connection(HOST, port))

    async def send(self, method: str, path: str, body: bytes) -> int:
        """The answer's status, once its body is read."""
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(f"{head}\r\n".encode() + body)
        head_bytes = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head_bytes.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in head_bytes.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


async def fixed_rate(
    port: int, rate: int, seconds: float, next_request: Callable[[], Request], expected: int
) -> list[float]:
    """Send `next_request()` `rate` times a second for `seconds`; the latency (ms) of each
    answered with status `expected`, from its scheduled send. Each connection has a sender
    that takes the next due request as soon as it is free: a task per request cost the
    client enough to show in the latencies of a few thousand requests a second."""
    due: asyncio.Queue[tuple[float, Request] | None] = asyncio.Queue()
    lags: list[float] = []

    async def sender(connection: RawConnection) -> None:
        try:
            while (item := await due.get()) is not None:
                scheduled, request = item
                if await connection.send(*request) == expected:
                    lags.append((time.perf_counter() - scheduled) * 1000)
        finally:
            connection.close()

    senders = [
        asyncio.create_task(sender(await RawConnection.open(port))) for _ in range(CONNECTIONS)
    ]
    started = time.perf_counter()
    for n in range(int(rate * seconds)):
        scheduled = started + n / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        due.put_nowait((scheduled, next_request()))
    for _ in senders:
        due.put_nowait(None)  # each sender stops once the requests before it are sent
    await asyncio.gather(*senders)
    return lags

"""An open-loop HTTP/1.1 load generator light enough to share two cores with the server it measures.

Requests leave on a fixed schedule whatever the answers do, and each latency counts
from the request's *scheduled* time, so a server that stalls cannot hide the queue
behind it (coordinated omission). Requests are pre-built bytes sent on kept-alive
connections opened beforehand; a request finding no idle connection waits for one,
and that wait is part of its latency. httpx costs about a millisecond of CPU a
request, which at 400 requests per second on two shared cores would measure the
client instead of the server.
"""

from __future__ import annotations

import asyncio
import re
import time
from urllib.parse import urlsplit


def build(path: str, body: bytes, headers: dict[str, str], host: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}", "Connection: keep-alive"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


DEGRADED = re.compile(rb'"degraded"\s*:\s*true')  # the gate stopped the claim because it could not decide


async def _answer(reader: asyncio.StreamReader) -> str:
    """The answer's status, with " degraded" when the gate answered without deciding (a fast answer that flatters)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return f"{status} degraded" if DEGRADED.search(body) else str(status)


async def paced(
    url: str, path: str, bodies: list[bytes], rate: float, headers: dict[str, str], *, connections: int = 64
) -> tuple[list[float], dict[str, int]]:
    """Send ``bodies`` at ``rate`` per second; the latencies (s, from each schedule) and the count of each answer."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    opened = [await asyncio.open_connection(host, port) for _ in range(connections)]
    for pair in opened:
        idle.put_nowait(pair)
    requests = [build(path, body, headers, f"{host}:{port}") for body in bodies]
    latencies: list[float] = []
    statuses: dict[str, int] = {}

    async def one(request: bytes, scheduled: float) -> None:
        reader, writer = await idle.get()
        writer.write(request)
        status = await _answer(reader)
        latencies.append(time.perf_counter() - scheduled)
        statuses[status] = statuses.get(status, 0) + 1
        idle.put_nowait((reader, writer))

    start = time.perf_counter() + 0.05
    tasks = []
    for i, request in enumerate(requests):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(request, scheduled)))
    await asyncio.gather(*tasks)
    for _, writer in opened:
        writer.close()
    return latencies, statuses

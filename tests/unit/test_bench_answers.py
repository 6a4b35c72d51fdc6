"""The gate bench's open-loop client counts what each answer was, so a run with a fast wrong answer cannot pass:
an error, or a 409 the gate gave without deciding ("degraded"), is its own kind, apart from a decided 200 or 409."""

from __future__ import annotations

import asyncio
import json

from bench import openloop


def test_a_degraded_answer_is_counted_apart_from_a_decided_one() -> None:
    answers = [
        (200, {"effect": "allow"}),
        (409, {"effect": "block", "degraded": False}),
        (409, {"effect": "block", "degraded": True}),
        (400, {"title": "Malformed payload"}),
    ]

    async def run() -> dict[str, int]:
        queue = list(answers)

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while queue:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))  # fmt: skip
                await reader.readexactly(length)
                status, doc = queue.pop(0)
                body = json.dumps(doc).encode()
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            _, statuses = await openloop.paced(f"http://127.0.0.1:{port}", "/gate", [b"{}"] * 4, 200.0, {},
                                               connections=1)  # fmt: skip
        return statuses

    assert asyncio.run(run()) == {"200": 1, "409": 1, "409 degraded": 1, "400": 1}

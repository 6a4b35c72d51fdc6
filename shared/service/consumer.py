"""A consumer of one queue: receive, handle, settle as the handler says, forever.

The local host runs these (``orgguard serve``); in Azure the Functions host receives and a
trigger settles (``functions/bus_triggers.py``), with the same handlers. A handler that raises
is a transient failure (abandon); one whose lock ran out meanwhile is not settled here
(another consumer has the message by now, with a delivery count one higher).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from shared import telemetry
from shared.bus.port import Delivery, LockLost, QueueError, Verdict, WorkQueue, settle
from shared.domain.backoff import delay
from shared.telemetry.lograte import rate_limited

log = rate_limited(logging.getLogger("orgguard.consumer"))

Handler = Callable[[Delivery], Awaitable[Verdict]]


async def consume(queue: WorkQueue, handle: Handler, *, wait_s: float = 1.0, max_messages: int = 1) -> None:
    """Until cancelled: take what ``queue`` delivers to ``handle`` and settle it by the verdict."""
    failures = 0
    while True:
        try:
            got = await asyncio.to_thread(queue.receive, max_messages=max_messages, wait_s=wait_s)
        except QueueError as exc:
            failures += 1
            log.warning("the %s queue is unavailable: %s", queue.name, exc, extra={"rate_key": queue.name})
            await asyncio.sleep(delay(failures, base=0.5, cap=30.0, jitter=0.5))
            continue
        failures = 0
        for delivery in got:
            await handle_one(queue, handle, delivery)


async def handle_one(queue: WorkQueue, handle: Handler, delivery: Delivery) -> Verdict:
    try:
        verdict = await handle(delivery)
    except Exception as exc:  # a bug or an outage the handler did not foresee: give it back, counted
        log.exception("handling a message of the %s queue failed", queue.name)
        verdict = Verdict.abandon(f"{type(exc).__name__}: {exc}")
    if verdict.settle == "dead-letter":
        telemetry.count(telemetry.DEAD_LETTERED, service=queue.name, status=verdict.reason)
        log.warning("message %s of the %s queue dead-lettered: %s", delivery.message_id, queue.name, verdict.reason)
    try:
        await asyncio.to_thread(settle, queue, delivery, verdict)
    except LockLost:
        log.warning("message %s of the %s queue: lock lost before it was settled", delivery.message_id, queue.name)
    except QueueError as exc:
        log.warning("message %s of the %s queue not settled: %s", delivery.message_id, queue.name, exc)
    return verdict

"""Running Dataverse's webhooks to a deadline on a bounded set of threads.

Dataverse waits 60 s for a webhook's answer; the gate answers within its own
deadline (``ORGGUARD_GATE_DEADLINE_S``) whatever the ledger does. The decision
runs on this module's own threads, so a stuck ledger can hold at most
``WORKERS`` of them (never the server's shared pool, which the admin API and
health need), and at most ``WAITING`` decisions wait at once; beyond that a
call is answered at once as undecidable instead of queueing. See
``shared.ledger.deadline`` for how the deadline reaches the ledger's commit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from shared.ledger.deadline import Deadline, DeadlineExceeded, bound

T = TypeVar("T")

WORKERS = 16
WAITING = 64

_pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="orgguard-webhook")
_slots = threading.BoundedSemaphore(WAITING)


class Overloaded(DeadlineExceeded):
    """Too many decisions already wait for the ledger; this one is answered at once."""


async def decide_by(deadline: Deadline, work: Callable[[], T]) -> T:
    """``work()`` on a webhook thread, answered by ``deadline``; ``DeadlineExceeded`` when it could not be."""
    if not _slots.acquire(blocking=False):
        raise Overloaded(f"{WAITING} decisions are already waiting for the ledger")

    def run() -> T:
        try:
            with bound(deadline):
                deadline.check("start deciding")
                return work()
        finally:
            _slots.release()

    future: Future[T] = _pool.submit(run)
    waiting = asyncio.wrap_future(future)
    waiting.add_done_callback(_retrieve)
    try:
        return await asyncio.wait_for(asyncio.shield(waiting), timeout=deadline.remaining())
    except TimeoutError:
        if deadline.abandon():
            raise DeadlineExceeded(f"no decision within {deadline.seconds:g} s") from None
        return await waiting  # the commit was already under way: its answer is a moment away


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Read an abandoned decision's outcome so it is not reported as an unhandled error later."""
    if not future.cancelled():
        future.exception()

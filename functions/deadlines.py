"""Running Dataverse's webhooks to a deadline on a bounded set of threads.

Dataverse waits 60 s for a webhook's answer; the gate answers within its own
deadline (``ORGGUARD_GATE_DEADLINE_S``) whatever the ledger does. A decision on a
free SQLite ledger is made on the event loop itself (``at_once``); one that would
wait runs on this module's own threads, so a stuck ledger can hold at most
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

from shared.ledger.deadline import Deadline, DeadlineExceeded, WouldWait, bound, without_waiting

T = TypeVar("T")

WORKERS = 16
WAITING = 64

_pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="orgguard-webhook")
_slots = threading.BoundedSemaphore(WAITING)


class Overloaded(DeadlineExceeded):
    """Too many decisions already wait for the ledger; this one is answered at once."""


def decides_at_once(ledger: object) -> bool:
    """Whether a decision on ``ledger`` may first be tried on the event loop: SQLite's, whose every wait (this
    process's writer lock, another process's write lock) can be tried without waiting. Table Storage's waits are
    HTTP calls, the memory ledger's a lock it waits for: those decide on the threads only."""
    from shared.ledger.sqlite import SqliteLedger

    return isinstance(ledger, SqliteLedger)


async def decide_by(deadline: Deadline, work: Callable[[], T], *, at_once: bool = False) -> T:
    """``work()`` on a webhook thread, answered by ``deadline``; ``DeadlineExceeded`` when it could not be.

    ``at_once``: first try ``work()`` right here on the event loop, without waiting for anything
    (``without_waiting``): a free ledger decides in a fraction of a millisecond, and the hop to a thread and
    back, and the two threads handing the interpreter lock to each other at every SQLite call, cost more than
    the decision. When it would wait (a lock held, a conflict to back off from, a remote call), nothing was
    recorded and it goes to the threads as before, with what is left of the same deadline."""
    if at_once:
        try:
            with bound(deadline), without_waiting():
                deadline.check("start deciding")
                return work()
        except WouldWait:
            pass
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

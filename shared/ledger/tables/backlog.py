"""Derived work a decision leaves (its journal rolled forward), done on worker threads after the decision returns.

A decision is recorded once its mailbox transaction lands: the journal row in that transaction says what the
indexes and the audit chain must learn; the recovery marker written first here, and ``recover``'s scan for
old journal rows, let any instance find the journal if this one dies. So the gate need not wait for the
roll-forward: ``Backlog`` runs it on a few worker threads of this ledger instance. ``settle`` waits for what
is in flight, so every read through an index on this instance sees the decisions it committed; when more
than ``limit`` roll-forwards wait, the committing thread does its own (the backlog never grows without
bound). Work a dying process leaves is finished from its marker or journal row by ``recover`` (the
housekeeping timer's outbox round), by the mailbox's next reader, or by any instance reading through an
index (``Journals._catch_up``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Final

log = logging.getLogger(__name__)

WORKERS: Final = 4
LIMIT: Final = 256


class Backlog:
    """Roll-forwards in flight on this instance's worker threads."""

    def __init__(self, workers: int = WORKERS, limit: int = LIMIT) -> None:
        self._workers = workers
        self._limit = limit
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[Future[None]] = set()

    def submit(self, work: Callable[[], None]) -> bool:
        """Run ``work`` on a worker thread; False (nothing started) when the backlog is full or closed."""
        with self._lock:
            if len(self._pending) >= self._limit:
                return False
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="orgguard-journal")
            future = self._pool.submit(logged, work)
            self._pending.add(future)
        future.add_done_callback(self._done)
        return True

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def settle(self) -> None:
        """Wait until the work submitted so far is done (at once on a worker: it would wait for itself)."""
        if getattr(_worker, "busy", False):
            return
        with self._lock:
            pending = list(self._pending)
        if pending:
            wait(pending)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        """Finish what is in flight, then stop the workers."""
        self.settle()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


_worker = threading.local()  # busy: this thread is running backlog work


def logged(work: Callable[[], None]) -> None:
    """Run a decision's follow-up ``work``: its failure is logged, never the decision's (its transaction landed)."""
    _worker.busy = True
    try:
        work()
    except Exception:  # the decision stands; its journal row (marked, or found by recover()'s scan) is finished later
        log.exception("ledger journal not rolled forward; recover() will finish it")
    finally:
        _worker.busy = False

"""A time budget that follows one piece of work down to the ledger's commit.

Dataverse cancels a save when its synchronous webhook has not answered within
60 s, so the gate works to a deadline well under that (``ORGGUARD_GATE_DEADLINE_S``)
the way an admission webhook works to its timeout. Two sides share one
``Deadline``:

* the worker thread that decides: every wait on the way (the ledger's write
  lock, SQLite's busy handler, Table Storage's HTTP calls) is cut to what is
  left, and the commit happens only if ``claim_commit`` says there is still
  time -- checked inside the write transaction, right before it commits;
* the HTTP side that answers: at the deadline it calls ``abandon``; if the
  worker has not claimed the commit by then, it never will, so answering
  "could not decide" is the truth, and no decision is recorded that no caller
  received. If the worker got there first, its commit is already under way and
  the answer waits the moment it takes.

The work's deadline is found through a context variable, so the ledger adapters
read it without every port method growing a parameter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import Enum

from shared.ledger.port import LedgerError

DEFAULT_WAIT_S = 30.0  # the longest any ledger writer waits when no deadline was given


class DeadlineExceeded(LedgerError):
    """The work ran out of time before it could finish; nothing was recorded."""


class _State(Enum):
    OPEN = "open"
    COMMITTING = "committing"
    ABANDONED = "abandoned"


class Deadline:
    """``seconds`` from now; the commit must start ``reserve`` before the end, so its answer gets out in time."""

    def __init__(self, seconds: float, *, reserve: float | None = None) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.reserve = min(1.0, seconds * 0.1) if reserve is None else reserve
        self._state = _State.OPEN
        self._lock = threading.Lock()

    def remaining(self) -> float:
        """Seconds left before the deadline (never negative)."""
        return max(0.0, self.at - time.monotonic())

    def working_time(self) -> float:
        """Seconds left for waiting on the way to a commit: the deadline minus the commit's reserve."""
        return max(0.0, self.at - self.reserve - time.monotonic())

    @property
    def committing(self) -> bool:
        return self._state is _State.COMMITTING

    def check(self, what: str) -> None:
        """Raise ``DeadlineExceeded`` when no time is left to wait for ``what``."""
        if self._state is _State.ABANDONED or self.working_time() <= 0:
            raise DeadlineExceeded(f"no time left to {what} within {self.seconds:g} s")

    def claim_commit(self) -> bool:
        """True when the work may commit now; after True the answering side waits for it.

        Asked again for a second try (the first one's answer was lost), it is False once the time is up:
        a commit never starts late, even one that began in time.
        """
        with self._lock:
            if self._state is _State.ABANDONED or self.working_time() <= 0:
                return False
            self._state = _State.COMMITTING
            return True

    def abandon(self) -> bool:
        """The answering side gives up; False when a commit is already under way (wait for it instead)."""
        with self._lock:
            if self._state is _State.COMMITTING:
                return False
            self._state = _State.ABANDONED
            return True


_current: ContextVar[Deadline | None] = ContextVar("orgguard_deadline", default=None)


def current() -> Deadline | None:
    """The deadline of the work running in this context, if it has one."""
    return _current.get()


@contextmanager
def bound(deadline: Deadline) -> Iterator[Deadline]:
    """Run the enclosed work to ``deadline``."""
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)


def wait_budget(default: float = DEFAULT_WAIT_S) -> float:
    """How long a ledger writer may wait now: what the current deadline leaves, else ``default``."""
    deadline = current()
    return default if deadline is None else deadline.working_time()


class WouldWait(LedgerError):
    """Work asked not to wait (``without_waiting``) came to a wait: a lock held, a back-off, a remote call.

    Nothing was recorded; the caller runs the work again where waiting is allowed (the gate: on its threads)."""


_inline: ContextVar[bool] = ContextVar("orgguard_without_waiting", default=False)


@contextmanager
def without_waiting() -> Iterator[None]:
    """Run the enclosed work without any wait: each place that would wait raises ``WouldWait`` instead.

    The gate decides on the server's event loop this way when the ledger is free, which saves the hop to a
    thread and back; a decision that would have to wait goes to the bounded threads (``functions.deadlines``)."""
    token = _inline.set(True)
    try:
        yield
    finally:
        _inline.reset(token)


def waiting_allowed() -> bool:
    """False inside ``without_waiting``."""
    return not _inline.get()


def may_wait(what: str) -> None:
    """Raise ``WouldWait`` inside ``without_waiting``: the work is about to ``what``, which can take a while."""
    if _inline.get():
        raise WouldWait(f"deciding would {what}")

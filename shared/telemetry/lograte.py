"""Rate-limited log lines and paced retries: what keeps an outside party from amplifying OrgGuard's logs.

A client that hangs up mid-body, an org that does not answer, a stuck ledger:
each can repeat as often as someone makes it repeat. Loggers that report such
things carry a ``RateLimited`` filter: the first line of a kind goes out, the
repeats within ``every`` seconds are counted, and the next line that goes out
says how many were left out. A kind is the logger, the message template and
an optional ``rate_key`` given in ``extra`` (an org's name, say), never the
formatted text, so varying details cannot defeat it.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Hashable

from shared.domain.backoff import delay

MAX_KINDS = 1024  # kinds remembered; beyond that the oldest are forgotten


_filters: weakref.WeakSet[RateLimited] = weakref.WeakSet()


class RateLimited(logging.Filter):
    def __init__(self, every: float = 60.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every = every
        self._clock = clock
        self._seen: dict[Hashable, tuple[float, int]] = {}
        self._lock = threading.Lock()
        _filters.add(self)

    def forget(self) -> None:
        with self._lock:
            self._seen.clear()

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, str(record.msg), record.levelno, getattr(record, "rate_key", None))
        now = self._clock()
        with self._lock:
            last, left_out = self._seen.get(kind, (None, 0))
            if last is not None and now - last < self.every:
                self._seen[kind] = (last, left_out + 1)
                return False
            if len(self._seen) >= MAX_KINDS and kind not in self._seen:
                self._seen.pop(next(iter(self._seen)))
            self._seen[kind] = (now, 0)
        if left_out:
            record.msg = f"{record.msg} ({left_out} more like this in the last {self.every:g} s)"
        return True


def rate_limited(logger: logging.Logger, every: float = 60.0) -> logging.Logger:
    """``logger`` with a ``RateLimited`` filter (added once)."""
    if not any(isinstance(f, RateLimited) for f in logger.filters):
        logger.addFilter(RateLimited(every))
    return logger


class Backoff:
    """Per-name pauses that double after each failure (``first`` up to ``longest`` seconds), reset by a success.

    For calls a loop would otherwise repeat every round against something that does not answer.
    """

    def __init__(
        self, first: float = 5.0, longest: float = 300.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.first, self.longest, self._clock = first, longest, clock
        self._state: dict[str, tuple[int, float]] = {}  # name -> (failures in a row, not before)

    def waiting(self, name: str) -> bool:
        return name in self._state and self._clock() < self._state[name][1]

    def failed(self, name: str) -> float:
        """Record a failure; the pause before the next try."""
        failures = self._state.get(name, (0, 0.0))[0] + 1
        pause = delay(failures, base=self.first, cap=self.longest, jitter=0.0)
        self._state[name] = (failures, self._clock() + pause)
        return pause

    def succeeded(self, name: str) -> None:
        self._state.pop(name, None)


def forget_all() -> None:
    """Every filter starts afresh (tests that read the logs)."""
    for rate_filter in list(_filters):
        rate_filter.forget()

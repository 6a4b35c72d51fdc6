"""How long to wait before trying again: one jittered exponential backoff for all of OrgGuard.

Every retry loop (the Dataverse client's, the executor's and the mail delivery's
deferrals, the service's and the tables ledger's conflict retries, the log limiter's
pauses) waits ``base``, ``2 * base``, ``4 * base`` ... capped at ``cap``. Each caller
chooses its own numbers and how much of the wait is random (``jitter``): none for a
delay that is recorded and shown, all of it where writers racing on one row must
spread out, half where a request is retried against a busy server.

Pure: it computes the wait and never sleeps; ``uniform`` is the random source
(``random.uniform`` unless a test gives its own).
"""

from __future__ import annotations

import random
from collections.abc import Callable

Uniform = Callable[[float, float], float]

_MAX_EXPONENT = 1023  # 2.0 ** 1024 overflows a float; any cap is reached long before


def delay(attempt: int, *, base: float, cap: float, jitter: float, uniform: Uniform = random.uniform) -> float:
    """The wait after failed try number ``attempt`` (1 for the first failure): ``base * 2 ** (attempt - 1)``.

    Capped at ``cap``; then the share ``jitter`` (0 to 1) of it is drawn at random, so the
    result lies between ``(1 - jitter) * wait`` and ``wait``.
    """
    if not 0.0 <= jitter <= 1.0:
        raise ValueError("jitter is the random share of the wait, between 0 and 1")
    wait = min(cap, base * 2.0 ** min(attempt - 1, _MAX_EXPONENT))
    if jitter == 0.0:
        return wait
    return wait * (1.0 - jitter) + uniform(0.0, wait * jitter)

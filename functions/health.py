"""``GET /api/health``: the state of each dependency, answered within a second whatever they do.

The checks run on two threads of their own (never the server's shared pool,
which waiting requests may have filled) and are cut off at ``BUDGET_S``: a
ledger that does not answer in time is reported as stuck, not waited for. The
container is never built here on the event loop; a build that failed (bad
settings, an unresolved Key Vault reference) is reported with its reason.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from shared import bootstrap
from shared.domain.model import DomainError
from shared.ledger.deadline import Deadline, bound
from shared.service.deadletters import counts_view

BUDGET_S = 0.9
PING_S = 0.7
COUNT_S = 0.6  # dead letters counted within this, or the last count is given with its age

_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="orgguard-health")
_counter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orgguard-health-counts")
_counting: Future[dict[str, Any]] | None = None
_last: tuple[float, dict[str, Any]] | None = None


async def health_checks() -> dict[str, dict[str, Any]]:
    future = asyncio.get_running_loop().run_in_executor(_pool, _checks)
    try:
        return await asyncio.wait_for(future, timeout=BUDGET_S)
    except TimeoutError:
        reason = f"no answer within {BUDGET_S:g} s (the ledger, or the app still starting, is stuck)"
        return {"ledger": {"ok": False, "error": "Timeout", "reason": reason}}


def _checks() -> dict[str, dict[str, Any]]:
    try:
        c = bootstrap.container()
    except DomainError as exc:
        return {"settings": {"ok": False, "error": type(exc).__name__, "reason": exc.detail}}
    except Exception as exc:
        return {"ledger": {"ok": False, "error": type(exc).__name__, "reason": str(exc)}}
    checks: dict[str, dict[str, Any]] = {}
    try:
        with bound(Deadline(PING_S, reserve=0.0)):  # Table Storage's calls are cut to it too
            c.ledger.ping()
        checks["ledger"] = {"ok": True}
    except Exception as exc:
        checks["ledger"] = {"ok": False, "error": type(exc).__name__, "reason": str(exc)}
    checks["orgs"] = {"ok": len(c.orgs) > 0, "count": len(c.orgs)}
    checks["registration"] = c.registration_health()  # the last check, kept with its time: no org is read here
    return checks


async def dead_letter_counts() -> dict[str, Any] | None:
    """How many dead letters each queue holds, or None without a queue; informational, it never fails health.

    Counting may mean asking Service Bus: one count runs at a time on a thread of its own, and one that
    takes longer than ``COUNT_S`` is reported with the last count and its age (or as not known yet).
    """
    global _counting, _last
    c = bootstrap.built()
    if c is None or (c.bus.work is None and c.bus.inbound is None):
        return None
    if _counting is None or _counting.done():
        _counting = _counter.submit(lambda: counts_view(c.dead_letters().counts()))
    try:
        doc = await asyncio.wait_for(asyncio.wrap_future(_counting), timeout=COUNT_S)
    except TimeoutError:
        if _last is None:
            return {"known": False, "reason": f"not counted within {COUNT_S:g} s"}
        return {**_last[1], "known": True, "age_s": round(time.monotonic() - _last[0], 1)}
    except Exception as exc:
        return {"known": False, "reason": f"{type(exc).__name__}: {exc}"}
    _last = (time.monotonic(), doc)
    return {**doc, "known": True, "age_s": 0.0}

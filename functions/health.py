"""``GET /api/health``: the state of each dependency, answered within a second whatever they do.

The checks run on two threads of their own (never the server's shared pool,
which waiting requests may have filled) and are cut off at ``BUDGET_S``: a
ledger that does not answer in time is reported as stuck, not waited for. The
container is never built here on the event loop; a build that failed (bad
settings, an unresolved Key Vault reference) is reported with its reason.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared import bootstrap
from shared.domain.model import DomainError
from shared.ledger.deadline import Deadline, bound

BUDGET_S = 0.9
PING_S = 0.7

_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="orgguard-health")


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

"""Service protection: a budget of requests per user per window, answered with 429 and Retry-After."""

from __future__ import annotations

import math
import time

from sandbox.odata import THROTTLED, ODataError
from sandbox.state import OrgState, SandboxState

REMAINING = "x-ms-ratelimit-burst-remaining-xrm-requests"
TIME_REMAINING = "x-ms-ratelimit-time-remaining-xrm-requests"


def spend(state: SandboxState, org: OrgState, user_id: str, now: float | None = None) -> dict[str, str]:
    """Take one request from `user_id`'s budget in `org`; the headers to answer, or a 429 ODataError."""
    budget = state.setting(org, "budget")
    if budget is None:
        return {}
    window = float(state.setting(org, "window_s"))
    now = time.monotonic() if now is None else now
    started, used = org.windows.get(user_id, (now, 0))
    if now - started >= window:
        started, used = now, 0
    if used >= int(budget):
        org.counters.throttled += 1
        retry_after = max(1, math.ceil(started + window - now))
        raise ODataError(
            429,
            f"Number of requests exceeded the limit of {budget} over time window of {window:g} seconds.",
            THROTTLED,
            headers={"Retry-After": str(retry_after), REMAINING: "0"},
        )
    org.windows[user_id] = (started, used + 1)
    return {REMAINING: str(int(budget) - used - 1), TIME_REMAINING: "1200000.00"}


def check(state: SandboxState, org: OrgState, user_id: str, now: float | None = None) -> None:
    """Refuse a `$batch` outright when its caller has nothing left; its inner requests spend one by one."""
    budget = state.setting(org, "budget")
    if budget is None:
        return
    window = float(state.setting(org, "window_s"))
    now = time.monotonic() if now is None else now
    started, used = org.windows.get(user_id, (now, 0))
    if now - started < window and used >= int(budget):
        spend(state, org, user_id, now)  # raises the 429 with its Retry-After


def remaining(state: SandboxState, org: OrgState, user_id: str, now: float | None = None) -> dict[str, str]:
    """The budget headers for a `$batch` answer (what is left after its inner requests), as Dataverse sends."""
    budget = state.setting(org, "budget")
    if budget is None:
        return {}
    window = float(state.setting(org, "window_s"))
    now = time.monotonic() if now is None else now
    started, used = org.windows.get(user_id, (now, 0))
    left = int(budget) if now - started >= window else max(0, int(budget) - used)
    return {REMAINING: str(left), TIME_REMAINING: "1200000.00"}

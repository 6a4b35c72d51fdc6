"""Service protection, per user per web server (an org here), as Dataverse enforces it.

Source: "Service protection API limits" (powerapps-docs `developer/data-platform/api-limits.md`):

* three facets, each answered with 429 and `Retry-After` in seconds: the number of requests
  (6,000) and their combined execution time (1,200 s) within a 300 s *sliding* window, and the
  number of concurrent requests (52), which "will immediately return an error";
* "If the application continues to send such demanding requests, the duration will be
  extended": refused requests still arrive, so they stay in the window and push the wait on;
* a `$batch` is one request against the number of requests but adds the execution time of
  all its operations (api-limits.md, "Batch operations ... the combined execution time limit
  will counter this"; execute-batch-operations-using-web-api.md);
* `x-ms-ratelimit-burst-remaining-xrm-requests` (requests left) and
  `x-ms-ratelimit-time-remaining-xrm-requests` (combined duration left) on answers, "for
  debugging purposes".

Execution time is a model: each operation costs `execution_cost_s`, or the request costs the
time the sandbox really spent on it (synchronous webhooks, injected latency) when that is
longer, since a plug-in's computation time "will be added to the initial request".
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from sandbox.odata import ODataError
from sandbox.state import Load, OrgState, SandboxState

REMAINING = "x-ms-ratelimit-burst-remaining-xrm-requests"
TIME_REMAINING = "x-ms-ratelimit-time-remaining-xrm-requests"
TOO_MANY_REQUESTS = "0x80072322"
TOO_MUCH_EXECUTION_TIME = "0x80072321"
TOO_MANY_CONCURRENT = "0x80072326"


@dataclass(frozen=True)
class Limits:
    """An org's service-protection limits as its settings give them now (None: no limit of that kind)."""

    requests: int | None
    execution_s: float | None
    concurrent: int | None
    window_s: float
    cost_s: float

    @classmethod
    def of(cls, state: SandboxState, org: OrgState) -> Limits:
        budget, execution, concurrent = (
            state.setting(org, name) for name in ("budget", "execution_budget_s", "concurrency")
        )
        return cls(
            requests=None if budget is None else int(budget),
            execution_s=None if execution is None else float(execution),
            concurrent=None if concurrent is None else int(concurrent),
            window_s=float(state.setting(org, "window_s")),
            cost_s=float(state.setting(org, "execution_cost_s")),
        )


def _load(org: OrgState, user_id: str, window_s: float, now: float) -> Load:
    """The user's load with everything older than the window dropped."""
    load = org.windows.setdefault(user_id, Load())
    horizon = now - window_s
    while load.arrivals and load.arrivals[0] <= horizon:
        load.arrivals.popleft()
    while load.work and load.work[0][0] <= horizon:
        load.work_s -= load.work.popleft()[1]
    if not load.work:
        load.work_s = 0.0
    return load


def _refuse(org: OrgState, status_message: str, code: str, wait_s: float, extra: dict[str, str]) -> ODataError:
    org.counters.throttled += 1
    headers = {"Retry-After": str(max(1, math.ceil(wait_s))), **extra}
    return ODataError(429, status_message, code, headers)


def admit(state: SandboxState, org: OrgState, user_id: str, now: float | None = None) -> Load:
    """Let one request of `user_id` in (counting it in flight), or raise the 429 Dataverse answers."""
    limits = Limits.of(state, org)
    now = time.monotonic() if now is None else now
    load = _load(org, user_id, limits.window_s, now)
    load.arrivals.append(now)
    if limits.concurrent is not None and load.in_flight >= limits.concurrent:
        raise _refuse(
            org, f"Number of concurrent requests exceeded the limit of {limits.concurrent}.", TOO_MANY_CONCURRENT, 1, {}
        )
    if limits.requests is not None and len(load.arrivals) > limits.requests:
        # the next request gets in once at most budget - 1 arrivals (this one included) are in the window
        wait = load.arrivals[len(load.arrivals) - limits.requests] + limits.window_s - now
        raise _refuse(
            org,
            f"Number of requests exceeded the limit of {limits.requests} over time window of "
            f"{limits.window_s:g} seconds.",
            TOO_MANY_REQUESTS,
            wait,
            {REMAINING: "0"},
        )
    if limits.execution_s is not None and load.work_s >= limits.execution_s:
        excess, wait = load.work_s - limits.execution_s, 0.0
        for finished, seconds in load.work:
            excess -= seconds
            wait = finished + limits.window_s - now
            if excess < 0:
                break
        raise _refuse(
            org,
            f"Combined execution time of incoming requests exceeded limit of {limits.execution_s * 1000:,.0f} "
            f"milliseconds over time window of {limits.window_s:g} seconds. Decrease number of concurrent "
            "requests or reduce the duration of requests and try again later.",
            TOO_MUCH_EXECUTION_TIME,
            wait,
            {TIME_REMAINING: "0.00"},
        )
    load.in_flight += 1
    return load


def release(
    state: SandboxState, org: OrgState, load: Load, operations: int, spent_s: float, now: float | None = None
) -> None:
    """The request is answered: out of flight, and its execution time into the window."""
    load.in_flight = max(0, load.in_flight - 1)
    seconds = max(operations * float(state.setting(org, "execution_cost_s")), spent_s)
    load.work.append((time.monotonic() if now is None else now, seconds))
    load.work_s += seconds


def remaining(state: SandboxState, org: OrgState, user_id: str, now: float | None = None) -> dict[str, str]:
    """The budget headers an answer carries: what is left of each limit that is set."""
    limits = Limits.of(state, org)
    now = time.monotonic() if now is None else now
    load = _load(org, user_id, limits.window_s, now)
    headers: dict[str, str] = {}
    if limits.requests is not None:
        headers[REMAINING] = str(max(0, limits.requests - len(load.arrivals)))
    if limits.execution_s is not None:
        headers[TIME_REMAINING] = f"{max(0.0, limits.execution_s - load.work_s) * 1000:.2f}"
    return headers

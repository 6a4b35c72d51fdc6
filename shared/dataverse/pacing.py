"""Pacing bulk work under each org's service-protection limits.

Dataverse allows each user about 6,000 requests per 5 minutes per web server
(FACTS.md) and answers 429 with ``Retry-After`` past it; every request inside a
``$batch`` counts. OrgGuard's bulk jobs keep under that instead of bouncing off it:

* every response's ``x-ms-ratelimit-burst-remaining-xrm-requests`` (when the
  service sends it) tells the org's pace how much of the window is left; jobs
  size their next batch to it (``allowance``), so a batch does not run into
  429s half way;
* a 429 pauses *every* request to that org until ``Retry-After`` has passed
  (the client retries the refused request itself), so parallel work does not
  keep knocking;
* a 429 also teaches the pace when the window ends, so once the budget is spent
  the next request waits for the new window instead of being refused.

The pace sits in the HTTP client (httpx event hooks), under ``DataverseClient``
and its retries, so reads, the executor's ``$batch`` writes and read-backs are
all paced the same way. Orgs are paced independently: work spreads across them.
The pacer builds the paced HTTP client; the Dataverse client on top of it comes
from the factory it is given (``clients.Connector``).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from shared.dataverse.port import MAX_BATCH, OrgClient, RetryPolicy
from shared.domain.model import Org

REMAINING = "x-ms-ratelimit-burst-remaining-xrm-requests"
TIME_REMAINING = "x-ms-ratelimit-time-remaining-xrm-requests"
DOCUMENTED_BUDGET = 6000  # requests per user per window (FACTS.md)
DOCUMENTED_WINDOW_S = 300.0
_PART = re.compile(rb"^Content-Type:\s*application/http", re.IGNORECASE | re.MULTILINE)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
PacedConnect = Callable[[Org, RetryPolicy, httpx.AsyncClient], OrgClient]
"""Builds ``org``'s client sending through the given (paced) HTTP client, which the pacer closes."""

# Jobs wait out long windows (real Dataverse answers Retry-After in minutes), so their
# clients accept a longer Retry-After than the interactive default.
JOB_RETRY = RetryPolicy(attempts=6, base_delay=0.5, max_delay=DOCUMENTED_WINDOW_S, timeout=120.0)


def request_cost(request: httpx.Request) -> int:
    """What a request spends from the budget: one, or one per operation inside a ``$batch``."""
    if request.url.path.endswith("/$batch"):
        return max(1, len(_PART.findall(request.content)))
    return 1


@dataclass
class OrgPace:
    """One org's budget as the service reports it."""

    name: str
    clock: Clock = time.monotonic
    sleep: Sleep = asyncio.sleep
    remaining: int | None = None  # from the last response's header; None: never told
    resume_at: float = 0.0  # nothing goes out before this (a 429's Retry-After, or the window's end)
    window_ends: float | None = None  # learned from a 429: when the current window ends
    requests: int = 0
    operations: int = 0
    throttled: int = 0
    waited_s: float = 0.0
    _largest: int = 0  # the largest remaining ever seen: a floor for the window's budget

    async def admit(self, cost: int = 1) -> None:
        """Wait until the org may take ``cost`` more operations."""
        now = self.clock()
        if self.remaining is not None and self.remaining < cost and self.window_ends and self.window_ends > now:
            self.resume_at = max(self.resume_at, self.window_ends)
        if self.resume_at > now:
            delay = self.resume_at - now
            self.waited_s += delay
            await self.sleep(delay)
        self.requests += 1
        self.operations += cost
        if self.remaining is not None:
            self.remaining = max(0, self.remaining - cost)  # until the answer says better

    def observe(self, status: int, headers: httpx.Headers | dict[str, str]) -> None:
        """Learn from one answer: the remaining budget, and on 429 when to try again."""
        headers = headers if isinstance(headers, httpx.Headers) else httpx.Headers(headers)
        raw = headers.get(REMAINING)
        if raw is not None and raw.strip().lstrip("-").isdigit():
            self.remaining = max(0, int(raw))
            self._largest = max(self._largest, self.remaining + 1)
            if self.window_ends is not None and self.clock() >= self.window_ends:
                self.window_ends = None
        if status == 429:
            self.throttled += 1
            wait = _seconds(headers.get("retry-after"))
            until = self.clock() + (wait if wait is not None else 1.0)
            self.resume_at = max(self.resume_at, until)
            self.window_ends = until
            self.remaining = 0

    def wait_s(self) -> float:
        """How long before this org takes anything: a 429's Retry-After, or a spent window's end."""
        now = self.clock()
        until = self.resume_at
        if self.remaining is not None and self.remaining <= 0 and self.window_ends:
            until = max(until, self.window_ends)
        return max(0.0, until - now)

    def allowance(self, want: int, *, cap: int = MAX_BATCH) -> int:
        """How many operations to put in the next request: what is left of the window, at least one."""
        want = max(1, min(want, cap))
        if self.remaining is None:
            return want
        if self.remaining <= 0:
            return max(1, min(want, self._largest or 1))  # the next window's worth: it waits for the window
        return max(1, min(want, self.remaining))


def _seconds(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


@dataclass
class Pacer:
    """The paces of every org a job touches, and clients that obey them.

    ``connect`` builds each org's client on the pacer's own HTTP client; the composition
    root (``shared.bootstrap``) hands it over, so the pacer never decides the identity.
    """

    connect: PacedConnect
    retry: RetryPolicy = JOB_RETRY
    clock: Clock = time.monotonic
    sleep: Sleep = asyncio.sleep
    paces: dict[str, OrgPace] = field(default_factory=dict)
    _clients: dict[str, OrgClient] = field(default_factory=dict)
    _http: list[httpx.AsyncClient] = field(default_factory=list)

    def pace(self, org: str) -> OrgPace:
        found = self.paces.get(org)
        if found is None:
            found = self.paces[org] = OrgPace(org, clock=self.clock, sleep=self.sleep)
        return found

    def __call__(self, org: Org) -> OrgClient:
        """A client for ``org`` whose every request is paced (the executor's ``client_for``)."""
        client = self._clients.get(org.name)
        if client is None:
            pace = self.pace(org.name)

            async def before(request: httpx.Request) -> None:
                await pace.admit(request_cost(request))

            async def after(response: httpx.Response) -> None:
                pace.observe(response.status_code, response.headers)

            http = httpx.AsyncClient(
                timeout=self.retry.timeout,
                event_hooks={"request": [before], "response": [after]},
                limits=httpx.Limits(max_connections=8),
            )
            self._http.append(http)
            client = self._clients[org.name] = self.connect(org, self.retry, http)
        return client

    @property
    def requests(self) -> int:
        return sum(p.requests for p in self.paces.values())

    @property
    def throttled(self) -> int:
        return sum(p.throttled for p in self.paces.values())

    def summary(self) -> dict[str, dict[str, float | int | None]]:
        return {
            name: {
                "requests": p.requests,
                "operations": p.operations,
                "throttled": p.throttled,
                "waited_s": round(p.waited_s, 2),
                "remaining": p.remaining,
            }
            for name, p in self.paces.items()
        }

    async def aclose(self) -> None:
        for http in self._http:
            await http.aclose()
        self._http.clear()
        self._clients.clear()


def estimate_seconds(operations: int, requests: int, *, remaining: int | None, budget: int, window_s: float) -> float:
    """How long ``operations`` take at ``budget`` per ``window_s`` when ``remaining`` is left now.

    Dry-run plans show this; ``requests`` at ~0.1 s each is the floor when the budget suffices.
    """
    left = budget if remaining is None else remaining
    floor = requests * 0.1
    if operations <= left:
        return floor
    windows = math.ceil((operations - left) / max(1, budget))
    return max(floor, windows * window_s)

"""Pacing work under each org's service-protection limits.

Dataverse allows each user, per web server, 6,000 requests and 1,200 s of combined
execution time within a sliding 300 s window (FACTS.md, "Checked again") and answers
429 with ``Retry-After`` past either. A ``$batch`` counts **once** against the number of
requests but adds the execution time of every operation inside it. OrgGuard's bulk jobs
and its outbox executor keep under both instead of bouncing off them:

* every answer's ``x-ms-ratelimit-burst-remaining-xrm-requests`` (requests left) and
  ``x-ms-ratelimit-time-remaining-xrm-requests`` (milliseconds of execution time left),
  when the service sends them, tell the org's pace what is left of the window; the time
  header, compared before and after a ``$batch``, also teaches what one operation costs, so
  the next ``$batch`` is sized to what is left (``allowance``) and does not run into 429s half way;
* a 429 pauses *every* request to that org until ``Retry-After`` has passed, as given
  (continued requests would only extend the penalty), so parallel work does not keep knocking;
* a 429 also teaches the pace when the window ends, so once a budget is spent the next
  request waits for the new window instead of being refused.

The pace sits in the HTTP client (httpx event hooks), under ``DataverseClient`` and its
retries, so reads, ``$batch`` writes and read-backs are all paced the same way. Orgs are
paced independently: work spreads across them. The pacer builds the paced HTTP client;
the Dataverse client on top of it comes from the factory it is given (``clients.Connector``).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from shared.dataverse.port import MAX_BATCH, OrgClient, RetryPolicy, Throttled
from shared.dataverse.tls import tls_context
from shared.domain.model import Org

REMAINING = "x-ms-ratelimit-burst-remaining-xrm-requests"
TIME_REMAINING = "x-ms-ratelimit-time-remaining-xrm-requests"
DOCUMENTED_BUDGET = 6000  # requests per user per window (FACTS.md)
DOCUMENTED_TIME_BUDGET_S = 1200.0  # combined execution time per user per window
DOCUMENTED_WINDOW_S = 300.0
FIRST_BATCH = 10  # until an operation's cost is seen: Microsoft advises starting with batches of about 10 (FACTS.md)
_PART = re.compile(rb"^Content-Type:\s*application/http", re.IGNORECASE | re.MULTILINE)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
PacedConnect = Callable[[Org, RetryPolicy, httpx.AsyncClient], OrgClient]
"""Builds ``org``'s client sending through the given (paced) HTTP client, which the pacer closes."""

# Jobs wait out long windows (real Dataverse answers Retry-After in minutes), so their
# clients accept a longer Retry-After than the interactive default.
JOB_RETRY = RetryPolicy(attempts=6, base_delay=0.5, max_delay=DOCUMENTED_WINDOW_S, timeout=120.0)


def operations_in(request: httpx.Request) -> int:
    """How many operations a request carries: one, or one per part of a ``$batch``.

    A ``$batch`` is still one request against the number-of-requests budget; its
    operations are what its execution time is made of.
    """
    if request.url.path.endswith("/$batch"):
        return max(1, len(_PART.findall(request.content)))
    return 1


@dataclass
class OrgPace:
    """One org's budgets as the service reports them: requests, and execution time."""

    name: str
    clock: Clock = time.monotonic
    sleep: Sleep = asyncio.sleep
    patience_s: float | None = None  # the longest admit waits; None: as long as it takes (jobs)
    remaining: int | None = None  # requests left in the window, from the last answer; None: never told
    time_left_s: float | None = None  # execution time left in the window, from the last answer
    op_cost_s: float | None = None  # what one operation costs in execution time, learned from the answers
    resume_at: float = 0.0  # nothing goes out before this (a 429's Retry-After, or the window's end)
    window_ends: float | None = None  # learned from a 429: when the current window ends
    requests: int = 0
    operations: int = 0
    throttled: int = 0
    waited_s: float = 0.0
    _largest: int = 0  # the most requests ever left: a floor for the window's request budget
    _largest_time_s: float = 0.0  # the most execution time ever left: the same for the time budget
    _told_time_s: float | None = None  # the time left as the org last said it (not as estimated since)

    async def admit(self, operations: int = 1) -> None:
        """Wait until the org may take one more request of ``operations`` operations.

        A wait longer than ``patience_s`` is not waited: the request is refused here with
        ``Throttled`` (nothing is sent), and its caller tries again after ``retry_after``.
        """
        now = self.clock()
        if self.window_ends and self.window_ends > now and not self._fits():
            self.resume_at = max(self.resume_at, self.window_ends)
        if self.resume_at > now:
            delay = self.resume_at - now
            if self.patience_s is not None and delay > self.patience_s:
                raise Throttled(
                    f"{self.name} is over its service protection budget for {delay:.0f} s more; nothing was sent",
                    code="held",
                    retry_after=delay,
                )
            self.waited_s += delay
            await self.sleep(delay)
        self.requests += 1
        self.operations += operations
        if self.remaining is not None:  # until the answer says better
            self.remaining = max(0, self.remaining - 1)
        if self.time_left_s is not None and self.op_cost_s is not None:
            self.time_left_s = max(0.0, self.time_left_s - operations * self.op_cost_s)

    def _fits(self) -> bool:
        """Whether one more request fits what is left of both budgets, as far as they are known."""
        if self.remaining is not None and self.remaining < 1:
            return False
        if self.time_left_s is None:
            return True
        # Dataverse refuses a request only once the time is spent (it counts a request's time after it ran),
        # so the request goes in while one operation's worth is left, however many it carries.
        return self.time_left_s > 0 and self.time_left_s >= (self.op_cost_s or 0.0)

    def observe(self, status: int, headers: httpx.Headers | dict[str, str], operations: int = 1) -> None:
        """Learn from one answer to a request of ``operations``: what is left, and on 429 when to try again."""
        headers = headers if isinstance(headers, httpx.Headers) else httpx.Headers(headers)
        told = False
        raw = headers.get(REMAINING)
        if raw is not None and raw.strip().lstrip("-").isdigit():
            self.remaining = max(0, int(raw))
            self._largest = max(self._largest, self.remaining + 1)
            told = True
        left_ms = _seconds(headers.get(TIME_REMAINING))
        if left_ms is not None:
            left = left_ms / 1000.0
            # a $batch's time per operation is what sizes the next $batch; a single request's time is
            # mostly its own overhead (a page of 5,000 rows is one operation), so only batches teach it
            if status < 400 and operations > 1 and self._told_time_s is not None and left < self._told_time_s:
                spent = (self._told_time_s - left) / max(1, operations)
                self.op_cost_s = spent if self.op_cost_s is None else max(self.op_cost_s, spent)
            self.time_left_s = self._told_time_s = left
            self._largest_time_s = max(self._largest_time_s, left)
            told = True
        if told and self.window_ends is not None and self.clock() >= self.window_ends:
            self.window_ends = None
        if status == 429:
            self.throttled += 1
            wait = _seconds(headers.get("retry-after"))
            until = self.clock() + (wait if wait is not None else 1.0)
            self.resume_at = max(self.resume_at, until)
            self.window_ends = until
            if TIME_REMAINING in headers:
                self.time_left_s = 0.0
            else:
                self.remaining = 0

    def wait_s(self) -> float:
        """How long before this org takes anything: a 429's Retry-After, or a spent window's end."""
        now = self.clock()
        until = self.resume_at
        if self.window_ends and not self._fits():
            until = max(until, self.window_ends)
        return max(0.0, until - now)

    def allowance(self, want: int, *, cap: int = MAX_BATCH) -> int:
        """How many operations to put in the next request: what the execution time left holds, at least one.

        The number of requests left does not bound it (a ``$batch`` counts once against it); once
        that is spent, the request waits for the next window whatever its size. An org that reports
        its execution time gets ``FIRST_BATCH`` until the answers show what one operation costs.
        """
        want = max(1, min(want, cap))
        cost = self.op_cost_s
        if self.time_left_s is None:
            return want
        if not cost:  # the org counts execution time, but what one operation costs is not seen yet
            return min(want, FIRST_BATCH)
        left = self.time_left_s if self.time_left_s >= cost else self._largest_time_s  # the next window's worth
        return max(1, min(want, int(left / cost)))


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
    ``patience_s`` bounds how long a request waits for its org's budget (None: a job waits
    as long as it takes; the interactive ``clients.ClientPool`` waits at most its ``max_delay``).
    """

    connect: PacedConnect
    retry: RetryPolicy = JOB_RETRY
    clock: Clock = time.monotonic
    sleep: Sleep = asyncio.sleep
    patience_s: float | None = None
    paces: dict[str, OrgPace] = field(default_factory=dict)
    _clients: dict[str, OrgClient] = field(default_factory=dict)
    _http: list[httpx.AsyncClient] = field(default_factory=list)

    def pace(self, org: str) -> OrgPace:
        found = self.paces.get(org)
        if found is None:
            found = self.paces[org] = OrgPace(org, clock=self.clock, sleep=self.sleep, patience_s=self.patience_s)
        return found

    def __call__(self, org: Org) -> OrgClient:
        """A client for ``org`` whose every request is paced (the executor's ``client_for``)."""
        client = self._clients.get(org.name)
        if client is None:
            pace = self.pace(org.name)

            async def before(request: httpx.Request) -> None:
                await pace.admit(operations_in(request))

            async def after(response: httpx.Response) -> None:
                pace.observe(response.status_code, response.headers, operations_in(response.request))

            http = httpx.AsyncClient(
                timeout=self.retry.timeout,
                verify=tls_context(),
                event_hooks={"request": [before], "response": [after]},
                limits=httpx.Limits(max_connections=8),
            )
            self._http.append(http)
            client = self._clients[org.name] = self.connect(org, self.retry, http)
        return client

    @property
    def requests_sent(self) -> int:
        """Every HTTP request its clients sent, retries included."""
        return sum(c.requests_sent for c in self._clients.values())

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
                "time_left_s": None if p.time_left_s is None else round(p.time_left_s, 2),
            }
            for name, p in self.paces.items()
        }

    async def aclose(self) -> None:
        for http in self._http:
            await http.aclose()
        self._http.clear()
        self._clients.clear()


def estimate_seconds(
    operations: int,
    requests: int,
    *,
    remaining: int | None,
    budget: int,
    window_s: float,
    op_cost_s: float | None = None,
    time_left_s: float | None = None,
    time_budget_s: float = DOCUMENTED_TIME_BUDGET_S,
) -> float:
    """How long ``requests`` carrying ``operations`` take under an org's two budgets.

    Requests count against ``budget`` per ``window_s`` (``remaining`` left now), a ``$batch``
    once; the operations' execution time (``op_cost_s`` each, when the org has shown it)
    against ``time_budget_s`` (``time_left_s`` left now). Dry-run plans show this;
    ``requests`` at ~0.1 s each is the floor when the budgets suffice.
    """
    floor = requests * 0.1
    left = budget if remaining is None else remaining
    windows = math.ceil((requests - left) / max(1, budget)) if requests > left else 0
    if op_cost_s:
        need = operations * op_cost_s
        have = time_budget_s if time_left_s is None else time_left_s
        if need > have:
            windows = max(windows, math.ceil((need - have) / max(1e-9, time_budget_s)))
    return max(floor, windows * window_s)

"""Pacing under service protection, and the read-back that keeps a resumed job from repeating a write."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from shared.dataverse.pacing import REMAINING, TIME_REMAINING, OrgPace, estimate_seconds, operations_in
from shared.dataverse.port import Throttled
from shared.domain.model import Action, ActionKind, DomainError
from shared.service.migration import Selection
from shared.service.rollout import done_in_org


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def pace() -> tuple[OrgPace, Clock]:
    clock = Clock()
    return OrgPace("contoso-na", clock=clock, sleep=clock.sleep), clock


def test_a_429_holds_every_later_request_until_retry_after():
    p, clock = pace()
    p.observe(429, {"Retry-After": "7"})
    asyncio.run(p.admit())
    asyncio.run(p.admit())
    assert clock.slept == [7.0] and p.throttled == 1 and clock.now == 107.0


def test_requests_left_do_not_shrink_a_batch_a_batch_counts_once():
    p, _ = pace()
    assert p.allowance(1000) == 1000  # nothing known: as much as a batch holds
    p.observe(200, {REMAINING: "37"})
    assert p.allowance(1000) == 1000 and p.allowance(5) == 5  # 37 requests left: any of them may be a $batch
    asyncio.run(p.admit(800))
    assert p.remaining == 36 and p.operations == 800 and p.requests == 1


def test_the_execution_time_left_sizes_the_next_batch_once_an_operation_s_cost_is_seen():
    p, _ = pace()
    p.observe(200, {TIME_REMAINING: "60000.00"})  # 60 s of execution time left
    assert p.allowance(1000) == 10  # what an operation costs is not known yet: start with about ten
    p.observe(200, {TIME_REMAINING: "59000.00"})  # one request (a page read, say) took 1 s: its own overhead
    assert p.op_cost_s is None and p.allowance(1000) == 10
    p.observe(200, {TIME_REMAINING: "55000.00"}, operations=80)  # a $batch of 80 took 4 s: 50 ms each
    assert p.op_cost_s == pytest.approx(0.05)
    assert p.allowance(1000) == 1000 and p.allowance(2000, cap=2000) == 1100  # 55 s hold 1,100 at 50 ms
    asyncio.run(p.admit(1000))  # the answer is not in yet: spend the estimate
    assert p.time_left_s == pytest.approx(5.0) and p.allowance(1000) == 100


def test_a_spent_execution_time_waits_for_the_window_and_then_offers_a_window_s_worth():
    p, clock = pace()
    p.observe(200, {TIME_REMAINING: "1000.00"})
    p.observe(200, {TIME_REMAINING: "500.00"}, operations=10)  # 50 ms an operation
    p.observe(429, {"Retry-After": "4", TIME_REMAINING: "0.00"})  # the time is spent, the window ends in 4 s
    assert p.wait_s() == pytest.approx(4.0)
    assert p.allowance(1000) == 20  # the next window's worth: 1 s at 50 ms
    asyncio.run(p.admit(20))
    assert clock.slept == [pytest.approx(4.0)] and p.remaining is None  # the request budget was never the issue


def test_an_impatient_pace_refuses_instead_of_waiting_and_sends_nothing():
    p, clock = pace()
    p.patience_s = 30.0
    p.observe(429, {"Retry-After": "300"})
    with pytest.raises(Throttled) as refused:
        asyncio.run(p.admit())
    assert refused.value.retry_after == pytest.approx(300.0) and refused.value.code == "held"
    assert clock.slept == [] and p.requests == 0
    clock.now += 300
    asyncio.run(p.admit())
    assert p.requests == 1


def test_once_the_window_is_known_a_spent_budget_waits_for_the_next_window_instead_of_knocking():
    p, clock = pace()
    p.observe(200, {REMAINING: "100"})
    p.observe(429, {"Retry-After": "3"})  # learns when the window ends
    clock.now += 3.5  # a new window
    p.observe(200, {REMAINING: "0"})
    p.window_ends = clock.now + 2.0
    asyncio.run(p.admit(10))
    assert clock.slept[-1] == pytest.approx(2.0)


def test_a_batch_is_one_request_of_as_many_operations_as_it_holds():
    body = b"--b\r\nContent-Type: application/http\r\n\r\nPATCH x\r\n--b\r\nContent-Type: application/http\r\n\r\n--b--"
    batch = httpx.Request("POST", "http://127.0.0.1/api/data/v9.2/$batch", content=body)
    assert operations_in(batch) == 2
    assert operations_in(httpx.Request("GET", "http://127.0.0.1/api/data/v9.2/mailboxes")) == 1
    p, _ = pace()
    p.observe(200, {REMAINING: "10"})
    asyncio.run(p.admit(operations_in(batch)))
    assert p.remaining == 9


def test_the_estimate_counts_requests_against_the_request_budget_and_operations_against_the_time():
    assert estimate_seconds(100, 1, remaining=500, budget=6000, window_s=300) == pytest.approx(0.1)
    # 13,000 operations in 13 batches: 13 requests, well within 1,000 left
    assert estimate_seconds(13000, 13, remaining=1000, budget=6000, window_s=300) == pytest.approx(1.3)
    # 7,000 requests: one more window, and 0.1 s a request
    assert estimate_seconds(1000, 7000, remaining=1000, budget=6000, window_s=300) == 700
    assert estimate_seconds(1000, 13000, remaining=1000, budget=6000, window_s=3000) == 6000  # two more windows
    # 100 ms an operation: 13,000 take 1,300 s of execution time, one window past the 1,200 s
    assert estimate_seconds(13000, 13, remaining=None, budget=6000, window_s=300, op_cost_s=0.1) == 300


def _action(kind: ActionKind) -> Action:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return Action("a", "c", "contoso-eu", "m", kind, created_at=at, updated_at=at)


@pytest.mark.parametrize(
    ("kind", "row", "done"),
    [
        (ActionKind.DEMOTE, {"actdeliverymethod": 2, "orgmarkedasprimaryforexchangesync": False}, True),
        (ActionKind.DEMOTE, {"actdeliverymethod": 1, "orgmarkedasprimaryforexchangesync": False}, False),
        (
            ActionKind.PROMOTE,
            {
                "actdeliverymethod": 1,
                "orgmarkedasprimaryforexchangesync": True,
                "testemailconfigurationscheduled": False,
                "testmailboxaccesscompletedon": "2026-01-02T03:04:09Z",
            },
            True,
        ),
        (  # promoted-looking before the action was decided: its Test & Enable is still owed
            ActionKind.PROMOTE,
            {
                "actdeliverymethod": 1,
                "orgmarkedasprimaryforexchangesync": True,
                "testemailconfigurationscheduled": False,
                "testmailboxaccesscompletedon": "2025-11-20T09:30:00Z",
            },
            False,
        ),
        (ActionKind.PROMOTE, {"actdeliverymethod": 2, "orgmarkedasprimaryforexchangesync": True}, False),
    ],
)
def test_a_write_counts_as_done_only_when_the_row_shows_it(kind, row, done):
    assert done_in_org(_action(kind), row) is done


def test_a_selection_is_a_list_or_a_domain_never_both():
    assert Selection.parse(domain="@Contoso.COM").domain == "contoso.com"
    assert Selection.parse(addresses=[" A@x.com", "a@X.com", ""]).addresses == ("a@x.com",)
    with pytest.raises(DomainError):
        Selection.parse(addresses=["a@x.com"], domain="x.com")
    with pytest.raises(DomainError):
        Selection.parse(addresses=["", " "])

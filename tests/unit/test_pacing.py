"""Pacing under service protection, and the read-back that keeps a resumed job from repeating a write."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from shared.dataverse.pacing import REMAINING, OrgPace, estimate_seconds, request_cost
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


def test_the_remaining_budget_sizes_the_next_batch():
    p, _ = pace()
    assert p.allowance(1000) == 1000  # nothing known: as much as a batch holds
    p.observe(200, {REMAINING: "37"})
    assert p.allowance(1000) == 37 and p.allowance(5) == 5
    asyncio.run(p.admit(37))
    assert p.remaining == 0


def test_once_the_window_is_known_a_spent_budget_waits_for_the_next_window_instead_of_knocking():
    p, clock = pace()
    p.observe(200, {REMAINING: "100"})
    p.observe(429, {"Retry-After": "3"})  # learns when the window ends
    clock.now += 3.5  # a new window
    p.observe(200, {REMAINING: "0"})
    p.window_ends = clock.now + 2.0
    asyncio.run(p.admit(10))
    assert clock.slept[-1] == pytest.approx(2.0)
    assert p.allowance(1000) == 101  # a full window's worth, learned from the largest remaining seen


def test_a_batch_costs_one_per_operation_inside_it():
    body = b"--b\r\nContent-Type: application/http\r\n\r\nPATCH x\r\n--b\r\nContent-Type: application/http\r\n\r\n--b--"
    batch = httpx.Request("POST", "http://127.0.0.1/api/data/v9.2/$batch", content=body)
    assert request_cost(batch) == 2
    assert request_cost(httpx.Request("GET", "http://127.0.0.1/api/data/v9.2/mailboxes")) == 1


def test_the_estimate_counts_windows_only_past_the_budget():
    assert estimate_seconds(100, 1, remaining=500, budget=6000, window_s=300) == pytest.approx(0.1)
    assert estimate_seconds(13000, 13, remaining=1000, budget=6000, window_s=300) == 600


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

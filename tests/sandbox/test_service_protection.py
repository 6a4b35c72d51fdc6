"""Service protection as api-limits.md documents it: three facets, a sliding 300 s window, 429 with Retry-After.

The window arithmetic is checked on the throttle itself with an explicit clock (no sleeping); the
concurrency limit, the headers and the settings over HTTP.
"""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import throttle
from sandbox.odata import ODataError
from sandbox.seed import seed
from sandbox.state import OrgState, SandboxState
from tests.sandbox.conftest import api

pytestmark = pytest.mark.sandbox
NA = api("contoso-na")
USER = "00000000-0000-4000-8000-00000000000a"


def world(**values: object) -> tuple[SandboxState, OrgState]:
    state = seed(mailboxes=1, orgs=1)
    for name, value in values.items():
        setattr(state.settings, name, value)
    return state, state.orgs["contoso-na"]


def serve(state: SandboxState, org: OrgState, at: float, operations: int = 1, spent: float = 0.0) -> None:
    load = throttle.admit(state, org, USER, now=at)
    throttle.release(state, org, load, operations, spent, now=at)


def refusal(state: SandboxState, org: OrgState, at: float) -> ODataError:
    with pytest.raises(ODataError) as refused:
        throttle.admit(state, org, USER, now=at)
    assert refused.value.status == 429
    return refused.value


def test_the_defaults_are_dataverses() -> None:
    state, _ = world()
    assert (state.settings.budget, state.settings.window_s) == (6000, 300.0)
    assert (state.settings.execution_budget_s, state.settings.concurrency) == (1200.0, 52)


def test_the_request_window_slides_and_retry_after_says_when_the_next_request_gets_in() -> None:
    state, org = world(budget=3, window_s=10.0)
    for at in (0.0, 4.0, 5.0):
        serve(state, org, at)
    refused = refusal(state, org, 6.0)
    assert refused.code == "0x80072322"
    assert "limit of 3 over time window of 10 seconds" in refused.message
    wait = int(refused.headers["Retry-After"])
    assert wait == math.ceil(4.0 + 10.0 - 6.0)  # not the fixed window's end: the second arrival leaves at 14
    serve(state, org, 6.0 + wait)  # whoever honours Retry-After gets in


def test_requests_sent_while_refused_extend_the_wait() -> None:
    """api-limits.md: "If the application continues to send such demanding requests, the duration will be extended"."""
    state, org = world(budget=2, window_s=10.0)
    serve(state, org, 0.0)
    serve(state, org, 1.0)
    ends = [at + int(refusal(state, org, at).headers["Retry-After"]) for at in (2.0, 3.0, 4.0)]
    assert ends == [11.0, 12.0, 13.0]
    refusal(state, org, 11.5)  # the first answer's end is no longer enough for the one who kept knocking
    serve(state, org, 14.0)


@settings(max_examples=60, deadline=None)
@given(
    budget=st.integers(min_value=1, max_value=6),
    gaps=st.lists(st.floats(min_value=0.0, max_value=4.0), min_size=1, max_size=30),
)
def test_no_window_ever_serves_more_than_the_budget(budget: int, gaps: list[float]) -> None:
    state, org = world(budget=budget, window_s=5.0, execution_budget_s=None, concurrency=None)
    served: list[float] = []
    at = 0.0
    for gap in gaps:
        at += gap
        try:
            serve(state, org, at)
            served.append(at)
        except ODataError as refused:
            assert int(refused.headers["Retry-After"]) >= 1
        assert sum(1 for moment in served if moment > at - 5.0) <= budget


def test_execution_time_counts_every_operation_of_a_batch_and_real_time_when_longer() -> None:
    state, org = world(execution_budget_s=10.0, execution_cost_s=0.5, window_s=60.0)
    serve(state, org, 0.0, operations=12)  # a $batch of 12: 6 s
    assert throttle.remaining(state, org, USER, now=1.0)[throttle.TIME_REMAINING] == "4000.00"
    serve(state, org, 2.0, operations=1, spent=4.5)  # a slow synchronous webhook: the real 4.5 s count
    refused = refusal(state, org, 3.0)
    assert refused.code == "0x80072321"
    assert "exceeded limit of 10,000 milliseconds over time window of 60 seconds" in refused.message
    assert int(refused.headers["Retry-After"]) == 57  # the batch's 6 s leave the window at 60
    serve(state, org, 60.0)


def test_limits_set_to_null_are_off() -> None:
    state, org = world(budget=None, execution_budget_s=None, concurrency=None)
    for at in range(100):
        serve(state, org, float(at), operations=1000)
    assert throttle.remaining(state, org, USER, now=100.0) == {}


async def _many(base_url: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": "Bearer busy"}, timeout=30) as client:
        return await asyncio.gather(*(client.get(NA + "WhoAmI") for _ in range(count)))


def test_concurrent_requests_over_the_limit_are_refused_at_once(base_url: str, control: httpx.Client) -> None:
    control.put("/_sandbox/settings", json={"concurrency": 3})
    control.put("/_sandbox/settings", json={"org": "contoso-na", "latency_ms": 1500})  # all six arrive meanwhile
    answers = asyncio.run(_many(base_url, 6))
    refused = [answer for answer in answers if answer.status_code == 429]
    assert sum(answer.status_code == 200 for answer in answers) == 3 and len(refused) == 3
    for answer in refused:
        assert answer.json()["error"] == {
            "code": "0x80072326",
            "message": "Number of concurrent requests exceeded the limit of 3.",
        }
        assert int(answer.headers["Retry-After"]) >= 1
    assert control.get("/_sandbox/requests").json()["contoso-na"]["throttled"] == 3
    assert all(answer.status_code == 200 for answer in asyncio.run(_many(base_url, 3)))  # the slots came back


def test_answers_carry_the_remaining_budget_headers(admin: httpx.Client, control: httpx.Client) -> None:
    control.put("/_sandbox/settings", json={"budget": 10, "execution_budget_s": 2, "execution_cost_s": 0.25})
    first = admin.get(NA + "WhoAmI")
    second = admin.get(NA + "mailboxes", params={"$top": "1"})
    assert [answer.headers[throttle.REMAINING] for answer in (first, second)] == ["9", "8"]
    assert second.headers[throttle.TIME_REMAINING] == "1500.00"  # both requests' 0.25 s are spent
    control.put("/_sandbox/settings", json={"budget": None, "execution_budget_s": None})
    assert throttle.REMAINING not in admin.get(NA + "WhoAmI").headers


@pytest.mark.parametrize(
    "body",
    [
        {"concurrency": 0},
        {"execution_budget_s": 0},
        {"execution_cost_s": -1},
        {"execution_cost_s": None},
        {"window_s": None},
        {"budget": -1},
    ],
)
def test_bad_protection_settings_are_refused_and_change_nothing(control: httpx.Client, body: dict[str, object]) -> None:
    before = control.get("/_sandbox/settings").json()
    assert control.put("/_sandbox/settings", json=body).status_code == 422
    assert control.get("/_sandbox/settings").json() == before

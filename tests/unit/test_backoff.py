"""The one backoff: its bounds, and that each retry loop waits exactly as it did with its own formula."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.dataverse.port import RetryPolicy
from shared.domain.backoff import delay
from shared.telemetry.lograte import Backoff

attempts = st.integers(min_value=-5, max_value=5000)
bases = st.floats(min_value=1e-6, max_value=1e3)
caps = st.floats(min_value=1e-6, max_value=1e5)
jitters = st.floats(min_value=0.0, max_value=1.0)


def test_the_wait_doubles_from_base_up_to_the_cap() -> None:
    waits = [delay(n, base=0.5, cap=30.0, jitter=0.0) for n in range(1, 10)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


@given(attempts, bases, caps, jitters, st.integers(min_value=0))
def test_the_wait_lies_between_its_fixed_share_and_the_capped_wait(
    attempt: int, base: float, cap: float, jitter: float, seed: int
) -> None:
    draw = random.Random(seed).uniform
    full = delay(attempt, base=base, cap=cap, jitter=0.0)
    waited = delay(attempt, base=base, cap=cap, jitter=jitter, uniform=draw)
    assert 0.0 <= full <= cap
    assert full * (1 - jitter) - 1e-9 <= waited <= full + 1e-9


@given(st.integers(min_value=1, max_value=3000), bases, caps)
def test_a_later_attempt_never_waits_less(attempt: int, base: float, cap: float) -> None:
    assert delay(attempt + 1, base=base, cap=cap, jitter=0.0) >= delay(attempt, base=base, cap=cap, jitter=0.0)


def test_an_endless_retry_loop_waits_the_cap_instead_of_overflowing() -> None:
    assert delay(10**9, base=8.0, cap=300.0, jitter=0.0) == 300.0
    limiter = Backoff(first=5.0, longest=300.0, clock=lambda: 0.0)
    limiter._state["org"] = (5000, 0.0)  # an org that failed 5000 times in a row
    assert limiter.failed("org") == 300.0


@pytest.mark.parametrize("jitter", [-0.1, 1.5, float("nan")])
def test_a_jitter_outside_zero_to_one_is_refused(jitter: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        delay(1, base=1.0, cap=1.0, jitter=jitter)


# ---------------------------------------------------------------------------
# Each loop's former formula, drawn from the same random state: nothing changed in what they wait.


@given(st.integers(min_value=1, max_value=12), st.integers(min_value=0), st.booleans())
def test_the_dataverse_clients_retry_waits_as_before(attempt: int, seed: int, jitter: bool) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0, jitter=jitter)
    random.seed(seed)
    before: float = min(policy.max_delay, policy.base_delay * (2 ** (attempt - 1)))
    old = before / 2 + random.uniform(0, before / 2) if jitter else before
    random.seed(seed)
    assert policy.backoff(attempt) == old


@given(st.integers(min_value=0, max_value=20), st.integers(min_value=0))
def test_the_services_conflict_pause_waits_as_before(attempt: int, seed: int) -> None:
    random.seed(seed)
    old = random.uniform(0, min(0.2, 0.002 * 2**attempt))
    random.seed(seed)
    assert delay(attempt + 1, base=0.002, cap=0.2, jitter=1.0) == old


@given(st.integers(min_value=0, max_value=40), st.integers(min_value=0))
def test_the_tables_ledgers_pause_can_use_it_unchanged(attempt: int, seed: int) -> None:
    random.seed(seed)
    old = random.uniform(0, min(0.25, 0.004 * 2 ** min(attempt, 8)))
    random.seed(seed)
    assert delay(attempt + 1, base=0.004, cap=0.25, jitter=1.0) == old


@given(st.integers(min_value=1, max_value=40), st.floats(0.01, 10.0), st.floats(1.0, 1000.0))
def test_the_executors_and_the_mails_deferral_wait_as_before(attempts: int, base: float, cap: float) -> None:
    assert delay(attempts, base=base, cap=cap, jitter=0.0) == min(cap, base * 2 ** (attempts - 1))


@given(st.integers(min_value=1, max_value=60))
def test_the_log_limiters_pause_waits_as_before(failures: int) -> None:
    limiter = Backoff(first=5.0, longest=300.0, clock=lambda: 0.0)
    for _ in range(failures - 1):
        limiter.failed("org")
    assert limiter.failed("org") == min(300.0, 5.0 * float(2 ** (failures - 1)))

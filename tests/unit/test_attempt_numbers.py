"""Each attempt at an action counts once, however often its round is recorded (a lost answer, recorded again)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared.domain import casework
from shared.domain.model import Action, ActionKind, ActionStatus

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
OUTCOMES = st.sampled_from([
    (ActionStatus.PENDING, "429: throttled"), (ActionStatus.PENDING, "503: unavailable"),
    (ActionStatus.APPLIED, None), (ActionStatus.FAILED, "403: forbidden"),
])  # fmt: skip


def record(action: Action, status: ActionStatus, error: str | None, number: int, at: datetime) -> Action:
    retry_at = at + timedelta(minutes=1) if status is ActionStatus.PENDING else None
    step = casework.attempt(action, None, status=status, error=error, retry_at=retry_at, now=at, number=number)
    return action if step is None else step[0]


@given(rounds=st.lists(st.tuples(OUTCOMES, st.integers(min_value=1, max_value=3)), min_size=1, max_size=8))
def test_a_round_recorded_again_counts_its_attempt_once(
    rounds: list[tuple[tuple[ActionStatus, str | None], int]],
) -> None:
    """Round after round, each recorded ``times`` times: the action ends as if each was recorded once."""
    once = twice = casework.new_action("case-1", "contoso-na", "row-1", ActionKind.DEMOTE, T0)
    for n, ((status, error), times) in enumerate(rounds):
        at = T0 + timedelta(minutes=n)
        number = once.attempts + 1  # the worker leased it with the attempts stored so far
        once = record(once, status, error, number, at)
        for _ in range(times):
            twice = record(twice, status, error, number, at)
        assert twice == once
    ended = [i for i, ((status, _), _) in enumerate(rounds) if status is not ActionStatus.PENDING]
    assert once.attempts == (ended[0] + 1 if ended else len(rounds))

"""One round of the outbox recorded at once (``record_attempts``): the same rules as one attempt at a time.

The executor records a ``$batch``'s results in one call. Whatever the ledger, each action, its case
and the audit log must end as ``record_attempt`` one by one would leave them, a repeated or racing
round must change nothing twice, and an action handed back unattempted must cost no attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from shared.domain.model import Action, ActionStatus, Case, CaseState, Effect, NotFound
from shared.ledger.port import Attempt, Ledger
from shared.service.org_writes import LOST, Baseline
from tests.contract.conftest import T0, Clock, contested

LATER = T0 + timedelta(days=1)
FORBIDDEN = "403: not allowed to update mailbox"


def _story(ledger: Ledger, case: Case) -> tuple[object, ...]:
    """What a person sees of a case once its round is recorded: its state, notes and each action's outcome."""
    stored = ledger.case(case.id)
    assert stored is not None
    return (
        stored.state,
        tuple((h.state, h.note) for h in stored.history),
        tuple((a.kind, a.status, a.attempts, a.last_error, a.next_attempt_at) for a in stored.actions),
    )


def _audited(ledger: Ledger) -> list[tuple[str, str]]:
    return [
        (e.event.kind, str(e.event.data.get("action")))
        for e in ledger.audit_entries()
        if e.event.kind.startswith("action.")
    ]


def test_a_round_leaves_cases_as_one_attempt_at_a_time_would(ledger: Ledger) -> None:
    clock = Clock()
    retry_at = LATER + timedelta(minutes=5)

    def outcomes(cases: list[Case]) -> list[Attempt]:
        (a1, a2), (b1, b2), (c1, _) = (c.actions for c in cases)
        return [
            Attempt(a1.id, ActionStatus.APPLIED),
            Attempt(a2.id, ActionStatus.APPLIED),  # both of one case in one round: applied once, noted once
            Attempt(b1.id, ActionStatus.APPLIED),
            Attempt(b2.id, ActionStatus.FAILED, FORBIDDEN),
            Attempt(c1.id, ActionStatus.PENDING, "429: throttled", retry_at=retry_at),
        ]

    one_by_one = [contested(ledger, clock, effect) for effect in (Effect.BLOCK, Effect.OVERRIDE, Effect.BLOCK)]
    at_once = [contested(ledger, clock, effect) for effect in (Effect.BLOCK, Effect.OVERRIDE, Effect.BLOCK)]
    for a in outcomes(one_by_one):
        ledger.record_attempt(a.action_id, a.status, a.error, retry_at=a.retry_at)
    entries = len(ledger.audit_entries())
    recorded = ledger.record_attempts(outcomes(at_once))

    assert [(a.id, a.status, a.attempts) for a in recorded] == [(a.action_id, a.status, 1) for a in outcomes(at_once)]
    for alone, together in zip(one_by_one, at_once, strict=True):
        assert _story(ledger, together) == _story(ledger, alone)
    assert [ledger.case(c.id).state for c in at_once] == [  # type: ignore[union-attr]
        CaseState.APPLIED, CaseState.FAILED, CaseState.DECIDED,
    ]  # fmt: skip
    assert len(ledger.audit_entries()) == entries + 5  # one entry per attempt, as one at a time writes them
    assert ledger.verify_audit().ok
    pending = {a.id for a in ledger.pending_actions(now=LATER)}
    assert at_once[2].actions[0].id not in pending and at_once[2].actions[1].id in pending


@pytest.mark.parametrize(
    ("status", "error"),
    [(ActionStatus.APPLIED, None), (ActionStatus.PENDING, "429: throttled"), (ActionStatus.FAILED, FORBIDDEN)],
)
def test_a_round_repeated_changes_nothing_the_second_time(ledger: Ledger, status: ActionStatus, error: str) -> None:
    """The ledger's answer was lost and the worker records the same round again: each attempt counts once.

    A deferral (throttled, transient) leaves its action pending, so only which attempt the round
    recorded (``number``, as the executor numbers them) says the second recording is the same one.
    """
    cases = [contested(ledger, Clock(), Effect.BLOCK) for _ in range(3)]
    retry_at = LATER + timedelta(minutes=5) if status is ActionStatus.PENDING else None
    round_ = [
        Attempt(a.id, status, error, retry_at=retry_at, number=a.attempts + 1) for case in cases for a in case.actions
    ]
    ledger.record_attempts(round_)
    stories = [_story(ledger, c) for c in cases]
    entries = ledger.audit_entries()
    again = ledger.record_attempts(round_)
    assert all(a.status is status and a.attempts == 1 for a in again)
    assert [_story(ledger, c) for c in cases] == stories
    assert ledger.audit_entries() == entries


def test_the_next_round_after_a_deferral_counts_its_attempt(ledger: Ledger) -> None:
    """What tells a repeated round apart is the attempt it records, not that the action is still pending."""
    case = contested(ledger, Clock(), Effect.BLOCK)
    demote = case.actions[0]
    first = LATER + timedelta(minutes=1)
    ledger.record_attempts([Attempt(demote.id, ActionStatus.PENDING, "503: unavailable", first, number=1)])
    second = LATER + timedelta(minutes=3)
    (again,) = ledger.record_attempts([Attempt(demote.id, ActionStatus.PENDING, "429: throttled", second, number=2)])
    assert (again.attempts, again.last_error, again.next_attempt_at) == (2, "429: throttled", second)
    # a worker whose lease ran out ends the action with what the org answered, though its attempt was counted
    (done,) = ledger.record_attempts([Attempt(demote.id, ActionStatus.APPLIED, number=2)])
    assert (done.status, done.attempts) == (ActionStatus.APPLIED, 3)
    assert [k for k, _ in _audited(ledger)] == ["action.pending", "action.pending", "action.applied"]


def test_an_unknown_action_in_a_round_writes_nothing(ledger: Ledger) -> None:
    case = contested(ledger, Clock(), Effect.BLOCK)
    before = _story(ledger, case)
    with pytest.raises(NotFound):
        ledger.record_attempts(
            [Attempt(case.actions[0].id, ActionStatus.APPLIED), Attempt("no-such", ActionStatus.APPLIED)]
        )
    assert _story(ledger, case) == before
    assert _audited(ledger) == []


def test_two_workers_recording_the_same_round_at_once_apply_each_action_once(
    ledger: Ledger, instances: Callable[[], Ledger]
) -> None:
    """A worker whose lease ran out and the one that took the actions over both finish the same ``$batch``."""
    cases = [contested(ledger, Clock(), Effect.OVERRIDE) for _ in range(4)]
    round_ = [Attempt(a.id, ActionStatus.APPLIED) for case in cases for a in case.actions]
    workers = [ledger, instances(), instances()]

    def run(n: int) -> list[Action]:
        mine = round_ if n % 2 else list(reversed(round_))
        return list(workers[n % len(workers)].record_attempts(mine))

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(run, range(6)))
    assert all(a.status is ActionStatus.APPLIED and a.attempts == 1 for answer in answers for a in answer)
    for case in cases:
        stored = ledger.case(case.id)
        assert stored is not None and stored.state is CaseState.APPLIED
        assert [h.note for h in stored.history].count("every action applied") == 1
    assert sorted(_audited(ledger)) == sorted(("action.applied", a.action_id) for a in round_)
    assert ledger.verify_audit().ok


def test_a_lost_answer_keeps_its_baseline_for_the_next_attempt(ledger: Ledger) -> None:
    """``org_writes`` reads the row back against the baseline in the recorded error: the round must keep it."""
    case = contested(ledger, Clock(), Effect.OVERRIDE)
    promote = next(a for a in case.actions if a.kind.value == "promote")
    baseline = Baseline('W/"1234"', 3, "2026-11-02T09:00:00Z", False)
    error = f"{LOST} (504: gateway timeout; reading it back: 503: unavailable) {baseline.note()}"
    retry_at = LATER + timedelta(minutes=1)
    (waiting,) = ledger.record_attempts([Attempt(promote.id, ActionStatus.PENDING, error, retry_at=retry_at)])
    stored = next(a for a in ledger.pending_actions(now=retry_at) if a.id == promote.id)
    assert stored.attempts == waiting.attempts == 1
    assert Baseline.from_note(stored.last_error) == baseline
    ledger.record_attempts([Attempt(promote.id, ActionStatus.APPLIED)])
    assert next(a for a in ledger.case(case.id).actions if a.id == promote.id).attempts == 2  # type: ignore[union-attr]


def test_actions_handed_back_cost_no_attempt_and_are_due_when_told(
    ledger: Ledger, instances: Callable[[], Ledger]
) -> None:
    """An org over its budget: the worker gives the lease back instead of letting it run out."""
    clock = Clock()
    cases = [contested(ledger, clock, Effect.BLOCK) for _ in range(2)]
    lease = LATER + timedelta(minutes=10)
    taken = ledger.lease_actions(10, now=LATER, until=lease)
    assert len(taken) == 4
    due = LATER + timedelta(seconds=20)
    entries = ledger.audit_entries()
    back = ledger.record_attempts(
        [Attempt(a.id, ActionStatus.PENDING, retry_at=due, spent=False, lease=lease) for a in taken[:3]]
    )
    assert [(a.attempts, a.next_attempt_at, a.last_error) for a in back] == [(0, due, None)] * 3
    assert ledger.audit_entries() == entries
    assert [_story(ledger, c)[0] for c in cases] == [CaseState.DECIDED] * 2
    other = instances()
    assert [a.id for a in other.lease_actions(10, now=due, until=due + timedelta(minutes=5))] == [
        a.id for a in taken[:3]
    ]

    # a hand-back from a worker whose lease another worker now holds changes nothing
    late = ledger.record_attempts([Attempt(taken[0].id, ActionStatus.PENDING, retry_at=due, spent=False, lease=lease)])
    assert late[0].next_attempt_at == due + timedelta(minutes=5)
    # nor does one for an action already done
    ledger.record_attempts([Attempt(taken[1].id, ActionStatus.APPLIED)])
    done = ledger.record_attempts(
        [Attempt(taken[1].id, ActionStatus.PENDING, retry_at=due, spent=False, lease=due + timedelta(minutes=5))]
    )
    assert (done[0].status, done[0].next_attempt_at) == (ActionStatus.APPLIED, None)

"""The outbox: pending actions, attempts, retries, and the case following its actions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.domain.model import ActionStatus, CaseQuery, CaseState, Effect, NotFound
from shared.ledger.port import Ledger
from tests.contract.conftest import T0, Clock, contested

LATER = T0 + timedelta(days=1)


def test_decided_actions_are_pending_in_the_order_they_were_written(ledger: Ledger) -> None:
    clock = Clock()
    first = contested(ledger, clock, Effect.BLOCK)
    second = contested(ledger, clock, Effect.OVERRIDE)
    contested(ledger, clock, Effect.HOLD)  # no actions
    pending = ledger.pending_actions(now=LATER)
    assert [a.id for a in pending] == [a.id for a in first.actions + second.actions]
    assert all(a.status is ActionStatus.PENDING and a.attempts == 0 for a in pending)
    assert [a.id for a in ledger.pending_actions(limit=3, now=LATER)] == [a.id for a in pending[:3]]


def test_the_case_is_applied_once_every_action_is(ledger: Ledger) -> None:
    case = contested(ledger, Clock(), Effect.BLOCK)
    demote, promote = case.actions
    done = ledger.record_attempt(demote.id, ActionStatus.APPLIED)
    assert (done.status, done.attempts, done.last_error) == (ActionStatus.APPLIED, 1, None)
    assert ledger.case(case.id).state is CaseState.DECIDED  # type: ignore[union-attr]
    assert [a.id for a in ledger.pending_actions(now=LATER)] == [promote.id]
    ledger.record_attempt(promote.id, ActionStatus.APPLIED)
    stored = ledger.case(case.id)
    assert stored is not None and stored.state is CaseState.APPLIED
    assert stored.history[-1].note == "every action applied"
    assert [a.status for a in stored.actions] == [ActionStatus.APPLIED, ActionStatus.APPLIED]
    assert ledger.pending_actions(now=LATER) == []
    assert [c.id for c in ledger.cases(CaseQuery(state=CaseState.APPLIED)).items] == [case.id]


def test_a_failed_action_fails_the_case_and_a_reset_brings_both_back(ledger: Ledger) -> None:
    case = contested(ledger, Clock(), Effect.OVERRIDE)
    demote, promote = case.actions
    ledger.record_attempt(promote.id, ActionStatus.APPLIED)
    failed = ledger.record_attempt(demote.id, ActionStatus.FAILED, "403 Forbidden: not allowed to update mailbox")
    assert failed.last_error == "403 Forbidden: not allowed to update mailbox"
    assert ledger.case(case.id).state is CaseState.FAILED  # type: ignore[union-attr]
    assert [c.id for c in ledger.cases(CaseQuery(state=CaseState.FAILED)).items] == [case.id]
    assert ledger.pending_actions(now=LATER) == []

    again = ledger.reset_action(demote.id, actor="ops@example.com")
    assert again.status is ActionStatus.PENDING and again.attempts == 1
    stored = ledger.case(case.id)
    assert stored is not None and stored.state is CaseState.DECIDED
    assert stored.history[-1].actor == "ops@example.com" and stored.history[-1].note.startswith("retry")
    assert [a.id for a in ledger.pending_actions(now=LATER)] == [demote.id]
    assert ledger.cases(CaseQuery(state=CaseState.FAILED)).items == ()

    ledger.record_attempt(demote.id, ActionStatus.APPLIED)
    assert ledger.case(case.id).state is CaseState.APPLIED  # type: ignore[union-attr]


def test_a_transient_failure_waits_until_its_retry_time(ledger: Ledger) -> None:
    case = contested(ledger, Clock(), Effect.BLOCK)
    demote = case.actions[0]
    retry_at = LATER + timedelta(minutes=5)
    waiting = ledger.record_attempt(demote.id, ActionStatus.PENDING, "429 Too Many Requests", retry_at=retry_at)
    assert waiting.next_attempt_at == retry_at and waiting.attempts == 1
    assert demote.id not in [a.id for a in ledger.pending_actions(now=LATER)]
    assert demote.id in [a.id for a in ledger.pending_actions(now=retry_at)]
    assert ledger.case(case.id).state is CaseState.DECIDED  # type: ignore[union-attr]


def test_every_attempt_is_audited(ledger: Ledger) -> None:
    case = contested(ledger, Clock(), Effect.BLOCK)
    before = ledger.verify_audit().entries
    ledger.record_attempt(case.actions[0].id, ActionStatus.FAILED, "boom")
    ledger.reset_action(case.actions[0].id, actor="ops@example.com")
    entries = ledger.audit_entries(after=before)
    assert [e.event.kind for e in entries] == ["action.failed", "action.retry"]
    assert entries[0].event.data["error"] == "boom" and entries[0].event.subject == case.id
    assert ledger.verify_audit().ok


def test_an_unknown_action_is_not_found(ledger: Ledger) -> None:
    with pytest.raises(NotFound):
        ledger.record_attempt("no-such-action", ActionStatus.APPLIED)
    with pytest.raises(NotFound):
        ledger.reset_action("no-such-action", actor="ops@example.com")


def test_a_late_second_attempt_changes_nothing(ledger: Ledger) -> None:
    case = contested(ledger, Clock(), Effect.BLOCK)
    first = ledger.record_attempt(case.actions[0].id, ActionStatus.APPLIED)
    entries = ledger.verify_audit().entries
    late = ledger.record_attempt(case.actions[0].id, ActionStatus.FAILED, "too late")
    assert late == first and late.attempts == 1
    assert ledger.verify_audit().entries == entries


def test_a_leased_action_is_nobody_elses_until_the_lease_ends(ledger: Ledger, instances) -> None:  # type: ignore[no-untyped-def]
    other = instances()
    case = contested(ledger, Clock(), Effect.OVERRIDE)
    lease_end = LATER + timedelta(minutes=10)
    taken = ledger.lease_actions(10, now=LATER, until=lease_end)
    assert [a.id for a in taken] == [a.id for a in case.actions]
    assert other.lease_actions(10, now=LATER, until=lease_end) == []
    assert ledger.pending_actions(now=LATER) == []
    ledger.record_attempt(taken[0].id, ActionStatus.APPLIED)
    after = lease_end + timedelta(seconds=1)  # the worker holding the second one died: it comes back
    assert [a.id for a in other.lease_actions(10, now=after, until=after + timedelta(minutes=10))] == [taken[1].id]


def test_racing_workers_never_lease_the_same_action(ledger: Ledger, instances) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    clock = Clock()
    made = {a.id for _ in range(3) for a in contested(ledger, clock, Effect.BLOCK).actions}
    workers = [ledger, instances(), ledger, instances()]

    def work(worker: Ledger) -> list[str]:
        return [a.id for a in worker.lease_actions(2, now=LATER, until=LATER + timedelta(minutes=5))]

    with ThreadPoolExecutor(len(workers)) as pool:
        taken = [i for got in pool.map(work, workers) for i in got]
    assert len(taken) == len(set(taken))  # never one action to two workers
    assert set(taken) <= made
    rest = {a.id for a in ledger.lease_actions(10, now=LATER, until=LATER + timedelta(minutes=5))}
    assert set(taken) | rest == made and not set(taken) & rest

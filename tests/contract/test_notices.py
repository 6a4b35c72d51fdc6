"""Notify actions in the outbox, on every ledger: what they carry, and that they never move their case."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from shared.domain import casework
from shared.domain.model import (
    Action,
    ActionKind,
    ActionStatus,
    Case,
    CaseState,
    Change,
    Effect,
    Notice,
    NoticeKind,
)
from shared.ledger.port import Ledger
from tests.contract.conftest import T0, Clock, contested

LATER = T0 + timedelta(days=1)


def notify(case: Case, kind: NoticeKind, *to: str) -> Action:
    """A notice as production adds one to a case: a notify action (``casework.new_action``) carrying it."""
    return replace(casework.new_action(case.id, case.claimant, None, ActionKind.NOTIFY, T0), notice=Notice(kind, to))


def add(ledger: Ledger, case: Case, *actions: Action) -> Case:
    """What the service does for a reminder: the case with more actions, in one commit on its mailbox."""
    view = ledger.mailbox(case.key)
    stored = ledger.case(case.id)
    assert stored is not None
    ledger.commit(Change(case.key, view.version, cases=(replace(stored, actions=(*stored.actions, *actions)),)))
    found = ledger.case(case.id)
    assert found is not None
    return found


def test_a_notice_is_stored_and_read_back_whole(ledger: Ledger) -> None:
    case = contested(ledger, Clock(), Effect.HOLD)
    told = notify(case, NoticeKind.APPROVAL, "group:OrgGuard Approvers", "ops@contoso.com")
    stored = add(ledger, case, told)
    (action,) = stored.actions
    assert action.kind is ActionKind.NOTIFY
    assert action.notice == Notice(NoticeKind.APPROVAL, ("group:OrgGuard Approvers", "ops@contoso.com"))
    assert [a.id for a in ledger.pending_actions(now=LATER)] == [told.id]


def test_a_held_case_stays_held_when_its_notices_are_sent_or_fail(ledger: Ledger) -> None:
    case = contested(ledger, Clock(), Effect.HOLD)
    first, second = notify(case, NoticeKind.STOPPED, "admin:contoso-jp/1"), notify(case, NoticeKind.APPROVAL, "a@b.com")
    add(ledger, case, first, second)
    ledger.record_attempt(first.id, ActionStatus.APPLIED)
    ledger.record_attempt(second.id, ActionStatus.FAILED, "403: Mail.Send missing")
    stored = ledger.case(case.id)
    assert stored is not None and stored.state is CaseState.HELD
    assert {a.status for a in stored.actions} == {ActionStatus.APPLIED, ActionStatus.FAILED}


def test_a_case_settles_on_its_writes_alone(ledger: Ledger) -> None:
    case = contested(ledger, Clock(), Effect.BLOCK)
    told = notify(case, NoticeKind.STOPPED, "admin:contoso-jp/1")
    stored = add(ledger, case, told)
    for write in (a for a in stored.actions if a.writes):
        ledger.record_attempt(write.id, ActionStatus.APPLIED)
    settled = ledger.case(case.id)
    assert settled is not None and settled.state is CaseState.APPLIED  # the notice is still pending
    assert [a.id for a in ledger.pending_actions(now=LATER)] == [told.id]
    ledger.record_attempt(told.id, ActionStatus.FAILED, "sendMail refused")
    after = ledger.case(case.id)
    assert after is not None and after.state is CaseState.APPLIED  # a mail failing does not fail the decision


def test_an_attempt_can_record_how_far_a_large_message_got(ledger: Ledger) -> None:
    case = contested(ledger, Clock(), Effect.HOLD)
    told = notify(case, NoticeKind.APPROVAL, "group:Everyone")
    add(ledger, case, told)
    progress = Notice(NoticeKind.APPROVAL, ("group:Everyone",), ("0a1b2c3d4e5f6a7b",) * 40)
    deferred = ledger.record_attempt(told.id, ActionStatus.PENDING, "503", retry_at=LATER, notice=progress)
    assert deferred.notice == progress and deferred.attempts == 1
    kept = ledger.record_attempt(told.id, ActionStatus.APPLIED)  # no notice given: the stored one stays
    assert kept.notice == progress
    stored = ledger.case(case.id)
    assert stored is not None and stored.actions[0].notice == progress


def test_a_late_second_worker_cannot_change_a_sent_notice(ledger: Ledger) -> None:
    case = contested(ledger, Clock(), Effect.HOLD)
    told = notify(case, NoticeKind.APPROVAL, "a@b.com")
    add(ledger, case, told)
    ledger.record_attempt(told.id, ActionStatus.APPLIED)
    late = ledger.record_attempt(told.id, ActionStatus.FAILED, "lost", notice=Notice(NoticeKind.APPROVAL, ("x@y.com",)))
    assert late.status is ActionStatus.APPLIED and late.notice == Notice(NoticeKind.APPROVAL, ("a@b.com",))

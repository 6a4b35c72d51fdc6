"""A held case is decided exactly once, on every ledger, whoever decides it and however many at once.

Approvers race each other (approve against deny, two approvals, two denials), the
expiry races approvers, bulk decisions race each other, and two operators retry one
failed action: in each race exactly one wins, the others are told the state the case
(or action) is in now, and exactly one set of actions results. The service layer runs
for real (``OrgGuard`` over the ledger under test), from threads and OS processes.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest

from shared.domain import casework
from shared.domain.model import (
    ActionStatus,
    Case,
    CaseQuery,
    CaseState,
    Effect,
    InvalidTransition,
    MailboxKey,
    Origin,
)
from shared.ledger.port import ConcurrencyConflict, Ledger
from shared.service.orgguard import OrgGuard
from tests.contract.conftest import SPAWN, T0, Clock, LedgerSpec, in_processes, needs_processes
from tests.factories import HOLDING_POLICY, claim, registry

DECISION_STATES = {CaseState.DECIDED, CaseState.DENIED, CaseState.EXPIRED}


def service(ledger: Ledger, clock: Callable[..., object] | None = None) -> OrgGuard:
    guard = OrgGuard(ledger=ledger, orgs=registry(), clock=clock or Clock())  # type: ignore[arg-type]
    if guard.policy_text()[0] == 0:
        guard.save_policy(HOLDING_POLICY, actor="test")
    return guard


def held(guard: OrgGuard, n: int | None = None) -> Case:
    """A mailbox owned by contoso-na, then claimed by contoso-jp: held for an approver."""
    key = MailboxKey(f"user{uuid.uuid4().hex[:10] if n is None else n}@contoso.com")
    guard.handle_claim(claim("contoso-na", key=key, op=f"op-{uuid.uuid4()}"))
    # After the fact (Service Bus), so a denial demotes contoso-jp and promotes contoso-na again.
    outcome = guard.handle_claim(claim("contoso-jp", key=key, op=f"op-{uuid.uuid4()}", origin=Origin.SERVICEBUS))
    assert outcome.effect is Effect.HOLD and outcome.case_id
    return guard.case(outcome.case_id)


def decide(guard: OrgGuard, case_id: str, how: str) -> str:
    """One approver's click; the state it left, or ``409:<state now>`` when refused."""
    try:
        if how == "approve":
            return guard.approve(case_id, actor=f"approver-{how}", reason="checked with both admins").state.value
        return guard.deny(case_id, actor=f"approver-{how}", reason="the owner keeps it").state.value
    except InvalidTransition as exc:
        return f"409:{exc.state}"


def assert_decided_once(ledger: Ledger, case_id: str, results: list[str]) -> None:
    winners = [r for r in results if not r.startswith("409:")]
    assert len(winners) == 1, results
    case = ledger.case(case_id)
    assert case is not None and case.state.value == winners[0]
    assert all(r == f"409:{winners[0]}" for r in results if r.startswith("409:")), results
    assert len(case.actions) == 2, "one set of actions: a demote and a promote"
    resolutions = [h for h in case.history if h.state in DECISION_STATES]
    assert len(resolutions) == 1, case.history
    audit = [e.event for e in ledger.audit_entries(limit=10_000) if e.event.kind.startswith("case.")]
    assert [e.data["case"] for e in audit].count(case_id) == 1
    assert ledger.verify_audit().ok


def test_a_decision_from_a_stale_read_of_the_case_is_refused(ledger: Ledger) -> None:
    """The case was read held, then decided by someone else, then the mailbox read: the ledger says no."""
    guard = service(ledger)
    case = held(guard)
    guard.deny(case.id, actor="first", reason="owner keeps it")
    fresh = ledger.mailbox(case.key)
    stale = casework.plan_resolution(
        case, fresh, effect=Effect.OVERRIDE, state=CaseState.DECIDED, actor="second", reason="late", rule="approval",
        now=T0 + timedelta(days=1),
    )  # fmt: skip
    with pytest.raises(ConcurrencyConflict):
        ledger.commit(stale)
    after = ledger.case(case.id)
    assert after is not None and after.state is CaseState.DENIED and len(after.actions) == 2


def test_deciding_a_case_that_is_no_longer_held_answers_its_state(ledger: Ledger) -> None:
    guard = service(ledger)
    case = held(guard)
    guard.approve(case.id, actor="a", reason="ok")
    with pytest.raises(InvalidTransition) as refused:
        guard.deny(case.id, actor="b", reason="no")
    assert refused.value.state == "decided" and refused.value.status == 409
    with pytest.raises(InvalidTransition):
        guard.approve(case.id, actor="c", reason="again")
    assert len(ledger.case(case.id).actions) == 2  # type: ignore[union-attr]


@pytest.mark.slow
@pytest.mark.parametrize("moves", [("approve", "deny"), ("approve", "approve"), ("deny", "deny")])
def test_approvers_racing_in_threads_decide_once(instances: Callable[[], Ledger], moves: tuple[str, str]) -> None:
    first = instances()
    case = held(service(first))
    guards = [service(instances()) for _ in range(6)]  # six app instances, each its own ledger client
    start = threading.Barrier(len(guards))
    results: list[str] = []

    def click(i: int) -> None:
        start.wait()
        results.append(decide(guards[i], case.id, moves[i % 2]))

    threads = [threading.Thread(target=click, args=(i,)) for i in range(len(guards))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert_decided_once(first, case.id, results)


def _process_click(spec: LedgerSpec, case_id: str, how: str, go: object, out: object) -> None:
    ledger = spec.open()
    guard = OrgGuard(ledger=ledger, orgs=registry())
    go.wait()  # type: ignore[attr-defined]
    out.put(decide(guard, case_id, how))  # type: ignore[attr-defined]
    ledger.close()


@pytest.mark.slow
def test_approvers_racing_in_processes_decide_once(spec: LedgerSpec, instances: Callable[[], Ledger]) -> None:
    needs_processes(spec)
    first = instances()
    case = held(service(first))
    go = SPAWN.Barrier(4)
    clicks = [(spec, case.id, how, go) for how in ("approve", "deny", "approve", "deny")]
    results = in_processes(_process_click, clicks, timeout=120)
    assert_decided_once(first, case.id, results)


@pytest.mark.slow
def test_expiry_racing_an_approver_decides_once(instances: Callable[[], Ledger]) -> None:
    first = instances()
    case = held(service(first))
    assert case.expires_at is not None
    late = case.expires_at + timedelta(minutes=1)
    expirer = service(instances(), clock=lambda: late)
    approver = service(instances(), clock=lambda: late)
    start = threading.Barrier(2)
    results: list[str] = []

    def expire() -> None:
        start.wait()
        done = expirer.expire_held()
        results.extend(c.state.value for c in done if c.id == case.id)
        if not any(c.id == case.id for c in done):
            results.append("409:skipped")

    def approve() -> None:
        start.wait()
        results.append(decide(approver, case.id, "approve"))

    threads = [threading.Thread(target=expire), threading.Thread(target=approve)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if not r.startswith("409:")]
    assert len(winners) == 1, results
    stored = first.case(case.id)
    assert stored is not None and stored.state.value == winners[0]
    assert len(stored.actions) == 2


@pytest.mark.slow
def test_bulk_decisions_racing_decide_each_case_once(instances: Callable[[], Ledger]) -> None:
    first = instances()
    guard = service(first)
    cases = [held(guard, n) for n in range(12)]
    bulkers = [service(instances()) for _ in range(2)]
    start = threading.Barrier(2)
    reports = []

    def bulk(i: int) -> None:
        start.wait()
        reports.append(bulkers[i].decide_many(CaseQuery(), approve=i == 0, actor=f"bulk-{i}", reason="tidy up"))

    threads = [threading.Thread(target=bulk, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    decided = [case_id for r in reports for case_id in r.decided]
    assert sorted(decided) == sorted(c.id for c in cases), "every case decided by exactly one of the two"
    for report in reports:
        assert all(state in ("decided", "denied") for _, state, _ in report.skipped)
    for case in cases:
        stored = first.case(case.id)
        assert stored is not None and stored.state in (CaseState.DECIDED, CaseState.DENIED)
        assert len(stored.actions) == 2
    assert first.count_cases(CaseQuery(state=CaseState.HELD)) == 0


def test_bulk_refuses_a_filter_for_another_state_and_a_blank_reason(ledger: Ledger) -> None:
    from shared.domain.model import DomainError

    guard = service(ledger)
    held(guard)
    with pytest.raises(DomainError):
        guard.decide_many(CaseQuery(state=CaseState.FAILED), approve=True, actor="a", reason="x")
    with pytest.raises(DomainError):
        guard.decide_many(CaseQuery(), approve=True, actor="a", reason="   ")
    assert ledger.count_cases(CaseQuery(state=CaseState.HELD)) == 1


# --- an operator's retry of a failed action -------------------------------------------------------


def failed_action(guard: OrgGuard, ledger: Ledger) -> tuple[Case, str]:
    case = held(guard)
    guard.deny(case.id, actor="a", reason="owner keeps it")
    decided = ledger.case(case.id)
    assert decided is not None
    demote, promote = decided.actions
    ledger.record_attempt(promote.id, ActionStatus.APPLIED)
    ledger.record_attempt(demote.id, ActionStatus.FAILED, "403: not allowed")
    return decided, demote.id


def test_two_retries_of_one_action_one_wins(instances: Callable[[], Ledger]) -> None:
    first = instances()
    case, action_id = failed_action(service(first), first)
    guards = [service(instances()) for _ in range(4)]
    start = threading.Barrier(len(guards))
    results: list[str] = []

    def retry(guard: OrgGuard) -> None:
        start.wait()
        try:
            results.append(guard.retry_action(action_id, actor="ops@example.com").status.value)
        except InvalidTransition as exc:
            results.append(f"409:{exc.state}")

    threads = [threading.Thread(target=retry, args=(g,)) for g in guards]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["409:pending"] * 3 + ["pending"], results
    retries = [e.event for e in first.audit_entries(limit=10_000) if e.event.kind == "action.retry"]
    assert len(retries) == 1 and retries[0].actor == "ops@example.com"
    assert first.case(case.id).state is CaseState.DENIED  # type: ignore[union-attr]


def test_only_a_failed_action_can_be_retried(ledger: Ledger) -> None:
    guard = service(ledger)
    case = held(guard)
    guard.approve(case.id, actor="a", reason="ok")
    pending = ledger.case(case.id).actions[0]  # type: ignore[union-attr]
    with pytest.raises(InvalidTransition) as refused:
        guard.retry_action(pending.id, actor="ops")
    assert refused.value.state == "pending"
    ledger.record_attempt(pending.id, ActionStatus.APPLIED)
    with pytest.raises(InvalidTransition) as again:
        guard.retry_action(pending.id, actor="ops")
    assert again.value.state == "applied"


# --- where a resolved case rests ----------------------------------------------------------------


def test_a_denied_case_stays_denied_once_its_actions_are_applied(ledger: Ledger) -> None:
    guard = service(ledger)
    case, action_id = failed_action(guard, ledger)
    assert ledger.case(case.id).state is CaseState.FAILED  # type: ignore[union-attr]
    guard.retry_action(action_id, actor="ops@example.com")
    back = ledger.case(case.id)
    assert back is not None and back.state is CaseState.DENIED
    assert (back.history[-1].actor, back.history[-1].state) == ("ops@example.com", CaseState.DENIED)
    ledger.record_attempt(action_id, ActionStatus.APPLIED)
    done = ledger.case(case.id)
    assert done is not None and done.state is CaseState.DENIED
    assert done.history[-1].note == "every action applied"
    assert [c.id for c in ledger.cases(CaseQuery(state=CaseState.DENIED)).items] == [case.id]
    assert ledger.count_cases(CaseQuery(state=CaseState.APPLIED)) == 0


def test_an_approved_case_ends_applied(ledger: Ledger) -> None:
    guard = service(ledger)
    case = held(guard)
    approved = guard.approve(case.id, actor="a", reason="ok")
    for action in approved.actions:
        ledger.record_attempt(action.id, ActionStatus.APPLIED)
    assert ledger.case(case.id).state is CaseState.APPLIED  # type: ignore[union-attr]


# --- listing, counting, the overview -------------------------------------------------------------


def test_open_search_total_and_overview(ledger: Ledger) -> None:
    guard = service(ledger)
    waiting = [held(guard, n) for n in range(3)]
    denied = held(guard, 10)
    guard.deny(denied.id, actor="a", reason="no")
    for action in ledger.case(denied.id).actions:  # type: ignore[union-attr]
        ledger.record_attempt(action.id, ActionStatus.APPLIED)
    approved = held(guard, 20)
    guard.approve(approved.id, actor="a", reason="yes")  # decided, actions pending: still open

    open_ids = {c.id for c in ledger.cases(CaseQuery(open=True, limit=500)).items}
    assert open_ids == {c.id for c in waiting} | {approved.id}
    assert ledger.count_cases(CaseQuery(open=True)) == 4
    assert ledger.count_cases(CaseQuery(state=CaseState.HELD)) == 3
    assert ledger.count_cases(CaseQuery()) == 5
    assert ledger.count_cases(CaseQuery(open=True, org="contoso-jp")) == 4
    assert ledger.count_cases(CaseQuery(state=CaseState.DENIED, org="contoso-eu")) == 0

    found = ledger.cases(CaseQuery(search="USER1"))
    assert {c.key.address for c in found.items} == {"user1@contoso.com", "user10@contoso.com"}
    assert ledger.count_cases(CaseQuery(search="user1")) == 2
    assert ledger.count_cases(CaseQuery(search="user1", state=CaseState.HELD)) == 1

    page = ledger.cases(CaseQuery(open=True, limit=2))
    rest = ledger.cases(CaseQuery(open=True, limit=2, cursor=page.next))
    assert len(page.items) == 2 and len(rest.items) == 2 and rest.next is None
    assert {c.id for c in page.items + rest.items} == open_ids

    overview = ledger.overview()
    assert overview.counts["held"] == 3 and overview.counts["denied"] == 1 and overview.counts["decided"] == 1
    assert overview.counts["open"] == 4 and overview.counts["failed"] == 0
    assert overview.by_org["contoso-jp"] == {"held": 3, "failed": 0, "open": 4}
    assert overview.by_org["contoso-na"]["open"] == 4
    assert overview.oldest_held is not None and overview.oldest_held.id == waiting[0].id
    assert overview.oldest_held.expires_at == replace(waiting[0]).expires_at

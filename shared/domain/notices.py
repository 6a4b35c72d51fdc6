"""Who is told what, and when: the notify actions a decision, a resolution or a reminder adds to a case.

Pure, like ``casework``: the service layer calls these while it plans a change,
so the notices are written in the same commit as the decision they tell of
(outbox). Recipients stay as the policy names them (``group:<name>``, an
address, ``admin:<org>/<systemuser id>``) until the mail goes out; resolving
them needs Graph and the Web API, which a decision must not wait for.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from shared.domain.casework import Planned, new_action
from shared.domain.model import Action, ActionKind, Case, CaseState, Change, Decision, Effect, Notice, NoticeKind
from shared.domain.policy import Policy

ADMIN_PREFIX = "admin:"


def admin(org: str, user_id: str) -> str:
    """The recipient naming a Dataverse user by org and systemuser id (its address is read when sending)."""
    return f"{ADMIN_PREFIX}{org}/{user_id}"


def on_claim(
    case: Case, decision: Decision, policy: Policy, *, user_id: str | None, now: datetime
) -> tuple[Action, ...]:
    """Notices for a new case: the stopped admin, the approvers of a held case, the owner's contact."""
    n = policy.notify
    if decision.dry_run:
        return ()
    out: list[Action] = []
    if n.stopped_admin and user_id and decision.effect in (Effect.BLOCK, Effect.HOLD):
        out.append(_notice(case, case.claimant, NoticeKind.STOPPED, (admin(case.claimant, user_id),), now))
    if decision.effect is Effect.HOLD and n.approvers and policy.approval.approvers:
        out.append(_notice(case, case.claimant, NoticeKind.APPROVAL, tuple(policy.approval.approvers), now))
    if decision.effect is Effect.WARN:  # Dataverse shows nobody anything: the admin and the owner hear it here
        admins = (admin(case.claimant, user_id),) if n.stopped_admin and user_id else ()
        to = (*admins, *n.owners.get(case.owner or "", []))
        if to:
            out.append(_notice(case, case.claimant, NoticeKind.WARNED, to, now))
    out += _carried_out(case, decision.effect, policy, now)
    return tuple(out)


def on_resolution(case: Case, effect: Effect, policy: Policy, *, now: datetime) -> tuple[Action, ...]:
    """Notices for a held case resolved (``case`` already moved): expiry, and the decision to the stopped admin."""
    n = policy.notify
    out: list[Action] = []
    stopped = stopped_admins(case)
    if case.state is CaseState.EXPIRED:
        if n.expired:
            to = (*policy.approval.approvers, *stopped) if n.approvers else stopped
            if to:
                out.append(_notice(case, case.claimant, NoticeKind.EXPIRED, tuple(to), now))
    elif stopped and n.stopped_admin:
        out.append(_notice(case, case.claimant, NoticeKind.RESOLVED, stopped, now))
    out += _carried_out(case, effect, policy, now)
    return tuple(out)


def reminder(case: Case, policy: Policy, *, now: datetime) -> Action | None:
    """The approvers' reminder for a held case, once it is due and if it was not added before."""
    n, approvers = policy.notify, tuple(policy.approval.approvers)
    if case.state is not CaseState.HELD or case.expires_at is None or not (n.approvers and approvers):
        return None
    if n.remind_before is None or any(a.notice and a.notice.kind is NoticeKind.REMINDER for a in case.actions):
        return None
    lead = min(n.remind_before, (case.expires_at - case.created_at) / 2)  # a short expiry reminds at half-time
    if now < case.expires_at - lead or now >= case.expires_at:
        return None
    return _notice(case, case.claimant, NoticeKind.REMINDER, approvers, now)


def stopped_admins(case: Case) -> tuple[str, ...]:
    """The admins the case told it stopped (to tell them again how it ended)."""
    found = [a.notice.to for a in case.actions if a.notice and a.notice.kind is NoticeKind.STOPPED]
    return tuple(dict.fromkeys(r for to in found for r in to))


def with_notices(planned: Planned, actions: tuple[Action, ...]) -> Planned:
    """``planned`` with ``actions`` added to its case, in its change as well."""
    if not actions or planned.case is None:
        return planned
    case = replace(planned.case, actions=(*planned.case.actions, *actions))
    return replace(planned, case=case, change=added(planned.change, case.id, actions))


def added(change: Change, case_id: str, actions: tuple[Action, ...]) -> Change:
    """``change`` with ``actions`` added to the case ``case_id`` it writes."""
    if not actions:
        return change
    cases = tuple(replace(c, actions=(*c.actions, *actions)) if c.id == case_id else c for c in change.cases)
    return replace(change, cases=cases)


def _carried_out(case: Case, effect: Effect, policy: Policy, now: datetime) -> list[Action]:
    """The owner org's contact hears of a block or override (sent once the case's writes are done)."""
    contacts = policy.notify.owners.get(case.owner or "", [])
    if effect not in (Effect.BLOCK, Effect.OVERRIDE) or not contacts or case.owner is None:
        return []
    return [_notice(case, case.owner, NoticeKind.CARRIED_OUT, tuple(contacts), now)]


def _notice(case: Case, org: str, kind: NoticeKind, to: tuple[str, ...], now: datetime) -> Action:
    action = new_action(case.id, org, None, ActionKind.NOTIFY, now)
    return replace(action, notice=Notice(kind, tuple(dict.fromkeys(to))))

"""Pure case work: what a decision writes, and how a case moves on.

No I/O here. The service layer reads the ledger, calls these to compute a
``Change``, and commits it; on a concurrency conflict it reads again and calls
these again, so everything here must be a function of its arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.domain.model import (
    ACT_ONLY,
    RESOLVED_STATES,
    Action,
    ActionKind,
    ActionStatus,
    AuditEvent,
    Case,
    CaseState,
    Change,
    Claim,
    ClaimRecord,
    Decision,
    Effect,
    EventOutcome,
    Fence,
    InvalidTransition,
    MailboxView,
    Notice,
    Ownership,
    Unheard,
    new_id,
)


@dataclass(frozen=True)
class Planned:
    """A change ready to commit, and what the caller answers once it is committed."""

    change: Change
    decision: Decision
    case: Case | None


def new_action(
    case_id: str,
    org: str,
    mailbox_id: str | None,
    kind: ActionKind,
    now: datetime,
    *,
    fence: tuple[Fence, ...] = ACT_ONLY,
) -> Action:
    """A pending write to one org; a missing row id is looked up by address when it runs.

    ``fence`` is the policy's when it is decided: what a demote sets to None (and a promote turns back on)."""
    return Action(
        id=new_id(),
        case_id=case_id,
        org=org,
        mailbox_id=mailbox_id or None,
        kind=kind,
        created_at=now,
        updated_at=now,
        fence=fence if kind is not ActionKind.NOTIFY else ACT_ONLY,
    )


def actions_for(
    case: Case, effect: Effect, now: datetime, *, fence: tuple[Fence, ...] = ACT_ONLY
) -> tuple[Action, ...]:
    """The writes that carry out ``effect`` for ``case``.

    block: the claimant is demoted (ACT None, check box off; email None too when
    ``fence`` says so); after the fact the owner is promoted again (check box + Test &
    Enable) so Exchange points back to it. override: the old owner is demoted and the
    claimant promoted, which makes Exchange follow under every Test & Enable semantics.
    """
    if effect is Effect.BLOCK:
        acts = [new_action(case.id, case.claimant, case.claimant_mailbox_id, ActionKind.DEMOTE, now, fence=fence)]
        if case.origin.after_the_fact and case.owner:
            acts.append(new_action(case.id, case.owner, case.owner_mailbox_id, ActionKind.PROMOTE, now, fence=fence))
        return tuple(acts)
    if effect is Effect.OVERRIDE:
        acts = []
        if case.owner and case.owner != case.claimant:
            acts.append(new_action(case.id, case.owner, case.owner_mailbox_id, ActionKind.DEMOTE, now, fence=fence))
        acts.append(new_action(case.id, case.claimant, case.claimant_mailbox_id, ActionKind.PROMOTE, now, fence=fence))
        return tuple(acts)
    return ()


def _state_for(decision: Decision) -> CaseState:
    if decision.effect is Effect.HOLD and not decision.dry_run:
        return CaseState.HELD
    return CaseState.DECIDED


def plan_claim(
    claim: Claim,
    view: MailboxView,
    decision: Decision,
    *,
    now: datetime,
    expires_after: timedelta,
    fence: tuple[Fence, ...] = ACT_ONLY,
    unheard: Unheard | None = None,
) -> Planned:
    """Everything recording ``decision`` on ``claim`` writes, against ``view`` (a demote fences ``fence``).

    ``unheard``: the claim's save skipped the gate; its case and audit entry say how it was found and who saved.
    """
    owner = view.ownership
    contested = owner is not None and owner.owner != claim.org
    case = None
    ownership = None
    if not contested:
        ownership = _uncontested_ownership(claim, owner, now)
    else:
        assert owner is not None
        case = _open_case(claim, owner, decision, now=now, expires_after=expires_after, fence=fence, unheard=unheard)
        if decision.effect is Effect.OVERRIDE and not decision.dry_run:
            ownership = Ownership(
                claim.key, claim.org, now, f"rule:{decision.rule}", owner.version + 1, claim.mailbox_id or None
            )
    event = EventOutcome(claim.event_key, decision.effect, case.id if case else None, now)
    record = ClaimRecord(
        claim.key, claim.org, claim.kind, claim.origin, claim.event_key, decision.effect, case.id if case else None, now
    )
    facts: dict[str, object] = {
        "effect": decision.effect.value,
        "rule": decision.rule,
        "origin": claim.origin.value,
        "kind": claim.kind.value,
        "case": case.id if case else None,
        "dry_run": decision.dry_run,
        **(unheard.facts() if unheard else {}),
    }
    if decision.exemption:
        facts["exemption"] = decision.exemption
    if ownership is not None and (owner is None or owner.owner != ownership.owner):
        # One entry per decision: the ownership change it made travels with it.
        facts.update(owner=ownership.owner, previous=owner.owner if owner else None, how=ownership.how)
    audit = [AuditEvent("claim.decided", claim.key.address, claim.org, facts, now)]
    change = Change(claim.key, view.version, ownership, event, record, (case,) if case else (), tuple(audit))
    return Planned(change, decision, case)


def _uncontested_ownership(claim: Claim, owner: Ownership | None, now: datetime) -> Ownership | None:
    if owner is None:
        return Ownership(claim.key, claim.org, now, "first-claim", 1, claim.mailbox_id or None)
    if claim.mailbox_id and owner.mailbox_id != claim.mailbox_id:
        return replace(owner, mailbox_id=claim.mailbox_id)
    return None


def _open_case(
    claim: Claim,
    owner: Ownership,
    decision: Decision,
    *,
    now: datetime,
    expires_after: timedelta,
    fence: tuple[Fence, ...],
    unheard: Unheard | None,
) -> Case:
    state = _state_for(decision)
    case = Case.opened(
        claim.key,
        owner,
        claim.org,
        claim.mailbox_id,
        claim.kind,
        claim.origin,
        decision,
        state=state,
        actor="policy",
        at=now,
        expires_at=now + expires_after if state is CaseState.HELD else None,
        unheard=unheard,
    )
    if decision.acts:
        case = replace(case, actions=actions_for(case, decision.effect, now, fence=fence))
    return case


def plan_resolution(
    case: Case,
    view: MailboxView,
    *,
    effect: Effect,
    state: CaseState,
    actor: str,
    reason: str,
    rule: str,
    now: datetime,
    fence: tuple[Fence, ...] = ACT_ONLY,
) -> Change:
    """A held case resolved: approved (override), denied (block) or expired (either)."""
    if case.state is not CaseState.HELD:
        raise InvalidTransition(
            f"case {case.id} is {case.state.value}; only held cases can be approved, denied or expired",
            state=case.state.value,
        )
    owner = view.ownership
    current_owner = owner.owner if owner else None
    base = replace(case, owner=current_owner, owner_mailbox_id=owner.mailbox_id if owner else case.owner_mailbox_id)
    decision = Decision(effect, rule, reason)
    resolved = replace(base, decision=decision).moved_to(state, actor=actor, note=reason, at=now)
    if current_owner == case.claimant and effect is Effect.OVERRIDE:
        actions: tuple[Action, ...] = ()
    else:
        actions = actions_for(resolved, effect, now, fence=fence)
    resolved = replace(resolved, actions=actions)
    ownership = None
    if effect is Effect.OVERRIDE:
        version = owner.version + 1 if owner else 1
        ownership = Ownership(case.key, case.claimant, now, rule, version, case.claimant_mailbox_id or None)
    audit = (
        AuditEvent(
            f"case.{state.value}",
            case.key.address,
            actor,
            {"case": case.id, "effect": effect.value, "reason": reason},
            now,
        ),
    )
    return Change(case.key, view.version, ownership, None, None, (resolved,), audit, expect=((case.id, case.state),))


# ---------------------------------------------------------------------------
# The outbox: one attempt at an action, an operator's retry, and where the case goes


Step = tuple[Action, Case | None, AuditEvent]
"""An outbox change both ledgers write in one transaction: the action, its case (moved or not), the audit entry."""


def resolution(case: Case) -> CaseState:
    """Where the case rests once its actions are done: decided (then applied), denied or expired."""
    for entry in reversed(case.history):
        if entry.state in RESOLVED_STATES:
            return entry.state
    return CaseState.DECIDED


def settle(case: Case, action: Action, *, now: datetime) -> Case:
    """The case once ``action`` is recorded, as its actions stand.

    Nothing pending: a failed action makes the case ``failed``; otherwise a decided case is
    ``applied``, while a denied or expired one stays ``denied`` / ``expired`` (how it was resolved
    is what people filter by) with the completion in its history.
    """
    actions = tuple(action if a.id == action.id else a for a in case.actions)
    statuses = {a.status for a in actions if a.writes}  # a notice never moves its case
    if not action.writes or not statuses or ActionStatus.PENDING in statuses:
        return replace(case, actions=actions)
    if ActionStatus.FAILED in statuses:
        target, note = CaseState.FAILED, "an action failed"
    else:
        resolved = resolution(case)
        target = CaseState.APPLIED if resolved is CaseState.DECIDED else resolved
        note = "every action applied"
    if case.state is target and case.history and case.history[-1].note == note:
        return replace(case, actions=actions)
    return replace(case.moved_to(target, actor="orgguard", note=note, at=now), actions=actions)


def attempt(
    action: Action,
    case: Case | None,
    *,
    status: ActionStatus,
    error: str | None,
    retry_at: datetime | None,
    now: datetime,
    notice: Notice | None = None,
    number: int | None = None,
) -> Step | None:
    """One attempt recorded; None when the action is no longer pending (a late second worker changes nothing).

    ``notice`` replaces a notify action's notice (what a partly sent message reached so far).
    ``number`` is which attempt this is: a deferral for one the action has counted already changes
    nothing (its round is being recorded again: the ledger's answer was lost), while an outcome that
    ends the action still lands (what the org answered), as it would for a late second worker.
    """
    if action.status is not ActionStatus.PENDING:
        return None
    if status is ActionStatus.PENDING and number is not None and action.attempts >= number:
        return None
    new = replace(
        action,
        status=status,
        attempts=action.attempts + 1,
        last_error=error,
        updated_at=now,
        next_attempt_at=retry_at,
        notice=notice or action.notice,
    )
    facts: dict[str, object] = {
        "action": action.id,
        "kind": action.kind.value,
        "org": action.org,
        "attempt": new.attempts,
        "error": error,
    }
    event = AuditEvent(f"action.{status.value}", action.case_id, "orgguard", facts, now)
    return new, settle(case, new, now=now) if case else None, event


def hand_back(action: Action, *, due: datetime | None, lease: datetime | None) -> Action | None:
    """A leased action returned without an attempt (its org is over its budget): due again at ``due``.

    No attempt is counted and nothing is audited: nothing was sent. None when it is no longer
    pending, or no longer held by ``lease`` (its lease ran out and another worker holds it now).
    """
    if action.status is not ActionStatus.PENDING or action.next_attempt_at != lease:
        return None
    return replace(action, next_attempt_at=due)


def retry(action: Action, case: Case | None, *, actor: str, now: datetime) -> Step:
    """An operator puts a failed action back in the outbox; anything else is refused (409)."""
    if action.status is not ActionStatus.FAILED:
        raise InvalidTransition(
            f"action {action.id} is {action.status.value}; only a failed action can be retried",
            state=action.status.value,
        )
    new = replace(action, status=ActionStatus.PENDING, updated_at=now, next_attempt_at=None)
    moved = case
    if case is not None and case.state is CaseState.FAILED and action.writes:
        moved = case.moved_to(
            resolution(case), actor=actor, note=f"retry of the {action.kind.value} in {action.org}", at=now
        )
    event = AuditEvent("action.retry", action.case_id, actor, {"action": action.id, "kind": action.kind.value}, now)
    return new, moved, event

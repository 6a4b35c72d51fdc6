"""Planned overrides: one case that moves a mailbox to an org and sets every other claimant to None.

Migrations (an admin moves mailboxes from org A to org B) and the sweep's repairs
(a mailbox failing with the "configured with another organization" alert is
given to its designated primary) know exactly which orgs hold a row for the
mailbox and which row ids they are, unlike a claim, which comes from one org.
Pure functions of their arguments, like ``casework``: the service layer reads,
plans with these, commits, and on a concurrency conflict plans again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from shared.domain.casework import Planned, new_action
from shared.domain.model import (
    ACT_ONLY,
    ActionKind,
    AuditEvent,
    Case,
    CaseState,
    Change,
    ClaimKind,
    Decision,
    Effect,
    EventOutcome,
    Fence,
    MailboxKey,
    MailboxView,
    Origin,
    Ownership,
)


@dataclass(frozen=True)
class Move:
    """Make ``to`` the owner of ``key``: promote its row, demote the rows in ``demote``.

    ``event_key`` makes the move take effect once however often it is asked
    (a resumed migration asks again for the moves it had already recorded).
    A ``None`` row id is looked up in the org by the executor.
    """

    key: MailboxKey
    to: str
    to_mailbox_id: str | None
    demote: Mapping[str, str | None]
    kind: ClaimKind
    origin: Origin
    rule: str
    reason: str
    actor: str
    event_key: str
    how: str = ""
    demote_owner: bool = True  # also demote the ledger's owner when it is not listed
    promote: bool = True
    extra: Mapping[str, object] = field(default_factory=dict)


def plan_move(view: MailboxView, move: Move, *, now: datetime, fence: tuple[Fence, ...] = ACT_ONLY) -> Planned:
    owner = view.ownership
    decision = Decision(Effect.OVERRIDE, move.rule, move.reason)
    case = Case.opened(
        move.key,
        owner,
        move.to,
        move.to_mailbox_id or "",
        move.kind,
        move.origin,
        decision,
        state=CaseState.DECIDED,
        actor=move.actor,
        at=now,
    )
    demote = {org: row for org, row in move.demote.items() if org != move.to}
    if move.demote_owner and owner and owner.owner != move.to and owner.owner not in demote:
        demote[owner.owner] = owner.mailbox_id
    actions = [
        new_action(case.id, org, row, ActionKind.DEMOTE, now, fence=fence) for org, row in sorted(demote.items())
    ]
    if move.promote:
        actions.append(new_action(case.id, move.to, move.to_mailbox_id, ActionKind.PROMOTE, now, fence=fence))
    case = replace(case, actions=tuple(actions))
    version = owner.version + 1 if owner else 1
    mailbox_id = move.to_mailbox_id or (owner.mailbox_id if owner and owner.owner == move.to else None)
    ownership = Ownership(move.key, move.to, now, move.how or f"rule:{move.rule}", version, mailbox_id)
    audit = AuditEvent(
        "owner.moved",
        move.key.address,
        move.actor,
        {
            "case": case.id,
            "owner": move.to,
            "previous": owner.owner if owner else None,
            "rule": move.rule,
            "reason": move.reason,
            "demoted": sorted(demote),
            **move.extra,
        },
        now,
    )
    event = EventOutcome(move.event_key, Effect.OVERRIDE, case.id, now)
    change = Change(move.key, view.version, ownership, event, None, (case,), (audit,))
    return Planned(change, decision, case)

"""What a committed change decided and what work it left, read from the ``Change`` itself.

The bus needs both after every commit: the work (cases with actions still to carry out, one
message per case on the mailbox's session) and the decisions (one event each for other
systems). A reminder adds a notice but decides nothing; an approval decides, and so does a
claim, allowed or not, and a planned move.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from shared.domain.model import ActionStatus, Case, Change, Decision, MailboxKey, Origin

Kind = Literal["claim", "resolution", "move"]


@dataclass(frozen=True)
class DecisionFact:
    """One decision a change recorded."""

    kind: Kind
    key: MailboxKey
    decision: Decision
    claimant: str
    owner: str | None  # the owner when it was claimed, as the case recorded it
    new_owner: str | None  # the owner this change made, if it moved ownership
    origin: Origin
    claim_kind: str
    case: Case | None
    event_key: str | None
    at: datetime


def with_work(change: Change) -> list[Case]:
    """The cases of ``change`` that left actions to carry out."""
    return [c for c in change.cases if any(a.status is ActionStatus.PENDING for a in c.actions)]


def decisions_in(change: Change, decision: Decision | None = None) -> list[DecisionFact]:
    """The decisions ``change`` records; ``decision`` is the claim's when the change holds a claim without a case."""
    new_owner = change.ownership.owner if change.ownership else None
    if change.claim is not None:
        claim = change.claim
        case = next((c for c in change.cases if c.id == claim.case_id), None)
        made = case.decision if case else decision
        if made is None:
            return []
        return [
            DecisionFact(
                "claim", claim.key, made, claim.org, case.owner if case else None, new_owner, claim.origin,
                claim.kind.value, case, claim.event_key, claim.at,
            )
        ]  # fmt: skip
    resolved = {case_id for case_id, _ in change.expect}
    if resolved:
        kind: Kind = "resolution"
        cases = [c for c in change.cases if c.id in resolved]
    elif change.ownership is not None:
        kind = "move"
        cases = list(change.cases)
    else:
        return []  # a reminder, a note: nothing was decided
    return [
        DecisionFact(kind, c.key, c.decision, c.claimant, c.owner, new_owner, c.origin, c.kind.value, c, None,
                     c.updated_at)
        for c in cases
    ]  # fmt: skip

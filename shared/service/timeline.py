"""A mailbox's story for people: its claims, decisions and actions in time order, and its owner over time.

Pure: built from what ``OrgGuard.mailbox`` reads (the current ownership, the
latest claims and cases). The owner changes come from the records that made
them: an uncontested first claim, and each case whose override took effect (a
rule's override, an approval, an expiry that overrides, an admin's designation or
a migration) at the moment its decision was recorded. The current ownership is
exact; earlier spans cover what the latest records show, so the first span may
begin before the oldest record (its ``since`` is then unknown).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.domain.model import Case, CaseState, ClaimRecord, Effect, Ownership
from shared.service.orgguard import MailboxReport
from shared.service.views import current_owner_view, when

DECIDING = (CaseState.DECIDED, CaseState.EXPIRED)
SHOWN = 50  # how many claims and cases ``OrgGuard.mailbox`` reads of each


@dataclass(frozen=True)
class OwnerChange:
    at: datetime
    owner: str
    previous: str | None
    how: str
    case: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class OwnerSpan:
    owner: str
    since: datetime | None  # None: before the oldest record shown
    until: datetime | None  # None: the current owner
    how: str | None
    case: str | None = None


def override_change(case: Case) -> OwnerChange | None:
    """The owner change ``case`` made, if its override took effect and gave the mailbox to another org."""
    if case.decision.effect is not Effect.OVERRIDE or case.decision.dry_run or case.owner == case.claimant:
        return None
    entry = next((h for h in case.history if h.state in DECIDING), None)
    if entry is None:
        return None
    how = "approval" if case.decision.rule == "approval" else f"rule:{case.decision.rule}"
    return OwnerChange(entry.at, case.claimant, case.owner, how, case.id, entry.actor)


def first_claim(claims: tuple[ClaimRecord, ...]) -> ClaimRecord | None:
    """The claim that made the first owner: the oldest one that needed no case (nobody owned the mailbox)."""
    if len(claims) >= SHOWN:
        return None  # older claims are not shown: the oldest one here need not be the first
    uncontested = [c for c in claims if c.case_id is None and c.effect is not Effect.BLOCK]
    return min(uncontested, key=lambda c: c.at, default=None)


def owner_changes(report: MailboxReport) -> list[OwnerChange]:
    """Each time the mailbox went to another org, oldest first."""
    changes = sorted(
        (change for change in map(override_change, report.cases) if change is not None), key=lambda ch: ch.at
    )
    first = first_claim(report.claims)
    if first is not None and (not changes or (first.at < changes[0].at and changes[0].previous == first.org)):
        changes.insert(0, OwnerChange(first.at, first.org, None, "first-claim"))
    return changes


def owner_spans(report: MailboxReport) -> list[OwnerSpan]:
    """Who owned the mailbox when, oldest first; the last span is the ledger's current owner."""
    changes = owner_changes(report)
    spans: list[OwnerSpan] = []
    if changes and changes[0].previous is not None:
        spans.append(OwnerSpan(changes[0].previous, None, changes[0].at, None))
    for i, ch in enumerate(changes):
        until = changes[i + 1].at if i + 1 < len(changes) else None
        spans.append(OwnerSpan(ch.owner, ch.at, until, ch.how, ch.case))
    return _ending_with(spans, report.ownership)


def _ending_with(spans: list[OwnerSpan], current: Ownership | None) -> list[OwnerSpan]:
    """The current ownership is exact: it closes the story, whatever the visible records missed."""
    if current is None:
        return spans
    if spans and spans[-1].owner == current.owner:
        last = spans[-1]
        closing = OwnerSpan(last.owner, last.since or current.since, None, last.how or current.how, last.case)
        return [*spans[:-1], closing]
    if spans:
        last = spans[-1]
        spans = [*spans[:-1], OwnerSpan(last.owner, last.since, current.since, last.how, last.case)]
    return [*spans, OwnerSpan(current.owner, current.since, None, current.how)]


def _claim_event(c: ClaimRecord) -> dict[str, Any]:
    return {
        "type": "claim",
        "org": c.org,
        "kind": c.kind.value,
        "origin": c.origin.value,
        "effect": c.effect.value,
        "case": c.case_id,
    }


def _case_events(case: Case) -> list[tuple[datetime, int, dict[str, Any]]]:
    steps: list[tuple[datetime, int, dict[str, Any]]] = []
    for h in case.history:
        step: dict[str, Any] = {"type": "case", "case": case.id, "state": h.state.value, "actor": h.actor}
        step.update(note=h.note, claimant=case.claimant, owner=case.owner, effect=case.decision.effect.value)
        steps.append((h.at, 1, step))
    for a in case.actions:
        act: dict[str, Any] = {"type": "action", "case": case.id, "action": a.id, "org": a.org, "kind": a.kind.value}
        act.update(status=a.status.value, attempts=a.attempts, last_error=a.last_error)
        steps.append((a.updated_at, 2, act))
    return steps


def events(report: MailboxReport) -> list[dict[str, Any]]:
    """Claims, case steps, actions and owner changes as one list, oldest first."""
    out: list[tuple[datetime, int, dict[str, Any]]] = [(c.at, 0, _claim_event(c)) for c in report.claims]
    for case in report.cases:
        out.extend(_case_events(case))
    for ch in owner_changes(report):
        change: dict[str, Any] = {"type": "owner", "owner": ch.owner, "previous": ch.previous, "how": ch.how}
        change.update(case=ch.case, actor=ch.actor)
        out.append((ch.at, 3, change))
    out.sort(key=lambda item: (item[0], item[1]))
    return [{"at": when(at), **doc} for at, _, doc in out]


def timeline_doc(report: MailboxReport) -> dict[str, Any]:
    return {
        **current_owner_view(report),
        "owners": [
            {"owner": s.owner, "since": when(s.since), "until": when(s.until), "how": s.how, "case": s.case}
            for s in owner_spans(report)
        ],
        "events": events(report),
        "truncated": len(report.claims) >= SHOWN or len(report.cases) >= SHOWN,
    }

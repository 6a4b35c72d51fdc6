"""``POST /api/policy/impact`` and ``orgguard policy impact FILE``: a candidate policy against the ledger.

The candidate is checked as ``PUT /api/policy`` checks it (422 with every error); then the held cases, the cases
opened in the last ``days`` days and every recorded ownership are decided with the policy in force and with the
candidate (``shared.domain.impact``). Nothing is written: not the ledger, not the orgs; users are looked up
through Graph (cached) when either policy reads them, as deciding would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from shared.domain import impact
from shared.domain.model import Case, CaseQuery, CaseState, ClaimKind, DomainError, MailboxKey, Origin
from shared.domain.policy import Policy, reads_groups, user_conditions
from shared.ledger.port import job_ledger
from shared.service.orgguard import OrgGuard, check_policy
from shared.service.views import decision_view, when

MAX_DAYS = 365
LISTED = 500  # changes listed per kind (all are counted)
PAGE = 500


@dataclass
class _Found:
    listed: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0
    examined: int = 0

    def add(self, doc: dict[str, Any]) -> None:
        self.count += 1
        if len(self.listed) < LISTED:
            self.listed.append(doc)

    def doc(self) -> dict[str, Any]:
        return {"examined": self.examined, "changed": self.count, "items": self.listed,
                "truncated": self.count > len(self.listed)}  # fmt: skip


def _judged_doc(j: impact.Judged) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "mailbox": j.key.address,
        "claimant": j.claimant,
        "owner": j.owner,
        "before": decision_view(j.before),
        "after": decision_view(j.after),
        "outcome": j.outcome,
    }
    if j.case is not None:
        doc |= {"case": j.case.id, "origin": j.case.origin.value, "kind": j.case.kind.value,
                "state": j.case.state.value, "created_at": when(j.case.created_at)}  # fmt: skip
    else:
        doc["moves_to"] = j.moves_to
    return doc


def _cases(service: OrgGuard, query: CaseQuery) -> Iterator[Case]:
    cursor = None
    while True:
        page = service.ledger.cases(CaseQuery(state=query.state, limit=PAGE, cursor=cursor))
        yield from page.items
        if not page.next:
            return
        cursor = page.next


def policy_impact(service: OrgGuard, text: str, *, days: int = 30) -> dict[str, Any]:
    """What saving ``text`` would change; records nothing."""
    if isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise DomainError(f"days must be a whole number from 1 to {MAX_DAYS}", field="days")
    candidate = check_policy(text, service.orgs)
    current = service.policy()
    now = service.clock()
    exemptions = service.exemptions_in_force(now)
    both = (current, candidate)
    reads_users = bool(user_conditions(current) or user_conditions(candidate))
    groups = reads_groups(current) or reads_groups(candidate)

    def situation(key: MailboxKey, claimant: str, owner: str | None, origin: Origin, kind: ClaimKind) -> Any:
        return service.situation(key, claimant, owner, origin, kind, now=now, policies=both, exemptions=exemptions)

    held, claims, moves = _Found(), _Found(), _Found()
    for case in _cases(service, CaseQuery(state=CaseState.HELD)):
        held.examined += 1
        owner = service.ledger.mailbox(case.key).ownership
        s = situation(case.key, case.claimant, owner.owner if owner else None, case.origin, case.kind)
        if (found := impact.held_case(candidate, case, s)) is not None:
            held.add(_judged_doc(found))
    since = now - timedelta(days=days)
    for case in _cases(service, CaseQuery()):
        if case.created_at < since:
            break  # newest first: every case from here on is older
        claims.examined += 1
        s = situation(case.key, case.claimant, case.owner, case.origin, case.kind)
        if (found := impact.recent_claim(current, candidate, case, s)) is not None:
            claims.add(_judged_doc(found))
    _ownerships(service, current, candidate, moves, situation, reads_users=reads_users, groups=groups)
    return {
        "recorded": False,
        "days": days,
        "at": when(now),
        "current": {"version": service.policy_text()[0]},
        "candidate": {"version": candidate.version, "warnings": service.policy_warnings(candidate)},
        "on_expiry": _on_expiry(current, candidate, held.examined),
        "held": held.doc(),
        "claims": claims.doc(),
        "ownerships": moves.doc(),
        "summary": _summary(held, claims, moves),
    }


def _ownerships(
    service: OrgGuard,
    current: Policy,
    candidate: Policy,
    moves: _Found,
    situation: Any,
    *,
    reads_users: bool,
    groups: bool,
) -> None:
    ledger = job_ledger(service.ledger)
    after = ""
    while True:
        page = ledger.ownerships(after=after, limit=1000)
        if not page:
            return
        if reads_users:
            service.users.prefetch([o.key for o in page], groups=groups)
        for owned in page:
            moves.examined += 1

            def claim_by(org: str, owned_key: MailboxKey = owned.key, owner: str = owned.owner) -> Any:
                return situation(owned_key, org, owner, Origin.SWEEP, ClaimKind.SWEEP)

            if (found := impact.ownership(current, candidate, owned.key, owned.owner, claim_by)) is not None:
                moves.add(_judged_doc(found))
        after = page[-1].key.address


def _on_expiry(current: Policy, candidate: Policy, held: int) -> dict[str, Any] | None:
    before, after = current.approval.on_expiry, candidate.approval.on_expiry
    if before == after:
        return None
    return {"before": before, "after": after, "held": held,
            "outcome": f"held cases nobody decides in time would be resolved {after} instead of {before}"}  # fmt: skip


def _summary(held: _Found, claims: _Found, moves: _Found) -> str:
    parts = [
        f"{held.count} of {held.examined} held case(s) would be decided otherwise when decided again",
        f"{claims.count} of {claims.examined} recent competing claim(s) would be decided otherwise",
        f"{moves.count} of {moves.examined} owned mailbox(es) would move, or no longer move",
    ]
    return "; ".join(parts)

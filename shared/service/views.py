"""The JSON the API and the CLI show: one place, so both say the same, and written here on purpose.

These shapes are OrgGuard's outside (CONTRACT.md): they are built from the domain's
objects field by field, never from the ledgers' storage documents, so a change to
how a ledger stores a case cannot change what the API answers.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from shared.domain.exemptions import Exemption, Scope
from shared.domain.jobs import Job
from shared.domain.model import Action, Case, ClaimRecord, Decision, Notice, Overview
from shared.service.orgguard import MailboxReport, Outcome


def when(value: datetime | None) -> str | None:
    """A time as the API writes it: ISO 8601 with its offset (UTC), or null."""
    return value.isoformat() if value else None


def decision_view(d: Decision) -> dict[str, Any]:
    doc = {"effect": d.effect.value, "rule": d.rule, "explanation": d.explanation, "dry_run": d.dry_run}
    return doc | {"exemption": d.exemption}


def notice_view(n: Notice) -> dict[str, Any]:
    return {"kind": n.kind.value, "to": list(n.to), "sent": list(n.sent)}


def action_view(a: Action) -> dict[str, Any]:
    return {
        "id": a.id,
        "case_id": a.case_id,
        "org": a.org,
        "mailbox_id": a.mailbox_id,
        "kind": a.kind.value,
        "status": a.status.value,
        "attempts": a.attempts,
        "last_error": a.last_error,
        "created_at": when(a.created_at),
        "updated_at": when(a.updated_at),
        "next_attempt_at": when(a.next_attempt_at),
        "notice": notice_view(a.notice) if a.notice else None,
        "fence": [f.value for f in a.fence] if a.writes else None,  # what a demote sets to None (the policy's fence)
    }


def case_view(c: Case) -> dict[str, Any]:
    """The case with its decision, actions and history; ``owner`` is the owner when it was claimed."""
    return {
        "id": c.id,
        "mailbox": c.key.address,
        "owner": c.owner,
        "claimant": c.claimant,
        "claimant_mailbox_id": c.claimant_mailbox_id,
        "owner_mailbox_id": c.owner_mailbox_id,
        "kind": c.kind.value,
        "origin": c.origin.value,
        "decision": decision_view(c.decision),
        "state": c.state.value,
        "created_at": when(c.created_at),
        "updated_at": when(c.updated_at),
        "expires_at": when(c.expires_at),
        "history": [{"at": when(h.at), "state": h.state.value, "actor": h.actor, "note": h.note} for h in c.history],
        "actions": [action_view(a) for a in c.actions],
        # a save that skipped the gate: how it was found (found: bypass, gate_disabled, ...; by), who saved, when
        "unheard": c.unheard.facts() if c.unheard else None,
    }


def claim_view(c: ClaimRecord) -> dict[str, Any]:
    return {
        "org": c.org,
        "kind": c.kind.value,
        "origin": c.origin.value,
        "effect": c.effect.value,
        "case": c.case_id,
        "at": when(c.at),
    }


def current_owner_view(report: MailboxReport) -> dict[str, Any]:
    """The mailbox and who owns it now: how both the mailbox answer and its timeline begin."""
    o = report.ownership
    return {
        "mailbox": report.key.address,
        "owner": o.owner if o else None,
        "since": when(o.since) if o else None,
        "how": o.how if o else None,
    }


def mailbox_view(report: MailboxReport) -> dict[str, Any]:
    return {
        **current_owner_view(report),
        "claims": [claim_view(c) for c in report.claims],
        "cases": [case_view(c) for c in report.cases],
    }


def outcome_view(outcome: Outcome) -> dict[str, Any]:
    d = outcome.decision
    doc: dict[str, Any] = {
        "effect": d.effect.value,
        "case": outcome.case_id,
        "rule": d.rule,
        "explanation": d.explanation,
    }
    if d.dry_run:
        doc["dry_run"] = True
    if d.exemption:
        doc["exemption"] = d.exemption
    if outcome.duplicate:
        doc["duplicate"] = True
    return doc


def overview_view(o: Overview) -> dict[str, Any]:
    held = o.oldest_held
    oldest = None
    if held is not None:
        oldest = {
            "case": held.id,
            "mailbox": held.key.address,
            "claimant": held.claimant,
            "owner": held.owner,
            "created_at": when(held.created_at),
            "expires_at": when(held.expires_at),
        }
    return {"counts": o.counts, "by_org": o.by_org, "oldest_held": oldest}


def job_view(job: Job) -> dict[str, Any]:
    """A sweep or migration with its progress and (once done) its report."""
    return {
        "id": job.id,
        "kind": job.kind.value,
        "state": job.state.value,
        "params": job.params,
        "actor": job.actor,
        "created_at": when(job.created_at),
        "updated_at": when(job.updated_at),
        "progress": job.progress,
        "result": job.result,
        "error": job.error,
        "version": job.version,
    }


def exemption_view(e: Exemption, today: date) -> dict[str, Any]:
    """An exemption as the API shows it: what it exempts (under its scope's name, as it was asked for), why,
    until when, its state today, and who added, removed or reported it."""
    subject: object = list(e.subject) if e.scope is Scope.ORGS else e.subject[0]
    return {
        "id": e.id,
        "scope": e.scope.value,
        e.scope.value: subject,
        "what": e.what,
        "reason": e.reason,
        "ticket": e.ticket,
        "expires": e.expires.isoformat(),
        "state": e.state(today).value,
        "created_by": e.created_by,
        "created_at": when(e.created_at),
        "version": e.added_in,
        "removed_by": e.removed_by,
        "removed_at": when(e.removed_at),
        "removed_reason": e.removed_reason,
        "expired_at": when(e.expired_at),
    }

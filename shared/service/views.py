"""JSON shapes the API and the CLI show (one place, so both say the same)."""

from __future__ import annotations

from typing import Any

from shared.domain.model import Case, ClaimRecord, Decision, Overview, Ownership
from shared.ledger import codec
from shared.service.orgguard import MailboxReport, Outcome


def case_view(case: Case) -> dict[str, Any]:
    doc = codec.case_doc(case)
    doc["mailbox"] = doc.pop("key")
    doc["actions"] = [codec.action_doc(a) for a in case.actions]
    return doc


def decision_view(decision: Decision) -> dict[str, Any]:
    return codec.decision_doc(decision)


def ownership_view(o: Ownership | None) -> dict[str, Any] | None:
    return codec.ownership_doc(o) if o else None


def claim_view(c: ClaimRecord) -> dict[str, Any]:
    return {
        "org": c.org,
        "kind": c.kind.value,
        "origin": c.origin.value,
        "effect": c.effect.value,
        "case": c.case_id,
        "at": codec.ts(c.at),
    }


def mailbox_view(report: MailboxReport) -> dict[str, Any]:
    o = report.ownership
    return {
        "mailbox": report.key.address,
        "owner": o.owner if o else None,
        "since": codec.ts(o.since) if o else None,
        "how": o.how if o else None,
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
            "created_at": codec.ts(held.created_at),
            "expires_at": codec.ts(held.expires_at),
        }
    return {"counts": o.counts, "by_org": o.by_org, "oldest_held": oldest}

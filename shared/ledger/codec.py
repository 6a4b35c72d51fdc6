"""Plain-JSON forms of ledger records and the audit chain's hashing.

Every ledger stores the same documents, so a record reads the same whichever
storage wrote it, and the audit chain hashes identically everywhere. These are
storage forms: the API's JSON is built in ``shared.service.views``, so a change
here never silently changes what the API answers.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from typing import Any

from shared.domain.exemptions import Exemption, Scope
from shared.domain.jobs import Job, JobKind, JobState
from shared.domain.model import (
    ACT_ONLY,
    Action,
    ActionKind,
    ActionStatus,
    AuditEntry,
    AuditEvent,
    Case,
    CaseState,
    ClaimKind,
    Decision,
    Effect,
    Fence,
    HistoryEntry,
    MailboxKey,
    Notice,
    NoticeKind,
    Origin,
    Ownership,
    Unheard,
)

GENESIS = "0" * 64


def ts(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def parse_ts(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def must_ts(value: object) -> datetime:
    parsed = parse_ts(value)
    if parsed is None:
        raise ValueError(f"not a timestamp: {value!r}")
    return parsed


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def dumps(doc: object) -> str:
    """Canonical JSON: sorted keys, no spaces; what the audit chain hashes (one encoder, made once)."""
    return _CANONICAL.encode(doc)


# --- decisions and cases -----------------------------------------------------


def decision_doc(d: Decision) -> dict[str, Any]:
    doc = {"effect": d.effect.value, "rule": d.rule, "explanation": d.explanation, "dry_run": d.dry_run}
    return doc | {"exemption": d.exemption} if d.exemption else doc


def decision_from(doc: dict[str, Any]) -> Decision:
    exemption = doc.get("exemption")
    return Decision(Effect(doc["effect"]), doc["rule"], doc["explanation"], bool(doc.get("dry_run")), exemption)


def action_doc(a: Action) -> dict[str, Any]:
    return {
        "id": a.id,
        "case_id": a.case_id,
        "org": a.org,
        "mailbox_id": a.mailbox_id,
        "kind": a.kind.value,
        "status": a.status.value,
        "attempts": a.attempts,
        "last_error": a.last_error,
        "created_at": ts(a.created_at),
        "updated_at": ts(a.updated_at),
        "next_attempt_at": ts(a.next_attempt_at),
        "notice": notice_doc(a.notice) if a.notice else None,
        "fence": [f.value for f in a.fence],
    }


def action_from(doc: dict[str, Any]) -> Action:
    return Action(
        id=doc["id"],
        case_id=doc["case_id"],
        org=doc["org"],
        mailbox_id=doc.get("mailbox_id"),
        kind=ActionKind(doc["kind"]),
        status=ActionStatus(doc["status"]),
        attempts=int(doc.get("attempts") or 0),
        last_error=doc.get("last_error"),
        created_at=must_ts(doc["created_at"]),
        updated_at=must_ts(doc["updated_at"]),
        next_attempt_at=parse_ts(doc.get("next_attempt_at")),
        notice=notice_from(doc["notice"]) if doc.get("notice") else None,
        fence=_fence(doc.get("fence")),
    )


def _fence(stored: list[str] | None) -> tuple[Fence, ...]:
    """The fence as stored, exactly (so a decoded action equals the one written); ACT only for an action stored
    before fences were."""
    return ACT_ONLY if stored is None else tuple(Fence(f) for f in stored)


def notice_doc(n: Notice) -> dict[str, Any]:
    return {"kind": n.kind.value, "to": list(n.to), "sent": list(n.sent)}


def notice_from(doc: dict[str, Any]) -> Notice:
    return Notice(NoticeKind(doc["kind"]), tuple(doc.get("to") or ()), tuple(doc.get("sent") or ()))


def case_doc(c: Case) -> dict[str, Any]:
    """The case without its actions (actions are rows of their own, for the outbox)."""
    return {
        "id": c.id,
        "key": c.key.address,
        "owner": c.owner,
        "claimant": c.claimant,
        "claimant_mailbox_id": c.claimant_mailbox_id,
        "owner_mailbox_id": c.owner_mailbox_id,
        "kind": c.kind.value,
        "origin": c.origin.value,
        "decision": decision_doc(c.decision),
        "state": c.state.value,
        "created_at": ts(c.created_at),
        "updated_at": ts(c.updated_at),
        "expires_at": ts(c.expires_at),
        "history": [{"at": ts(h.at), "state": h.state.value, "actor": h.actor, "note": h.note} for h in c.history],
        "unheard": c.unheard.facts() if c.unheard else None,
    }


def case_from(doc: dict[str, Any], actions: tuple[Action, ...] = ()) -> Case:
    return Case(
        id=doc["id"],
        key=MailboxKey(doc["key"]),
        owner=doc.get("owner"),
        claimant=doc["claimant"],
        claimant_mailbox_id=doc["claimant_mailbox_id"],
        owner_mailbox_id=doc.get("owner_mailbox_id"),
        kind=ClaimKind(doc["kind"]),
        origin=Origin(doc["origin"]),
        decision=decision_from(doc["decision"]),
        state=CaseState(doc["state"]),
        created_at=must_ts(doc["created_at"]),
        updated_at=must_ts(doc["updated_at"]),
        expires_at=parse_ts(doc.get("expires_at")),
        actions=actions,
        history=tuple(
            HistoryEntry(must_ts(h["at"]), CaseState(h["state"]), h["actor"], h["note"]) for h in doc.get("history", [])
        ),
        unheard=Unheard.from_facts(doc["unheard"]) if doc.get("unheard") else None,
    )


def ownership_doc(o: Ownership) -> dict[str, Any]:
    return {"owner": o.owner, "since": ts(o.since), "how": o.how, "version": o.version, "mailbox_id": o.mailbox_id}


def ownership_from(key: MailboxKey, doc: dict[str, Any]) -> Ownership:
    return Ownership(
        key, doc["owner"], must_ts(doc["since"]), doc["how"], int(doc.get("version") or 1), doc.get("mailbox_id")
    )


# --- the audit chain -----------------------------------------------------------


def audit_event_doc(event: AuditEvent) -> dict[str, Any]:
    """An event before the chain numbers it (Table Storage's journal carries these until it is appended)."""
    return {"at": ts(event.at), "kind": event.kind, "subject": event.subject, "actor": event.actor, "data": event.data}


def audit_body(seq: int, event: AuditEvent) -> dict[str, Any]:
    """What an entry's hash covers: its number and its event."""
    return {"seq": seq, **audit_event_doc(event)}


def chain_hash(prev_hash: str, seq: int, event: AuditEvent) -> str:
    """sha256 over the previous entry's hash and this entry's canonical JSON."""
    payload = prev_hash + dumps(audit_body(seq, event))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def chain_entry(prev: AuditEntry | None, event: AuditEvent) -> AuditEntry:
    return entry_after((prev.seq, prev.hash) if prev else None, event)


def entry_after(head: tuple[int, str] | None, event: AuditEvent) -> AuditEntry:
    """The entry that follows the one whose (sequence, hash) is ``head`` (None: the first)."""
    seq = head[0] + 1 if head else 1
    prev_hash = head[1] if head else GENESIS
    return AuditEntry(seq=seq, event=event, prev_hash=prev_hash, hash=chain_hash(prev_hash, seq, event))


def audit_event_from(doc: dict[str, Any]) -> AuditEvent:
    return AuditEvent(
        kind=doc["kind"],
        subject=doc["subject"],
        actor=doc["actor"],
        data=json.loads(doc["data"]) if isinstance(doc["data"], str) else doc["data"],
        at=must_ts(doc["at"]),
    )


def verify_chain(entries: list[AuditEntry]) -> tuple[bool, int | None, str | None]:
    """Check sequence, links and hashes; return (ok, first bad seq, reason)."""
    prev_hash, expected_seq = GENESIS, 1
    for entry in entries:
        if entry.seq != expected_seq:
            return False, expected_seq, f"entry {expected_seq} is missing"
        if entry.prev_hash != prev_hash:
            return False, entry.seq, f"entry {entry.seq} does not link to entry {entry.seq - 1}"
        if chain_hash(prev_hash, entry.seq, entry.event) != entry.hash:
            return False, entry.seq, f"entry {entry.seq} was changed after it was written"
        prev_hash, expected_seq = entry.hash, expected_seq + 1
    return True, None, None


# --- jobs (sweeps, migrations, digests) ----------------------------------------


def job_doc(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind.value,
        "state": job.state.value,
        "params": job.params,
        "actor": job.actor,
        "created_at": ts(job.created_at),
        "updated_at": ts(job.updated_at),
        "progress": job.progress,
        "result": job.result,
        "error": job.error,
        "version": job.version,
    }


def job_from(doc: dict[str, Any]) -> Job:
    return Job(
        id=str(doc["id"]),
        kind=JobKind(doc["kind"]),
        state=JobState(doc["state"]),
        params=dict(doc.get("params") or {}),
        actor=str(doc.get("actor") or ""),
        created_at=must_ts(doc["created_at"]),
        updated_at=must_ts(doc["updated_at"]),
        progress=dict(doc.get("progress") or {}),
        result=dict(doc.get("result") or {}),
        error=doc.get("error"),
        version=int(doc.get("version") or 0),
    )


# --- exemptions ----------------------------------------------------------------


def exemption_doc(e: Exemption) -> dict[str, Any]:
    return {
        "id": e.id,
        "scope": e.scope.value,
        "subject": list(e.subject),
        "reason": e.reason,
        "ticket": e.ticket,
        "expires": e.expires.isoformat(),
        "created_by": e.created_by,
        "created_at": ts(e.created_at),
        "added_in": e.added_in,
        "removed_by": e.removed_by,
        "removed_at": ts(e.removed_at),
        "removed_reason": e.removed_reason,
        "expired_at": ts(e.expired_at),
    }


def exemption_from(doc: dict[str, Any]) -> Exemption:
    return Exemption(
        id=str(doc["id"]),
        scope=Scope(doc["scope"]),
        subject=tuple(str(s) for s in doc["subject"]),
        reason=str(doc["reason"]),
        ticket=str(doc["ticket"]),
        expires=date.fromisoformat(doc["expires"]),
        created_by=str(doc["created_by"]),
        created_at=must_ts(doc["created_at"]),
        added_in=int(doc.get("added_in") or 0),
        removed_by=doc.get("removed_by"),
        removed_at=parse_ts(doc.get("removed_at")),
        removed_reason=doc.get("removed_reason"),
        expired_at=parse_ts(doc.get("expired_at")),
    )

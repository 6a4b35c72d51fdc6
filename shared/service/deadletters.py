"""Dead letters, for operators: list them across OrgGuard's queues, show one, replay or purge it.

The same use cases serve ``GET /api/deadletters``, ``POST /api/deadletters/{id}/replay``,
``DELETE /api/deadletters/{id}`` and ``orgguard deadletters``. An id names its queue
(``work-17``, ``dataverse-r4``). Replaying and purging are recorded in the audit log with the
operator's name; of two operators replaying one dead letter at once, one does it and the
other is told it is gone (404).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.bus.port import DeadLetter, NoSuchDeadLetter, QueueCounts, WorkQueue
from shared.domain.model import AuditEvent, DomainError, utcnow
from shared.ledger.port import AuditLog

MAX_LIST = 500
BODY_SHOWN = 64 * 1024


class NoQueue(DomainError, status=404, title="No queue"):
    """Dead letters asked of an OrgGuard that runs without a queue."""


@dataclass
class DeadLetters:
    queues: Sequence[WorkQueue]
    audit: AuditLog

    def _need(self) -> None:
        if not self.queues:
            raise NoQueue("OrgGuard runs without a queue here (ORGGUARD_BUS is not set), so it has no dead letters")

    def _queue_of(self, dead_letter_id: str) -> WorkQueue:
        self._need()
        for q in self.queues:
            if dead_letter_id.strip().startswith(f"{q.name}-"):
                return q
        named = dead_letter_id[:80]
        raise NoSuchDeadLetter(f"no dead letter {named!r}: it names none of OrgGuard's queues", field="id")

    def oldest(self, limit: int = 100, queue: str | None = None) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters of every queue (or of ``queue``), queue by queue."""
        self._need()
        if not 1 <= limit <= MAX_LIST:
            raise DomainError(f"limit must be between 1 and {MAX_LIST}", field="limit")
        chosen = [q for q in self.queues if queue is None or q.name == queue]
        if not chosen:
            names = ", ".join(q.name for q in self.queues)
            raise DomainError(f"no queue {queue!r} here (there are: {names})", field="queue")
        found: list[DeadLetter] = []
        for q in chosen:
            found.extend(q.dead_letters(limit))
        return found[:limit]

    def show(self, dead_letter_id: str) -> DeadLetter:
        found = self._queue_of(dead_letter_id).find(dead_letter_id)
        if found is None:
            raise NoSuchDeadLetter(f"no dead letter {dead_letter_id}", field="id")
        return found

    def replay(self, dead_letter_id: str, *, actor: str) -> DeadLetter:
        done = self._queue_of(dead_letter_id).replay(dead_letter_id)
        self._record("deadletter.replayed", done, actor)
        return done

    def purge(self, dead_letter_id: str, *, actor: str) -> DeadLetter:
        done = self._queue_of(dead_letter_id).purge(dead_letter_id)
        self._record("deadletter.purged", done, actor)
        return done

    def counts(self) -> list[QueueCounts]:
        return [q.counts() for q in self.queues]

    def _record(self, kind: str, dead: DeadLetter, actor: str) -> None:
        data: dict[str, object] = {"queue": dead.queue, "message": dead.message_id, "reason": dead.reason}
        self.audit.append_audit(AuditEvent(kind, dead.id, actor, data, utcnow()))


def dead_letter_view(d: DeadLetter, *, body: bool = False) -> dict[str, Any]:
    """A dead letter as the API and the CLI show it; ``body`` too for one shown alone."""
    doc: dict[str, Any] = {
        "id": d.id,
        "queue": d.queue,
        "message_id": d.message_id,
        "session": d.session,
        "reason": d.reason,
        "description": d.description,
        "delivery_count": d.delivery_count,
        "enqueued_at": d.enqueued_at.isoformat() if d.enqueued_at else None,
        "dead_lettered_at": d.dead_lettered_at.isoformat() if d.dead_lettered_at else None,
        "case": _case_of(d),
    }
    if body:
        doc["properties"] = dict(d.properties)
        doc.update(_body_view(d.body))
    return doc


def counts_view(counts: Sequence[QueueCounts]) -> dict[str, Any]:
    return {
        "total": sum(c.dead for c in counts),
        "at_least": any(c.at_least for c in counts),
        "queues": {
            c.queue: {"dead": c.dead, "active": c.active, "scheduled": c.scheduled, "at_least": c.at_least}
            for c in counts
        },
    }


def _case_of(d: DeadLetter) -> str | None:
    if d.queue != "work":
        return None
    try:
        doc = json.loads(d.body)
    except ValueError:
        return None
    case = doc.get("case") if isinstance(doc, dict) else None
    return case if isinstance(case, str) else None


def _body_view(raw: bytes) -> dict[str, Any]:
    shown = raw[:BODY_SHOWN]
    try:
        return {"body": shown.decode("utf-8"), "body_encoding": "utf-8", "body_truncated": len(raw) > BODY_SHOWN}
    except UnicodeDecodeError:
        return {
            "body": base64.b64encode(shown).decode("ascii"),
            "body_encoding": "base64",
            "body_truncated": len(raw) > BODY_SHOWN,
        }

"""The mailbox aggregate: its view, processed events, and ``commit`` (one transaction on its partition)."""

from __future__ import annotations

import json
import uuid
from typing import Final

from shared.domain.model import Change, EventOutcome, MailboxKey, MailboxView
from shared.ledger import codec
from shared.ledger.port import ConcurrencyConflict, DuplicateEvent
from shared.ledger.tables.documents import action_entity, case_entity, outcome_from, root_entity
from shared.ledger.tables.entities import Entity, opt
from shared.ledger.tables.journal import action_entry, case_entry, new_journal
from shared.ledger.tables.keys import ROOT, action_sort, case_sort, escape, event_rk, inv
from shared.ledger.tables.partition import Partition, Snapshot, Write, write_op

COMMIT_TRIES: Final = 40


class MailboxAggregate(Partition):
    def mailbox(self, key: MailboxKey) -> MailboxView:
        with self._storage("read a mailbox"):
            root = self._get("mailboxes", escape(key.address), ROOT)
        if root is None:
            return MailboxView(key, None, 0)
        doc = opt(root.get("Ownership"))
        ownership = codec.ownership_from(key, json.loads(doc)) if doc else None
        return MailboxView(key, ownership, int(root["Version"]))

    def event(self, event_key: str) -> EventOutcome | None:
        with self._storage("read an event"):
            row = self._get("events", escape(event_key, 200), "event")
        return outcome_from(row) if row else None

    def commit(self, change: Change) -> None:
        pk = escape(change.key.address)
        event_key = change.event.event_key if change.event else None
        journal_id = str(uuid.uuid4())
        with self._storage("record a decision"):
            for attempt in range(COMMIT_TRIES):
                case_ids = [c.id for c in change.cases] + [case_id for case_id, _ in change.expect]
                snap = self._snapshot(pk, event_key=event_key, case_ids=case_ids)
                if self._landed_before(snap, journal_id):
                    return None
                if snap.guard is not None:
                    raise DuplicateEvent(outcome_from(snap.guard))
                if snap.version != change.expected_version:
                    raise ConcurrencyConflict(
                        f"mailbox version is {snap.version}, the decision was made at {change.expected_version}"
                    )
                for case_id, state in change.expect:
                    stored = snap.cases.get(case_id)
                    if stored is None or stored.get("State") != state.value:
                        raise ConcurrencyConflict(f"case {case_id} is no longer {state.value}")
                self._take_over(snap)
                if self._submit(pk, self._plan_commit(change, snap, journal_id), attempt):
                    return None
        raise ConcurrencyConflict("the mailbox kept changing; decide again")

    def _plan_commit(self, change: Change, snap: Snapshot, journal_id: str) -> Write:
        pk = escape(change.key.address)
        version, seq = snap.version + 1, snap.seq + 1
        ownership = (
            json.dumps(codec.ownership_doc(change.ownership))
            if change.ownership
            else opt(snap.root.get("Ownership") if snap.root else None)
        )
        ops = [write_op(root_entity(pk, change.key.address, version, seq, ownership), snap.root)]
        journal = new_journal(change.key.address)
        if change.event:
            e = change.event
            guard: Entity = {"PartitionKey": pk, "RowKey": event_rk(e.event_key), "EventKey": e.event_key}
            guard |= {"Effect": e.effect.value, "CaseId": e.case_id, "At": codec.ts(e.at)}
            ops.append(write_op(guard, None))
            journal["event"] = {"event_key": e.event_key, "effect": e.effect.value, "case_id": e.case_id,
                                "at": codec.ts(e.at)}  # fmt: skip
        if change.claim:
            c = change.claim
            claim: Entity = {"PartitionKey": pk, "RowKey": f"claim|{inv(version)}", "Org": c.org}
            claim |= {"Kind": c.kind.value, "Origin": c.origin.value, "EventKey": c.event_key}
            claim |= {"Effect": c.effect.value, "CaseId": c.case_id, "At": codec.ts(c.at)}
            ops.append(write_op(claim, None))
        for case in change.cases:
            existing = snap.cases.get(case.id)
            known = snap.actions.get(case.id, {})
            sort = str(existing["Sort"]) if existing else case_sort(case, version)
            ids: list[str] = json.loads(existing["ActionIds"]) if existing else []
            for action in case.actions:  # as in SQLite: new actions are added, recorded ones kept
                if action.id in known or action.id in ids:
                    continue
                ids.append(action.id)
                sort_key = action_sort(action, len(ids) - 1)
                ops.append(write_op(action_entity(pk, action, sort_key), None))
                journal["actions"].append(action_entry(action, sort_key, new=True))
            ops.append(write_op(case_entity(pk, case, sort, ids), existing))
            if entry := case_entry(case, sort, existing):
                journal["cases"].append(entry)
        return self._seal(pk, seq, journal_id, ops, journal, list(change.audit))

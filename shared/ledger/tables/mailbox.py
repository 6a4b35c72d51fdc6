"""The mailbox aggregate: its view, processed events, and ``commit`` (one transaction on its partition)."""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from typing import Final

from azure.data.tables import TableEntity

from shared.domain.model import Change, EventOutcome, MailboxKey, MailboxView
from shared.ledger import codec
from shared.ledger.port import ConcurrencyConflict, DuplicateEvent
from shared.ledger.tables.documents import action_entity, case_entity, outcome_from, root_entity
from shared.ledger.tables.entities import Entity, opt
from shared.ledger.tables.journal import action_entry, case_entry, new_journal
from shared.ledger.tables.keys import ROOT, action_sort, case_sort, escape, event_rk, inv, literal, prefix_range
from shared.ledger.tables.partition import Partition, Retry, Snapshot, Write, write_op

COMMIT_TRIES: Final = 40
ROOTS_KEPT: Final = 4096  # roots read and not yet committed against, per instance


class MailboxAggregate(Partition):
    _roots: OrderedDict[str, TableEntity | None] | None = None  # each mailbox's root as last read, with its ETag

    def mailbox(self, key: MailboxKey) -> MailboxView:
        """One query: the root, and any journal rows (work left behind, rolled forward on the backlog)."""
        pk = escape(key.address)
        query = f"PartitionKey eq {literal(pk)} and (RowKey eq {literal(ROOT)} or {prefix_range('journal|')})"
        snap = Snapshot()
        with self._storage("read a mailbox"):
            for row in self._tables["mailboxes"].query_entities(query):
                snap.place(row)
        self._remember_root(pk, snap.root)
        if snap.journals:
            self._backlog.submit(lambda: self._take_over(snap))
        if snap.root is None:
            return MailboxView(key, None, 0)
        doc = opt(snap.root.get("Ownership"))
        ownership = codec.ownership_from(key, json.loads(doc)) if doc else None
        return MailboxView(key, ownership, int(snap.root["Version"]))

    def _remember_root(self, pk: str, root: TableEntity | None) -> None:
        with self._lock:
            if self._roots is None:
                self._roots = OrderedDict()
            self._roots[pk] = root
            self._roots.move_to_end(pk)
            while len(self._roots) > ROOTS_KEPT:
                self._roots.popitem(last=False)

    def _read_root(self, pk: str, change: Change) -> Snapshot | None:
        """The root ``mailbox`` read for ``change`` (taken: one commit uses it), if that is what it was planned on.

        The transaction is conditioned on the root's ETag, so a root that moved since fails it and the commit
        reads the partition as before; a case or event that exists fails its create the same way.
        """
        with self._lock:
            if self._roots is None or pk not in self._roots:
                return None
            root = self._roots.pop(pk)
        snap = Snapshot(root=root)
        return snap if snap.version == change.expected_version and not change.expect else None

    def event(self, event_key: str) -> EventOutcome | None:
        self._backlog.settle()
        with self._storage("read an event"):
            row = self._get("events", escape(event_key, 200), "event")
        return outcome_from(row) if row else None

    def commit(self, change: Change) -> None:
        """One transaction on the mailbox's partition; its journal is rolled forward after this returns.

        On the gate's path: the transaction (conditioned on the root ``mailbox`` read), nothing else, when the
        mailbox did not move since that read; the recovery marker is written after, with the roll-forward.
        """
        self._forget_head()  # the decision ends here (``versions.py``)
        pk = escape(change.key.address)
        event_key = change.event.event_key if change.event else None
        journal_id = str(uuid.uuid4())
        with self._storage("record a decision"):
            read = self._read_root(pk, change)
            if read is not None and read.root is not None and event_key and read.root.get("EventKey") == event_key:
                raise DuplicateEvent(outcome_from(read.root))  # a repeat of the mailbox's newest event
            if read is not None:
                write = self._plan_commit(change, read, journal_id)
                try:
                    self._transact(pk, write)
                except Retry:
                    pass  # the partition moved, or the event or a case exists: read it and decide as before
                else:
                    self._finish_later(pk, write.journal)
                    return None
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
                if self._submit(pk, self._plan_commit(change, snap, journal_id), attempt, later=True):
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
        root = root_entity(pk, change.key.address, version, seq, ownership)
        if e := change.event:  # the root names its newest event: a repeat of it is answered from ``mailbox``'s read
            root |= {"EventKey": e.event_key, "Effect": e.effect.value, "CaseId": e.case_id, "At": codec.ts(e.at)}
        ops = [write_op(root, snap.root)]
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

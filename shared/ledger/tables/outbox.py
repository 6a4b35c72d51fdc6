"""The outbox: the ``queue`` index of pending actions, leases, and each attempt or retry as one transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import replace
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableEntity

from shared.domain.model import Action, ActionStatus, AuditEvent, Case, NotFound, utcnow
from shared.ledger import codec
from shared.ledger.port import LedgerError
from shared.ledger.steps import ChangeRule, OutboxChange, OutboxSteps, StepRule
from shared.ledger.tables.documents import action_entity, case_entity, clip_error, root_entity
from shared.ledger.tables.entities import etag, get_doc, if_match, opt
from shared.ledger.tables.journal import action_entry, case_entry, new_journal
from shared.ledger.tables.keys import QUEUE, action_rk, clock, escape, literal
from shared.ledger.tables.partition import Partition, Snapshot, Write, write_op
from shared.ledger.tables.reads import CaseListings
from shared.ledger.tables.storage import WRITE_TRIES

OutboxRule = ChangeRule


class OutboxQueue(OutboxSteps, Partition, CaseListings):
    def pending_actions(self, limit: int = 100, *, now: datetime | None = None) -> Sequence[Action]:
        moment = now or utcnow()
        self.recover()
        with self._storage("read the outbox"):
            self._catch_up()
            return self._due(limit, moment)

    def _due(self, limit: int, moment: datetime) -> list[Action]:
        """Pending actions due at ``moment``, oldest first, each checked against its mailbox partition."""
        query = f"PartitionKey eq {literal(QUEUE)} and NextAt le {literal(clock(moment))}"
        out: list[Action] = []
        rows = self._rows("actions", query, page=min(1000, max(1, limit)))
        while len(out) < limit:
            batch = [row for _, row in zip(range(limit - len(out)), rows, strict=False)]
            if not batch:
                break
            for queued, action in zip(batch, self._parallel(self._queued_action, batch), strict=True):
                if action is None:
                    self._drop_stale(queued)
                elif action.next_attempt_at is None or action.next_attempt_at <= moment:
                    out.append(action)
        return out[:limit]

    def _queued_action(self, queued: Mapping[str, Any]) -> Action | None:
        """The action a queue row names, if it is still pending (the mailbox partition is the truth)."""
        row = self._get("mailboxes", escape(str(queued["Address"])), action_rk(queued["CaseId"], queued["ActionId"]))
        if row is None or row.get("Status") != ActionStatus.PENDING.value:
            return None
        return codec.action_from(get_doc(row))

    def _drop_stale(self, queued: TableEntity) -> None:
        with suppress(ResourceModifiedError, ResourceNotFoundError):
            self._tables["actions"].delete_entity(QUEUE, queued["RowKey"], **if_match(etag(queued)))

    def lease_actions(self, limit: int, *, now: datetime, until: datetime) -> Sequence[Action]:
        """Take due actions one mailbox transaction each: of two workers racing for one, one gets it."""

        def lease(old: Action, case: Case | None, _: datetime) -> OutboxChange | None:
            if old.status is not ActionStatus.PENDING or (old.next_attempt_at and old.next_attempt_at > now):
                return None  # another worker took it, or it was done meanwhile
            return replace(old, next_attempt_at=until), case, None

        self.recover()
        taken: list[Action] = []
        with self._storage("lease actions"):
            self._catch_up()
            for action in self._due(max(1, limit), now):
                if self._outbox_write(action.id, lease)[1]:
                    taken.append(action)
        return taken

    def _kept_error(self, error: str | None) -> str | None:
        return clip_error(error)

    def _write_step(self, action_id: str, step: StepRule) -> Action:
        with self._storage("change an action"):
            self._catch_up()
            return self._outbox_write(action_id, step)[0]

    def _write_steps(self, steps: Sequence[tuple[str, OutboxRule]]) -> list[Action]:
        """Each action in one transaction on its mailbox's partition, where its case lives too (no transaction
        spans partitions); mailboxes in parallel, one mailbox's actions in order (they share its root's ETag)."""
        with self._storage("record attempts"):
            self._catch_up()  # the actions' index rows are written after the decision's answer (backlog.py)
            pointers = self._parallel(lambda step: self._get("actions", f"id|{escape(step[0])}", "action"), steps)
            by_mailbox: dict[str, list[int]] = {}
            for i, ((action_id, _), pointer) in enumerate(zip(steps, pointers, strict=True)):
                if pointer is None:
                    raise NotFound(f"no action {action_id}", field="action")
                by_mailbox.setdefault(str(pointer["Address"]), []).append(i)
            done: dict[int, Action] = {}

            def write(indexes: list[int]) -> None:
                for i in indexes:
                    done[i] = self._outbox_write(*steps[i])[0]

            self._parallel(write, list(by_mailbox.values()))
            return [done[i] for i in range(len(steps))]

    def _outbox_write(self, action_id: str, step: OutboxRule) -> tuple[Action, bool]:
        """Change one action (and its case) in one transaction on its mailbox, the way ``commit`` does.

        ``step`` maps the stored action and case to the new ones and the audit event, or to None to leave
        them; returns the action as it now is and whether this call changed it.
        """
        journal_id = str(uuid.uuid4())
        pointer = self._get("actions", f"id|{escape(action_id)}", "action")
        if pointer is None:
            raise NotFound(f"no action {action_id}", field="action")
        address, case_id = str(pointer["Address"]), str(pointer["CaseId"])
        pk = escape(address)
        for attempt in range(WRITE_TRIES):
            snap = self._snapshot(pk, case_ids=[case_id])
            if self._landed_before(snap, journal_id):
                return codec.action_from(get_doc(snap.actions[case_id][action_id])), True
            row = snap.actions.get(case_id, {}).get(action_id)
            if snap.root is None or row is None:
                raise NotFound(f"no action {action_id}", field="action")
            self._take_over(snap)
            case_row = snap.cases.get(case_id)
            case = self._case_from(case_row, snap.actions[case_id]) if case_row else None
            old = codec.action_from(get_doc(row))
            planned = step(old, case, utcnow())
            if planned is None:
                return old, False
            new, changed, audit = planned
            if self._submit(pk, self._plan_outbox(pk, snap, new, case, changed, audit, journal_id), attempt):
                return new, True
        raise LedgerError(f"action {action_id} kept changing; try again")

    def _plan_outbox(
        self, pk: str, snap: Snapshot, action: Action, case: Case | None, changed: Case | None,
        audit: AuditEvent | None, journal_id: str,
    ) -> Write:  # fmt: skip
        """The action replaced, its case rewritten if it moved, the root's Seq bumped (its Version is not)."""
        assert snap.root is not None
        seq = snap.seq + 1
        address = str(snap.root["Address"])
        root = root_entity(pk, address, snap.version, seq, opt(snap.root.get("Ownership")))
        ops = [write_op(root, snap.root)]
        journal = new_journal(address)
        row = snap.actions[action.case_id][action.id]
        ops.append(write_op(action_entity(pk, action, str(row["Sort"])), row))
        journal["actions"].append(action_entry(action, str(row["Sort"]), new=False))
        case_row = snap.cases.get(action.case_id)
        if changed is not None and case is not None and changed.history != case.history and case_row is not None:
            sort = str(case_row["Sort"])
            ops.append(write_op(case_entity(pk, changed, sort, json.loads(case_row["ActionIds"])), case_row))
            if entry := case_entry(changed, sort, case_row):
                journal["cases"].append(entry)
        return self._seal(pk, seq, journal_id, ops, journal, [audit] if audit else [])

"""Journals rolled forward into the derived records (idempotent, in any order), and ``recover`` for work left behind."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from contextlib import suppress
from datetime import timedelta
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.domain.model import Action, ActionStatus, Case, utcnow
from shared.ledger import codec
from shared.ledger.port import LedgerError
from shared.ledger.tables.entities import Entity, etag, get_text, if_match, opt
from shared.ledger.tables.exemptions import EXEMPTIONS_MARKER, ExemptionRows
from shared.ledger.tables.keys import MARKERS, POLICY_MARKER, QUEUE, clock, escape, journal_rk, literal, prefix_range
from shared.ledger.tables.policies import PolicyRows
from shared.ledger.tables.storage import WRITE_TRIES, brief, pause

log = logging.getLogger(__name__)

Journal = dict[str, Any]
CATCH_UP = 100  # markers a read through an index looks at; beyond them, recover() finishes the work


def new_journal(address: str) -> Journal:
    return {"address": address, "event": None, "cases": [], "actions": []}


def action_entry(action: Action, sort: str, *, new: bool) -> dict[str, Any]:
    """What the outbox indexes must learn about ``action``."""
    return {"id": action.id, "case_id": action.case_id, "sort": sort, "new": new,
            "pending": action.status is ActionStatus.PENDING, "next_at": clock(action.next_attempt_at)}  # fmt: skip


def case_entry(case: Case, sort: str, existing: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the case indexes must learn, or None when neither the state nor the owner moved."""
    old_state = opt(existing.get("State")) if existing else None
    old_owner = opt(existing.get("Owner")) if existing else None
    if existing is not None and old_state == case.state.value and old_owner == case.owner:
        return None
    return {"id": case.id, "sort": sort, "new": existing is None, "state": case.state.value, "owner": case.owner,
            "claimant": case.claimant, "old_state": old_state, "old_owner": old_owner}  # fmt: skip


class Journals(PolicyRows, ExemptionRows):
    def _roll_forward(self, journal: Journal) -> bool:
        """Write what a committed journal derives; idempotent and safe in any order. True when done."""
        address, seq = str(journal["address"]), int(journal["seq"])
        pk = escape(address)
        try:
            if journal.get("event"):
                self._index_event(address, journal["event"])
            for case in journal["cases"]:
                self._index_case(address, seq, case)
            for action in journal["actions"]:
                self._index_action(address, seq, action)
            if journal["audit"]:
                events = [codec.audit_event_from(doc) for doc in journal["audit"]]
                self._append(events, str(journal["id"]))
            with suppress(ResourceNotFoundError):  # another instance caught up with it first
                self._tables["mailboxes"].delete_entity(pk, journal_rk(seq))
        except (AzureError, LedgerError) as exc:
            # The decision is committed; the journal stays and is finished by the next writer or the sweep.
            log.warning("ledger journal not rolled forward yet", extra={"journal": journal["id"], "error": brief(exc)})
            return False
        return True

    def _index_event(self, address: str, event: Mapping[str, Any]) -> None:
        row: Entity = {
            "PartitionKey": escape(event["event_key"], 200),
            "RowKey": "event",
            "EventKey": event["event_key"],
        }
        row |= {"Effect": event["effect"], "CaseId": event["case_id"], "At": event["at"], "Address": address}
        with suppress(ResourceExistsError):
            self._tables["events"].create_entity(row)

    def _index_case(self, address: str, seq: int, case: Mapping[str, Any]) -> None:
        sort, claimant, owner = str(case["sort"]), str(case["claimant"]), opt(case["owner"])
        cases = self._tables["cases"]
        body = {"CaseId": case["id"], "Address": address, "Stamp": seq}
        if case["new"]:
            pointer: Entity = {"PartitionKey": f"id|{escape(case['id'])}", "RowKey": "case", **body, "Sort": sort}
            cases.upsert_entity(pointer, mode=UpdateMode.REPLACE)
            for pk in ("all", f"mailbox|{escape(address)}", f"org|{escape(claimant)}"):
                self._put_index("cases", {"PartitionKey": pk, "RowKey": sort, **body}, seq)
        if case["new"] or case["state"] != case["old_state"]:
            self._put_index("cases", {"PartitionKey": f"state|{case['state']}", "RowKey": sort, **body}, seq)
        if case["old_state"] and case["old_state"] != case["state"]:
            self._delete_if_older("cases", f"state|{case['old_state']}", sort, seq)
        if owner and owner != claimant and (case["new"] or owner != case["old_owner"]):
            self._put_index("cases", {"PartitionKey": f"org|{escape(owner)}", "RowKey": sort, **body}, seq)
        old_owner = opt(case["old_owner"])
        if old_owner and old_owner not in (owner, claimant):
            self._delete_if_older("cases", f"org|{escape(old_owner)}", sort, seq)

    def _index_action(self, address: str, seq: int, action: Mapping[str, Any]) -> None:
        if action["new"]:
            pointer: Entity = {"PartitionKey": f"id|{escape(action['id'])}", "RowKey": "action"}
            pointer |= {"ActionId": action["id"], "CaseId": action["case_id"], "Address": address}
            self._tables["actions"].upsert_entity(pointer, mode=UpdateMode.REPLACE)
        if action["pending"]:
            row: Entity = {"PartitionKey": QUEUE, "RowKey": action["sort"], "ActionId": action["id"]}
            row |= {"CaseId": action["case_id"], "Address": address, "NextAt": action["next_at"], "Stamp": seq}
            self._put_index("actions", row, seq)
        else:
            self._delete_if_older("actions", QUEUE, str(action["sort"]), seq)

    def _put_index(self, table: str, row: Entity, seq: int) -> None:
        """Create or refresh an index row unless a newer journal already wrote it."""
        client = self._tables[table]
        for attempt in range(WRITE_TRIES):
            try:
                client.create_entity(row)
                return
            except ResourceExistsError:
                pass
            found = self._get(table, row["PartitionKey"], row["RowKey"])
            if found is None:
                continue
            if int(found.get("Stamp") or 0) > seq:
                return
            try:
                client.update_entity(row, mode=UpdateMode.REPLACE, **if_match(etag(found)))
                return
            except (ResourceModifiedError, ResourceNotFoundError):
                pause(attempt)
        raise LedgerError(f"the index row {row['PartitionKey']}/{row['RowKey']} kept changing")

    def _delete_if_older(self, table: str, pk: str, rk: str, seq: int) -> None:
        for attempt in range(WRITE_TRIES):
            found = self._get(table, pk, rk)
            if found is None or int(found.get("Stamp") or 0) > seq:
                return
            try:
                self._tables[table].delete_entity(pk, rk, **if_match(etag(found)))
                return
            except ResourceModifiedError:
                pause(attempt)
        raise LedgerError(f"the index row {pk}/{rk} kept changing")

    # --- recovery markers: work a crashed instance left behind ------------------------

    _ran_at: dict[str, float] | None = None  # when this instance last ran each of recover's periodic checks

    def recover(self, limit: int = 50) -> int:
        """Finish work instances left behind (journals older than ``takeover_after``); return how many markers and
        scanned journals were finished (a journal found both ways counts twice).

        The markers name what a writer left while rolling forward; a writer that died between its transaction
        and its marker left a journal row only, which the scan across partitions finds (at most once per
        ``scan_every`` per instance: on Table Storage it reads the whole table).

        A policy version beyond the pointer is put in force at most once per ``takeover_after`` per instance
        (two requests): an instance still on the code from before the pointer (a rolling upgrade) saves one
        without moving the pointer, and its own ``recover`` deletes the ``~policy`` marker without moving it
        either. Checked here rather than by the gate's read, which stays one query (``versions.py``)."""
        cutoff = clock(utcnow() - self.takeover_after)
        query = f"PartitionKey eq {literal(MARKERS)} and At le {literal(cutoff)}"
        done = 0
        with self._storage("recover unfinished work"):
            if self._due_every("policy", self.takeover_after):
                self._audit_newest_policy()
            done += self._scan_journals(cutoff, limit)
            found = self._tables["mailboxes"].query_entities(query, results_per_page=max(1, limit))
            for _, marker in zip(range(max(1, limit)), found, strict=False):
                if marker["RowKey"] == POLICY_MARKER:
                    self._audit_newest_policy()
                elif marker["RowKey"] == EXEMPTIONS_MARKER:
                    self._recover_exemptions()
                elif not self._recover_mailbox(str(marker["RowKey"]), cutoff):
                    continue
                try:
                    self._tables["mailboxes"].delete_entity(MARKERS, marker["RowKey"], **if_match(etag(marker)))
                except ResourceModifiedError:
                    continue
                done += 1
        return done

    def _scan_journals(self, cutoff: str, limit: int) -> int:
        """Roll forward journal rows older than ``cutoff`` in any mailbox partition (unmarked work included)."""
        if not self._due_every("scan", self.scan_every):
            return 0
        query = f"{prefix_range('journal|')} and At le {literal(cutoff)}"
        found = self._tables["mailboxes"].query_entities(query, results_per_page=max(1, limit))
        return sum(self._roll_forward(json.loads(get_text(row, "Journal")))
                   for _, row in zip(range(max(1, limit)), found, strict=False))  # fmt: skip

    def _due_every(self, check: str, every: timedelta) -> bool:
        """Whether this instance runs ``check`` now: at most once per ``every`` (noted as run when it is due)."""
        now = time.monotonic()
        with self._lock:
            ran = self._ran_at = self._ran_at if self._ran_at is not None else {}
            if check in ran and now - ran[check] < every.total_seconds():
                return False
            ran[check] = now
            return True

    def _catch_up(self) -> None:
        """Before a read through an index: this instance's roll-forwards done, and the journals any instance
        committed and marked but has not rolled forward yet rolled forward here, so the read sees every decision
        whose roll-forward has begun, wherever it was made (the marker is written after the answer, with the
        roll-forward: for those few milliseconds only the mailbox's own reads see it). Young markers stay for their
        writer."""
        self._backlog.settle()
        query = f"PartitionKey eq {literal(MARKERS)}"
        markers = self._tables["mailboxes"].query_entities(query, results_per_page=CATCH_UP)
        for _, marker in zip(range(CATCH_UP), markers, strict=False):
            if str(marker["RowKey"]) in (POLICY_MARKER, EXEMPTIONS_MARKER):
                continue
            journals = f"PartitionKey eq {literal(marker['RowKey'])} and {prefix_range('journal|')}"
            for row in self._rows("mailboxes", journals):
                self._roll_forward(json.loads(get_text(row, "Journal")))

    def _recover_mailbox(self, pk: str, cutoff: str) -> bool:
        """Roll forward the mailbox's old journals; True when none is left."""
        query = f"PartitionKey eq {literal(pk)} and {prefix_range('journal|')}"
        left = False
        for row in self._rows("mailboxes", query):
            if str(row.get("At", "")) > cutoff or not self._roll_forward(json.loads(get_text(row, "Journal"))):
                left = True
        return not left

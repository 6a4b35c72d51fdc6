"""The in-memory ledger: the third implementation of the port, for fast service tests.

It passes the same contract suite as SQLite and Table Storage (``tests/contract``),
except the races between OS processes: its memory belongs to one process. Rows are
kept as the codec's JSON documents, as the other two keep them, so a value that
would not survive storage does not survive here either. One lock makes every
method atomic, the way one SQLite transaction does.

``memory:<name>`` opens a named store shared by every ledger of that name in the
process (several app instances over one ledger, as the contract suite needs).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime

from shared.domain import model
from shared.domain.exemptions import Book, Plan
from shared.domain.jobs import Job, JobConflict, JobKind
from shared.ledger import codec, deadline
from shared.ledger.cursors import CursorCodec, new_secret
from shared.ledger.deadline import DeadlineExceeded
from shared.ledger.port import ConcurrencyConflict, DuplicateEvent, ExemptionPlanner, LedgerError
from shared.ledger.steps import ChangeRule, OutboxSteps


@dataclass
class Store:
    """Everything one in-memory ledger holds (what the tables of the SQLite ledger hold)."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    mailboxes: dict[str, tuple[int, str | None]] = field(default_factory=dict)  # key -> (version, ownership doc)
    events: dict[str, model.EventOutcome] = field(default_factory=dict)
    claims: dict[str, list[model.ClaimRecord]] = field(default_factory=dict)
    cases: dict[str, tuple[int, str]] = field(default_factory=dict)  # id -> (seq, doc)
    actions: dict[str, tuple[int, str]] = field(default_factory=dict)  # id -> (seq, doc)
    audit: list[model.AuditEntry] = field(default_factory=list)
    audit_head: str | None = None
    policies: list[model.PolicyVersion] = field(default_factory=list)
    exemptions: dict[str, str] = field(default_factory=dict)  # id -> doc
    exemptions_version: int = 0
    exemptions_read: Book | None = None  # the set as last built, by its version
    jobs: dict[str, tuple[int, str]] = field(default_factory=dict)  # id -> (version, doc)
    seq: int = 0
    cursor_secret: str = field(default_factory=new_secret)  # signs page cursors, as the other ledgers' secrets do

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def named_store(name: str) -> Store:
    with _stores_lock:
        return _stores.setdefault(name, Store())


def forget(name: str) -> None:
    """Drop a named store (tests)."""
    with _stores_lock:
        _stores.pop(name, None)


class MemoryLedger(OutboxSteps):
    """Ledger in this process's memory; safe across threads."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store or Store()
        self.cursors = CursorCodec(self.store.cursor_secret)

    @classmethod
    def from_url(cls, url: str) -> MemoryLedger:
        """``memory:`` (a store of its own) or ``memory:<name>`` (shared by name within the process)."""
        name = url.removeprefix("memory:").strip("/")
        return cls(named_store(name) if name else Store())

    # --- the mailbox aggregate ---------------------------------------------------------

    def mailbox(self, key: model.MailboxKey) -> model.MailboxView:
        with self.store.lock:
            found = self.store.mailboxes.get(key.address)
        if found is None:
            return model.MailboxView(key, None, 0)
        version, doc = found
        return model.MailboxView(key, codec.ownership_from(key, json.loads(doc)) if doc else None, version)

    def event(self, event_key: str) -> model.EventOutcome | None:
        with self.store.lock:
            return self.store.events.get(event_key)

    def commit(self, change: model.Change) -> None:
        s = self.store
        with self._writing():
            if change.event and change.event.event_key in s.events:
                raise DuplicateEvent(s.events[change.event.event_key])
            current, ownership = s.mailboxes.get(change.key.address, (0, None))
            if current != change.expected_version:
                raise ConcurrencyConflict(
                    f"mailbox version is {current}, the decision was made at {change.expected_version}"
                )
            for case_id, state in change.expect:
                stored = s.cases.get(case_id)
                if stored is None or json.loads(stored[1])["state"] != state.value:
                    raise ConcurrencyConflict(f"case {case_id} is no longer {state.value}")
            for event in change.audit:  # nothing is written unless every part can be
                codec.dumps(event.data)
            work = deadline.current()
            if work is not None and not work.claim_commit():
                raise DeadlineExceeded(f"the decision missed its {work.seconds:g} s deadline; nothing recorded")
            if change.ownership:
                ownership = json.dumps(codec.ownership_doc(change.ownership))
            s.mailboxes[change.key.address] = (current + 1, ownership)
            if change.event:
                s.events[change.event.event_key] = change.event
            if change.claim:
                s.claims.setdefault(change.key.address, []).append(change.claim)
            for case in change.cases:
                self._write_case(case)
            for event in change.audit:
                self._append(event)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """The store's lock, waited for no longer than the current work's deadline allows (as SQLite's)."""
        wait = deadline.wait_budget()
        if not self.store.lock.acquire(timeout=max(wait, 0.0)):
            raise DeadlineExceeded(f"the in-memory ledger stayed busy for {wait:.1f} s")
        try:
            yield
        finally:
            self.store.lock.release()

    def _write_case(self, case: model.Case) -> None:
        s = self.store
        seq = s.cases[case.id][0] if case.id in s.cases else s.next_seq()
        s.cases[case.id] = (seq, json.dumps(codec.case_doc(case)))
        for action in case.actions:
            if action.id not in s.actions:
                s.actions[action.id] = (s.next_seq(), json.dumps(codec.action_doc(action)))

    # --- reads -------------------------------------------------------------------------

    def case(self, case_id: str) -> model.Case | None:
        with self.store.lock:
            found = self.store.cases.get(case_id)
            return self._case_from(found[1]) if found else None

    def _case_from(self, doc: str) -> model.Case:
        data = json.loads(doc)
        mine = sorted((seq, a) for seq, a in self.store.actions.values() if json.loads(a)["case_id"] == data["id"])
        return codec.case_from(data, tuple(codec.action_from(json.loads(a)) for _, a in mine))

    def _listing(self, query: model.CaseQuery) -> list[tuple[int, model.Case]]:
        """Every matching case, newest first."""
        with self.store.lock:
            rows = sorted(self.store.cases.values(), reverse=True)
            found = [(seq, self._case_from(doc)) for seq, doc in rows]
        return [(seq, case) for seq, case in found if query.matches(case)]

    def cases(self, query: model.CaseQuery) -> model.Page:
        after = self.cursors.seq(query.cursor) if query.cursor else None
        limit = max(1, min(query.limit, 500))
        found = [(seq, case) for seq, case in self._listing(query) if after is None or seq < after]
        nxt = self.cursors.issue("seq", found[limit - 1][0]) if len(found) > limit else None
        return model.Page(tuple(case for _, case in found[:limit]), nxt)

    def count_cases(self, query: model.CaseQuery) -> int:
        return len(self._listing(query))

    def overview(self) -> model.Overview:
        with self.store.lock:
            everything = [case for _, case in self._listing(model.CaseQuery())]
        counts: dict[str, int] = {}
        for case in everything:
            counts[case.state.value] = counts.get(case.state.value, 0) + 1
        return model.Overview.of(counts, [case for case in everything if case.state in model.OPEN_STATES])

    def claims(self, key: model.MailboxKey, limit: int = 50) -> Sequence[model.ClaimRecord]:
        with self.store.lock:
            mine = list(self.store.claims.get(key.address, ()))
        mine.sort(key=lambda c: (codec.ts(c.at), c.event_key), reverse=True)
        return mine[: max(0, limit)]

    # --- the outbox --------------------------------------------------------------------

    def _actions(self) -> list[model.Action]:
        return [codec.action_from(json.loads(doc)) for _, doc in sorted(self.store.actions.values())]

    def pending_actions(self, limit: int = 100, *, now: datetime | None = None) -> Sequence[model.Action]:
        moment = now or model.utcnow()
        with self.store.lock:
            due = [a for a in self._actions() if a.status is model.ActionStatus.PENDING and _due(a, moment)]
        return due[:limit]

    def lease_actions(self, limit: int, *, now: datetime, until: datetime) -> Sequence[model.Action]:
        with self.store.lock:
            taken = [a for a in self._actions() if a.status is model.ActionStatus.PENDING and _due(a, now)][:limit]
            for action in taken:
                self._save_action(replace(action, next_attempt_at=until))
            return taken

    def _write_steps(self, steps: Sequence[tuple[str, ChangeRule]]) -> list[model.Action]:
        """One round's actions under the store's lock, all checked before any is written (``record_attempts``)."""
        s = self.store
        with s.lock:
            missing = [action_id for action_id, _ in steps if action_id not in s.actions]
            if missing:
                raise model.NotFound(f"no action {missing[0]}", field="action")
            now = model.utcnow()
            done: list[model.Action] = []
            for action_id, step in steps:
                old = codec.action_from(json.loads(s.actions[action_id][1]))
                stored = s.cases.get(old.case_id)
                case = self._case_from(stored[1]) if stored else None
                planned = step(old, case, now)
                if planned is None:
                    done.append(old)
                    continue
                new, moved, event = planned
                self._save_action(new)
                if moved is not None and case is not None and moved.history != case.history:
                    s.cases[moved.id] = (s.cases[moved.id][0], json.dumps(codec.case_doc(moved)))
                if event is not None:
                    self._append(event)
                done.append(new)
            return done

    def _save_action(self, action: model.Action) -> None:
        seq = self.store.actions[action.id][0]
        self.store.actions[action.id] = (seq, json.dumps(codec.action_doc(action)))

    # --- audit -------------------------------------------------------------------------

    def append_audit(self, event: model.AuditEvent) -> model.AuditEntry:
        with self.store.lock:
            return self._append(event)

    def _append(self, event: model.AuditEvent) -> model.AuditEntry:
        s = self.store
        # Kept as the storage keeps it: the data as JSON read back, so a later change to the caller's dict is not seen.
        stored = replace(event, data=json.loads(codec.dumps(event.data)))
        entry = codec.chain_entry(s.audit[-1] if s.audit else None, stored)
        s.audit.append(entry)
        s.audit_head = f"{entry.seq}:{entry.hash}"
        return entry

    def audit_entries(self, after: int = 0, limit: int = 1000) -> Sequence[model.AuditEntry]:
        with self.store.lock:
            return [e for e in self.store.audit if e.seq > after][:limit]

    def verify_audit(self) -> model.AuditReport:
        with self.store.lock:
            entries = list(self.store.audit)
            head = self.store.audit_head
        ok, bad, reason = codec.verify_chain(entries)
        if ok and head != (f"{entries[-1].seq}:{entries[-1].hash}" if entries else None):
            ok, bad, reason = False, len(entries) + 1, "the newest entries were removed"
        return model.AuditReport(ok, len(entries), bad, reason)

    # --- policy versions -----------------------------------------------------------------

    def policy(self) -> model.PolicyVersion | None:
        with self.store.lock:
            return self.store.policies[-1] if self.store.policies else None

    def save_policy(self, text: str, actor: str) -> model.PolicyVersion:
        with self.store.lock:
            saved = model.PolicyVersion(len(self.store.policies) + 1, text, actor, model.utcnow())
            self.store.policies.append(saved)
            self._append(model.AuditEvent("policy.saved", f"policy:{saved.version}", actor, {"version": saved.version}))
            return saved

    # --- exemptions ----------------------------------------------------------------------

    def exemptions(self) -> Book:
        with self.store.lock:
            return self._book()

    def _book(self) -> Book:
        """The set, built again from its documents only when its version moved."""
        s = self.store
        if s.exemptions_read is None or s.exemptions_read.version != s.exemptions_version:
            items = (codec.exemption_from(json.loads(doc)) for doc in s.exemptions.values())
            s.exemptions_read = Book(s.exemptions_version, tuple(sorted(items, key=lambda e: (e.created_at, e.id))))
        return s.exemptions_read

    def change_exemptions(self, planner: ExemptionPlanner) -> tuple[Book, Plan]:
        with self._writing():
            plan = planner(self._book())
            if plan.empty:
                return self._book(), plan
            for event in plan.audit:
                codec.dumps(event.data)
            for exemption in plan.changed:
                self.store.exemptions[exemption.id] = json.dumps(codec.exemption_doc(exemption))
            self.store.exemptions_version += 1
            for event in plan.audit:
                self._append(event)
            return self._book(), plan

    # --- life cycle --------------------------------------------------------------------

    def ping(self) -> None:
        if not self.store.lock.acquire(timeout=1):
            raise LedgerError("the in-memory ledger is busy")
        self.store.lock.release()

    def close(self) -> None:
        """Nothing to release: the store lives as long as the process (or its name) does."""

    # --- jobs and the ownership index ---------------------------------------------------

    def save_job(self, job: Job) -> Job:
        saved = replace(job, version=job.version + 1)
        with self.store.lock:
            current = self.store.jobs.get(job.id, (0, ""))[0]
            if current != job.version:
                raise JobConflict(f"job {job.id} is at version {current}, not {job.version}; read it again")
            self.store.jobs[job.id] = (saved.version, json.dumps(codec.job_doc(saved)))
        return saved

    def job(self, job_id: str) -> Job | None:
        with self.store.lock:
            found = self.store.jobs.get(job_id)
        return codec.job_from(json.loads(found[1])) if found else None

    def jobs(self, kind: JobKind, limit: int = 50) -> Sequence[Job]:
        with self.store.lock:
            docs = [json.loads(doc) for _, doc in self.store.jobs.values()]
        mine = [codec.job_from(d) for d in docs if d["kind"] == kind.value]
        mine.sort(key=lambda j: (-j.created_at.timestamp(), j.id))
        return mine[: max(1, limit)]

    def ownerships(self, after: str = "", limit: int = 1000) -> Sequence[model.Ownership]:
        with self.store.lock:
            owned = sorted((k, doc) for k, (_, doc) in self.store.mailboxes.items() if doc and k > after)
        return [codec.ownership_from(model.MailboxKey(k), json.loads(doc)) for k, doc in owned[: max(1, limit)]]

    # --- tampering, for the contract suite's audit tests ------------------------------

    def tamper(self, edit: Callable[[list[model.AuditEntry]], None]) -> None:
        with self.store.lock:
            edit(self.store.audit)


def _due(action: model.Action, moment: datetime) -> bool:
    return action.next_attempt_at is None or action.next_attempt_at <= moment

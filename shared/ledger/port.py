"""The ledger ports: what the service layer needs from durable storage, one Protocol per role.

Three implementations pass one contract suite (``tests/contract``): SQLite (the
embedded default), Azure Table Storage, and memory (for fast service tests).
``Ledger`` is every role together; a use case that needs less names the narrow
port (``Mailboxes``, ``CaseReads``, ``Outbox``, ``AuditLog``, ``PolicyVersions``,
``ExemptionRecords``, ``JobRecords``, ``OwnershipIndex``). The mailbox is the aggregate: every
change to a mailbox's ownership, cases, claims and event keys is one ``Change``
written atomically against the mailbox version it was computed from
(optimistic concurrency, as in *Architecture Patterns with Python*, ch. 7).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, cast

from shared.domain import model
from shared.domain.exemptions import Book, Plan


class LedgerError(Exception):
    """The ledger could not do what was asked (storage down, corrupt, ...)."""


class ConcurrencyConflict(LedgerError):
    """The mailbox moved since it was read; decide again from a fresh view."""


class DuplicateEvent(LedgerError):
    """The source event was already processed; nothing was written."""

    def __init__(self, outcome: model.EventOutcome) -> None:
        super().__init__(f"event {outcome.event_key} already processed")
        self.outcome = outcome


@dataclass(frozen=True)
class Attempt:
    """What became of one action in a round of the outbox, for ``Outbox.record_attempts``.

    ``spent`` False hands a leased action back without an attempt (its org was over its budget, so
    nothing was sent): due again at ``retry_at``, if ``lease`` (the lease it was taken with) still holds it.

    ``number`` says which attempt at the action this is (one more than the attempts it was leased with):
    a deferral the stored action has counted already is the same round recorded again (the ledger's
    answer was lost) and changes nothing. None: not known, every recording counts.
    """

    action_id: str
    status: model.ActionStatus
    error: str | None = None
    retry_at: datetime | None = None
    notice: model.Notice | None = None
    spent: bool = True
    lease: datetime | None = None
    number: int | None = None


# --- the ports, one per role: a use case names the narrow one it needs ---------------------


class Mailboxes(Protocol):
    """The mailbox aggregate: its view, the events already processed, and atomic changes."""

    def mailbox(self, key: model.MailboxKey) -> model.MailboxView: ...

    def event(self, event_key: str) -> model.EventOutcome | None: ...

    def commit(self, change: model.Change) -> None:
        """Write ``change`` atomically; raise ``DuplicateEvent`` or ``ConcurrencyConflict``."""
        ...


class CaseReads(Protocol):
    """Cases and claims as recorded, for the API, the console and the reports."""

    def case(self, case_id: str) -> model.Case | None: ...

    def cases(self, query: model.CaseQuery) -> model.Page: ...

    def count_cases(self, query: model.CaseQuery) -> int:
        """How many cases ``query`` matches (its cursor and limit aside)."""
        ...

    def overview(self) -> model.Overview:
        """Cases per state, the open ones per org, and the oldest held case."""
        ...

    def claims(self, key: model.MailboxKey, limit: int = 50) -> Sequence[model.ClaimRecord]: ...


class Outbox(Protocol):
    """The actions decisions left to carry out, and what became of each attempt."""

    def pending_actions(self, limit: int = 100, *, now: datetime | None = None) -> Sequence[model.Action]: ...

    def lease_actions(self, limit: int, *, now: datetime, until: datetime) -> Sequence[model.Action]:
        """Take up to ``limit`` due pending actions for one worker.

        Each taken action is not due again before ``until`` (its lease), so two
        workers never carry out the same action at once; a worker that dies
        loses its lease and the action comes back when it runs out.
        """
        ...

    def record_attempt(
        self,
        action_id: str,
        status: model.ActionStatus,
        error: str | None = None,
        *,
        retry_at: datetime | None = None,
        notice: model.Notice | None = None,
    ) -> model.Action:
        """Record one attempt at an action; the case follows (applied/failed) when all its writes are done.

        ``status`` PENDING with ``retry_at`` is a transient failure to try again later.
        ``notice`` replaces a notify action's notice (what a partly sent message reached).
        Notify actions never move their case: a mail that fails leaves the decision as it is.
        An action already applied or failed is returned unchanged (a late second
        worker cannot apply it twice).
        """
        ...

    def record_attempts(self, attempts: Sequence[Attempt]) -> Sequence[model.Action]:
        """Record one round's results at once (a ``$batch``'s): each as ``record_attempt`` would; in order.

        SQLite and memory write them all in one transaction: all or nothing, and an unknown action
        (``NotFound``) writes none. Table Storage has no transaction across partitions and each action
        lives in its mailbox's, so there each action, its case and its audit entry are one transaction
        (mailboxes in parallel), and a crash half way leaves the rest leased: they are attempted again
        once the lease runs out, as after a crash between a ``$batch`` and its record on any ledger.
        Returns each action as it now is.
        """
        ...

    def reset_action(self, action_id: str, *, actor: str) -> model.Action:
        """Make a failed action pending again (a retry asked by ``actor``), with its audit entry.

        Anything but a failed action is refused with ``InvalidTransition`` (409): of two
        operators retrying one action at once, one succeeds.
        """
        ...


class AuditLog(Protocol):
    """The hash-chained log of everything decided and done."""

    def append_audit(self, event: model.AuditEvent) -> model.AuditEntry: ...

    def audit_entries(self, after: int = 0, limit: int = 1000) -> Sequence[model.AuditEntry]: ...

    def verify_audit(self) -> model.AuditReport: ...


class PolicyVersions(Protocol):
    """Every saved version of the policy; the newest is in force."""

    def policy(self) -> model.PolicyVersion | None: ...

    def save_policy(self, text: str, actor: str) -> model.PolicyVersion: ...


ExemptionPlanner = Callable[[Book], Plan]
"""The set of exemptions as stored, to what one change writes (``shared.domain.exemptions``: plan_add, ...)."""


class ExemptionRecords(Protocol):
    """The exemptions, versioned like the policy: every change is one new version, with its audit entries."""

    def exemptions(self) -> Book: ...

    def change_exemptions(self, planner: ExemptionPlanner) -> tuple[Book, Plan]:
        """Apply ``planner`` to the set as stored and write its plan atomically: the exemptions it changes, the
        set one version on, and the plan's audit entries (nothing when the plan is empty). A writer that got
        there first makes the ledger read and plan again, so ``planner`` may run more than once; what it raises
        (a duplicate, a removal already done) comes out unchanged and nothing is written. Returns the set as
        written and the plan."""
        ...


class Ledger(Mailboxes, CaseReads, Outbox, AuditLog, PolicyVersions, ExemptionRecords, Protocol):
    """Durable record of ownership, cases, actions, processed events and audit: every role, and its life cycle."""

    def ping(self) -> None:
        """Raise ``LedgerError`` if the storage cannot be reached."""
        ...

    def close(self) -> None: ...


# --- jobs and the ownership index (sweeps and migrations) ----------------------------
# ``job_ledger`` says clearly which ledger cannot run sweeps and migrations.

if TYPE_CHECKING:
    from shared.domain.jobs import Job, JobKind
    from shared.domain.model import Ownership


class JobRecords(Protocol):
    """Long-running admin jobs, saved conditionally on the version read."""

    def save_job(self, job: Job) -> Job:
        """Create or update ``job``; refuse (``JobConflict``) when its version is not the stored one.

        Returns the job with its new version.
        """
        ...

    def job(self, job_id: str) -> Job | None: ...

    def jobs(self, kind: JobKind, limit: int = 50) -> Sequence[Job]:
        """Newest first."""
        ...


class OwnershipIndex(Protocol):
    """Every owned mailbox, walked in key order (the sweep compares it with the orgs)."""

    def ownerships(self, after: str = "", limit: int = 1000) -> Sequence[Ownership]:
        """Every owned mailbox in key order, a page at a time: the keys greater than ``after``."""
        ...


class JobLedger(Ledger, JobRecords, OwnershipIndex, Protocol):
    """A ledger that can run sweeps and migrations."""


def job_ledger(ledger: Ledger) -> JobLedger:
    """``ledger`` as one that stores jobs, or a ``LedgerError`` naming what is missing."""
    missing = [name for name in ("save_job", "job", "jobs", "ownerships") if not hasattr(ledger, name)]
    if missing:
        raise LedgerError(f"the {type(ledger).__name__} cannot run sweeps or migrations (no {', '.join(missing)})")
    return cast("JobLedger", ledger)

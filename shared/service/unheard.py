"""Reconciling a claim whose save skipped the gate: was it heard there, and if not, why not.

The asynchronous channels (webhook, Service Bus, Event Grid) and the sweep hear claims after the
save. For each such claim this gathers what OrgGuard knows (the ledger's claims on the mailbox,
the last check of its registration in the org, the gate's own answers given without a decision)
and applies the domain's rules (``shared.domain.unheard``); the case and its audit entry record
the result. Nothing here writes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.domain.model import Claim, Origin, Unheard
from shared.domain.unheard import CLOCK_SLACK, HEARD_WITHIN, changed_unheard, heard_at_the_gate, why_unheard
from shared.ledger.port import Ledger
from shared.service.registrations import Registrations


@dataclass
class UndecidedSaves:
    """Saves the gate let through without a decision (``gate.on_error: allow``), remembered for a while.

    Kept in this process only: the ledger is what failed when the gate could not decide. An event
    that reaches another instance finds nothing here and says ``bypass`` or ``unheard`` instead.
    """

    keep_for: timedelta = timedelta(minutes=15)
    limit: int = 10_000
    _seen: OrderedDict[tuple[str, str], datetime] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, org: str, mailbox_id: str, at: datetime) -> None:
        with self._lock:
            self._seen[(org, mailbox_id.lower())] = at
            self._seen.move_to_end((org, mailbox_id.lower()))
            while len(self._seen) > self.limit:
                self._seen.popitem(last=False)

    def around(self, org: str, mailbox_id: str, saved_at: datetime) -> bool:
        """Whether the gate let a save of this row through undecided just before ``saved_at``."""
        with self._lock:
            at = self._seen.get((org, mailbox_id.lower()))
        return at is not None and saved_at - HEARD_WITHIN <= at <= saved_at + CLOCK_SLACK


def reconcile(
    claim: Claim,
    ledger: Ledger,
    *,
    registrations: Registrations,
    undecided: UndecidedSaves,
    now: datetime,
) -> Unheard | None:
    """How ``claim``'s save skipped the gate, or None when it did not (or cannot have).

    From an asynchronous channel: the gate did not decide and let through a claim of that org on
    the mailbox just before the save. From the sweep: the row syncs against the ledger's owner and
    was changed after that owner was recorded, with no claim of its org heard since.
    """
    if claim.origin in (Origin.GATE, Origin.ADMIN):
        return None
    if claim.origin is Origin.SWEEP:
        owner = ledger.mailbox(claim.key).ownership
        if owner is None or owner.owner == claim.org:  # the claims are read only when they can matter
            return None
        claims = ledger.claims(claim.key, limit=50)
        if not changed_unheard(claims, claim.org, owner_since=owner.since, modified_on=claim.modified_on):
            return None
        saved_at = claim.modified_on
    else:
        claims = ledger.claims(claim.key, limit=50)
        saved_at = claim.modified_on or claim.observed_at
        if heard_at_the_gate(claims, claim.org, saved_at):
            return None
    found = why_unheard(
        degraded=saved_at is not None and undecided.around(claim.org, claim.mailbox_id, saved_at),
        gate=registrations.gate(claim.org, now),
    )
    return Unheard(
        found,
        claim.origin,
        saved_by=claim.modified_by or claim.user_id,
        on_behalf_of=claim.modified_on_behalf_of,
        saved_at=saved_at,
    )

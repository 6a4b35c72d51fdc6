"""Exemptions as use cases: list, add, remove, and report the expired ones (the API, the CLI and the housekeeping).

The rules are the domain's (``shared.domain.exemptions``); the ledger applies each change atomically to the set it
reads (``ExemptionRecords.change_exemptions``). Deciding a claim reads the exemptions in force through
``OrgGuard.situation``, so every entry point (the gate, the queue, the sweep, what-if) treats them alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime

from shared import telemetry
from shared.domain.exemptions import (
    Book,
    Exemption,
    Scope,
    State,
    new_exemption,
    plan_add,
    plan_expired,
    plan_remove,
    resolve,
    utc_day,
)
from shared.domain.model import DomainError, NotFound
from shared.service.orgguard import OrgGuard

log = logging.getLogger("orgguard.exemptions")


@dataclass
class Exemptions:
    service: OrgGuard

    def book(self) -> Book:
        return self.service.ledger.exemptions()

    def today(self) -> date:
        return utc_day(self.service.clock())

    def add(
        self, scope: str, value: object, *, reason: object, ticket: object, expires: object, actor: str
    ) -> Exemption:
        """Exempt ``value`` (a mailbox, a domain, a user, or two orgs); 409 when an active exemption covers it."""
        try:
            kind = Scope(scope)
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise DomainError(f"an exemption is for one of {known}, not {scope!r}", field="scope") from None
        now = self.service.clock()
        exemption = new_exemption(
            kind, value, reason=reason, ticket=ticket, expires=expires, actor=actor, now=now,
            known_orgs=self.service.orgs.names,
        )  # fmt: skip
        _, plan = self.service.ledger.change_exemptions(lambda book: plan_add(book, exemption))
        added = plan.changed[0]
        log.info("exemption added", extra={"exemption": added.id, "scope": added.scope.value})
        return added

    def remove(self, wanted: str, *, actor: str, reason: str | None = None, exact: bool = False) -> Exemption:
        """End an exemption now (by its id, or a unique prefix unless ``exact``); 409 when it was removed already."""
        book = self.book()
        target = book.get(wanted) if exact else resolve(book, wanted.strip())
        if target is None:
            raise NotFound(f"no exemption {wanted}", field="id")
        now = self.service.clock()
        _, plan = self.service.ledger.change_exemptions(
            lambda book: plan_remove(book, target.id, actor=actor, reason=reason, now=now)
        )
        log.info("exemption removed", extra={"exemption": target.id})
        return plan.changed[0]

    def report_expired(self) -> list[Exemption]:
        """Record, once each, the exemptions that stopped applying by their date (the housekeeping timer)."""
        done: list[Exemption] = []
        now = self.service.clock()
        while True:  # a storage may write a limited number a change: the rest in the next one
            _, plan = self.service.ledger.change_exemptions(lambda book: plan_expired(book, now))
            if plan.empty:
                break
            done += plan.changed
        for exemption in done:
            log.info("exemption expired", extra={"exemption": exemption.id, "scope": exemption.scope.value})
        self.measure()
        return done

    def measure(self, book: Book | None = None) -> dict[str, int]:
        """How many exemptions are active and expired (not removed), recorded as a gauge for the telemetry."""
        today = self.today()
        found = book or self.book()
        counts = {s.value: 0 for s in State}
        for exemption in found.items:
            counts[exemption.state(today).value] += 1
        for state in (State.ACTIVE, State.EXPIRED):
            telemetry.gauge(telemetry.EXEMPTIONS, counts[state.value], status=state.value)
        return counts


def expiring_within(book: Book, today: date, days: int) -> list[Exemption]:
    """Active exemptions whose last day is at most ``days`` away (the report warns of them)."""
    return [e for e in book.active(today) if (e.expires - today).days <= days]


def state_at(exemption: Exemption, now: datetime) -> str:
    return exemption.state(utc_day(now)).value

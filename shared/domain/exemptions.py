"""Exemptions: a mailbox, a user, a domain or a pair of orgs left out of enforcement for a while, on the record.

An Admin exempts something for a reason, a ticket reference and an end date. While an exemption applies, a
claim it covers is decided ``audit`` (recorded, nothing written to the orgs, nobody stopped), and the decision
names the exemption; the rule that would have applied is still named. It applies through its end date (UTC)
and stops by itself the day after: nothing has to run for that. The housekeeping then reports it as expired
once (an audit entry), so the record says when it stopped.

The set of exemptions is versioned like the policy: every change (added, removed, reported expired) is one
new version with its audit entry, written atomically by the ledger. The rules of a change are here, pure:
``plan_add``, ``plan_remove`` and ``plan_expired`` read the set as stored and say what to write, so two
admins at once cannot both add the same exemption, nor both remove one (the ledger applies a plan to the
set it reads inside its own transaction, and plans again when another writer got there first).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

import idna

from shared.domain.model import (
    AuditEvent,
    DomainError,
    InvalidTransition,
    MailboxKey,
    NotFound,
    hidden_character,
    new_id,
)

MAX_DAYS = 366  # an exemption is temporary: at most a year (and a day) ahead
MAX_REASON = 1000
MAX_TICKET = 100
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class Scope(StrEnum):
    MAILBOX = "mailbox"
    DOMAIN = "domain"
    USER = "user"  # the user behind a mailbox, by userPrincipalName or object id (read through Graph)
    ORGS = "orgs"  # claims between two orgs, whichever claims and whichever owns


class State(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REMOVED = "removed"


class DuplicateExemption(DomainError, status=409, title="Exemption exists"):
    """An active exemption exempts the same thing already; ``existing`` is its id."""

    def __init__(self, detail: str, *, existing: str) -> None:
        super().__init__(detail, field="exemption")
        self.existing = existing

    @property
    def facts(self) -> dict[str, object]:
        return {"exemption": self.existing}


@dataclass(frozen=True)
class Exemption:
    id: str
    scope: Scope
    subject: tuple[str, ...]  # (address,), (domain,), (upn or object id,), or the two org names, sorted
    reason: str
    ticket: str
    expires: date  # the last day (UTC) it applies
    created_by: str
    created_at: datetime
    added_in: int = 0  # the version of the set that added it
    removed_by: str | None = None
    removed_at: datetime | None = None
    removed_reason: str | None = None
    expired_at: datetime | None = None  # when its expiry was reported (once)

    def state(self, today: date) -> State:
        if self.removed_at is not None:
            return State.REMOVED
        return State.EXPIRED if today > self.expires else State.ACTIVE

    def applies(self, today: date) -> bool:
        return self.state(today) is State.ACTIVE

    @property
    def what(self) -> str:
        """The subject in words: "the mailbox a@b", "the domain b", "claims between x and y"."""
        if self.scope is Scope.ORGS:
            return f"claims between {self.subject[0]} and {self.subject[1]}"
        return f"the {self.scope.value} {self.subject[0]}"

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        """What two exemptions share when they exempt the same thing."""
        return self.scope.value, self.subject

    def sentence(self) -> str:
        """How a decision names it: "exemption 1a2b3c4d (CHG-1234, until 2026-12-31: migration weekend)"."""
        return f"exemption {self.id[:8]} ({self.ticket}, until {self.expires.isoformat()}: {self.reason})"


@dataclass(frozen=True)
class Book:
    """The set as stored: its version (0 before anything was ever exempted) and every exemption, removed ones too."""

    version: int
    items: tuple[Exemption, ...]

    def get(self, exemption_id: str) -> Exemption | None:
        return next((e for e in self.items if e.id == exemption_id), None)

    def active(self, today: date) -> list[Exemption]:
        return [e for e in self.items if e.applies(today)]


@dataclass(frozen=True)
class Plan:
    """What one change writes: the exemptions added or changed, and their audit entries; the set moves one version."""

    changed: tuple[Exemption, ...]
    audit: tuple[AuditEvent, ...]

    @property
    def empty(self) -> bool:
        return not self.changed


NOTHING = Plan((), ())


def utc_day(now: datetime) -> date:
    return (now if now.tzinfo is None else now.astimezone(UTC)).date()


# --- a new exemption, checked ----------------------------------------------------------------------


def _text(value: object, field: str, most: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DomainError(f"{field} is required", field=field)
    if (bad := hidden_character(value, allow="\n\t" if field == "reason" else "")) is not None:
        raise DomainError(f"{field} holds a control or invisible character (U+{ord(bad):04X})", field=field)
    if len(value.strip()) > most:
        raise DomainError(f"{field} is longer than {most} characters", field=field)
    return value.strip()


def _domain(value: str) -> str:
    raw = value.strip().rstrip(".")
    if "@" in raw or "*" in raw or "." not in raw:
        raise DomainError(f"{value!r} is not a domain like contoso.com", field="domain")
    try:
        return idna.encode(raw, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        raise DomainError(f"{value!r} is not a valid domain name", field="domain") from None


def _user(value: str) -> str:
    raw = value.strip()
    if _GUID.match(raw):
        return str(uuid.UUID(raw))
    return MailboxKey.parse(raw, field="user").address  # a userPrincipalName has an address's form


def subject_of(scope: Scope, value: object, known_orgs: Iterable[str]) -> tuple[str, ...]:
    """The normalized subject of an exemption of ``scope``; a bad one is refused with its field."""
    field = scope.value
    if scope is Scope.ORGS:
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise DomainError("orgs must name exactly two orgs, like [contoso-na, contoso-eu]", field=field)
        names = tuple(sorted(_text(v, field, 100) for v in value))
        known = set(known_orgs)
        for name in names:
            if name not in known:
                raise DomainError(f"{name!r} is not a registered org", field=field)
        if names[0] == names[1]:
            raise DomainError("orgs must name two different orgs", field=field)
        return names
    text = _text(value, field, 254)
    if scope is Scope.MAILBOX:
        return (MailboxKey.parse(text, field=field).address,)
    if scope is Scope.DOMAIN:
        return (_domain(text),)
    return (_user(text),)


def new_exemption(
    scope: Scope,
    value: object,
    *,
    reason: object,
    ticket: object,
    expires: object,
    actor: str,
    now: datetime,
    known_orgs: Iterable[str],
) -> Exemption:
    """An exemption as an Admin asks for it, every value checked; it still has to be added (``plan_add``)."""
    subject = subject_of(scope, value, known_orgs)
    why = _text(reason, "reason", MAX_REASON)
    ref = _text(ticket, "ticket", MAX_TICKET)
    end = _end_date(expires, utc_day(now))
    return Exemption(new_id(), scope, subject, why, ref, end, actor, now)


def _end_date(value: object, today: date) -> date:
    if isinstance(value, datetime):
        raise DomainError("expires is a date like 2026-12-31, without a time of day", field="expires")
    if isinstance(value, date):
        end = value
    elif isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        try:
            end = date.fromisoformat(value.strip())
        except ValueError:
            raise DomainError(f"{value!r} is not a date", field="expires") from None
    else:
        raise DomainError("expires must be a date like 2026-12-31", field="expires")
    if end < today:
        raise DomainError(f"expires ({end}) is in the past (today is {today}, UTC)", field="expires")
    if end > today + timedelta(days=MAX_DAYS):
        raise DomainError(
            f"expires ({end}) is more than {MAX_DAYS} days ahead; an exemption is temporary: renew it later",
            field="expires",
        )
    return end


# --- changes to the set (each read and written by the ledger in one transaction) ---------------------


def _event(kind: str, exemption: Exemption, actor: str, version: int, at: datetime, **more: object) -> AuditEvent:
    data: dict[str, object] = {
        "exemption": exemption.id,
        "scope": exemption.scope.value,
        "subject": list(exemption.subject),
        "ticket": exemption.ticket,
        "expires": exemption.expires.isoformat(),
        "version": version,
        **more,
    }
    return AuditEvent(kind, f"exemption:{exemption.id}", actor, data, at)


def plan_add(book: Book, exemption: Exemption) -> Plan:
    """Add ``exemption`` unless an active one exempts the same thing (409 naming it): of two admins adding the
    same at once, one adds it and the other is told which exemption covers it."""
    today = utc_day(exemption.created_at)
    for other in book.active(today):
        if other.key == exemption.key:
            raise DuplicateExemption(
                f"{other.what} is exempt already, by exemption {other.id[:8]} ({other.ticket}, until "
                f"{other.expires}); remove it first to change it",
                existing=other.id,
            )
    version = book.version + 1
    added = replace(exemption, added_in=version)
    event = _event("exemption.added", added, added.created_by, version, added.created_at, reason=added.reason)
    return Plan((added,), (event,))


def plan_remove(book: Book, exemption_id: str, *, actor: str, reason: str | None, now: datetime) -> Plan:
    """End an exemption now; one removed already is 409 with its state (two admins: one removes it)."""
    found = book.get(exemption_id)
    if found is None:
        raise NotFound(f"no exemption {exemption_id}", field="id")
    if found.removed_at is not None:
        raise InvalidTransition(
            f"exemption {found.id[:8]} was removed already by {found.removed_by}", state=State.REMOVED.value
        )
    why = _text(reason, "reason", MAX_REASON) if reason is not None else None
    removed = replace(found, removed_by=actor, removed_at=now, removed_reason=why)
    event = _event("exemption.removed", removed, actor, book.version + 1, now, reason=why)
    return Plan((removed,), (event,))


def plan_expired(book: Book, now: datetime) -> Plan:
    """Report every exemption that stopped applying by its date and was not reported yet (once each)."""
    today = utc_day(now)
    due = [e for e in book.items if e.state(today) is State.EXPIRED and e.expired_at is None]
    if not due:
        return NOTHING
    version = book.version + 1
    marked = tuple(replace(e, expired_at=now) for e in due)
    events = tuple(_event("exemption.expired", e, "orgguard", version, now) for e in marked)
    return Plan(marked, events)


def resolve(book: Book, wanted: str) -> Exemption:
    """An exemption by its id or a unique prefix of it (the CLI's lists show 8 characters)."""
    exact = book.get(wanted)
    if exact is not None:
        return exact
    hits = [e for e in book.items if wanted and e.id.startswith(wanted.lower())]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise NotFound(f"no exemption {wanted}", field="id")
    raise DomainError(f"{wanted!r} names {len(hits)} exemptions; give more of the id", field="id")


# --- which exemption covers a claim ----------------------------------------------------------------------


def covering(
    exemptions: Sequence[Exemption],
    *,
    key: MailboxKey,
    claimant: str,
    owner: str | None,
    user: Mapping[str, object],
    today: date,
) -> Exemption | None:
    """The first active exemption (oldest first) covering a claim by ``claimant`` on ``key`` owned by ``owner``.

    A user exemption matches the user Graph names for the mailbox (``user``: its ``userPrincipalName`` or
    ``id``); when the user is not known, it does not match.
    """
    upn = str(user.get("userPrincipalName") or "").strip().casefold()
    user_id = str(user.get("id") or "").strip().lower()
    for exemption in sorted(exemptions, key=lambda e: (e.created_at, e.id)):
        if not exemption.applies(today):
            continue
        value = exemption.subject
        if (
            (exemption.scope is Scope.MAILBOX and value[0] == key.address)
            or (exemption.scope is Scope.DOMAIN and value[0] == key.domain)
            or (exemption.scope is Scope.ORGS and owner is not None and set(value) == {claimant, owner})
            or (exemption.scope is Scope.USER and value[0] in {upn, user_id} - {""})
        ):
            return exemption
    return None


def reads_users(exemptions: Sequence[Exemption], today: date) -> bool:
    """Whether a decision must look up the user behind a mailbox for these exemptions."""
    return any(e.scope is Scope.USER and e.applies(today) for e in exemptions)

"""OrgGuard's domain: plain dataclasses and small functions, no framework imports.

The vocabulary follows DESIGN.md. Everything here is importable without Azure,
a network or ``azure.functions``; invariants that can be checked on one object
live on that object.
"""

from __future__ import annotations

import contextlib
import functools
import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import cast

import idna


class DomainError(Exception):
    """A bad input or a refused operation, with the field it concerns.

    Entry points map it to a client error (HTTP 4xx, a dead-lettered message,
    CLI exit 2 for a bad input (400, 422), else 1); nothing has been recorded when it is raised.
    """

    status = 400
    title = "Bad request"

    def __init_subclass__(cls, *, status: int | None = None, title: str | None = None) -> None:
        """Each kind of error declares its HTTP status and problem title on its class line."""
        super().__init_subclass__()
        if status is not None:
            cls.status = status
        if title is not None:
            cls.title = title

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field

    @property
    def facts(self) -> dict[str, object]:
        """More members for the problem+json answer (e.g. the state a case is in now)."""
        return {}


class InvalidPayload(DomainError, title="Malformed payload"):
    """A claim's payload OrgGuard cannot read: a field missing, mistyped or naming nothing."""


class InvalidAddress(DomainError, title="Invalid mailbox address"):
    """A mailbox address that is not one (OrgGuard keys mailboxes by their SMTP address)."""


class UnknownOrg(DomainError, status=404, title="Unknown org"):
    """An org name the orgs file does not configure."""


class NotFound(DomainError, status=404, title="Not found"):
    """Nothing by that id (a case, an action, a job ...)."""


class InvalidTransition(DomainError, status=409, title="Case cannot change that way"):
    """The case (or action) is no longer in a state that allows the change; ``state`` is where it is now."""

    def __init__(self, detail: str, *, state: str, field: str | None = "state") -> None:
        super().__init__(detail, field=field)
        self.state = state

    @property
    def facts(self) -> dict[str, object]:
        return {"state": self.state}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------------------
# Enumerations (string values are what the API, the ledger and the logs use)


class ClaimKind(StrEnum):
    TEST_ENABLE = "test_enable"
    PRIMARY_FLAG = "primary_flag"
    ACT_METHOD = "act_method"
    SWEEP = "sweep"
    ADMIN = "admin"


class Origin(StrEnum):
    GATE = "gate"
    SERVICEBUS = "servicebus"
    EVENTGRID = "eventgrid"
    WEBHOOK = "webhook"
    SWEEP = "sweep"
    ADMIN = "admin"

    @property
    def after_the_fact(self) -> bool:
        """True when the org has already saved the claim (OrgGuard can only repair)."""
        return self is not Origin.GATE


class Effect(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"
    OVERRIDE = "override"
    HOLD = "hold"
    AUDIT = "audit"
    WARN = "warn"  # the claim goes through, and the people concerned are told (Dataverse shows nobody anything)


class CaseState(StrEnum):
    OPEN = "open"
    HELD = "held"
    DECIDED = "decided"
    APPLIED = "applied"
    FAILED = "failed"
    DENIED = "denied"
    EXPIRED = "expired"


class ActionKind(StrEnum):
    DEMOTE = "demote"
    PROMOTE = "promote"
    NOTIFY = "notify"


class Fence(StrEnum):
    """What a demote sets to None in the org that loses a mailbox (the policy's ``fence``).

    ``act``: appointments, contacts and tasks (always: it is what keeps the org from claiming the
    mailbox); ``email``: incoming and outgoing email too, for tenants that want one org alone to
    process a mailbox at all (the org that wins the mailbox gets email on server-side sync back).
    """

    ACT = "act"
    EMAIL = "email"


ACT_ONLY: tuple[Fence, ...] = (Fence.ACT,)


class ActionStatus(StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    FAILED = "failed"


# Cases that still need someone or something: waiting for an approver, for their actions, or for a retry.
OPEN_STATES = frozenset({CaseState.OPEN, CaseState.HELD, CaseState.DECIDED, CaseState.FAILED})
# Where a case rests once a decision about it was taken (its actions may still be running).
RESOLVED_STATES = frozenset({CaseState.DECIDED, CaseState.DENIED, CaseState.EXPIRED})


class NoticeKind(StrEnum):
    """Which message a notify action sends (``shared/letters.py`` writes each)."""

    STOPPED = "stopped"  # to the admin whose claim was blocked or held
    APPROVAL = "approval"  # to the approvers of a held case
    REMINDER = "reminder"  # to the approvers, before a held case expires
    EXPIRED = "expired"  # to the approvers and the stopped admin, when it expired
    RESOLVED = "resolved"  # to the stopped admin, when an approver approved or denied the held claim
    CARRIED_OUT = "carried-out"  # to the owner org's contact, once a block or override is carried out
    WARNED = "warned"  # to the admin whose claim went through under a warn rule, and the owner org's contact


# ---------------------------------------------------------------------------
# Mailbox identity

# RFC 5322 atext, plus any Unicode letter or digit (RFC 6531 internationalized addresses).
_LOCAL_PART = re.compile(r"^[\w!#$%&'*+/=?^`{|}~.-]+$")
# A plain ASCII address between spaces: ``_LOCAL_PART``'s characters in dot-separated runs, '@', a host name's.
_PLAIN_LOCAL = r"[\w!#$%&'*+/=?^`{|}~-]++(?:\.[\w!#$%&'*+/=?^`{|}~-]++)*+"
_PLAIN_HOST = r"[A-Za-z0-9.-]++"
_PLAIN_ADDRESS = re.compile(rf" *({_PLAIN_LOCAL})@({_PLAIN_HOST}) *", re.ASCII)
MAX_ADDRESS = 254
MAX_RAW = 4 * MAX_ADDRESS  # longer than this, an address is refused before anything else is looked at
# Addresses one a line, each line one match: (the address without its spaces, its domain) when it is plain, else
# empty text twice.
_PLAIN_LINES = re.compile(rf"^ *+({_PLAIN_LOCAL}@({_PLAIN_HOST})) *+$|^.*$", re.ASCII | re.MULTILINE)
SHORT_ADDRESS = 64  # an address this long or shorter has no part too long for ``_plain_key``


# Control (Cc), format (Cf), surrogate, private-use and unassigned characters, and line/paragraph separators:
# none belongs in an address, a key or a name, and each can hide in logs, headers or a person's eyes. The
# zero-width joiners are left to IDNA, whose CONTEXTJ rules allow them in some scripts' domain names.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_JOINERS = frozenset("\u200c\u200d")
_ASCII_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


def hidden_character(text: str, *, allow: str = "") -> str | None:
    """The first control or invisible character in ``text`` (not counting ``allow``), or None."""
    if text.isascii():  # the common case: one scan by the regular-expression engine, no look-up per character
        return next((c for c in _ASCII_CONTROLS.findall(text) if c not in allow), None)
    for c in text:
        if c not in allow and c not in _JOINERS and unicodedata.category(c) in _HIDDEN_CATEGORIES:
            return c
    return None


@functools.lru_cache(maxsize=4096)
def _ascii_domain(domain: str) -> str:
    """IDNA (UTS 46) form of a domain; a tenant has few domains, so it is cached."""
    return idna.encode(domain, uts46=True).decode("ascii").lower()


def _plain_key(local: str, domain: str) -> str | None:
    """The key of a plain address's parts (``_PLAIN_ADDRESS``'s two groups), or None when the full checks must say
    (a part too long, a domain IDNA refuses or without a dot)."""
    if len(local) > 64 or len(local) + 1 + len(domain) > MAX_ADDRESS:
        return None
    try:
        ascii_domain = _ascii_domain(domain.rstrip("."))
    except (idna.IDNAError, UnicodeError):
        return None
    return f"{local.lower()}@{ascii_domain}" if "." in ascii_domain else None


@dataclass(frozen=True, order=True)
class MailboxKey:
    """A mailbox's identity across orgs: trimmed, case-folded, IDNA domain."""

    address: str

    @classmethod
    def parse(cls, raw: object, *, field: str = "address") -> MailboxKey:
        """The key of an address as an admin typed it, or ``InvalidAddress`` saying what is wrong with it.

        Most addresses are plain ASCII (letters, digits, dots, a host name): one regular expression
        vouches for everything the full checks (``_checked``) would look at but the domain and the
        lengths, and a sweep parses hundreds of thousands of them. Anything else takes the full checks.
        """
        plain = _PLAIN_ADDRESS.fullmatch(raw) if isinstance(raw, str) and len(raw) <= MAX_RAW else None
        if plain is not None and (address := _plain_key(*plain.groups())) is not None:
            return cls(address)
        return cls._checked(raw, field)

    @classmethod
    def addresses(cls, raws: Sequence[object]) -> list[str | None]:
        """Each raw value's key address as ``parse`` gives it, None where ``parse`` refuses the value.

        A sweep reads hundreds of thousands of addresses, 5,000 a page: the page's addresses, one a
        line, go through one regular-expression pass (``_PLAIN_LINES``). A plain address whose domain
        is already its own IDNA form (most are) is its key once lower-cased: each distinct domain is
        asked once. The rest (not plain ASCII, not text, a line break inside, an odd domain) take
        ``parse``'s full checks one by one. No ``MailboxKey`` is built: the sweep keeps the text.
        """
        found: list[tuple[str, str]] = []
        try:
            text = "\n".join(cast("Sequence[str]", raws))
        except TypeError:  # a value that is not text: each value on its own
            text = ""
        if text and max(map(len, cast("Sequence[str]", raws))) <= MAX_RAW:
            found = _PLAIN_LINES.findall(text)  # one match a line
        if len(found) != len(raws):  # a value holds a line break of its own: each value on its own
            found = [("", "")] * len(raws)
        as_is = {
            domain
            for domain in {domain for _, domain in found}
            if domain and _plain_key("a", domain) == f"a@{domain.lower()}"
        }
        keys: list[str | None] = [
            address.lower() if domain in as_is and len(address) <= SHORT_ADDRESS else None for address, domain in found
        ]
        for i in [i for i, key in enumerate(keys) if key is None]:
            with contextlib.suppress(InvalidAddress):
                keys[i] = cls.parse(raws[i]).address
        return keys

    @classmethod
    def _checked(cls, raw: object, field: str) -> MailboxKey:
        if not isinstance(raw, str):
            raise InvalidAddress("a mailbox address must be a string", field=field)
        if len(raw) > 4 * MAX_ADDRESS:
            raise InvalidAddress(f"the mailbox address is longer than {MAX_ADDRESS} characters", field=field)
        if (bad := hidden_character(raw)) is not None:
            raise InvalidAddress(
                f"the mailbox address holds a control or invisible character (U+{ord(bad):04X})", field=field
            )
        text = raw.strip()  # only spaces are left to trim: every other kind of white space was refused above
        if not text:
            raise InvalidAddress("the mailbox address is empty", field=field)
        if len(text) > MAX_ADDRESS:
            raise InvalidAddress(f"the mailbox address is longer than {MAX_ADDRESS} characters", field=field)
        if text.count("@") != 1:
            raise InvalidAddress("a mailbox address has exactly one '@'", field=field)
        local, domain = text.split("@")
        local = unicodedata.normalize("NFC", local).casefold()
        if not local or len(local) > 64 or not _LOCAL_PART.match(local):
            raise InvalidAddress("the part before '@' is not a valid mailbox name", field=field)
        if local.startswith(".") or local.endswith(".") or ".." in local:
            raise InvalidAddress("the part before '@' has a misplaced dot", field=field)
        try:
            ascii_domain = _ascii_domain(domain.rstrip("."))
        except (idna.IDNAError, UnicodeError) as exc:
            raise InvalidAddress(f"the domain is not a valid host name ({exc})", field=field) from None
        if "." not in ascii_domain:
            raise InvalidAddress("the domain needs at least one dot", field=field)
        return cls(f"{local}@{ascii_domain.lower()}")

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1]

    @property
    def redacted(self) -> str:
        """What logs may show: never a full address (DESIGN, security)."""
        local, domain = self.address.rsplit("@", 1)
        return f"{local[:1]}***@{domain}"

    def __str__(self) -> str:
        return self.address


# ---------------------------------------------------------------------------
# Orgs


@dataclass(frozen=True)
class Org:
    """A registered Dataverse org. Only registered orgs are heard."""

    id: str
    name: str
    url: str
    label: str = ""
    app_user_id: str | None = None  # OrgGuard's own systemuser in the org (loop guard)
    type: str | None = None  # its environment type (production, sandbox, trial, ...; ``environments.py``)


_CANONICAL_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def normalize_guid(raw: object, *, field: str) -> str:
    if not isinstance(raw, str):
        raise InvalidPayload(f"{field} must be a GUID string", field=field)
    if _CANONICAL_GUID.match(raw):
        return raw
    try:
        return str(uuid.UUID(raw.strip().strip("{}")))
    except ValueError:
        raise InvalidPayload(f"{field} is not a GUID", field=field) from None


# ---------------------------------------------------------------------------
# Claims, decisions, cases


@dataclass(frozen=True)
class Claim:
    """Org ``org`` wants ACT sync of mailbox ``key``."""

    key: MailboxKey
    org: str
    mailbox_id: str
    kind: ClaimKind
    origin: Origin
    source_ids: dict[str, str] = field(default_factory=dict)
    observed_at: datetime = field(default_factory=utcnow)
    user_id: str | None = None
    # The row's stamps where the source states them (an asynchronous context's Target, the sweep's read):
    # who saved (``modifiedby``), for whom (``modifiedonbehalfby``), and when (``modifiedon``).
    modified_by: str | None = None
    modified_on_behalf_of: str | None = None
    modified_on: datetime | None = None

    @property
    def event_key(self) -> str:
        """Idempotency key: a source event takes effect at most once (invariant 2)."""
        ids = self.source_ids
        source = ids.get("operation") or ids.get("request") or ids.get("message") or ids.get("correlation")
        if not source:
            source = f"{self.origin}:{self.observed_at.isoformat()}"
        return f"{ids.get('org', self.org)}:{source}:{self.mailbox_id}".lower()


@dataclass(frozen=True)
class Decision:
    effect: Effect
    rule: str
    explanation: str
    dry_run: bool = False
    exemption: str | None = None  # the exemption that made an enforcing rule only record the claim

    @property
    def acts(self) -> bool:
        return not self.dry_run and self.effect in (Effect.BLOCK, Effect.OVERRIDE)

    @property
    def stops_claim(self) -> bool:
        """Whether the gate answers 409 (the save is cancelled)."""
        return not self.dry_run and self.effect in (Effect.BLOCK, Effect.HOLD)


@dataclass(frozen=True)
class Ownership:
    key: MailboxKey
    owner: str
    since: datetime
    how: str
    version: int = 1
    mailbox_id: str | None = None  # the owner org's own mailbox row, when known


@dataclass(frozen=True)
class Notice:
    """What a notify action tells, and to whom.

    ``to`` holds recipients as the policy names them: an address, ``group:<name>``
    (its members, through Graph) or ``admin:<org>/<systemuser id>`` (that user's
    address in that org, through the Web API); they are resolved when the mail
    goes out, so a Graph outage delays the mail, never the decision. ``sent``
    holds short hashes of the recipients a large message already reached in an
    earlier attempt (it goes out in parts), so a retry does not mail them twice.
    """

    kind: NoticeKind
    to: tuple[str, ...]
    sent: tuple[str, ...] = ()


@dataclass(frozen=True)
class Action:
    """One idempotent write to one org, or one message (``notify``, with its ``notice``)."""

    id: str
    case_id: str
    org: str
    mailbox_id: str | None
    kind: ActionKind
    status: ActionStatus = ActionStatus.PENDING
    attempts: int = 0
    last_error: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    next_attempt_at: datetime | None = None  # backoff: not before this time
    notice: Notice | None = None  # notify actions only
    fence: tuple[Fence, ...] = ACT_ONLY  # demote and promote: what they fence (or unfence), as decided

    @property
    def writes(self) -> bool:
        """Whether this action changes an org (demote, promote); a case settles on these alone."""
        return self.kind is not ActionKind.NOTIFY


class Found(StrEnum):
    """Why OrgGuard's gate never decided a save that claims a mailbox."""

    BYPASS = "bypass"  # the gate step is there and enabled (as last checked), yet it never heard the save
    GATE_DISABLED = "gate_disabled"  # the gate step is disabled, deleted or not as registered (as last checked)
    GATE_DEGRADED = "gate_degraded"  # OrgGuard's gate answered the save without deciding (gate.on_error: allow)
    UNHEARD = "unheard"  # the gate never heard it; its state in the org is not known (no recent check)


@dataclass(frozen=True)
class Unheard:
    """A claim whose save the gate never decided, as its case and audit entry record it."""

    found: Found
    by: Origin  # the way in that found it: an asynchronous channel, or the sweep
    saved_by: str | None = None  # the systemuser who saved (or, from the sweep, who last changed the row)
    on_behalf_of: str | None = None  # modifiedonbehalfby: the user an impersonating caller acted for
    saved_at: datetime | None = None

    def facts(self) -> dict[str, object]:
        return {
            "found": self.found.value,
            "by": self.by.value,
            "saved_by": self.saved_by,
            "on_behalf_of": self.on_behalf_of,
            "saved_at": self.saved_at.isoformat() if self.saved_at else None,
        }

    @classmethod
    def from_facts(cls, doc: dict[str, object]) -> Unheard:
        at = doc.get("saved_at")
        return cls(
            Found(str(doc["found"])),
            Origin(str(doc["by"])),
            _text(doc.get("saved_by")),
            _text(doc.get("on_behalf_of")),
            datetime.fromisoformat(at) if isinstance(at, str) and at else None,
        )

    def sentence(self) -> str:
        """One sentence for people (the case's history, the page)."""
        who = f" by user {self.saved_by}" if self.saved_by else ""
        if self.on_behalf_of:
            who += f" on behalf of user {self.on_behalf_of}"
        why = {
            Found.BYPASS: "the gate step is registered and enabled, so the caller most likely bypassed custom logic",
            Found.GATE_DISABLED: "OrgGuard's gate step in that org is disabled, deleted or changed",
            Found.GATE_DEGRADED: "OrgGuard's gate answered without deciding (gate.on_error: allow)",
            Found.UNHEARD: "whether the gate step is in place there is not known (no recent registration check)",
        }[self.found]
        how = "the sweep" if self.by is Origin.SWEEP else f"the asynchronous event ({self.by.value})"
        return f"The save{who} never reached OrgGuard's gate ({why}); {how} found it."


def _text(value: object) -> str | None:
    return str(value) if value else None


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    state: CaseState
    actor: str
    note: str


@dataclass(frozen=True)
class Case:
    """A recorded competing claim and what became of it."""

    id: str
    key: MailboxKey
    owner: str | None
    claimant: str
    claimant_mailbox_id: str
    kind: ClaimKind
    origin: Origin
    decision: Decision
    state: CaseState
    created_at: datetime
    updated_at: datetime
    owner_mailbox_id: str | None = None
    expires_at: datetime | None = None
    actions: tuple[Action, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    unheard: Unheard | None = None  # a save that skipped the gate: how it was found, and who saved it

    @classmethod
    def opened(
        cls,
        key: MailboxKey,
        owner: Ownership | None,
        claimant: str,
        claimant_mailbox_id: str,
        kind: ClaimKind,
        origin: Origin,
        decision: Decision,
        *,
        state: CaseState,
        actor: str,
        at: datetime,
        expires_at: datetime | None = None,
        unheard: Unheard | None = None,
    ) -> Case:
        """A case as it is first recorded: opened, and at once moved to ``state`` by ``actor`` for its decision.

        Every way a case begins (a competing claim, a migration, a sweep's repair)
        starts here, so each carries the same fields and the same first history step;
        ``unheard``: its save skipped the gate, and the first step says how it was found.
        """
        case = cls(
            id=new_id(),
            key=key,
            owner=owner.owner if owner else None,
            claimant=claimant,
            claimant_mailbox_id=claimant_mailbox_id,
            owner_mailbox_id=owner.mailbox_id if owner else None,
            kind=kind,
            origin=origin,
            decision=decision,
            state=CaseState.OPEN,
            created_at=at,
            updated_at=at,
            expires_at=expires_at,
            unheard=unheard,
        )
        note = f"{decision.explanation} {unheard.sentence()}" if unheard else decision.explanation
        return case.moved_to(state, actor=actor, note=note, at=at)

    def moved_to(self, state: CaseState, *, actor: str, note: str, at: datetime | None = None) -> Case:
        """The case in a new state, with the change in its history."""
        when = at or utcnow()
        entry = HistoryEntry(at=when, state=state, actor=actor, note=note)
        return replace(self, state=state, updated_at=when, history=(*self.history, entry))


# ---------------------------------------------------------------------------
# Ledger records


@dataclass(frozen=True)
class MailboxView:
    """The ledger's view of one mailbox aggregate, with its version for optimistic writes."""

    key: MailboxKey
    ownership: Ownership | None
    version: int  # 0 when the ledger has never seen the mailbox


@dataclass(frozen=True)
class EventOutcome:
    """What a processed source event decided, returned again on redelivery."""

    event_key: str
    effect: Effect
    case_id: str | None
    at: datetime


@dataclass(frozen=True)
class ClaimRecord:
    key: MailboxKey
    org: str
    kind: ClaimKind
    origin: Origin
    event_key: str
    effect: Effect
    case_id: str | None
    at: datetime


@dataclass(frozen=True)
class AuditEvent:
    """A fact for the hash-chained audit log; the ledger adds sequence and hashes."""

    kind: str
    subject: str
    actor: str
    data: dict[str, object] = field(default_factory=dict)
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    event: AuditEvent
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Change:
    """Everything one decision writes, committed atomically or not at all.

    ``expected_version`` is the mailbox version the decision was computed from;
    the ledger refuses the change (``ConcurrencyConflict``) when another writer
    moved the mailbox in between, and the service layer decides again.
    ``event`` is created only if absent (``DuplicateEvent`` otherwise).
    """

    key: MailboxKey
    expected_version: int
    ownership: Ownership | None = None
    event: EventOutcome | None = None
    claim: ClaimRecord | None = None
    cases: tuple[Case, ...] = ()
    audit: tuple[AuditEvent, ...] = ()
    # Cases this change moves on from a state it read: (case id, the state it must still be stored in).
    # The ledger refuses the change (``ConcurrencyConflict``) otherwise, so of two approvers one wins.
    expect: tuple[tuple[str, CaseState], ...] = ()


@dataclass(frozen=True)
class AuditReport:
    """What verifying the audit chain found: ``ok``, how many entries it read, and the first that breaks it."""

    ok: bool
    entries: int
    first_bad: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class PolicyVersion:
    """One saved policy: its text as the admin wrote it, who saved it and when (the ledger keeps every one)."""

    version: int
    text: str
    actor: str
    at: datetime


@dataclass(frozen=True)
class CaseQuery:
    state: CaseState | None = None
    org: str | None = None
    mailbox: MailboxKey | None = None
    limit: int = 50
    cursor: str | None = None
    open: bool = False  # only cases in OPEN_STATES
    search: str | None = None  # a part of the mailbox address (case-folded)

    @classmethod
    def of(
        cls,
        *,
        state: str | None = None,
        org: str | None = None,
        mailbox: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> CaseQuery:
        """A query from what a person typed: ``state`` a case state or ``open`` (every unfinished case);
        ``mailbox`` a full address (that mailbox) or any other text (a search in addresses).

        Bad input is refused whole, never trimmed into something else: an unknown state, a hidden
        character (which would make a search match nothing and hide why), a malformed address.
        """
        if state is not None and state != "open" and state not in {s.value for s in CaseState}:
            known = ", ".join(["open", *(s.value for s in CaseState)])
            raise DomainError(f"state must be one of {known}, not {state!r}", field="state")
        found, search = None, None
        if mailbox:
            if "@" in mailbox:
                found = MailboxKey.parse(mailbox, field="mailbox")
            else:
                if (hidden := hidden_character(mailbox)) is not None:
                    raise InvalidAddress(
                        f"the mailbox search has a control or invisible character (U+{ord(hidden):04X})",
                        field="mailbox",
                    )
                search = mailbox.strip().casefold() or None
        return cls(
            state=CaseState(state) if state not in (None, "open") else None,
            open=state == "open",
            org=org or None,
            mailbox=found,
            search=search,
            limit=limit,
            cursor=cursor,
        )

    def matches(self, case: Case) -> bool:
        """Whether ``case`` belongs in this query's answer (the one rule both ledgers filter by)."""
        if self.state and case.state is not self.state:
            return False
        if self.open and case.state not in OPEN_STATES:
            return False
        if self.org and self.org not in (case.claimant, case.owner):
            return False
        if self.mailbox and case.key != self.mailbox:
            return False
        return not (self.search and self.search.casefold() not in case.key.address)


@dataclass(frozen=True)
class Page:
    items: tuple[Case, ...]
    next: str | None


@dataclass(frozen=True)
class Overview:
    """What needs attention: cases per state, per org, and the held case closest to expiry."""

    counts: dict[str, int]
    by_org: dict[str, dict[str, int]]
    oldest_held: Case | None

    @classmethod
    def of(cls, counts: dict[str, int], waiting: list[Case]) -> Overview:
        """From the count per state and the open cases: each org's held, failed and open cases (as claimant
        or owner), and the held case created first."""
        counts = {state.value: counts.get(state.value, 0) for state in CaseState}
        counts["open"] = sum(counts[state.value] for state in OPEN_STATES)
        by_org: dict[str, dict[str, int]] = {}
        for case in waiting:
            for org in {case.claimant, case.owner} - {None}:
                tally = by_org.setdefault(str(org), {"held": 0, "failed": 0, "open": 0})
                tally["open"] += 1
                if case.state.value in tally:
                    tally[case.state.value] += 1
        held = [case for case in waiting if case.state is CaseState.HELD]
        oldest = min(held, key=lambda case: (case.created_at, case.id)) if held else None
        return cls(counts, dict(sorted(by_org.items())), oldest)

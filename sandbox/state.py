"""Everything the simulated systems remember: orgs and their tables, Exchange, Graph, logs.

All of it lives in dicts with an index by address, so an org of 50,000 mailboxes pages and
looks up in time proportional to the answer, not to the org. The state is touched only from
the server's event loop; nothing here is thread-safe, and nothing needs to be.
"""

from __future__ import annotations

import re
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from sandbox.model import (
    MAILBOX,
    REGISTRATION_SETS,
    TABLES,
    DictRecord,
    Record,
    SystemUser,
    TableSpec,
    mailbox_key,
)

SEMANTICS = ("overwrite", "alert", "disable-other")
ALERT_TEXT = (
    "Appointments, contacts, and tasks can't be synchronized because the email address of the mailbox {name} "
    "is configured with another organization. The best practice is to overwrite the configuration when you test "
    "and enable the mailbox in your primary organization. Also, change the synchronization method for your mailbox "
    "in non-primary organizations to None."
)
NAMESPACE = uuid.UUID("6f1c8a52-2f4e-4c7a-9a55-0d5e1f3b7c90")


def stable_id(*parts: object) -> str:
    """A GUID that is the same on every run for the same parts (seeded rows, message ids)."""
    return str(uuid.uuid5(NAMESPACE, "/".join(str(part) for part in parts)))


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Table:
    """Rows of one entity set in one org, in insertion order, with a cursor-friendly scan."""

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        self.rows: dict[str, Record] = {}
        self.order: list[str] = []
        self.by_key: dict[str, list[str]] = {}  # mailbox_key -> mailbox ids (mailboxes only)

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, row_id: str) -> Record | None:
        return self.rows.get(row_id.lower())

    def add(self, row: Record) -> None:
        row_id = str(row.get(self.spec.primary_key))
        self.rows[row_id] = row
        self.order.append(row_id)
        if self.spec is MAILBOX:
            self.by_key.setdefault(mailbox_key(str(row.get("emailaddress") or "")), []).append(row_id)

    def remove(self, row_id: str) -> None:
        self.rows.pop(row_id, None)  # the id stays in `order`; scans skip it

    def reindex(self, row_id: str, old_address: str, new_address: str) -> None:
        old, new = mailbox_key(old_address), mailbox_key(new_address)
        if old == new:
            return
        ids = self.by_key.get(old, [])
        if row_id in ids:
            ids.remove(row_id)
        self.by_key.setdefault(new, []).append(row_id)

    def scan(self, start: int) -> Iterator[tuple[int, Record]]:
        """Rows from position `start` on, with the position after each (the paging cursor)."""
        order, rows = self.order, self.rows
        for position in range(start, len(order)):
            row = rows.get(order[position])
            if row is not None:
                yield position + 1, row


@dataclass
class Settings:
    """What the sandbox does; every field can be overridden per org (except the event knobs).

    The defaults are Dataverse's documented ones (see the modules that apply them for the
    sources): service protection on, webhooks only on ports 80 and 443, a 60 s webhook
    timeout. `test_enable_delay_s` 0 runs Test & Enable inside the save that schedules it
    (the sandbox's older, deterministic world); above 0 it completes later, as in Dataverse.
    """

    semantics: str = "overwrite"
    gate: bool = True
    events: bool = True
    budget: int | None = 6000  # requests per user per window; None: unlimited
    window_s: float = 300.0
    execution_budget_s: float | None = 1200.0  # combined execution time per user per window
    execution_cost_s: float = 0.05  # modelled execution time of one operation
    concurrency: int | None = 52  # concurrent requests per user
    webhook_timeout_s: float = 60.0
    loopback_webhooks: bool = False  # a local-development exception to the 80/443 rule
    max_context_bytes: int = 256 * 1024
    checkbox_resets: bool = False
    test_enable_delay_s: float = 0.0
    bypass_step_ids_limit: int = 3
    event_retries: int = 3
    event_retry_delay_s: float = 0.5

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass
class Fault:
    """Injected failures: the next `count` Web API requests (optionally only some) answer `status`."""

    status: int
    count: int
    methods: frozenset[str] | None = None
    match: str | None = None
    retry_after: int | None = None

    def applies(self, method: str, path: str) -> bool:
        if self.count <= 0:
            return False
        if self.methods is not None and method.upper() not in self.methods:
            return False
        return self.match is None or self.match in path


@dataclass
class Counters:
    """What an org was asked, for benchmarks: `http` counts as service protection's number of requests
    does (a $batch once), `requests` as entitlement limits do (every operation, inside a batch too)."""

    http: int = 0  # HTTP requests received, a $batch counting once
    requests: int = 0  # operations: each request outside a batch and each request inside one
    batches: int = 0
    batch_inner: int = 0
    throttled: int = 0
    faults: int = 0
    by_method: dict[str, int] = field(default_factory=dict)

    def operation(self, method: str, inner: bool = False) -> None:
        self.requests += 1
        self.by_method[method] = self.by_method.get(method, 0) + 1
        if inner:
            self.batch_inner += 1


@dataclass
class Load:
    """One user's service-protection load on one org's web server, over the sliding window."""

    arrivals: deque[float] = field(default_factory=deque)  # every request's arrival, refused ones too
    work: deque[tuple[float, float]] = field(default_factory=deque)  # (finished at, execution seconds)
    work_s: float = 0.0  # the sum of `work`
    in_flight: int = 0


@dataclass
class OrgState:
    name: str
    id: str
    business_unit_id: str
    tables: dict[str, Table]
    overrides: dict[str, object] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # bearer token -> systemuserid
    windows: dict[str, Load] = field(default_factory=dict)  # systemuserid -> service-protection load
    administrators: set[str] = field(default_factory=set)  # systemuserids with the System Administrator role
    privileges: dict[str, set[str]] = field(default_factory=dict)  # systemuserid -> privileges granted otherwise
    counters: Counters = field(default_factory=Counters)
    fault: Fault | None = None
    latency_ms: int = 0
    next_version: int = 1_000_000
    mail_domain: str = ""  # the domain of its admins' addresses (API callers get <token>@<domain>)

    @property
    def mailboxes(self) -> Table:
        return self.tables["mailboxes"]

    @property
    def systemusers(self) -> Table:
        return self.tables["systemusers"]

    def version(self) -> int:
        """Dataverse's row version: one counter per org database, always increasing."""
        self.next_version += 1
        return self.next_version

    def user_for_token(self, token: str) -> str:
        """Each distinct bearer token is a distinct systemuser, created the first time it calls."""
        user_id = self.tokens.get(token)
        if user_id is None:
            user_id = stable_id(self.id, "token", token)
            number = len(self.tokens) + 1
            self.systemusers.add(
                SystemUser(
                    systemuserid=user_id,
                    fullname=f"API caller {number}",
                    internalemailaddress=self.caller_address(token),
                    domainname=f"caller{number}@{self.name}.sandbox",
                    azureactivedirectoryobjectid=stable_id("aad", self.id, token),
                    _businessunitid_value=self.business_unit_id,
                    isdisabled=False,
                    accessmode=4,
                    versionnumber=self.version(),
                )
            )
            self.tokens[token] = user_id
        return user_id

    def caller_address(self, token: str) -> str | None:
        """A simple token (letters, digits, '.', '-', '_') names the caller's mailbox: jp-admin@contoso.co.jp."""
        if not self.mail_domain or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", token):
            return None
        return f"{token.lower()}@{self.mail_domain}"

    def user_name(self, user_id: str | None) -> str | None:
        if user_id is None:
            return None
        row = self.systemusers.get(user_id)
        return None if row is None else str(row.get("fullname"))

    def name_of(self, logical_name: str, record_id: str | None) -> str | None:
        """A row's primary name, as a lookup shows it (an EntityReference's Name, a FormattedValue)."""
        table = next((t for t in self.tables.values() if t.spec.logical_name == logical_name), None)
        if table is None or table.spec.primary_name is None or record_id is None:
            return None
        row = table.get(record_id)
        return None if row is None else str(row.get(table.spec.primary_name))


@dataclass(slots=True)
class GraphUser:
    id: str
    displayName: str
    userPrincipalName: str
    mail: str
    usageLocation: str
    country: str
    department: str
    jobTitle: str
    groups: tuple[str, ...]
    companyName: str = "Contoso"
    officeLocation: str = ""
    proxyAddresses: tuple[str, ...] = ()
    accountEnabled: bool = True

    @classmethod
    def at(
        cls,
        mail: str,
        name: str,
        *,
        user_id: str,
        place: tuple[str, str] = ("US", "United States"),
        department: str = "",
        title: str = "",
        groups: tuple[str, ...] = (),
        office: str = "",
        company: str = "Contoso",
        upn: str | None = None,
        proxies: tuple[str, ...] = (),
    ) -> GraphUser:
        """A user whose mail is ``mail``: the UPN is the address in lower case and the one proxy address its
        primary SMTP address, unless given; ``place`` is the usage location and the country's name."""
        return cls(
            id=user_id,
            displayName=name,
            userPrincipalName=upn or mail.lower(),
            mail=mail,
            usageLocation=place[0],
            country=place[1],
            department=department,
            jobTitle=title,
            groups=groups,
            companyName=company,
            officeLocation=office,
            proxyAddresses=proxies or (f"SMTP:{mail}",),
        )

    def as_json(self) -> dict[str, Any]:
        """Graph's user resource: the fields are named as Graph names them; the groups are served by /memberOf."""
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "groups"}
        return doc | {"proxyAddresses": list(self.proxyAddresses)}

    def addresses(self) -> set[str]:
        """Every address Exchange delivers to this user: mail, UPN and each smtp proxy address."""
        found = {mailbox_key(self.mail), mailbox_key(self.userPrincipalName)}
        found |= {mailbox_key(p.partition(":")[2]) for p in self.proxyAddresses if p.lower().startswith("smtp:")}
        return {a for a in found if a}


@dataclass
class GraphGroup:
    id: str
    displayName: str
    parents: tuple[str, ...] = ()  # groups this group is a member of (nesting)
    members: list[str] = field(default_factory=list)  # direct user members, in the order they joined


@dataclass
class GraphFault:
    """Injected Graph failures: the next `count` requests whose path contains `match` answer `status`.

    `malformed` answers 200 with a body that is not JSON; `delay_ms` answers late (a client timeout).
    """

    status: int = 503
    count: int = 1
    match: str | None = None
    retry_after: int | None = None
    malformed: bool = False
    delay_ms: int = 0
    skip: int = 0  # let this many matching requests through first

    def applies(self, path: str) -> bool:
        if self.count <= 0 or (self.match is not None and self.match.lower() not in path.lower()):
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        return True


@dataclass
class GraphCounters:
    http: int = 0  # HTTP requests received, a $batch counting once
    batches: int = 0
    inner: int = 0  # requests inside batches
    faults: int = 0
    by_route: dict[str, int] = field(default_factory=dict)


@dataclass
class SeedParams:
    mailboxes: int = 60
    overlap: float = 0.3
    seed: int = 7
    orgs: int = 3


@dataclass
class SandboxState:
    """The whole simulated world. Build with :func:`sandbox.seed.seed`."""

    settings: Settings = field(default_factory=Settings)
    defaults: Settings = field(default_factory=Settings)  # what `/_sandbox/reset` restores
    orgs: dict[str, OrgState] = field(default_factory=dict)
    exchange: dict[str, str | None] = field(default_factory=dict)  # mailbox_key -> org name
    graph_users: dict[str, GraphUser] = field(default_factory=dict)
    graph_by_address: dict[str, list[str]] = field(default_factory=dict)  # every address -> user ids
    groups: dict[str, GraphGroup] = field(default_factory=dict)
    graph_faults: list[GraphFault] = field(default_factory=list)
    graph_counters: GraphCounters = field(default_factory=GraphCounters)
    mail: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    seeded_with: SeedParams = field(default_factory=SeedParams)

    def org(self, name: str) -> OrgState | None:
        return self.orgs.get(name)

    def org_by_id(self, org_id: str) -> OrgState | None:
        return next((org for org in self.orgs.values() if org.id == org_id.lower()), None)

    def setting(self, org: OrgState | None, name: str) -> Any:
        if org is not None and name in org.overrides:
            return org.overrides[name]
        return getattr(self.settings, name)

    def adopt(self, other: SandboxState) -> None:
        """Take `other`'s world in one step (seeded off the event loop), keeping these settings."""
        self.orgs, self.exchange, self.seeded_with = other.orgs, other.exchange, other.seeded_with
        self.graph_users, self.graph_by_address, self.groups = other.graph_users, other.graph_by_address, other.groups
        self.mail, self.events = other.mail, other.events
        self.graph_faults, self.graph_counters = [], GraphCounters()

    def add_graph_user(self, user: GraphUser) -> None:
        """A directory user, indexed by each of its addresses and listed in its groups."""
        self.graph_users[user.id] = user
        for address in user.addresses():
            self.graph_by_address.setdefault(address, []).append(user.id)
        for group_id in user.groups:
            self.groups[group_id].members.append(user.id)

    def group(self, name: str, parents: tuple[str, ...] = ()) -> GraphGroup:
        """The group named `name`, created (with a stable id) the first time."""
        found = next((g for g in self.groups.values() if g.displayName == name), None)
        if found is None:
            found = GraphGroup(stable_id("group", name), name, parents)
            self.groups[found.id] = found
        return found

    def clear_registration(self) -> None:
        for org in self.orgs.values():
            for entity_set in REGISTRATION_SETS:
                org.tables[entity_set] = Table(TABLES[entity_set])


class UnitOfWork:
    """One Dataverse transaction: every write is undoable until it commits.

    A single PATCH is one unit; a `$batch` change set shares one, so a failure anywhere in it
    puts back everything it did, in every org and in Exchange. Asynchronous events wait here
    and go out only on commit, as Dataverse queues them inside the transaction.
    """

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []
        self.after_commit: list[Callable[[], None]] = []

    def write(self, org: OrgState, table: Table, row: Record, column: str, value: object) -> None:
        old = row.get(column)
        if old == value and type(old) is type(value):
            return
        row.set(column, value)
        if column == "emailaddress":
            row_id = str(row.get(table.spec.primary_key))
            table.reindex(row_id, str(old or ""), str(value or ""))
            self._undo.append(lambda: table.reindex(row_id, str(value or ""), str(old or "")))
        self._undo.append(lambda: row.set(column, old))

    def add(self, table: Table, row: Record) -> None:
        table.add(row)
        row_id = str(row.get(table.spec.primary_key))
        self._undo.append(lambda: table.remove(row_id))

    def on_rollback(self, undo: Callable[[], None]) -> None:
        self._undo.append(undo)

    def set_exchange(self, state: SandboxState, key: str, org_name: str | None) -> None:
        had, old = key in state.exchange, state.exchange.get(key)
        state.exchange[key] = org_name

        def undo() -> None:
            if had:
                state.exchange[key] = old
            else:
                state.exchange.pop(key, None)

        self._undo.append(undo)

    def rollback(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        self.after_commit.clear()

    def commit(self) -> None:
        self._undo.clear()
        pending, self.after_commit = self.after_commit, []
        for callback in pending:
            callback()


def alert(org: OrgState, mailbox: Record, tracelog_id: str, created_on: str) -> DictRecord:
    """The mailbox alert Dataverse writes when Exchange holds the address for another org.

    A failure at error level (the `tracelog` reference: TraceStatus 1 Success / 0 Failure,
    Level 3 Error) kept once per mailbox (IsUnique; ModifiedOn is "the time the error is
    updated and logged for the same regarding object"), so a repeat updates this row.
    """
    return DictRecord(
        TABLES["tracelogs"],
        {
            "tracelogid": tracelog_id,
            "text": ALERT_TEXT.format(name=mailbox.get("name")),
            "level": 3,
            "tracecode": 0,
            "tracestatus": False,
            "isunique": True,
            "createdon": created_on,
            "modifiedon": created_on,
            "_regardingobjectid_value": mailbox.get("mailboxid"),
            "versionnumber": org.version(),
        },
    )


def new_org(name: str, org_id: str, business_unit_id: str) -> OrgState:
    tables = {entity_set: Table(spec) for entity_set, spec in TABLES.items()}
    org = OrgState(name=name, id=org_id.lower(), business_unit_id=business_unit_id, tables=tables)
    org.tables["organizations"].add(
        DictRecord(
            TABLES["organizations"],
            {
                "organizationid": org.id,
                "name": name,
                "_basecurrencyid_value": stable_id(org.id, "currency"),
                "languagecode": 1041 if name.endswith("-jp") else 1033,
                "versionnumber": org.version(),
            },
        )
    )
    for message in ("Create", "Update", "Delete", "Retrieve"):
        message_id = stable_id("sdkmessage", message)
        org.tables["sdkmessages"].add(
            DictRecord(
                TABLES["sdkmessages"], {"sdkmessageid": message_id, "name": message, "versionnumber": org.version()}
            )
        )
    for message, entity in (("Update", "mailbox"), ("Create", "mailbox"), ("Update", "systemuser")):
        org.tables["sdkmessagefilters"].add(
            DictRecord(
                TABLES["sdkmessagefilters"],
                {
                    "sdkmessagefilterid": stable_id("sdkmessagefilter", message, entity),
                    "primaryobjecttypecode": entity,
                    "secondaryobjecttypecode": "none",
                    "_sdkmessageid_value": stable_id("sdkmessage", message),
                    "iscustomprocessingstepallowed": True,
                    "versionnumber": org.version(),
                },
            )
        )
    return org

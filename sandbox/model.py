"""The rows the simulated orgs hold, described the way Dataverse's metadata describes them.

The sandbox stands for Microsoft's systems, so it has its own small model and imports
nothing from OrgGuard. Column names are Dataverse's logical names as the Web API shows
them (lookups as ``_x_value``), so a client written against the sandbox works against
a real org.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum


class Kind(Enum):
    """How a column's value travels: in JSON, in a ``$filter`` and in an execution context."""

    GUID = "guid"
    STRING = "string"
    INT = "int"
    CHOICE = "choice"  # OptionSetValue in contexts
    BOOL = "bool"
    DATETIME = "datetime"  # ISO 8601 in the Web API, /Date(ms)/ in contexts
    LOOKUP = "lookup"  # _x_value in the Web API, EntityReference in contexts


@dataclass(frozen=True)
class Column:
    kind: Kind
    writable: bool = False
    choices: frozenset[int] | None = None
    max_length: int | None = None
    target: str | None = None  # logical name a lookup points at
    type_column: str | None = None  # a lookup with several targets: the column naming its target


def lookup_target(column: Column, value_of: Callable[[str], object]) -> str:
    """The logical name a lookup's value points at: the row's type column says, for a polymorphic one."""
    if column.type_column is not None:
        named = value_of(column.type_column)
        if isinstance(named, str) and named:
            return named
    return column.target or ""


def attribute_name(column: str) -> str:
    """The logical attribute name a context or a step's filteringattributes uses (``_x_value`` -> ``x``)."""
    if column.startswith("_") and column.endswith("_value"):
        return column[1:-6]
    return column


@dataclass(frozen=True)
class Navigation:
    """A single-valued navigation property a client binds with ``name@odata.bind``."""

    column: str  # the lookup column it sets, e.g. _sdkmessageid_value
    entity_set: str  # what it may point at


@dataclass(frozen=True)
class TableSpec:
    entity_set: str
    logical_name: str
    primary_key: str
    primary_name: str | None
    columns: dict[str, Column]
    navigations: dict[str, Navigation] = field(default_factory=dict)
    creatable: bool = False
    deletable: bool = False

    @property
    def type_name(self) -> str:
        return f"Microsoft.Dynamics.CRM.{self.logical_name}"


ACT_METHODS = frozenset({0, 1, 2})  # Outlook, server-side sync, None
STATUSES = frozenset({0, 1, 2})  # Not Run, Success, Failure


def _choice(*values: int, writable: bool = False) -> Column:
    return Column(Kind.CHOICE, writable=writable, choices=frozenset(values))


def _table(
    logical_name: str,
    *,
    primary_name: str | None,
    columns: dict[str, Column],
    entity_set: str | None = None,
    navigations: dict[str, Navigation] | None = None,
    creatable: bool = False,
    deletable: bool = False,
) -> TableSpec:
    """A table as Dataverse names its parts: the entity set ``<logical name>s`` (unless told), the primary key
    ``<logical name>id`` (a GUID a client may choose where it creates rows) first, ``versionnumber`` on every row."""
    key = f"{logical_name}id"
    return TableSpec(
        entity_set=entity_set or f"{logical_name}s",
        logical_name=logical_name,
        primary_key=key,
        primary_name=primary_name,
        columns={key: Column(Kind.GUID, writable=creatable), **columns, "versionnumber": Column(Kind.INT)},
        navigations=navigations or {},
        creatable=creatable,
        deletable=deletable,
    )


def _registration_table(
    logical_name: str, *, columns: dict[str, Column], navigations: dict[str, Navigation] | None = None
) -> TableSpec:
    """A plug-in registration table (endpoints, steps, images): a client creates and deletes its rows, and
    names and describes each."""
    named = {
        "name": Column(Kind.STRING, writable=True, max_length=256),
        "description": Column(Kind.STRING, writable=True),
    }
    return _table(
        logical_name,
        primary_name="name",
        columns={**named, **columns},
        navigations=navigations,
        creatable=True,
        deletable=True,
    )


MAILBOX = _table(
    "mailbox",
    primary_name="name",
    entity_set="mailboxes",
    columns={
        "name": Column(Kind.STRING, writable=True, max_length=200),
        "emailaddress": Column(Kind.STRING, writable=True, max_length=100),
        # RegardingObjectId targets queue and systemuser; RegardingObjectTypeCode says which
        # (mailbox table reference, powerapps-docs reference/entities/mailbox.md)
        "_regardingobjectid_value": Column(Kind.LOOKUP, target="systemuser", type_column="regardingobjecttypecode"),
        "regardingobjecttypecode": Column(Kind.STRING),
        "actdeliverymethod": _choice(0, 1, 2, writable=True),
        "incomingemaildeliverymethod": _choice(0, 1, 2, 3, writable=True),
        "outgoingemaildeliverymethod": _choice(0, 1, 2, writable=True),
        # the status, retry-count and test-date columns are in the reference's "Writable columns"
        # (IsValidForUpdate); MailboxStatus is not
        "actstatus": _choice(0, 1, 2, writable=True),
        "incomingemailstatus": _choice(0, 1, 2, writable=True),
        "outgoingemailstatus": _choice(0, 1, 2, writable=True),
        "mailboxstatus": _choice(0, 1, 2),
        "orgmarkedasprimaryforexchangesync": Column(Kind.BOOL, writable=True),
        "isactsyncorgflagset": Column(Kind.BOOL, writable=True),
        "testemailconfigurationscheduled": Column(Kind.BOOL, writable=True),
        "enabledforact": Column(Kind.BOOL, writable=True),
        "emailrouteraccessapproval": _choice(0, 1, 2, 3, writable=True),
        "statecode": _choice(0, 1, writable=True),
        "statuscode": _choice(1, 2, writable=True),
        "testmailboxaccesscompletedon": Column(Kind.DATETIME, writable=True),
        "testemailconfigurationretrycount": Column(Kind.INT, writable=True),
        "postponetestemailconfigurationuntil": Column(Kind.DATETIME, writable=True),
        "modifiedon": Column(Kind.DATETIME),
        "_modifiedby_value": Column(Kind.LOOKUP, target="systemuser"),
        "_modifiedonbehalfby_value": Column(Kind.LOOKUP, target="systemuser"),
    },
)

QUEUE = _table(
    "queue",
    primary_name="name",
    columns={
        "name": Column(Kind.STRING),
        "emailaddress": Column(Kind.STRING),
        "_defaultmailbox_value": Column(Kind.LOOKUP, target="mailbox"),
        "statecode": _choice(0, 1),
    },
)

SYSTEMUSER = _table(
    "systemuser",
    primary_name="fullname",
    columns={
        "fullname": Column(Kind.STRING),
        "internalemailaddress": Column(Kind.STRING),
        "domainname": Column(Kind.STRING),
        "azureactivedirectoryobjectid": Column(Kind.GUID),
        "_businessunitid_value": Column(Kind.LOOKUP, target="businessunit"),
        "isdisabled": Column(Kind.BOOL),
        "accessmode": _choice(0, 1, 2, 3, 4, 5),  # 4 = non-interactive (application users)
    },
)

ORGANIZATION = _table(
    "organization",
    primary_name="name",
    columns={
        "name": Column(Kind.STRING),
        "_basecurrencyid_value": Column(Kind.LOOKUP, target="transactioncurrency"),
        "languagecode": Column(Kind.INT),
    },
)

SERVICEENDPOINT = _registration_table(
    "serviceendpoint",
    columns={
        "contract": _choice(1, 2, 3, 4, 5, 6, 7, 8, 9, writable=True),
        "url": Column(Kind.STRING, writable=True),
        "authtype": _choice(1, 2, 3, 4, 5, 6, 7, 8, writable=True),
        "authvalue": Column(Kind.STRING, writable=True),  # write-only, as in Dataverse
        "messageformat": _choice(1, 2, 3, writable=True),
        "namespaceformat": _choice(1, 2, writable=True),
        "connectionmode": _choice(1, 2, writable=True),
        "userclaim": _choice(1, 2, writable=True),
        "solutionnamespace": Column(Kind.STRING, writable=True),
        "path": Column(Kind.STRING, writable=True),
    },
)

SDKMESSAGE = _table(
    "sdkmessage",
    primary_name="name",
    columns={
        "name": Column(Kind.STRING),
    },
)

SDKMESSAGEFILTER = _table(
    "sdkmessagefilter",
    primary_name=None,
    columns={
        "primaryobjecttypecode": Column(Kind.STRING),
        "secondaryobjecttypecode": Column(Kind.STRING),
        "_sdkmessageid_value": Column(Kind.LOOKUP, target="sdkmessage"),
        "iscustomprocessingstepallowed": Column(Kind.BOOL),
    },
)

SDKMESSAGEPROCESSINGSTEP = _registration_table(
    "sdkmessageprocessingstep",
    columns={
        "stage": _choice(10, 20, 40, writable=True),
        "mode": _choice(0, 1, writable=True),
        "rank": Column(Kind.INT, writable=True),
        "filteringattributes": Column(Kind.STRING, writable=True),
        "supporteddeployment": _choice(0, 1, 2, writable=True),
        "asyncautodelete": Column(Kind.BOOL, writable=True),
        "configuration": Column(Kind.STRING, writable=True),
        "statecode": _choice(0, 1, writable=True),
        "statuscode": _choice(1, 2, writable=True),
        "_sdkmessageid_value": Column(Kind.LOOKUP, target="sdkmessage"),
        "_sdkmessagefilterid_value": Column(Kind.LOOKUP, target="sdkmessagefilter"),
        "_eventhandler_value": Column(Kind.LOOKUP, target="serviceendpoint"),
    },
    navigations={
        "sdkmessageid": Navigation("_sdkmessageid_value", "sdkmessages"),
        "sdkmessagefilterid": Navigation("_sdkmessagefilterid_value", "sdkmessagefilters"),
        "eventhandler_serviceendpoint": Navigation("_eventhandler_value", "serviceendpoints"),
    },
)

SDKMESSAGEPROCESSINGSTEPIMAGE = _registration_table(
    "sdkmessageprocessingstepimage",
    columns={
        "entityalias": Column(Kind.STRING, writable=True, max_length=256),
        "imagetype": _choice(0, 1, 2, writable=True),  # 0 pre, 1 post, 2 both
        "attributes": Column(Kind.STRING, writable=True),
        "messagepropertyname": Column(Kind.STRING, writable=True),
        "_sdkmessageprocessingstepid_value": Column(Kind.LOOKUP, target="sdkmessageprocessingstep"),
    },
    navigations={
        "sdkmessageprocessingstepid": Navigation("_sdkmessageprocessingstepid_value", "sdkmessageprocessingsteps"),
    },
)

TRACELOG = _table(
    "tracelog",
    primary_name=None,
    columns={
        "text": Column(Kind.STRING),
        "level": _choice(1, 2, 3),  # information, warning, error
        "tracecode": Column(Kind.INT),
        "tracestatus": Column(Kind.BOOL),  # 1 Success, 0 Failure
        "isunique": Column(Kind.BOOL),  # one trace per regarding object
        "createdon": Column(Kind.DATETIME),
        "modifiedon": Column(Kind.DATETIME),
        "_regardingobjectid_value": Column(Kind.LOOKUP, target="mailbox"),
    },
)

TABLES: dict[str, TableSpec] = {
    spec.entity_set: spec
    for spec in (
        MAILBOX,
        SYSTEMUSER,
        QUEUE,
        ORGANIZATION,
        SERVICEENDPOINT,
        SDKMESSAGE,
        SDKMESSAGEFILTER,
        SDKMESSAGEPROCESSINGSTEP,
        SDKMESSAGEPROCESSINGSTEPIMAGE,
        TRACELOG,
    )
}
REGISTRATION_SETS = ("serviceendpoints", "sdkmessageprocessingsteps", "sdkmessageprocessingstepimages")


class Record:
    """One row. Subclasses store values compactly; tables read and write them by column name."""

    __slots__ = ()

    def get(self, column: str) -> object:
        raise NotImplementedError

    def set(self, column: str, value: object) -> None:
        raise NotImplementedError


class SlotRecord(Record):
    """Attributes named after their columns: a 200k-row org stays small."""

    __slots__ = ()

    def get(self, column: str) -> object:
        return getattr(self, column)

    def set(self, column: str, value: object) -> None:
        setattr(self, column, value)


@dataclass(slots=True, eq=False)
class Mailbox(SlotRecord):
    mailboxid: str
    name: str
    emailaddress: str
    _regardingobjectid_value: str | None
    actdeliverymethod: int
    incomingemaildeliverymethod: int = 2
    outgoingemaildeliverymethod: int = 2
    actstatus: int = 0
    incomingemailstatus: int = 0
    outgoingemailstatus: int = 0
    mailboxstatus: int = 0
    orgmarkedasprimaryforexchangesync: bool = False
    isactsyncorgflagset: bool = False
    testemailconfigurationscheduled: bool = False
    enabledforact: bool = True
    emailrouteraccessapproval: int = 1
    statecode: int = 0
    statuscode: int = 1
    testmailboxaccesscompletedon: str | None = None
    testemailconfigurationretrycount: int = 0
    postponetestemailconfigurationuntil: str | None = None
    modifiedon: str | None = None
    _modifiedby_value: str | None = None
    versionnumber: int = 0
    regardingobjecttypecode: str | None = "systemuser"
    _modifiedonbehalfby_value: str | None = None


@dataclass(slots=True, eq=False)
class SystemUser(SlotRecord):
    systemuserid: str
    fullname: str
    internalemailaddress: str | None
    domainname: str
    azureactivedirectoryobjectid: str | None
    _businessunitid_value: str
    isdisabled: bool = False
    accessmode: int = 0
    versionnumber: int = 0


class DictRecord(Record):
    """The small tables (registration, organization, messages, trace logs)."""

    __slots__ = ("values",)

    def __init__(self, spec: TableSpec, values: dict[str, object]) -> None:
        self.values = {column: values.get(column) for column in spec.columns}

    def get(self, column: str) -> object:
        return self.values.get(column)

    def set(self, column: str, value: object) -> None:
        self.values[column] = value


def mailbox_key(address: str) -> str:
    """How Exchange identifies a mailbox: the SMTP address, trimmed and case-folded."""
    return address.strip().casefold()

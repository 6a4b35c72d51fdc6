"""Register OrgGuard in one org through the Web API, the way the Plug-in Registration Tool would.

Two webhook service endpoints (the synchronous gate and the asynchronous event
intake), one ``Update`` step on ``mailbox`` for each, and the entity images the
gate and the event intake read. Every run looks each record up by name first,
creates what is missing, PATCHes what differs and leaves the rest alone, so a
second run changes nothing.

The webhook key is write-only in Dataverse (``serviceendpoint.authvalue`` is not
readable), so "differs" cannot compare it. Each endpoint's description carries a
short fingerprint of the key instead; a new key changes the fingerprint, which
makes the next run PATCH the endpoint with the new ``authvalue``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from shared.dataverse.client import DataverseClient
from shared.dataverse.port import DataverseError, odata_string
from shared.dataverse.schema import ACT_METHOD, ADDRESS, MAILBOX, PRIMARY_FLAG, REGARDING, STATE, TEST_ENABLE
from shared.domain.model import Org
from shared.domain.orgs import OrgRegistry

KEY_HEADER = "x-orgguard-key"
GATE_PATH = "/api/dataverse/gate"
EVENTS_PATH = "/api/dataverse/events"

CONTRACT_WEBHOOK = 8
AUTHTYPE_HTTP_HEADER = 5
MESSAGEFORMAT_JSON = 2
STAGE_PRE_OPERATION = 20
STAGE_POST_OPERATION = 40
MODE_SYNC = 0
MODE_ASYNC = 1
DEPLOYMENT_SERVER = 0
IMAGE_PRE = 0
IMAGE_POST = 1

FILTERING_ATTRIBUTES = ",".join((TEST_ENABLE, PRIMARY_FLAG, ACT_METHOD))
IMAGE_ATTRIBUTES = ",".join((ADDRESS, ACT_METHOD, PRIMARY_FLAG, STATE, REGARDING))


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    path: str


@dataclass(frozen=True)
class ImageSpec:
    alias: str
    imagetype: int


@dataclass(frozen=True)
class StepSpec:
    name: str
    endpoint: str  # EndpointSpec.name
    stage: int
    mode: int
    asyncautodelete: bool
    images: tuple[ImageSpec, ...]


GATE = EndpointSpec("OrgGuard gate", GATE_PATH)
EVENTS = EndpointSpec("OrgGuard events", EVENTS_PATH)
ENDPOINTS = (GATE, EVENTS)
STEPS = (
    StepSpec(
        "OrgGuard: mailbox Update (gate)",
        GATE.name,
        STAGE_PRE_OPERATION,
        MODE_SYNC,
        asyncautodelete=False,  # synchronous steps have no system job to delete
        images=(ImageSpec("pre", IMAGE_PRE),),
    ),
    StepSpec(
        "OrgGuard: mailbox Update (events)",
        EVENTS.name,
        STAGE_POST_OPERATION,
        MODE_ASYNC,
        asyncautodelete=True,
        images=(ImageSpec("pre", IMAGE_PRE), ImageSpec("post", IMAGE_POST)),
    ),
)


@dataclass(frozen=True)
class RegistrationResult:
    """What one run did in one org; entries read ``<table>:<name>``."""

    org: str
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


@dataclass
class _Tally:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def key_fingerprint(key: str) -> str:
    """A short, non-reversible mark of the key, stored where Dataverse lets us read it back."""
    return hashlib.sha256(b"orgguard-webhook-key\x00" + key.encode("utf-8")).hexdigest()[:12]


def http_header_authvalue(headers: Mapping[str, str]) -> str:
    """``authvalue`` for authtype 5 (HttpHeader): the settings XML the Plug-in Registration Tool writes."""
    settings = "".join(f'<setting name="{_attr(k)}" value="{_attr(v)}" />' for k, v in headers.items())
    return f"<settings>{settings}</settings>"


def _attr(text: str) -> str:
    return escape(text, {'"': "&quot;"})


async def register(client: DataverseClient, *, org_name: str, base_url: str, key: str) -> RegistrationResult:
    """Create or update OrgGuard's endpoints, steps and images in one org; idempotent."""
    if not key:
        raise ValueError("the webhook key is empty")
    base = base_url.rstrip("/")
    tally = _Tally()
    endpoint_ids = {
        spec.name: await _ensure_endpoint(client, spec, base=base, key=key, tally=tally) for spec in ENDPOINTS
    }
    message_id = await _lookup_id(client, "sdkmessages", "sdkmessageid", f"name eq {odata_string('Update')}")
    filter_id = await _lookup_id(
        client,
        "sdkmessagefilters",
        "sdkmessagefilterid",
        f"primaryobjecttypecode eq {odata_string(MAILBOX)} and _sdkmessageid_value eq {message_id}",
    )
    for step in STEPS:
        step_id = await _ensure_step(client, step, endpoint_ids[step.endpoint], message_id, filter_id, tally=tally)
        for image in step.images:
            await _ensure_image(client, step, step_id, image, tally=tally)
    return RegistrationResult(
        org=org_name, created=tuple(tally.created), updated=tuple(tally.updated), unchanged=tuple(tally.unchanged)
    )


# ---------------------------------------------------------------------------
# Each kind of record


async def _ensure_endpoint(client: DataverseClient, spec: EndpointSpec, *, base: str, key: str, tally: _Tally) -> str:
    desired: dict[str, Any] = {
        "name": spec.name,
        "contract": CONTRACT_WEBHOOK,
        "authtype": AUTHTYPE_HTTP_HEADER,
        "messageformat": MESSAGEFORMAT_JSON,
        "url": base + spec.path,
        "description": f"OrgGuard webhook; key fingerprint {key_fingerprint(key)}",
    }
    secret = {"authvalue": http_header_authvalue({KEY_HEADER: key})}
    return await _upsert(
        client,
        "serviceendpoints",
        "serviceendpointid",
        label=f"serviceendpoint:{spec.name}",
        filter=f"name eq {odata_string(spec.name)}",
        desired=desired,
        write_only=secret,
        tally=tally,
    )


async def _ensure_step(
    client: DataverseClient, step: StepSpec, endpoint_id: str, message_id: str, filter_id: str, *, tally: _Tally
) -> str:
    desired: dict[str, Any] = {
        "name": step.name,
        "description": "Sends mailbox updates to OrgGuard",
        "stage": step.stage,
        "mode": step.mode,
        "rank": 1,
        "supporteddeployment": DEPLOYMENT_SERVER,
        "asyncautodelete": step.asyncautodelete,
        "filteringattributes": FILTERING_ATTRIBUTES,
        "statecode": 0,  # re-enable a step someone disabled
        "statuscode": 1,
        "_sdkmessageid_value": message_id,
        "_sdkmessagefilterid_value": filter_id,
        "_eventhandler_value": endpoint_id,
    }
    return await _upsert(
        client,
        "sdkmessageprocessingsteps",
        "sdkmessageprocessingstepid",
        label=f"sdkmessageprocessingstep:{step.name}",
        filter=f"name eq {odata_string(step.name)}",
        desired=desired,
        tally=tally,
        update_only=frozenset({"statecode", "statuscode"}),
    )


async def _ensure_image(
    client: DataverseClient, step: StepSpec, step_id: str, image: ImageSpec, *, tally: _Tally
) -> str:
    desired: dict[str, Any] = {
        "name": image.alias,
        "entityalias": image.alias,
        "imagetype": image.imagetype,
        "messagepropertyname": "Target",
        "attributes": IMAGE_ATTRIBUTES,
        "_sdkmessageprocessingstepid_value": step_id,
    }
    return await _upsert(
        client,
        "sdkmessageprocessingstepimages",
        "sdkmessageprocessingstepimageid",
        label=f"sdkmessageprocessingstepimage:{step.name}/{image.alias}",
        filter=f"_sdkmessageprocessingstepid_value eq {step_id} and entityalias eq {odata_string(image.alias)}",
        desired=desired,
        tally=tally,
    )


# ---------------------------------------------------------------------------
# Find, compare, write

# Lookup columns are read as ``_<name>_value`` and written with ``<navigation>@odata.bind``.
_BINDS = {
    "_sdkmessageid_value": ("sdkmessageid@odata.bind", "sdkmessages"),
    "_sdkmessagefilterid_value": ("sdkmessagefilterid@odata.bind", "sdkmessagefilters"),
    "_eventhandler_value": ("eventhandler_serviceendpoint@odata.bind", "serviceendpoints"),
    "_sdkmessageprocessingstepid_value": ("sdkmessageprocessingstepid@odata.bind", "sdkmessageprocessingsteps"),
}
_LIST_COLUMNS = frozenset({"filteringattributes", "attributes"})  # order-insensitive comma lists


async def _upsert(
    client: DataverseClient,
    entity_set: str,
    id_column: str,
    *,
    label: str,
    filter: str,
    desired: Mapping[str, Any],
    tally: _Tally,
    write_only: Mapping[str, Any] | None = None,
    update_only: frozenset[str] = frozenset(),
) -> str:
    """Create the row, PATCH the columns that differ, or do nothing; return its id."""
    existing = await _find_one(client, entity_set, [id_column, *desired], filter)
    if existing is None:
        values = {k: v for k, v in desired.items() if k not in update_only}
        new_id = await client.create(entity_set, {**_writable(values), **(write_only or {})})
        tally.created.append(label)
        return new_id
    row_id = str(existing[id_column])
    differing = {k: v for k, v in desired.items() if not _same(k, existing.get(k), v)}
    if not differing:
        tally.unchanged.append(label)
        return row_id
    if differing.keys() & {"description"} and write_only:
        differing.update(write_only)  # the key changed: send the new one
    await client.patch(entity_set, row_id, _writable(differing), etag=existing.get("@odata.etag"))
    tally.updated.append(label)
    return row_id


async def _find_one(client: DataverseClient, entity_set: str, select: list[str], filter: str) -> dict[str, Any] | None:
    async with aclosing(client.query(entity_set, select=select, filter=filter, page_size=2)) as pages:
        async for page in pages:
            if len(page) > 1:
                raise DataverseError(f"more than one {entity_set} row matches; remove the duplicates first")
            return page[0] if page else None
    return None


async def _lookup_id(client: DataverseClient, entity_set: str, id_column: str, filter: str) -> str:
    async with aclosing(client.query(entity_set, select=[id_column], filter=filter, page_size=1)) as pages:
        async for page in pages:
            if page:
                return str(page[0][id_column])
    raise DataverseError(f"no {entity_set} row matches {filter}")


def _same(column: str, actual: Any, wanted: Any) -> bool:
    if column in _LIST_COLUMNS and isinstance(actual, str):
        return _as_set(actual) == _as_set(str(wanted))
    if column in _BINDS:  # GUIDs: case is not significant
        return str(actual or "").lower() == str(wanted).lower()
    return bool(actual == wanted)


def _as_set(text: str) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in text.split(",") if part.strip())


def _writable(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column, value in values.items():
        if column in _BINDS:
            navigation, target = _BINDS[column]
            out[navigation] = f"/{target}({value})"
        else:
            out[column] = value
    return out


# ---------------------------------------------------------------------------
# The security role OrgGuard's application user needs (data for the README)


@dataclass(frozen=True)
class Privilege:
    table: str  # logical name
    schema_name: str
    rights: tuple[str, ...]  # Create, Read, Write, ...
    depth: str  # Organization ("Global" in the role editor) or Basic
    why: str

    @property
    def names(self) -> tuple[str, ...]:
        """Dataverse privilege names, ``prv<Right><SchemaName>``."""
        return tuple(f"prv{right}{self.schema_name}" for right in self.rights)


def required_privileges() -> tuple[Privilege, ...]:
    """The least privileges for OrgGuard's application user in each org."""
    return (
        Privilege("mailbox", "Mailbox", ("Read", "Write"), "Organization", "sweep every mailbox; demote and promote"),
        Privilege("organization", "Organization", ("Read",), "Organization", "confirm which org a client talks to"),
        Privilege(
            "serviceendpoint",
            "ServiceEndpoint",
            ("Create", "Read", "Write"),
            "Organization",
            "register the gate and event webhooks (register looks them up first)",
        ),
        Privilege(
            "sdkmessageprocessingstep",
            "SdkMessageProcessingStep",
            ("Create", "Read", "Write"),
            "Organization",
            "register the mailbox Update steps",
        ),
        Privilege(
            "sdkmessageprocessingstepimage",
            "SdkMessageProcessingStepImage",
            ("Create", "Read", "Write"),
            "Organization",
            "register the pre and post images",
        ),
        Privilege("sdkmessage", "SdkMessage", ("Read",), "Organization", "find the Update message"),
        Privilege("sdkmessagefilter", "SdkMessageFilter", ("Read",), "Organization", "find Update of mailbox"),
        Privilege("tracelog", "TraceLog", ("Read",), "Organization", 'read "configured with another" alerts'),
    )


def privileges_markdown() -> str:
    """The privilege table as the README shows it."""
    rows = ["| table | privileges | depth | why |", "|---|---|---|---|"]
    rows += [f"| `{p.table}` | {', '.join(p.names)} | {p.depth} | {p.why} |" for p in required_privileges()]
    return "\n".join(rows)


async def register_orgs(
    orgs: OrgRegistry, names: Sequence[str], base_url: str, *, client_for: Callable[[Org], DataverseClient]
) -> list[RegistrationResult]:
    """Register OrgGuard's gate and event endpoints in each named org (``orgguard register``)."""
    return [
        await register(client_for(orgs.get(name)), org_name=name, base_url=base_url, key=orgs.key_for(name))
        for name in names
    ]

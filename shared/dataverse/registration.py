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

import asyncio
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from shared.config.urls import is_loopback
from shared.dataverse.port import DataverseError, OrgClient, odata_string
from shared.dataverse.reads import Query, read_at_once
from shared.dataverse.schema import ACT_METHOD, ADDRESS, MAILBOX, PRIMARY_FLAG, REGARDING, STATE, TEST_ENABLE
from shared.domain.drift import Drift, DriftKind, OrgRegistration, Part
from shared.domain.model import DomainError, Org
from shared.domain.orgs import OrgRegistry


class Registrar(OrgClient, Protocol):
    """What registering needs beyond reading: creating rows (``client.DataverseClient`` is one)."""

    async def create(self, entity_set: str, values: Mapping[str, Any]) -> str: ...


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
    part: Part


@dataclass(frozen=True)
class ImageSpec:
    alias: str
    imagetype: int


@dataclass(frozen=True)
class StepSpec:
    name: str
    endpoint: str  # EndpointSpec.name
    part: Part
    stage: int
    mode: int
    asyncautodelete: bool
    images: tuple[ImageSpec, ...]


GATE = EndpointSpec("OrgGuard gate", GATE_PATH, Part.GATE)
EVENTS = EndpointSpec("OrgGuard events", EVENTS_PATH, Part.EVENTS)
ENDPOINTS = (GATE, EVENTS)
STEPS = (
    StepSpec(
        "OrgGuard: mailbox Update (gate)",
        GATE.name,
        Part.GATE,
        STAGE_PRE_OPERATION,
        MODE_SYNC,
        asyncautodelete=False,  # synchronous steps have no system job to delete
        images=(ImageSpec("pre", IMAGE_PRE),),
    ),
    StepSpec(
        "OrgGuard: mailbox Update (events)",
        EVENTS.name,
        Part.EVENTS,
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


async def register(client: Registrar, *, org_name: str, base_url: str, key: str) -> RegistrationResult:
    """Create or update OrgGuard's endpoints, steps and images in one org; idempotent."""
    if not key:
        raise ValueError("the webhook key is empty")
    base = base_url.rstrip("/")
    tally = _Tally()
    found = await asyncio.gather(*(_all(client, q.entity_set, list(q.select), q.filter) for q in MAILBOX_UPDATE))
    message_id, filter_id = _mailbox_update(*found)  # first: an org without it gets no endpoint without its steps
    endpoint_ids = {
        spec.name: await _ensure_endpoint(client, spec, base=base, key=key, tally=tally) for spec in ENDPOINTS
    }
    for step in STEPS:
        step_id = await _ensure_step(client, step, endpoint_ids[step.endpoint], message_id, filter_id, tally=tally)
        for image in step.images:
            await _ensure_image(client, step, step_id, image, tally=tally)
    return RegistrationResult(
        org=org_name, created=tuple(tally.created), updated=tuple(tally.updated), unchanged=tuple(tally.unchanged)
    )


# ---------------------------------------------------------------------------
# Each kind of record


def desired_endpoint(spec: EndpointSpec, *, base: str, key: str) -> dict[str, Any]:
    """The serviceendpoint row OrgGuard registers (``authvalue`` aside: it is write-only)."""
    return {
        "name": spec.name,
        "contract": CONTRACT_WEBHOOK,
        "authtype": AUTHTYPE_HTTP_HEADER,
        "messageformat": MESSAGEFORMAT_JSON,
        "url": base + spec.path,
        "description": f"OrgGuard webhook; key fingerprint {key_fingerprint(key)}",
    }


def desired_step(step: StepSpec, endpoint_id: str, message_id: str, filter_id: str) -> dict[str, Any]:
    """The sdkmessageprocessingstep row OrgGuard registers, enabled."""
    return {
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


def desired_image(image: ImageSpec, step_id: str) -> dict[str, Any]:
    """The sdkmessageprocessingstepimage row OrgGuard registers for ``step_id``."""
    return {
        "name": image.alias,
        "entityalias": image.alias,
        "imagetype": image.imagetype,
        "messagepropertyname": "Target",
        "attributes": IMAGE_ATTRIBUTES,
        "_sdkmessageprocessingstepid_value": step_id,
    }


async def _ensure_endpoint(client: Registrar, spec: EndpointSpec, *, base: str, key: str, tally: _Tally) -> str:
    secret = {"authvalue": http_header_authvalue({KEY_HEADER: key})}
    return await _upsert(
        client,
        "serviceendpoints",
        "serviceendpointid",
        label=f"serviceendpoint:{spec.name}",
        filter=f"name eq {odata_string(spec.name)}",
        desired=desired_endpoint(spec, base=base, key=key),
        write_only=secret,
        tally=tally,
    )


async def _ensure_step(
    client: Registrar, step: StepSpec, endpoint_id: str, message_id: str, filter_id: str, *, tally: _Tally
) -> str:
    return await _upsert(
        client,
        "sdkmessageprocessingsteps",
        "sdkmessageprocessingstepid",
        label=f"sdkmessageprocessingstep:{step.name}",
        filter=f"name eq {odata_string(step.name)}",
        desired=desired_step(step, endpoint_id, message_id, filter_id),
        tally=tally,
        update_only=frozenset({"statecode", "statuscode"}),
    )


async def _ensure_image(client: Registrar, step: StepSpec, step_id: str, image: ImageSpec, *, tally: _Tally) -> str:
    return await _upsert(
        client,
        "sdkmessageprocessingstepimages",
        "sdkmessageprocessingstepimageid",
        label=f"sdkmessageprocessingstepimage:{step.name}/{image.alias}",
        filter=f"_sdkmessageprocessingstepid_value eq {step_id} and entityalias eq {odata_string(image.alias)}",
        desired=desired_image(image, step_id),
        tally=tally,
    )


# ---------------------------------------------------------------------------
# Checking: each record against what register would write, read-only


async def check(
    client: OrgClient, *, org_name: str, base_url: str | None, key: str | None, now: datetime
) -> OrgRegistration:
    """OrgGuard's registration in one org, compared with what ``register`` would write; nothing is written.

    Without ``base_url`` an endpoint's URL is compared by its path only; without ``key`` its key
    fingerprint is not compared. Five queries: endpoints, the Update message, its mailbox filter,
    steps, images.
    """
    base = base_url.rstrip("/") if base_url else None
    drift: list[Drift] = []
    endpoints, message_id, filter_id, steps, images = await _registered(client)
    endpoint_ids: dict[str, str] = {}
    for spec in ENDPOINTS:
        row = _only(endpoints.get(spec.name, []), spec.part, f"serviceendpoint:{spec.name}", drift)
        if row is None:
            continue
        endpoint_ids[spec.name] = str(row["serviceendpointid"])
        wanted = desired_endpoint(spec, base=base or "", key=key or "")
        if base is None:
            wanted.pop("url")
            if not str(row.get("url") or "").endswith(spec.path):
                _changed(drift, spec.part, f"serviceendpoint:{spec.name}", {"url": row.get("url")}, {"url": spec.path})
        if key is None:
            wanted.pop("description")
        _compare(drift, spec.part, f"serviceendpoint:{spec.name}", row, wanted)
    found_steps = {
        step.name: row
        for step in STEPS
        if (row := _only(steps.get(step.name, []), step.part, f"sdkmessageprocessingstep:{step.name}", drift))
    }
    for step in STEPS:
        row = found_steps.get(step.name)
        if row is None:
            continue  # its images went with it
        label = f"sdkmessageprocessingstep:{step.name}"
        if row.get("statecode") not in (0, None):
            drift.append(
                Drift(step.part, label, DriftKind.DISABLED, "the step is deactivated: the org does not call it")
            )
        step_id = str(row["sdkmessageprocessingstepid"])
        # deactivated is said above; a missing endpoint is said already, not again as the step's handler
        ignored = {"statecode", "statuscode"} | (
            {"_eventhandler_value"} if step.endpoint not in endpoint_ids else set()
        )
        desired = desired_step(step, endpoint_ids.get(step.endpoint, ""), message_id, filter_id)
        _compare(drift, step.part, label, row, {k: v for k, v in desired.items() if k not in ignored})
        for image in step.images:
            image_label = f"sdkmessageprocessingstepimage:{step.name}/{image.alias}"
            mine = [i for i in images.get(step_id.lower(), []) if str(i.get("entityalias")) == image.alias]
            found = _only(mine, step.part, image_label, drift)
            if found is not None:
                _compare(drift, step.part, image_label, found, desired_image(image, step_id))
    return OrgRegistration(org_name, now, tuple(drift), compared_url=base is not None)


ENDPOINT_COLUMNS = ("serviceendpointid", "name", "contract", "authtype", "messageformat", "url", "description")
STEP_COLUMNS = (
    "sdkmessageprocessingstepid",
    *(column for column in desired_step(STEPS[0], "", "", "") if column != "name"),
    "name",
)
IMAGE_COLUMNS = ("sdkmessageprocessingstepimageid", *desired_image(ImageSpec("", 0), ""))


Registered = tuple[
    dict[str, list[dict[str, Any]]], str, str, dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]
]


async def _registered(client: OrgClient) -> Registered:
    """What ``check`` compares, in one ``$batch`` of five queries, none waiting for another's answer.

    (endpoints by name, the Update message and the mailbox's filters (``MAILBOX_UPDATE``), steps by
    name, images by step id.) The images are found among those with OrgGuard's aliases by their step,
    rather than asked for by ids read first.
    """
    named_endpoints = _either("name", [spec.name for spec in ENDPOINTS])
    named_steps = _either("name", [spec.name for spec in STEPS])
    aliases = _either("entityalias", sorted({image.alias for step in STEPS for image in step.images}))
    endpoint_rows, messages, filters, step_rows, image_rows = await read_at_once(
        client,
        [
            Query("serviceendpoints", _columns("serviceendpointid", ENDPOINT_COLUMNS), named_endpoints),
            *MAILBOX_UPDATE,
            Query("sdkmessageprocessingsteps", _columns("sdkmessageprocessingstepid", STEP_COLUMNS), named_steps),
            Query("sdkmessageprocessingstepimages", list(IMAGE_COLUMNS), aliases),
        ],
    )
    message_id, filter_id = _mailbox_update(messages, filters)
    endpoints: dict[str, list[dict[str, Any]]] = {}
    for row in endpoint_rows:
        endpoints.setdefault(str(row.get("name")), []).append(row)
    steps: dict[str, list[dict[str, Any]]] = {}
    for row in step_rows:
        steps.setdefault(str(row.get("name")), []).append(row)
    images: dict[str, list[dict[str, Any]]] = {}
    for row in image_rows:
        images.setdefault(str(row.get("_sdkmessageprocessingstepid_value") or "").lower(), []).append(row)
    return endpoints, message_id, filter_id, steps, images


_UPDATE = f"name eq {odata_string('Update')}"
_MAILBOX_FILTERS = f"primaryobjecttypecode eq {odata_string(MAILBOX)}"
MAILBOX_UPDATE = (
    Query("sdkmessages", ["sdkmessageid"], _UPDATE),
    Query("sdkmessagefilters", ["sdkmessagefilterid", "_sdkmessageid_value"], _MAILBOX_FILTERS),
)
"""The two queries that find what every OrgGuard step is registered on (``_mailbox_update``); neither waits for
the other's answer, so ``check`` sends them in its one ``$batch``."""


def _mailbox_update(messages: Sequence[Mapping[str, Any]], filters: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """The Update message's id and its mailbox filter's id, from what the ``MAILBOX_UPDATE`` queries answered:
    the filter is found among the mailbox's filters by its message. ``register`` and ``check`` both find them so."""
    if not messages:
        raise DataverseError(f"no sdkmessages row matches {_UPDATE}")
    message_id = str(messages[0]["sdkmessageid"])
    update_filters = [f for f in filters if str(f.get("_sdkmessageid_value") or "").lower() == message_id.lower()]
    if not update_filters:
        raise DataverseError(
            f"no sdkmessagefilters row matches {_MAILBOX_FILTERS} and _sdkmessageid_value eq {message_id}"
        )
    return message_id, str(update_filters[0]["sdkmessagefilterid"])


def _either(column: str, values: Sequence[str]) -> str:
    return " or ".join(f"{column} eq {odata_string(value)}" for value in values)


def _columns(id_column: str, columns: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([id_column, *columns]))


def _only(rows: list[dict[str, Any]], part: Part, label: str, drift: list[Drift]) -> dict[str, Any] | None:
    if not rows:
        drift.append(Drift(part, label, DriftKind.MISSING, "it is not there (deleted?)"))
        return None
    if len(rows) > 1:
        drift.append(Drift(part, label, DriftKind.DUPLICATE, f"{len(rows)} rows have this name; remove all but one"))
        return None
    return rows[0]


def _compare(drift: list[Drift], part: Part, label: str, row: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
    differing = {column: value for column, value in wanted.items() if not _same(column, row.get(column), value)}
    if differing:
        _changed(drift, part, label, {column: row.get(column) for column in differing}, differing)


def _changed(drift: list[Drift], part: Part, label: str, actual: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
    said = []
    for column, value in wanted.items():
        if column == "description":
            said.append("the webhook key is not the one in the orgs file (its fingerprint differs)")
        else:
            said.append(f"{column} is {actual.get(column)!r}, register writes {value!r}")
    drift.append(Drift(part, label, DriftKind.CHANGED, "; ".join(said)))


def webhook_port_refused(base_url: str, org: Org) -> str | None:
    """Why ``base_url`` cannot be registered in ``org``: Dataverse calls webhooks on ports 80 and 443 only.

    "Registered WebHooks support only port 80 for HTTP and port 443 for HTTPS" (register-web-hook.md);
    a loopback org (the sandbox) takes a local OrgGuard on another port.
    """
    parts = urlsplit(base_url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return f"{base_url} has no valid port"
    if port in (80, 443) or is_loopback(org.url):
        return None
    return (
        f"Dataverse calls webhooks only on ports 80 and 443; {base_url} uses port {port}, so {org.name} would refuse it"
    )


class WebhookPortRefused(DomainError, title="Webhook port not allowed"):
    """A webhook base URL on a port Dataverse does not call webhooks on."""


async def check_orgs(
    orgs: OrgRegistry,
    names: Sequence[str],
    base_url: str | None,
    *,
    client_for: Callable[[Org], OrgClient],
    now: datetime,
) -> list[OrgRegistration]:
    """``check`` in each named org at once; an org that cannot be read is reported so, not raised."""

    async def one(name: str) -> OrgRegistration:
        org = orgs.get(name)
        try:
            return await check(client_for(org), org_name=name, base_url=base_url, key=orgs.key_for(name), now=now)
        except (DataverseError, OSError, TimeoutError) as exc:
            status = getattr(exc, "status", None)
            why = (
                f"HTTP {status}"
                if isinstance(status, int)
                else "no answer"
                if not isinstance(exc, DataverseError)
                else type(exc).__name__
            )
            return OrgRegistration(name, now, error=f"{name} could not be read ({why})")

    return list(await asyncio.gather(*(one(name) for name in names)))


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
    client: Registrar,
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


async def _find_one(client: Registrar, entity_set: str, select: list[str], filter: str) -> dict[str, Any] | None:
    rows = await _all(client, entity_set, select, filter)
    if len(rows) > 1:
        raise DataverseError(f"more than one {entity_set} row matches; remove the duplicates first")
    return rows[0] if rows else None


async def _all(client: OrgClient, entity_set: str, select: list[str], filter: str) -> list[dict[str, Any]]:
    """Every matching row (OrgGuard's registration is a handful of rows: one page)."""
    return [row async for page in client.query(entity_set, select=select, filter=filter) for row in page]


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
    orgs: OrgRegistry, names: Sequence[str], base_url: str, *, client_for: Callable[[Org], Registrar]
) -> list[RegistrationResult]:
    """Register OrgGuard's gate and event endpoints in each named org (``orgguard register``).

    A base URL on a port Dataverse does not call webhooks on is refused for every org that is not on
    loopback, before anything is written."""
    for name in names:
        refused = webhook_port_refused(base_url, orgs.get(name))
        if refused:
            raise WebhookPortRefused(refused, field="url")
    return [
        await register(client_for(orgs.get(name)), org_name=name, base_url=base_url, key=orgs.key_for(name))
        for name in names
    ]

"""Read what Dataverse says happened to a mailbox, and decide whether it is a claim.

Dataverse posts its ``RemoteExecutionContext`` as JSON to a webhook, in a Service
Bus message body, or as an Event Grid event's ``data``. The serializer behind it
(.NET ``DataContractJsonSerializer``) writes collections as ``{"key", "value"}``
pair arrays, typed values with ``__type`` annotations and dates as
``/Date(ms)/``; other producers (and Dataverse versions) write plain objects. This
module accepts both, decodes the typed values into plain Python, and refuses
anything else with :class:`~shared.domain.model.InvalidPayload` naming the field, so an
entry point can answer 400 without having changed anything (invariant 6).

Pure code: no I/O, no Azure imports. The gate calls it on its cold path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import TypedDict
from urllib.parse import urlsplit

from shared.domain.model import (
    Claim,
    ClaimKind,
    InvalidPayload,
    MailboxKey,
    Org,
    Origin,
    normalize_guid,
    utcnow,
)

__all__ = [
    "MAX_BODY",
    "MAX_PARENT_DEPTH",
    "SERVICEBUS_PROPERTY_PREFIX",
    "Context",
    "EntityRef",
    "MailboxRow",
    "PayloadTooLarge",
    "decode_value",
    "loads_context",
    "org_address",
    "parse_context",
    "parse_dotnet_date",
    "servicebus_org",
    "servicebus_properties",
    "servicebus_size_exceeded",
    "to_claim",
    "unwrap_event",
]

MAX_BODY = 256 * 1024  # bytes; Dataverse itself trims contexts above this
MAX_PARENT_DEPTH = 8  # ParentContext levels accepted; real plugin chains stay far below
MAX_VALUE_DEPTH = 16  # nesting inside one attribute value (entities in entities ...)
SERVICEBUS_PROPERTY_PREFIX = "http://schemas.microsoft.com/xrm/2011/Claims/"
# the names Dataverse sets, in their documented casing; a message may carry them in any case
_SERVICEBUS_NAMES = {
    name.lower(): name
    for name in ("Organization", "User", "InitiatingUser", "EntityLogicalName", "RequestName", "MessageMaxSizeExceeded")
}
_DEFAULT_PORTS = {"http": 80, "https": 443}

# mailbox columns OrgGuard reads (FACTS.md, "Dataverse mailbox table")
MAILBOX = "mailbox"
ADDRESS = "emailaddress"
ACT_METHOD = "actdeliverymethod"
PRIMARY_FLAG = "orgmarkedasprimaryforexchangesync"
TEST_ENABLE = "testemailconfigurationscheduled"
STATE = "statecode"
REGARDING = "regardingobjectid"
MAILBOX_ID = "mailboxid"
ACT_SERVER_SIDE_SYNC = 1
STATE_ACTIVE = 0

_CLAIM_COLUMNS = (PRIMARY_FLAG, TEST_ENABLE, ACT_METHOD)
_CLAIM_MESSAGES = frozenset({"update", "create"})
_PRE_NAMES = ("pre", "preimage")
_POST_NAMES = ("post", "postimage")
_NIL_GUID = "00000000-0000-0000-0000-000000000000"
_DATE = re.compile(r"^\\?/Date\((-?\d{1,19})([+-]\d{4})?\)\\?/$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PayloadTooLarge(InvalidPayload):
    """The body is over :data:`MAX_BODY`; entry points answer 413."""

    status = 413
    title = "Payload too large"


@dataclass(frozen=True)
class EntityRef:
    """A decoded ``EntityReference`` (a lookup column's value)."""

    id: str
    logical_name: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class MailboxRow:
    """What is known of the mailbox row after the update (``None``: not known)."""

    mailbox_id: str
    address: str | None = None
    act_method: int | None = None  # 0 Outlook, 1 server-side sync, 2 None
    primary_flag: bool | None = None  # orgmarkedasprimaryforexchangesync
    test_enable: bool | None = None  # testemailconfigurationscheduled
    active: bool | None = None  # statecode 0
    regarding_id: str | None = None


class _RowFields(TypedDict, total=False):
    address: str | None
    act_method: int | None
    primary_flag: bool | None
    test_enable: bool | None
    active: bool | None
    regarding_id: str | None


@dataclass(frozen=True)
class Context:
    """A parsed ``RemoteExecutionContext`` of a mailbox message."""

    org_id: str
    org_name: str | None
    message: str
    entity: str
    mailbox_id: str
    stage: int
    mode: int
    depth: int
    user_id: str | None
    initiating_user_id: str | None
    correlation_id: str | None
    operation_id: str | None
    request_id: str | None
    created_on: datetime | None
    target: Mapping[str, object]
    pre: Mapping[str, object] | None
    post: Mapping[str, object] | None
    trimmed: bool

    def row(self) -> MailboxRow:
        """The mailbox as the payload shows it: pre-image < target < post-image."""
        fields: _RowFields = {}
        for attrs in (self.pre, self.target, self.post):
            if attrs is not None:
                fields.update(_row_fields(attrs))
        return MailboxRow(mailbox_id=self.mailbox_id, **fields)

    def needs_readback(self) -> bool:
        """Whether the mailbox must be read from the org before deciding.

        True for a trimmed context, and when the address or the ACT method is
        missing from the payload of a change that could be a claim. A change that
        cannot be a claim whatever the row holds (ACT set to None, an unrelated
        column) needs no read-back: the gate answers without a round trip.
        """
        if self.trimmed:
            return True
        if self.message.lower() not in _CLAIM_MESSAGES or _target_kind(self.target) is None:
            return False
        return _missing(self) is not None

    def claim_kind(self, row: MailboxRow | None = None) -> ClaimKind | None:
        """The kind of claim this change makes, or ``None`` when it makes none.

        ``row`` is the mailbox read back from the org; the target is laid over it
        because a pre-operation read-back does not hold the change yet.
        """
        if self.message.lower() not in _CLAIM_MESSAGES:
            return None
        effective = _effective(self, row)
        if effective.active is False or effective.act_method != ACT_SERVER_SIDE_SYNC:
            return None
        kind = _target_kind(self.target)
        untold = not any(column in self.target for column in _CLAIM_COLUMNS)
        if kind is None and self.trimmed and row is not None and untold:
            # The step's filtering attributes are the claim columns, so a trimmed
            # message still means one of them changed; Test & Enable is the one
            # that moves Exchange's OrgID.
            return ClaimKind.TEST_ENABLE
        return kind

    def source_ids(self, *, message_id: str | None = None) -> dict[str, str]:
        """The ids an event is known by, for the idempotency key (invariant 2)."""
        candidates = {
            "org": self.org_id,
            "operation": self.operation_id,
            "request": self.request_id,
            "correlation": self.correlation_id,
            "message": message_id.strip() if message_id else None,
        }
        return {name: value for name, value in candidates.items() if value}


# ---------------------------------------------------------------------------
# Entry points: bytes, envelopes, properties


def loads_context(body: bytes | str, *, size_exceeded: bool = False) -> Context:
    """Decode a JSON body and parse the context in it."""
    return parse_context(_loads(body, field="body"), size_exceeded=size_exceeded)


def unwrap_event(doc: object) -> tuple[object, str | None]:
    """The context in an Event Grid event's ``data``, and the event's id.

    Accepts CloudEvents 1.0 and the Event Grid schema (alone or as the
    one-element array Event Grid posts). The event type Dataverse uses is not
    documented, so it is not checked.
    """
    if isinstance(doc, list):
        if len(doc) != 1:
            raise InvalidPayload("an Event Grid delivery must hold exactly one event", field="body")
        doc = doc[0]
    if not isinstance(doc, Mapping):
        raise InvalidPayload("the body is not an Event Grid or CloudEvents event", field="body")
    if "specversion" in doc:
        if doc["specversion"] != "1.0":
            raise InvalidPayload("only CloudEvents 1.0 is understood", field="specversion")
    elif "eventType" not in doc:
        raise InvalidPayload("the body is not an Event Grid or CloudEvents event", field="body")
    if "data" not in doc:
        raise InvalidPayload("the event carries no data", field="data")
    event_id = doc.get("id")
    if event_id is not None and not isinstance(event_id, str):
        raise InvalidPayload("the event id must be a string", field="id")
    data = doc["data"]
    if isinstance(data, str):
        data = _loads(data, field="data")
    if not isinstance(data, Mapping):
        raise InvalidPayload("the event's data must be a JSON object", field="data")
    return data, event_id or None


def servicebus_properties(props: Mapping[str, object]) -> dict[str, str]:
    """The claims Dataverse sets as application properties, prefix stripped.

    Names are matched case-insensitively (prefix included) and given back in Dataverse's
    casing (``Organization``, ``User`` ...). The Service Bus SDK may hand keys and values over
    as bytes. One name given twice with different values is refused.
    """
    found: dict[str, str] = {}
    for raw_key, raw_value in props.items():
        key = _text(raw_key)
        name = None if key is None else _property_name(key)
        value = _text(raw_value)
        if not name or value is None:
            continue
        if found.get(name, value) != value:
            raise InvalidPayload(f"the property {name!r} is given twice", field=name)
        found[name] = value
    return found


def _property_name(key: str) -> str | None:
    """``…/Claims/organization`` -> ``Organization``; ``None`` for a key without the prefix."""
    if not key.lower().startswith(SERVICEBUS_PROPERTY_PREFIX.lower()):
        return None
    name = key[len(SERVICEBUS_PROPERTY_PREFIX) :]
    return _SERVICEBUS_NAMES.get(name.lower(), name)


def servicebus_size_exceeded(props: Mapping[str, object]) -> bool:
    """Whether Dataverse trimmed the message (property ``MessageMaxSizeExceeded``, any case, prefixed or not)."""
    for raw_key, raw_value in props.items():
        key = _text(raw_key)
        if key is not None and (_property_name(key) or key).lower() == "messagemaxsizeexceeded":
            text = _text(raw_value)
            return text is None or text.strip().lower() not in ("false", "0", "")
    return False


def servicebus_org(props: Mapping[str, object], orgs: Iterable[Org]) -> Org | None:
    """The registered org the ``Organization`` property names; ``None`` when absent or no org matches.

    Dataverse puts the org's URI there, not its id ("Organization URI" in the property bag,
    powerapps-docs ``write-listener-application-azure-solution.md``, "Filter messages"), as a
    bare host or a full URL; it matches the org registered with that URL (:func:`org_address`).
    """
    named = servicebus_properties(props).get("Organization")
    if named is None:
        return None
    wanted = org_address(named, field="Organization")
    return next((org for org in orgs if org_address(org.url, field="url") == wanted), None)


def org_address(uri: str, *, field: str = "Organization") -> str:
    """An org URI reduced to what identifies it: host (and a non-default port) and path, case-folded.

    ``contoso.crm.dynamics.com``, ``https://Contoso.crm.dynamics.com/`` and
    ``https://contoso.crm.dynamics.com:443`` are one org.
    """
    text = uri.strip()
    parts = urlsplit(text if "://" in text else f"https://{text}")
    try:
        port = parts.port
    except ValueError:
        raise InvalidPayload(f"{field} is not an org URI", field=field) from None
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidPayload(f"{field} is not an org URI", field=field)
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        host = f"{host}:{port}"
    return host + parts.path.rstrip("/").lower()


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if value is None or isinstance(value, Mapping | list):
        return None
    return str(value)


def _loads(body: object, *, field: str) -> object:
    if isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
        _check_size(len(raw), field)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidPayload(f"{field} is not UTF-8", field=field) from None
    elif isinstance(body, str):
        _check_size(len(body.encode("utf-8", errors="surrogatepass")), field)
        text = body.removeprefix("\ufeff")
    else:
        raise InvalidPayload(f"{field} must be bytes or text", field=field)
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidPayload(f"{field} is not valid JSON: {exc.msg} at line {exc.lineno}", field=field) from None
    except (ValueError, RecursionError):
        raise InvalidPayload(f"{field} is not valid JSON (too deep or a number too long)", field=field) from None


def _check_size(size: int, field: str) -> None:
    if size > MAX_BODY:
        raise PayloadTooLarge(f"{field} is larger than {MAX_BODY // 1024} KB", field=field)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Two readers of one body must not see two different values for a key.
    found: dict[str, object] = {}
    for key, value in pairs:
        if key in found:
            raise InvalidPayload(f"the key {key[:64]!r} appears twice in one object", field=key[:64])
        found[key] = value
    return found


def _no_constant(name: str) -> object:
    raise InvalidPayload(f"{name} is not JSON", field="body")


# ---------------------------------------------------------------------------
# The context


def parse_context(doc: object, *, size_exceeded: bool = False) -> Context:
    """Parse a decoded ``RemoteExecutionContext``.

    ``size_exceeded`` comes from the transport (header
    ``x-ms-dynamics-msg-size-exceeded``, property ``MessageMaxSizeExceeded``); a
    context without Target and images is read as trimmed either way.
    """
    if not isinstance(doc, Mapping):
        raise InvalidPayload("the context must be a JSON object", field="body")
    org_id = _guid(doc.get("OrganizationId"), "OrganizationId", required=True) or ""
    entity = _required_text(doc, "PrimaryEntityName").lower()
    if entity != MAILBOX:
        raise InvalidPayload("OrgGuard only reads mailbox messages", field="PrimaryEntityName")
    message = _required_text(doc, "MessageName")
    _check_parents(doc.get("ParentContext"))
    parameters = _pairs(doc.get("InputParameters"), "InputParameters")
    target, target_id = _target(parameters.get("Target"))
    pre, pre_id = _image(doc.get("PreEntityImages"), "PreEntityImages", _PRE_NAMES)
    post, post_id = _image(doc.get("PostEntityImages"), "PostEntityImages", _POST_NAMES)
    mailbox_id = _mailbox_id(
        [
            ("PrimaryEntityId", _optional_guid(doc, "PrimaryEntityId")),
            *target_id,
            *pre_id,
            *post_id,
        ]
    )
    return Context(
        org_id=org_id,
        org_name=_optional_text(doc, "OrganizationName"),
        message=message,
        entity=entity,
        mailbox_id=mailbox_id,
        stage=_number(doc, "Stage", 0),
        mode=_number(doc, "Mode", 0),
        depth=_number(doc, "Depth", 1),
        user_id=_optional_guid(doc, "UserId"),
        initiating_user_id=_optional_guid(doc, "InitiatingUserId"),
        correlation_id=_optional_guid(doc, "CorrelationId"),
        operation_id=_optional_guid(doc, "OperationId"),
        request_id=_optional_guid(doc, "RequestId"),
        created_on=_created_on(doc.get("OperationCreatedOn")),
        target=MappingProxyType(target or {}),
        pre=None if pre is None else MappingProxyType(pre),
        post=None if post is None else MappingProxyType(post),
        trimmed=size_exceeded or (target is None and pre is None and post is None),
    )


def _required_text(doc: Mapping[str, object], name: str) -> str:
    value = doc.get(name)
    if value is None:
        raise InvalidPayload(f"{name} is missing", field=name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidPayload(f"{name} must be a non-empty string", field=name)
    return value.strip()


def _optional_text(doc: Mapping[str, object], name: str) -> str | None:
    value = doc.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidPayload(f"{name} must be a string", field=name)
    return value or None


def _number(doc: Mapping[str, object], name: str, default: int) -> int:
    """Stage, Mode and Depth; Dataverse always sends them, other producers may not."""
    value = doc.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidPayload(f"{name} must be an integer", field=name)
    return value


def _guid(value: object, field: str, *, required: bool = False) -> str | None:
    """A normalized GUID; the nil GUID counts as absent (it would merge events)."""
    if value is None:
        if required:
            raise InvalidPayload(f"{field} is missing", field=field)
        return None
    guid = normalize_guid(value, field=field)
    if guid == _NIL_GUID:
        if required:
            raise InvalidPayload(f"{field} is the nil GUID", field=field)
        return None
    return guid


def _optional_guid(doc: Mapping[str, object], name: str) -> str | None:
    return _guid(doc.get(name), name)


def _created_on(value: object) -> datetime | None:
    field = "OperationCreatedOn"
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidPayload(f"{field} must be a date string", field=field)
    if _DATE.match(value):
        return parse_dotnet_date(value, field=field)
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidPayload(f"{field} is not a date", field=field) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _check_parents(parent: object) -> None:
    """Accept and ignore ``ParentContext`` chains, but only so deep."""
    path = "ParentContext"
    level = 0
    while parent is not None:
        if not isinstance(parent, Mapping):
            raise InvalidPayload(f"{path} must be an object or null", field=path)
        level += 1
        if level > MAX_PARENT_DEPTH:
            raise InvalidPayload(
                f"ParentContext is nested more than {MAX_PARENT_DEPTH} levels deep", field="ParentContext"
            )
        parent = parent.get("ParentContext")
        path += ".ParentContext"


def _mailbox_id(candidates: list[tuple[str, str | None]]) -> str:
    """The one mailbox the context is about; every place that names it must agree."""
    known = [(field, guid) for field, guid in candidates if guid is not None]
    if not known:
        raise InvalidPayload("PrimaryEntityId is missing (and Target has no id)", field="PrimaryEntityId")
    _, mailbox_id = known[0]
    for field, guid in known[1:]:
        if guid != mailbox_id:
            raise InvalidPayload(f"{field} names another record than {known[0][0]}", field=field)
    return mailbox_id


def _target(raw: object) -> tuple[dict[str, object] | None, list[tuple[str, str | None]]]:
    """Target's changed columns and the ids it names (an EntityReference for Delete and the like)."""
    field = "InputParameters[Target]"
    if raw is None:
        return None, []
    if not isinstance(raw, Mapping):
        raise InvalidPayload(f"{field} must be an entity", field=field)
    kind = _kind(raw, field)
    if kind == "EntityReference":
        ref = _reference(raw, field)
        _check_logical_name(ref.logical_name, field)
        return {}, [(f"{field}.Id", ref.id)]
    if kind != "Entity":
        raise InvalidPayload(f"{field} must be an entity", field=field)
    return _entity(raw, field)


def _image(
    raw: object, field: str, preferred: tuple[str, ...]
) -> tuple[dict[str, object] | None, list[tuple[str, str | None]]]:
    """The image registered under a preferred name, else the first one.

    Every image is checked, so a bad one is refused wherever it stands.
    """
    images: list[tuple[str, tuple[dict[str, object], list[tuple[str, str | None]]]]] = []
    for name, value in _pairs(raw, field).items():
        if value is None:
            continue
        path = f"{field}[{name}]"
        if not isinstance(value, Mapping) or _kind(value, path) != "Entity":
            raise InvalidPayload(f"{path} must be an entity", field=path)
        images.append((name, _entity(value, path)))
    for name, image in images:
        if name.lower() in preferred:
            return image
    return images[0][1] if images else (None, [])


def _entity(raw: Mapping[str, object], field: str) -> tuple[dict[str, object], list[tuple[str, str | None]]]:
    logical_name = raw.get("LogicalName")
    if logical_name is not None and not isinstance(logical_name, str):
        raise InvalidPayload(f"{field}.LogicalName must be a string", field=f"{field}.LogicalName")
    _check_logical_name(logical_name, field)
    attributes = _attributes(raw, field, 0)
    ids: list[tuple[str, str | None]] = [(f"{field}.Id", _guid(raw.get("Id"), f"{field}.Id"))]
    mailbox_id = attributes.get(MAILBOX_ID)
    if isinstance(mailbox_id, str):
        ids.append((f"{field}.Attributes[{MAILBOX_ID}]", mailbox_id))
    return attributes, ids


def _check_logical_name(logical_name: str | None, field: str) -> None:
    if logical_name is not None and logical_name.lower() != MAILBOX:
        raise InvalidPayload(f"{field} is not a mailbox", field=f"{field}.LogicalName")


# ---------------------------------------------------------------------------
# Collections and values


def _pairs(raw: object, field: str) -> dict[str, object]:
    """A ``{"key", "value"}`` pair array or a plain object, as a dict.

    A key given twice is refused: otherwise the order of the pairs would decide
    which value counts.
    """
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        items = [(key, value, f"{field}[{key}]") for key, value in raw.items()]
    elif isinstance(raw, list):
        items = [_pair(element, f"{field}[{index}]") for index, element in enumerate(raw)]
    else:
        raise InvalidPayload(f"{field} must be a list of key/value pairs or an object", field=field)
    found: dict[str, object] = {}
    for key, value, path in items:
        if not isinstance(key, str) or not key:
            raise InvalidPayload(f"{path} has no key", field=path)
        if key in found:
            raise InvalidPayload(f"{field} names {key[:64]!r} twice", field=f"{field}[{key[:64]}]")
        found[key] = value
    return found


def _pair(element: object, path: str) -> tuple[object, object, str]:
    if not isinstance(element, Mapping):
        raise InvalidPayload(f"{path} must be a key/value pair", field=path)
    key = element.get("key", element.get("Key"))
    value = element.get("value", element.get("Value"))
    return key, value, path


def _attributes(entity: Mapping[str, object], field: str, depth: int) -> dict[str, object]:
    path = f"{field}.Attributes"
    pairs = _pairs(entity.get("Attributes"), path)
    decoded: dict[str, object] = {}
    for key, value in pairs.items():
        name = key.lower()  # logical names are lower case; be lenient on the wire
        column = f"{path}[{key[:64]}]"
        if name in decoded:
            raise InvalidPayload(f"{path} names {key[:64]!r} twice", field=column)
        decoded[name] = _check_column(name, _decode(value, column, depth + 1), column)
    return decoded


def _check_column(name: str, value: object, field: str) -> object:
    """Known mailbox columns must have their type, so reading a row never fails later."""
    if value is None:
        return None
    if name in (PRIMARY_FLAG, TEST_ENABLE):
        if not isinstance(value, bool):
            raise InvalidPayload(f"{field} must be true or false", field=field)
    elif name in (ACT_METHOD, STATE):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidPayload(f"{field} must be an option set value", field=field)
    elif name == ADDRESS:
        if not isinstance(value, str):
            raise InvalidPayload(f"{field} must be a string", field=field)
    elif name == REGARDING:
        if isinstance(value, str):
            return EntityRef(id=normalize_guid(value, field=field))
        if not isinstance(value, EntityRef):
            raise InvalidPayload(f"{field} must be an entity reference", field=field)
    elif name == MAILBOX_ID:
        return _guid(value, field)
    return value


def decode_value(value: object) -> object:
    """Plain Python for a typed Dataverse value.

    ``OptionSetValue`` -> int; ``EntityReference`` -> :class:`EntityRef`;
    ``Money`` -> Decimal; ``/Date(ms)/`` -> aware UTC datetime; ``Entity`` -> a
    dict of its decoded attributes; lists element by element; anything else
    as is. A typed value of the wrong shape raises InvalidPayload.
    """
    return _decode(value, "value", 0)


def _decode(value: object, field: str, depth: int) -> object:
    if depth > MAX_VALUE_DEPTH:
        raise InvalidPayload(f"{field} is nested too deeply", field=field)
    if isinstance(value, str):
        return parse_dotnet_date(value, field=field) if _DATE.match(value) else value
    if isinstance(value, list):
        return [_decode(item, f"{field}[{index}]", depth + 1) for index, item in enumerate(value)]
    if not isinstance(value, Mapping):
        return value
    kind = _kind(value, field)
    if kind == "OptionSetValue":
        return _option(value, field)
    if kind == "EntityReference":
        return _reference(value, field)
    if kind == "Money":
        return _money(value, field)
    if kind == "Entity":
        return _attributes(value, field, depth)
    return value


def _kind(value: Mapping[str, object], field: str) -> str | None:
    """The contract name in ``__type`` ("OptionSetValue:http://..."), or a guess from the shape."""
    annotation = value.get("__type")
    if annotation is not None:
        if not isinstance(annotation, str):
            raise InvalidPayload(f"{field}.__type must be a string", field=f"{field}.__type")
        return annotation.split(":", 1)[0].strip()
    if "Attributes" in value:
        return "Entity"
    if "LogicalName" in value and "Id" in value:
        return "EntityReference"
    if set(value) <= {"Value", "ExtensionData"} and _is_int(value.get("Value")):
        return "OptionSetValue"
    return None


def _option(value: Mapping[str, object], field: str) -> int:
    number = _as_int(value.get("Value"))
    if number is None:
        raise InvalidPayload(f"{field} must hold an integer Value", field=f"{field}.Value")
    return number


def _reference(value: Mapping[str, object], field: str) -> EntityRef:
    ref_id = _guid(value.get("Id"), f"{field}.Id", required=True)
    logical_name = value.get("LogicalName")
    name = value.get("Name")
    if logical_name is not None and not isinstance(logical_name, str):
        raise InvalidPayload(f"{field}.LogicalName must be a string", field=f"{field}.LogicalName")
    if name is not None and not isinstance(name, str):
        raise InvalidPayload(f"{field}.Name must be a string", field=f"{field}.Name")
    return EntityRef(id=ref_id or "", logical_name=logical_name, name=name)


def _money(value: Mapping[str, object], field: str) -> Decimal:
    amount = value.get("Value")
    if isinstance(amount, bool) or not isinstance(amount, int | float | str):
        raise InvalidPayload(f"{field} must hold a numeric Value", field=f"{field}.Value")
    try:
        return Decimal(str(amount))
    except InvalidOperation:
        raise InvalidPayload(f"{field} must hold a numeric Value", field=f"{field}.Value") from None


def _as_int(value: object) -> int | None:
    """An integer that is not a bool (JSON true must not read as option 1)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _is_int(value: object, expected: int | None = None) -> bool:
    number = _as_int(value)
    return number is not None and (expected is None or number == expected)


def parse_dotnet_date(text: str, *, field: str = "date") -> datetime:
    """An aware UTC datetime for ``/Date(ms)/`` or ``/Date(ms+hhmm)/``.

    The milliseconds count from the Unix epoch in UTC in both forms; the offset
    only records the sender's time zone, so it does not move the instant.
    """
    match = _DATE.match(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidPayload(f"{field} is not a /Date(ms)/ value", field=field)
    try:
        return _EPOCH + timedelta(milliseconds=int(match.group(1)))
    except OverflowError:
        raise InvalidPayload(f"{field} is out of range", field=field) from None


# ---------------------------------------------------------------------------
# Rows and claims


def _row_fields(attrs: Mapping[str, object]) -> _RowFields:
    """The row fields an attribute map states (a present null states 'empty')."""
    fields: _RowFields = {}
    if ADDRESS in attrs:
        address = attrs[ADDRESS]
        fields["address"] = address if isinstance(address, str) else None
    if ACT_METHOD in attrs:
        method = attrs[ACT_METHOD]
        fields["act_method"] = _as_int(method)
    if PRIMARY_FLAG in attrs:
        flag = attrs[PRIMARY_FLAG]
        fields["primary_flag"] = flag if isinstance(flag, bool) else None
    if TEST_ENABLE in attrs:
        scheduled = attrs[TEST_ENABLE]
        fields["test_enable"] = scheduled if isinstance(scheduled, bool) else None
    if STATE in attrs:
        state = attrs[STATE]
        fields["active"] = None if _as_int(state) is None else state == STATE_ACTIVE
    if REGARDING in attrs:
        regarding = attrs[REGARDING]
        fields["regarding_id"] = regarding.id if isinstance(regarding, EntityRef) else None
    return fields


def _known_fields(row: MailboxRow) -> _RowFields:
    """A read-back row's fields, leaving out what it does not know."""
    fields: _RowFields = {}
    if row.address is not None:
        fields["address"] = row.address
    if row.act_method is not None:
        fields["act_method"] = row.act_method
    if row.primary_flag is not None:
        fields["primary_flag"] = row.primary_flag
    if row.test_enable is not None:
        fields["test_enable"] = row.test_enable
    if row.active is not None:
        fields["active"] = row.active
    if row.regarding_id is not None:
        fields["regarding_id"] = row.regarding_id
    return fields


def _target_kind(target: Mapping[str, object]) -> ClaimKind | None:
    """The claim a change makes if the mailbox syncs ACT through server-side sync."""
    if target.get(PRIMARY_FLAG) is True:
        return ClaimKind.PRIMARY_FLAG
    if target.get(TEST_ENABLE) is True:
        return ClaimKind.TEST_ENABLE
    if _is_int(target.get(ACT_METHOD), ACT_SERVER_SIDE_SYNC):
        return ClaimKind.ACT_METHOD
    return None


def _missing(ctx: Context) -> str | None:
    """The field whose absence makes a read-back necessary, if any."""
    if ctx.trimmed:
        return "InputParameters"
    known = ctx.row()
    if known.address is None:
        return ADDRESS
    if known.act_method is None:
        return ACT_METHOD
    return None


def _effective(ctx: Context, row: MailboxRow | None) -> MailboxRow:
    """The mailbox a claim is judged on: pre < post < read-back < target."""
    if row is None:
        return ctx.row()
    fields: _RowFields = {}
    for attrs in (ctx.pre, ctx.post):
        if attrs is not None:
            fields.update(_row_fields(attrs))
    fields.update(_known_fields(row))
    fields.update(_row_fields(ctx.target))
    return MailboxRow(mailbox_id=ctx.mailbox_id, **fields)


def to_claim(
    ctx: Context,
    org: Org,
    origin: Origin,
    *,
    row: MailboxRow | None = None,
    message_id: str | None = None,
    observed_at: datetime | None = None,
) -> Claim | None:
    """The claim the context makes for ``org``, or ``None`` when it makes none.

    ``org`` is the org the caller authenticated (the webhook key's org); a
    context from another org is refused. When the payload does not carry what a
    claim needs (trimmed, or no address or ACT method) and no read-back ``row``
    is given, this raises rather than let a claim go unheard.
    ``Claim.org`` is the org's name, as policies and cases name orgs;
    ``source_ids["org"]`` keeps its id.
    """
    if normalize_guid(org.id, field="OrganizationId") != ctx.org_id:
        raise InvalidPayload("the context comes from another org than the caller's key", field="OrganizationId")
    if ctx.entity != MAILBOX:
        raise InvalidPayload("OrgGuard only reads mailbox messages", field="PrimaryEntityName")
    if row is not None and normalize_guid(row.mailbox_id, field=MAILBOX_ID) != ctx.mailbox_id:
        raise InvalidPayload("the read-back row is another mailbox than the context's", field=MAILBOX_ID)
    if row is None and ctx.needs_readback():
        missing = _missing(ctx) or "InputParameters"
        raise InvalidPayload("the payload lacks the mailbox state; read the mailbox back from the org", field=missing)
    kind = ctx.claim_kind(row)
    if kind is None:
        return None
    address = _effective(ctx, row).address
    if address is None:
        raise InvalidPayload("the mailbox address is unknown; read the mailbox back from the org", field=ADDRESS)
    return Claim(
        key=MailboxKey.parse(address, field=ADDRESS),
        org=org.name,
        mailbox_id=ctx.mailbox_id,
        kind=kind,
        origin=origin,
        source_ids=ctx.source_ids(message_id=message_id),
        observed_at=observed_at or ctx.created_on or utcnow(),
        user_id=ctx.initiating_user_id or ctx.user_id,
    )

"""The envelopes a context arrives in: Event Grid and CloudEvents events, Service Bus properties.

An Event Grid delivery (CloudEvents 1.0 or the Event Grid schema) carries the
context in ``data``; a Service Bus message carries Dataverse's claims
(``Organization``, ``User`` ...) as application properties, in any casing, as text
or bytes. These functions take the context out and read the properties.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from shared.dataverse.payloads.body import loads
from shared.domain.model import InvalidPayload, Org

SERVICEBUS_PROPERTY_PREFIX = "http://schemas.microsoft.com/xrm/2011/Claims/"
# the names Dataverse sets, in their documented casing; a message may carry them in any case
_SERVICEBUS_NAMES = {
    name.lower(): name
    for name in ("Organization", "User", "InitiatingUser", "EntityLogicalName", "RequestName", "MessageMaxSizeExceeded")
}
_DEFAULT_PORTS = {"http": 80, "https": 443}


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
        data = loads(data, field="data")
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

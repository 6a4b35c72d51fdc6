"""Rows the Plugin Registration Tool writes: service endpoints, steps and step images.

Checked the way Dataverse checks them, so a registration that works here works in an org:
webhooks need a URL and an auth type, asynchronous steps must be post-operation, post images
exist only there, filtering attributes must be the entity's, bindings must point at rows.

"Registered WebHooks support only port 80 for HTTP and port 443 for HTTPS" (powerapps-docs
`developer/data-platform/register-web-hook.md`): other ports are refused unless the sandbox's
visible `loopback_webhooks` setting lets a local OrgGuard on a loopback port in. Webhooks
"send POST requests with JSON payload" (use-webhooks.md) whatever `messageformat` says, and
are created without one in practice (FACTS.md), so it is neither required nor checked.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from sandbox.model import MAILBOX, Navigation, TableSpec, attribute_name
from sandbox.odata import NOT_FOUND, QUERY_ERROR, ODataError, no_property
from sandbox.state import OrgState
from sandbox.validation import check
from sandbox.webhooks import settings_pairs

_BIND = re.compile(r"(?P<set>\w+)\((?P<id>[0-9a-fA-F-]{36})\)\s*$")
MAILBOX_ATTRIBUTES = frozenset(attribute_name(column) for column in MAILBOX.columns)
DEFAULTS: dict[str, dict[str, object]] = {
    "serviceendpoints": {"messageformat": 2, "userclaim": 1, "connectionmode": 1},
    "sdkmessageprocessingsteps": {
        "rank": 1,
        "mode": 0,
        "supporteddeployment": 0,
        "statecode": 0,
        "statuscode": 1,
        "asyncautodelete": False,
    },
    "sdkmessageprocessingstepimages": {"messagepropertyname": "Target"},
}


WEBHOOK_PORTS = {"http": 80, "https": 443}


def prepare(
    org: OrgState,
    spec: TableSpec,
    body: dict[str, Any],
    existing: dict[str, object] | None,
    loopback_webhooks: bool = False,
) -> dict[str, object]:
    """The values to write: all of a new row's (with defaults), or the changed ones of an existing row."""
    values: dict[str, object] = {}
    for name, value in body.items():
        if name.endswith("@odata.bind"):
            navigation = spec.navigations.get(name.removesuffix("@odata.bind"))
            if navigation is None:
                raise ODataError(
                    400,
                    f"An undeclared property '{name.removesuffix('@odata.bind')}' which only has property "
                    "annotations in the payload but no property value was found in the payload.",
                    QUERY_ERROR,
                )
            values[navigation.column] = _bind(org, navigation, value)
        elif "@" in name:
            continue
        else:
            column = spec.columns.get(name)
            if column is None:
                raise no_property(spec, name)
            if column.writable:
                values[name] = check(spec, name, column, value)
    merged = {**DEFAULTS.get(spec.entity_set, {}), **values} if existing is None else {**existing, **values}
    if spec.entity_set == "sdkmessageprocessingstepimages" and not merged.get("name"):
        merged["name"] = merged.get("entityalias")
        values.setdefault("name", merged["name"])
    _validate(org, spec.entity_set, merged, loopback_webhooks)
    return merged if existing is None else values


def _bind(org: OrgState, navigation: Navigation, value: object) -> str | None:
    if value is None:
        return None
    match = _BIND.search(str(value))
    if match is None or match.group("set") != navigation.entity_set:
        raise ODataError(
            400, f"The @odata.bind value '{value}' must reference {navigation.entity_set}(<id>).", QUERY_ERROR
        )
    row_id = match.group("id").lower()
    if org.tables[navigation.entity_set].get(row_id) is None:
        logical = navigation.entity_set.removesuffix("s")
        raise ODataError(404, f"{logical} With Id = {row_id} Does Not Exist", NOT_FOUND)
    return row_id


def _require(values: dict[str, object], *names: str) -> None:
    for name in names:
        if values.get(name) in (None, ""):
            raise ODataError(400, f"The attribute '{name}' is required.", "0x80040200")


def _attributes(text: object, what: str) -> None:
    names = [name.strip().lower() for name in str(text or "").split(",") if name.strip()]
    unknown = [name for name in names if name not in MAILBOX_ATTRIBUTES]
    if unknown:
        raise ODataError(400, f"The {what} '{unknown[0]}' is not an attribute of mailbox.", "0x80040203")


def _webhook_url(url: str, loopback_webhooks: bool) -> None:
    parts = urlsplit(url)
    try:
        port = parts.port or WEBHOOK_PORTS.get(parts.scheme)
    except ValueError:
        port = None
    if parts.scheme not in WEBHOOK_PORTS or not parts.hostname or port is None:
        raise ODataError(400, "A webhook URL must be an absolute http(s) URL.", "0x80040203")
    if port == WEBHOOK_PORTS[parts.scheme] or (loopback_webhooks and _loopback(parts.hostname)):
        return
    raise ODataError(
        400,
        f"Webhooks support only port 80 for HTTP and port 443 for HTTPS; '{url}' uses port {port}. "
        "(A local OrgGuard on another loopback port needs the sandbox's loopback_webhooks setting.)",
        "0x80040203",
    )


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validate(org: OrgState, entity_set: str, values: dict[str, object], loopback_webhooks: bool) -> None:
    if entity_set == "serviceendpoints":
        _require(values, "name", "contract")
        if values["contract"] == 8:
            _require(values, "url", "authtype", "authvalue")
            _webhook_url(str(values["url"]), loopback_webhooks)
            if values["authtype"] not in (4, 5, 6):
                raise ODataError(400, "A webhook's authtype must be 4 (WebhookKey), 5 (HttpHeader) or 6.", "0x80040203")
            if values["authtype"] in (5, 6) and not settings_pairs(str(values["authvalue"])):
                raise ODataError(
                    400,
                    'authvalue must be <settings><setting name="..." value="..." /></settings> for authtype 5 and 6.',
                    "0x80040203",
                )
    elif entity_set == "sdkmessageprocessingsteps":
        _require(values, "name", "_sdkmessageid_value", "_eventhandler_value", "stage")
        if values.get("mode") == 1 and values.get("stage") != 40:
            raise ODataError(
                400, "Asynchronous steps must be registered on the post-operation stage (40).", "0x80040203"
            )
        filter_id = values.get("_sdkmessagefilterid_value")
        if filter_id is not None:
            found = org.tables["sdkmessagefilters"].get(str(filter_id))
            if found is None or found.get("_sdkmessageid_value") != values["_sdkmessageid_value"]:
                raise ODataError(400, "The message filter does not belong to the step's message.", "0x80040203")
            if found.get("primaryobjecttypecode") == "mailbox":
                _attributes(values.get("filteringattributes"), "filtering attribute")
    elif entity_set == "sdkmessageprocessingstepimages":
        _require(values, "_sdkmessageprocessingstepid_value", "entityalias", "imagetype")
        step = org.tables["sdkmessageprocessingsteps"].get(str(values["_sdkmessageprocessingstepid_value"]))
        if step is not None and values["imagetype"] in (1, 2) and step.get("stage") != 40:
            raise ODataError(400, "Post images are only available on the post-operation stage.", "0x80040203")
        _attributes(values.get("attributes"), "image attribute")

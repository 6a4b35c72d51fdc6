"""The slice of Microsoft Graph v1.0 that msgraph-sdk sends for OrgGuard, over real HTTP.

Users by id or UPN and by ``$filter`` on ``mail``, ``userPrincipalName`` and
``proxyAddresses/any(...)`` (an advanced query: it needs ``ConsistencyLevel:
eventual`` and ``$count=true``, as in Graph); ``transitiveMemberOf`` of a user;
groups by ``displayName`` and their ``transitiveMembers`` (paged with
``$top`` and ``@odata.nextLink``); ``sendMail`` as JSON or as base64 MIME; and
JSON ``$batch`` of up to 20 requests. Faults (status, ``Retry-After``, a body
that is not JSON, a late answer) are injected per route through
``/_sandbox/settings``. Every request needs a bearer token, any token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email
import email.policy
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sandbox.model import mailbox_key
from sandbox.state import GraphFault, GraphGroup, GraphUser, SandboxState, now_iso

ROOT = "https://graph.microsoft.com/v1.0/"
PREFIX = "/graph/v1.0"
USER_PROPERTIES = (
    "id",
    "displayName",
    "userPrincipalName",
    "mail",
    "usageLocation",
    "country",
    "department",
    "jobTitle",
    "companyName",
    "officeLocation",
    "proxyAddresses",
    "accountEnabled",
)
GROUP_PROPERTIES = ("id", "displayName", "mail", "securityEnabled")
DEFAULT_PAGE, MAX_PAGE = 100, 999
MAX_BATCH = 20
_FAULT_CODES = {429: "TooManyRequests", 503: "ServiceUnavailable", 504: "GatewayTimeout", 403: "Forbidden"}
_TERM = re.compile(
    r"""^\s*(?:
        (?P<prop>mail|userPrincipalName|displayName)\s+eq\s+'(?P<value>(?:[^']|'')*)'
      | proxyAddresses/any\((?P<var>\w+):(?P=var)\s+eq\s+'(?P<proxy>(?:[^']|'')*)'\)
    )\s*$""",
    re.VERBOSE | re.IGNORECASE,
)


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # a body that is not JSON (injected faults)

    def response(self) -> Response:
        if self.raw is not None:
            return Response(self.raw, self.status, self.headers, media_type="application/json")
        if self.body is None:
            return Response(status_code=self.status, headers=self.headers)
        content = json.dumps(self.body).encode()
        return Response(content, self.status, self.headers, media_type="application/json")


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.answer = Answer(status, {"error": {"code": code, "message": message}}, headers or {})


def _missing(what: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{what}' does not exist or one of its queried reference-property objects are not present.",
    )


def _unsupported(message: str) -> GraphError:
    return GraphError(400, "Request_UnsupportedQuery", message)


@dataclass
class Call:
    method: str
    path: str  # after /v1.0/, without the query
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def advanced(self) -> bool:
        return self.headers.get("consistencylevel", "").lower() == "eventual"


class Graph:
    """Answers one Graph request (outside or inside a ``$batch``) from the sandbox's directory."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def answer(self, call: Call, *, inner: bool = False) -> Answer:
        counters = self.state.graph_counters
        route = _route_name(call)
        counters.by_route[route] = counters.by_route.get(route, 0) + 1
        if inner:
            counters.inner += 1
        where = f"{call.path}?{_query_text(call.query)}"
        fault = next((f for f in self.state.graph_faults if f.applies(where)), None)
        if fault is not None:
            return await self._fault(fault)
        try:
            return self._route(call)
        except GraphError as error:
            return error.answer

    async def _fault(self, fault: GraphFault) -> Answer:
        fault.count -= 1
        self.state.graph_counters.faults += 1
        if fault.delay_ms:
            await asyncio.sleep(fault.delay_ms / 1000)
        if fault.malformed:
            return Answer(200, raw=b'{"value": [{"id": "truncated')
        headers = {}
        if fault.retry_after is not None or fault.status in (429, 503):
            headers["Retry-After"] = str(fault.retry_after if fault.retry_after is not None else 1)
        codes = {
            429: "TooManyRequests",
            503: "ServiceUnavailable",
            504: "GatewayTimeout",
            403: "Authorization_RequestDenied",
        }
        code = codes.get(fault.status, "generalException")
        return Answer(fault.status, {"error": {"code": code, "message": "Injected fault."}}, headers)

    def _route(self, call: Call) -> Answer:
        parts = [p for p in call.path.split("/") if p]
        method = call.method.upper()
        match parts:
            case ["users"] if method == "GET":
                return self._users(call)
            case ["users", user] if method == "GET":
                return self._entity(call, self._user(user).as_json(), USER_PROPERTIES, "users")
            case ["users", user, ("memberOf" | "transitiveMemberOf") as how] if method == "GET":
                found = self._user(user)
                groups = self._groups_of(found, transitive=how == "transitiveMemberOf")
                return self._page(call, [_group_json(g) for g in groups], GROUP_PROPERTIES, "directoryObjects")
            case ["users", user, "sendMail"] if method == "POST":
                return self._send_mail(call, self._user(user))
            case ["groups"] if method == "GET":
                return self._groups(call)
            case ["groups", group_id, ("members" | "transitiveMembers") as how] if method == "GET":
                group = self.state.groups.get(group_id.lower())
                if group is None:
                    raise _missing(group_id)
                users = self._members(group, transitive=how == "transitiveMembers")
                return self._page(call, [_user_json(u) for u in users], USER_PROPERTIES, "directoryObjects")
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{parts[-1] if parts else ''}'.")

    # --- users and groups ------------------------------------------------------------

    def _user(self, user: str) -> GraphUser:
        found = self.state.graph_users.get(user.lower())
        if found is None:  # by UPN, as Graph allows
            key = mailbox_key(user)
            users = [self.state.graph_users[i] for i in self.state.graph_by_address.get(key, [])]
            found = next((u for u in users if mailbox_key(u.userPrincipalName) == key), None)
        if found is None:
            raise _missing(user)
        return found

    def _users(self, call: Call) -> Answer:
        text = call.query.get("$filter")
        if not text:
            users: Iterable[GraphUser] = self.state.graph_users.values()
        else:
            users = self._filtered(call, text)
        return self._page(call, [u.as_json() for u in users], USER_PROPERTIES, "users")

    def _filtered(self, call: Call, text: str) -> list[GraphUser]:
        wanted: list[GraphUser] = []
        for term in re.split(r"\s+or\s+", text.strip(), flags=re.IGNORECASE):
            match = _TERM.match(term)
            if match is None:
                raise _unsupported(f"Unsupported or invalid query filter clause specified for property: '{term}'.")
            if match.group("proxy") is not None:
                wanted += self._by_proxy(call, match.group("proxy").replace("''", "'"))
                continue
            prop, value = match.group("prop"), match.group("value").replace("''", "'")
            if prop.lower() == "displayname":
                wanted += [u for u in self.state.graph_users.values() if u.displayName.lower() == value.lower()]
                continue
            users = [self.state.graph_users[i] for i in self.state.graph_by_address.get(mailbox_key(value), [])]
            field = "mail" if prop.lower() == "mail" else "userPrincipalName"
            wanted += [u for u in users if mailbox_key(getattr(u, field)) == mailbox_key(value)]
        return list({u.id: u for u in wanted}.values())

    def _by_proxy(self, call: Call, proxy: str) -> list[GraphUser]:
        if not (call.advanced and call.query.get("$count", "").lower() == "true"):
            raise _unsupported(
                "Request with $filter on proxyAddresses needs the ConsistencyLevel header set to "
                "'eventual' and $count=true (an advanced query)."
            )
        kind, _, address = proxy.partition(":")
        if kind.lower() != "smtp":
            return []
        key = mailbox_key(address)
        users = [self.state.graph_users[i] for i in self.state.graph_by_address.get(key, [])]
        return [u for u in users if any(_proxy(p) == key for p in u.proxyAddresses)]

    def _groups_of(self, user: GraphUser, *, transitive: bool) -> list[GraphGroup]:
        found: dict[str, GraphGroup] = {}
        todo = list(user.groups)
        while todo:
            group = self.state.groups[todo.pop(0)]
            if group.id in found:
                continue
            found[group.id] = group
            if transitive:
                todo += list(group.parents)
        return list(found.values())

    def _groups(self, call: Call) -> Answer:
        text = call.query.get("$filter", "")
        match = re.fullmatch(r"\s*displayName\s+eq\s+'((?:[^']|'')*)'\s*", text, re.IGNORECASE) if text else None
        if text and match is None:
            raise _unsupported(f"Unsupported or invalid query filter clause specified: '{text}'.")
        name = match.group(1).replace("''", "'").lower() if match else None
        groups = [g for g in self.state.groups.values() if name is None or g.displayName.lower() == name]
        return self._page(call, [_group_json(g) for g in groups], GROUP_PROPERTIES, "groups")

    def _members(self, group: GraphGroup, *, transitive: bool) -> list[GraphUser]:
        groups = [group]
        if transitive:
            groups += [g for g in self.state.groups.values() if group.id in g.parents]
        seen: dict[str, GraphUser] = {}
        for g in groups:
            for user_id in g.members:
                seen.setdefault(user_id, self.state.graph_users[user_id])
        return list(seen.values())

    # --- shapes ---------------------------------------------------------------------

    def _entity(self, call: Call, body: dict[str, Any], allowed: tuple[str, ...], entity_set: str) -> Answer:
        select = _select(call, allowed)
        if select:
            body = {name: body.get(name) for name in ("id", *select)}
            context = f"{ROOT}$metadata#{entity_set}({','.join(select)})/$entity"
        else:
            context = f"{ROOT}$metadata#{entity_set}/$entity"
        return Answer(200, {"@odata.context": context, **body})

    def _page(self, call: Call, items: list[dict[str, Any]], allowed: tuple[str, ...], entity_set: str) -> Answer:
        select = _select(call, allowed)
        try:
            top = int(call.query.get("$top", DEFAULT_PAGE))
            start = int(call.query.get("$skiptoken", "0") or 0)
        except ValueError:
            raise GraphError(400, "BadRequest", "Invalid $top or $skiptoken.") from None
        if not 1 <= top <= MAX_PAGE:
            raise GraphError(400, "BadRequest", f"Invalid page size specified: '{top}'. Must be between 1 and 999.")
        chunk = items[start : start + top]
        if select:
            chunk = [{k: v for k, v in item.items() if k in ("id", "@odata.type", *select)} for item in chunk]
        body: dict[str, Any] = {"@odata.context": f"{ROOT}$metadata#{entity_set}", "value": chunk}
        if call.query.get("$count", "").lower() == "true":
            if not call.advanced:
                raise _unsupported("$count is only supported with the ConsistencyLevel header set to 'eventual'.")
            body["@odata.count"] = len(items)
        if start + top < len(items):
            query = {**call.query, "$skiptoken": str(start + top)}
            body["@odata.nextLink"] = f"{self.base}{call.path}?{_query_text(query)}"
        return Answer(200, body)

    base = ROOT  # replaced per request with the sandbox's own address, so nextLinks come back here

    # --- sendMail ------------------------------------------------------------------------

    def _send_mail(self, call: Call, sender: GraphUser) -> Answer:
        content_type = call.headers.get("content-type", "").split(";")[0].strip().lower()
        message = _mime_message(call.body) if content_type == "text/plain" else _json_message(call.body)
        self.state.mail.append({"at": now_iso(), "from": sender.userPrincipalName, "message": message})
        return Answer(202)


def _proxy(value: str) -> str:
    kind, _, address = value.partition(":")
    return mailbox_key(address) if kind.lower() == "smtp" else ""


def _select(call: Call, allowed: tuple[str, ...]) -> list[str]:
    select = [n.strip() for n in call.query.get("$select", "").split(",") if n.strip()]
    unknown = [n for n in select if n not in allowed]
    if unknown:
        raise GraphError(400, "Request_BadRequest", f"Could not find a property named '{unknown[0]}'.")
    return select


def _user_json(user: GraphUser) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.user", **user.as_json()}


def _group_json(group: GraphGroup) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.group",
        "id": group.id,
        "displayName": group.displayName,
        "mail": None,
        "securityEnabled": True,
    }


def _query_text(query: dict[str, str]) -> str:
    return "&".join(f"{quote(k, safe='$')}={quote(v, safe='')}" for k, v in query.items())


def _route_name(call: Call) -> str:
    parts = [p for p in call.path.split("/") if p]
    shape = [parts[0]] if parts else []
    if len(parts) > 1:
        shape.append("{id}")
    shape += parts[2:3]
    return f"{call.method.upper()} /{'/'.join(shape)}"


def _json_message(body: bytes) -> dict[str, Any]:
    try:
        doc: Any = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GraphError(400, "ErrorInvalidRequest", "The request body is not valid JSON.") from None
    lowered = {str(key).lower(): value for key, value in doc.items()} if isinstance(doc, dict) else {}
    message = lowered.get("message")
    if not isinstance(message, dict):
        raise GraphError(400, "ErrorInvalidRequest", "The 'message' property is required.")
    return message


def _mime_message(body: bytes) -> dict[str, Any]:
    """A MIME sendMail (base64 in a text/plain body), shown as the Graph message it becomes."""
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise GraphError(
            400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
        ) from None
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)

    def people(header: str) -> list[dict[str, Any]]:
        return [{"emailAddress": {"name": n, "address": a}} for n, a in getaddresses(parsed.get_all(header, []))]

    to, bcc = people("To"), people("Bcc")
    if not (to or bcc or people("Cc")):
        raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    shown = html if html is not None else text
    return {
        "subject": str(parsed.get("Subject", "")).strip(),
        "from": people("From")[0] if people("From") else None,
        "toRecipients": to,
        "ccRecipients": people("Cc"),
        "bccRecipients": bcc,
        "internetMessageId": str(parsed.get("Message-ID", "")),
        "body": {
            "contentType": "html" if html is not None else "text",
            "content": shown.get_content() if shown is not None else "",
        },
        "textBody": text.get_content() if text is not None else None,
        "mime": True,
    }


def router(state: SandboxState) -> APIRouter:
    routes = APIRouter(prefix=PREFIX)
    graph = Graph(state)

    def call_from(request: Request, path: str, body: bytes) -> Call:
        return Call(
            request.method,
            path,
            dict(request.query_params),
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )

    @routes.api_route("/{path:path}", methods=["GET", "POST", "PATCH", "DELETE"])
    async def any_route(path: str, request: Request) -> Response:
        state.graph_counters.http += 1
        graph.base = f"{str(request.base_url).rstrip('/')}{PREFIX}/"
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return GraphError(401, "InvalidAuthenticationToken", "Access token is empty.").answer.response()
        body = await request.body()
        if path == "$batch" and request.method == "POST":
            return (await _batch(graph, state, call_from(request, path, body))).response()
        return (await graph.answer(call_from(request, path, body))).response()

    return routes


async def _batch(graph: Graph, state: SandboxState, outer: Call) -> Answer:
    """JSON batching: up to 20 requests, each answered on its own (no dependsOn ordering needed here)."""
    state.graph_counters.batches += 1
    fault = next((f for f in state.graph_faults if f.applies("$batch")), None)
    if fault is not None:
        return await graph._fault(fault)
    try:
        doc = json.loads(outer.body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return GraphError(400, "BadRequest", "Invalid batch payload format.").answer
    requests = doc.get("requests") if isinstance(doc, dict) else None
    if not isinstance(requests, list) or not requests:
        return GraphError(400, "BadRequest", "Invalid batch payload format.").answer
    if len(requests) > MAX_BATCH:
        return GraphError(400, "BadRequest", f"Number of batch requests exceeds the limit of {MAX_BATCH}.").answer
    answers = []
    for item in requests:
        if not isinstance(item, dict) or "id" not in item or "url" not in item or "method" not in item:
            return GraphError(400, "BadRequest", "Each batch request needs id, method and url.").answer
        url = urlsplit(str(item["url"]))
        path = url.path
        if path.startswith(("http", "/v1.0/")) or "://" in str(item["url"]):
            return GraphError(400, "BadRequest", "Batch request urls must be relative, like /users.").answer
        body = item.get("body")
        raw = json.dumps(body).encode() if isinstance(body, dict | list) else (str(body).encode() if body else b"")
        call = Call(
            str(item["method"]),
            path.lstrip("/"),
            dict(parse_qsl(url.query, keep_blank_values=True)),
            {str(k).lower(): str(v) for k, v in (item.get("headers") or {}).items()},
            raw,
        )
        answer = await graph.answer(call, inner=True)
        inner: dict[str, Any] = {"id": str(item["id"]), "status": answer.status, "headers": answer.headers}
        if answer.raw is not None:
            inner["body"] = base64.b64encode(answer.raw).decode()
            inner["headers"] = {**answer.headers, "Content-Type": "application/json"}
        elif answer.body is not None:
            inner["body"] = answer.body
            inner["headers"] = {**answer.headers, "Content-Type": "application/json; charset=utf-8"}
        answers.append(inner)
    return Answer(200, {"responses": answers})

"""Microsoft Graph through msgraph-sdk: the users behind mailboxes, group members, and sendMail.

One ``Graph`` per event loop (msgraph-sdk is async only; its httpx client and
credential belong to the loop that made them). msgraph-sdk is imported when a
``Graph`` is built, never at module import: ``import msgraph`` costs about half
a second and the first request another second and a half (FACTS, SDKs), which
the gate's cold path must not pay for a policy that never reads the user.

The SDK's own retry middleware is switched off (``max_retries=0``): a decision
waiting for Graph has a strict deadline, and the outbox retries on its own
schedule, honouring ``Retry-After`` and recording every attempt. It would also
resend a ``sendMail`` after a 504, whose message may well have gone out.

Every failure becomes a ``GraphError`` that says whether trying again later can
help (``transient``: no answer, 429, 5xx, an answer that is not JSON) and
whether a request may have reached Graph though its answer was lost (``lost``:
a read timeout or a dropped connection after the request was sent), which
matters for ``sendMail`` only.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared import telemetry
from shared.domain.model import MailboxKey
from shared.graph.port import GraphError

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken
    from azure.core.credentials_async import AsyncTokenCredential
    from msgraph.graph_service_client import GraphServiceClient

log = logging.getLogger("orgguard.graph")

SCOPE = "https://graph.microsoft.com/.default"
LOCAL_DEV_TOKEN = "orgguard-local-dev"  # noqa: S105 - the sandbox accepts any bearer token
USER_SELECT = (
    "id",
    "displayName",
    "mail",
    "userPrincipalName",
    "usageLocation",
    "country",
    "department",
    "companyName",
    "officeLocation",
)
ATTRIBUTES = ("usageLocation", "country", "department", "companyName", "officeLocation")
BATCH_SIZE = 20  # Graph's JSON batching limit
PAGE_SIZE = 999  # the largest page Graph gives for members and memberships


@dataclass(frozen=True)
class DirectoryUser:
    """A Graph user as OrgGuard reads it: the attributes policy conditions name, and its groups."""

    id: str
    name: str
    attributes: dict[str, str] = field(default_factory=dict)
    groups: tuple[tuple[str, str], ...] | None = None  # (id, displayName); None: not read

    def facts(self) -> dict[str, object]:
        """What ``Situation.user`` holds: attributes, and memberOf as names and ids (either may be written)."""
        found: dict[str, object] = dict(self.attributes)
        if self.groups is not None:
            found["memberOf"] = [part for group in self.groups for part in group]
        return found


class LocalDevCredential:
    """For a Graph on loopback (the sandbox): a fixed token, no Azure login (as for loopback orgs)."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        from azure.core.credentials import AccessToken

        return AccessToken(LOCAL_DEV_TOKEN, int(datetime.now(UTC).timestamp()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> LocalDevCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None


def credential_for(base_url: str, client_id: str | None) -> AsyncTokenCredential:
    """The loopback rule again: a local token for the sandbox, azure-identity (managed identity) elsewhere."""
    from shared.config.urls import is_loopback

    if is_loopback(base_url):
        return LocalDevCredential()
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()


def odata_text(value: str) -> str:
    """A string literal inside ``$filter`` (a quote is doubled)."""
    return "'" + value.replace("'", "''") + "'"


def address_filter(key: MailboxKey) -> str:
    """Who receives mail at ``key``: its mail, its UPN, or one of its smtp proxy addresses."""
    a = odata_text(key.address)
    return f"mail eq {a} or userPrincipalName eq {a} or proxyAddresses/any(p:p eq {odata_text('smtp:' + key.address)})"


class Graph:
    """msgraph-sdk's ``GraphServiceClient`` for one event loop, with OrgGuard's few questions."""

    def __init__(self, base_url: str, *, credential: AsyncTokenCredential | None = None, timeout: float = 10.0) -> None:
        import httpx
        from kiota_authentication_azure.azure_identity_authentication_provider import (
            AzureIdentityAuthenticationProvider,
        )
        from kiota_http.middleware.options import RetryHandlerOption
        from msgraph.graph_request_adapter import GraphRequestAdapter
        from msgraph.graph_service_client import GraphServiceClient
        from msgraph_core import GraphClientFactory

        self.base_url = base_url.rstrip("/")  # msgraph-sdk joins paths to it; a trailing slash doubles one
        self.credential = credential or credential_for(base_url, None)
        self.requests = 0  # HTTP requests sent (a $batch counts once)
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            http2=self.base_url.startswith("https:"),
            event_hooks={"request": [self._count], "response": [self._observe]},
        )
        options = {RetryHandlerOption.get_key(): RetryHandlerOption(delay=0, max_retries=0, should_retry=False)}
        http = GraphClientFactory.create_with_default_middleware(client=http, options=options)
        auth = AzureIdentityAuthenticationProvider(self.credential, scopes=[SCOPE])
        adapter = GraphRequestAdapter(auth, client=http)
        adapter.base_url = self.base_url
        self._http = http
        self.client: GraphServiceClient = GraphServiceClient(request_adapter=adapter)

    def prepare(self) -> None:
        """Pay msgraph's first-call cost now: parsing a user imports some 1,200 model modules (about 1.5 s).

        The directory does this on its own thread while it starts, so the first
        decision that reads the user is not the one that waits for it.
        """
        from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
        from msgraph.generated.models.directory_object_collection_response import DirectoryObjectCollectionResponse
        from msgraph.generated.models.user_collection_response import UserCollectionResponse

        sample = b'{"value": [{"@odata.type": "#microsoft.graph.user", "id": "0"}]}'
        for model in (UserCollectionResponse, DirectoryObjectCollectionResponse):
            JsonParseNodeFactory().get_root_parse_node("application/json", sample).get_object_value(model)

    async def _count(self, request: object) -> None:
        self.requests += 1

    async def _observe(self, response: Any) -> None:
        """Every Graph answer counted by status, as the Dataverse client counts its own (shared/telemetry.py)."""
        telemetry.count(telemetry.OUTSIDE_CALLS, service="graph", status=response.status_code)

    async def aclose(self) -> None:
        await self._http.aclose()
        await self.credential.close()

    # --- users ---------------------------------------------------------------------------

    async def users_at(self, key: MailboxKey) -> list[DirectoryUser]:
        """Every user who receives mail at ``key`` (none, one, or, in a messy tenant, more)."""
        answer = await self._call(self.client.users.get(request_configuration=self._user_query(key)))
        return [_user(u) for u in (answer.value if answer and answer.value else [])]

    async def users_at_many(self, keys: Sequence[MailboxKey]) -> dict[MailboxKey, list[DirectoryUser] | GraphError]:
        """``users_at`` for many keys, 20 to a JSON ``$batch``; each key's own failure is kept apart."""
        from msgraph.generated.models.user_collection_response import UserCollectionResponse

        infos = [self.client.users.to_get_request_information(self._user_query(key)) for key in keys]
        answers = await self._batched(infos, UserCollectionResponse)
        return {
            key: a if isinstance(a, GraphError) else [_user(u) for u in a.value or []]
            for key, a in zip(keys, answers, strict=True)
        }

    async def groups_of_many(self, user_ids: Sequence[str]) -> dict[str, tuple[tuple[str, str], ...] | GraphError]:
        """``groups_of`` for many users: first pages 20 to a ``$batch``, further pages one by one."""
        from msgraph.generated.models.directory_object_collection_response import DirectoryObjectCollectionResponse

        infos = [
            self.client.users.by_user_id(uid).transitive_member_of.to_get_request_information(self._groups_query())
            for uid in user_ids
        ]
        answers = await self._batched(infos, DirectoryObjectCollectionResponse)
        found: dict[str, tuple[tuple[str, str], ...] | GraphError] = {}
        for uid, answer in zip(user_ids, answers, strict=True):
            if isinstance(answer, GraphError):
                found[uid] = answer
                continue
            try:
                found[uid] = await self._more_groups(uid, answer)
            except GraphError as exc:
                found[uid] = exc
        return found

    async def _batched(self, infos: Sequence[Any], model: Any) -> list[Any]:
        """Each request's parsed answer (or its ``GraphError``), sent 20 to a JSON ``$batch``.

        The batch is built with msgraph-core's ``BatchRequestContent`` and sent through
        the SDK's request adapter, but its answer is read here: msgraph-core's
        ``BatchResponseItem`` drops bodies that are JSON objects (kiota-python issue 737),
        which is how Graph answers. Each body is then parsed with the SDK's own models.
        """
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError
        from msgraph_core.requests.batch_request_content import BatchRequestContent
        from msgraph_core.requests.batch_request_item import BatchRequestItem

        out: list[Any] = []
        for start in range(0, len(infos), BATCH_SIZE):
            chunk = infos[start : start + BATCH_SIZE]
            if len(chunk) == 1:  # a batch of one is one more envelope for nothing
                try:
                    out.append(
                        await self._call(self.client.request_adapter.send_async(chunk[0], model, {"XXX": ODataError}))
                    )
                except GraphError as exc:
                    out.append(exc)
                continue
            content = BatchRequestContent()
            for n, info in enumerate(chunk):
                item = BatchRequestItem(request_information=info, id=str(n))
                item.url = self._relative(info.url)  # once a builder has sent, its requests carry the full URL
                content.add_request(str(n), item)
            try:
                post = await self.client.batch.to_post_request_information(content)
                raw = await self._call(
                    self.client.request_adapter.send_primitive_async(post, "bytes", {"XXX": ODataError})
                )
                parts = _batch_parts(raw)
            except GraphError as exc:
                out += [exc] * len(chunk)
                continue
            out += [_part(parts.get(str(n)), model) for n in range(len(chunk))]
        return out

    def _relative(self, url: str) -> str:
        """A ``$batch`` request's URL: relative to the version root (``/users?...``), as Graph requires."""
        if url.startswith(self.base_url):
            url = url[len(self.base_url) :]
        return url if url.startswith("/") else f"/{url}"

    def _user_query(self, key: MailboxKey) -> Any:
        """``proxyAddresses/any(...)`` is an advanced query: ``ConsistencyLevel: eventual`` and ``$count=true``."""
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.users.users_request_builder import UsersRequestBuilder

        params = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            filter=address_filter(key), select=list(USER_SELECT), count=True, top=5
        )
        config = RequestConfiguration(query_parameters=params)
        config.headers.add("ConsistencyLevel", "eventual")
        return config

    async def groups_of(self, user_id: str) -> tuple[tuple[str, str], ...]:
        """The user's groups, nested ones included (``transitiveMemberOf``), every page of them."""
        builder = self.client.users.by_user_id(user_id).transitive_member_of
        return await self._more_groups(user_id, await self._call(builder.get(self._groups_query())))

    def _groups_query(self) -> Any:
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.users.item.transitive_member_of.transitive_member_of_request_builder import (
            TransitiveMemberOfRequestBuilder,
        )

        params = TransitiveMemberOfRequestBuilder.TransitiveMemberOfRequestBuilderGetQueryParameters(
            select=["id", "displayName"], top=PAGE_SIZE
        )
        return RequestConfiguration(query_parameters=params)

    async def _more_groups(self, user_id: str, page: Any) -> tuple[tuple[str, str], ...]:
        """The groups on ``page`` and on every page after it."""
        from msgraph.generated.models.group import Group

        builder = self.client.users.by_user_id(user_id).transitive_member_of
        groups: list[tuple[str, str]] = []
        while page is not None:
            groups += [(g.id or "", g.display_name or "") for g in page.value or [] if isinstance(g, Group)]
            if not page.odata_next_link:
                break
            page = await self._call(builder.with_url(page.odata_next_link).get())
        return tuple(groups)

    # --- groups ----------------------------------------------------------------------------

    async def groups_named(self, name: str) -> list[str]:
        """The ids of the groups whose display name is ``name``."""
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.groups.groups_request_builder import GroupsRequestBuilder

        params = GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(
            filter=f"displayName eq {odata_text(name)}", select=["id", "displayName"]
        )
        answer = await self._call(self.client.groups.get(RequestConfiguration(query_parameters=params)))
        return [g.id for g in (answer.value if answer and answer.value else []) if g.id]

    async def member_addresses(self, group_id: str) -> list[str]:
        """The addresses of the group's members, nested groups included, through every page (999 at a time)."""
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.groups.item.transitive_members.transitive_members_request_builder import (
            TransitiveMembersRequestBuilder,
        )
        from msgraph.generated.models.user import User

        params = TransitiveMembersRequestBuilder.TransitiveMembersRequestBuilderGetQueryParameters(
            select=["id", "mail", "userPrincipalName", "accountEnabled"], top=PAGE_SIZE
        )
        builder = self.client.groups.by_group_id(group_id).transitive_members
        page = await self._call(builder.get(RequestConfiguration(query_parameters=params)))
        found: list[str] = []
        while page is not None:
            for member in page.value or []:
                if isinstance(member, User) and member.account_enabled is not False and (member.mail or "").strip():
                    found.append(str(member.mail))
            if not page.odata_next_link:
                break
            page = await self._call(builder.with_url(page.odata_next_link).get())
        return found

    # --- mail --------------------------------------------------------------------------------

    async def send_mime(self, sender: str, mime: bytes) -> None:
        """``POST /users/{sender}/sendMail`` with a MIME message (base64, ``text/plain``); Graph answers 202.

        MIME rather than the JSON message: only MIME carries a plain-text and an HTML
        body side by side (multipart/alternative) and our own ``Message-ID``.
        """
        from kiota_abstractions.method import Method
        from kiota_abstractions.request_information import RequestInformation
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError

        builder = self.client.users.by_user_id(sender).send_mail
        info = RequestInformation(Method.POST, builder.url_template, builder.path_parameters)
        info.headers.try_add("Content-Type", "text/plain")
        info.content = base64.b64encode(mime)
        await self._call(
            self.client.request_adapter.send_no_response_content_async(info, {"XXX": ODataError}), sends=True
        )

    # --- errors --------------------------------------------------------------------------------

    async def _call(self, pending: Any, *, sends: bool = False) -> Any:
        """Await one SDK call; every failure comes out as a ``GraphError``."""
        from kiota_abstractions.api_error import APIError

        with telemetry.span("graph", service="graph", operation="sendMail" if sends else "read") as span:
            try:
                return await pending
            except APIError as exc:
                error = _api_error(exc)
                telemetry.note(span, **{"http.response.status_code": error.status, "error.type": "APIError"})
                raise error from None
            except Exception as exc:
                telemetry.note(span, **{"error.type": type(exc).__name__})
                known = _unreadable(exc, sends)
                if known is None:
                    raise
                raise known from None


def _unreadable(exc: Exception, sends: bool) -> GraphError | None:
    """A failure that is not Graph's own answer, as a ``GraphError``; None for one OrgGuard does not know."""
    import httpx

    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return GraphError(f"could not reach Microsoft Graph ({name})")
    if isinstance(exc, httpx.TimeoutException):
        return GraphError(f"Microsoft Graph did not answer in time ({name})", lost=sends)
    if isinstance(exc, httpx.HTTPError):
        return GraphError(f"the connection to Microsoft Graph failed ({name})", lost=sends)
    if isinstance(exc, ValueError | TypeError | KeyError | json.JSONDecodeError):
        return GraphError(f"Microsoft Graph's answer could not be read ({name})", status=200)
    return None


def _api_error(exc: Any) -> GraphError:
    status = getattr(exc, "response_status_code", None)
    headers = getattr(exc, "response_headers", None) or {}
    retry_after = _seconds(headers.get("Retry-After") or headers.get("retry-after"))
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) if error is not None else None
    message = getattr(error, "message", None) if error is not None else None
    text = f"{code}: {message}" if code or message else (getattr(exc, "message", None) or type(exc).__name__)
    return GraphError(str(text)[:300], status=status, retry_after=retry_after)


def _seconds(value: object) -> float | None:
    try:
        return max(0.0, float(str(value))) if value is not None else None
    except ValueError:
        return None


def _user(u: Any) -> DirectoryUser:
    values = {
        "usageLocation": u.usage_location,
        "country": u.country,
        "department": u.department,
        "companyName": u.company_name,
        "officeLocation": u.office_location,
    }
    attributes = {k: str(v) for k, v in values.items() if isinstance(v, str) and v.strip()}
    return DirectoryUser(str(u.id or ""), str(u.display_name or ""), attributes)


def _batch_parts(raw: object) -> dict[str, dict[str, Any]]:
    """The ``responses`` of a ``$batch`` answer by request id; a garbled envelope is a (transient) GraphError."""
    try:
        doc = json.loads(raw) if isinstance(raw, bytes | str) else None
    except ValueError:
        doc = None
    responses = doc.get("responses") if isinstance(doc, dict) else None
    if not isinstance(responses, list):
        raise GraphError("the $batch answer could not be read", status=200)
    return {str(r.get("id")): r for r in responses if isinstance(r, dict)}


def _part(part: dict[str, Any] | None, model: Any) -> Any:
    """One request's answer inside a ``$batch``, parsed into ``model``, or why it failed (a GraphError)."""
    from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory

    if part is None:
        return GraphError("the $batch answer left this request out", status=200)
    status = int(part.get("status") or 0)
    headers = {str(k).lower(): v for k, v in (part.get("headers") or {}).items()}
    body = part.get("body")
    if isinstance(body, str):  # a body Graph did not take for JSON comes base64-encoded
        try:
            body = json.loads(base64.b64decode(body))
        except ValueError:
            return GraphError("Microsoft Graph's answer could not be read", status=200)
    if status >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        retry_after = _seconds(headers.get("retry-after"))
        return GraphError(str(message or "failed inside a $batch"), status=status, retry_after=retry_after)
    if not isinstance(body, dict):
        return GraphError("Microsoft Graph's answer could not be read", status=200)
    try:
        return (
            JsonParseNodeFactory()
            .get_root_parse_node("application/json", json.dumps(body).encode())
            .get_object_value(model)
        )
    except (ValueError, TypeError, KeyError) as exc:
        return GraphError(f"Microsoft Graph's answer could not be read ({type(exc).__name__})", status=200)

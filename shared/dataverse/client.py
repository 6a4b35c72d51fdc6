"""A thin async client for the Dataverse Web API, one per org.

Why not Microsoft's ``PowerPlatform-Dataverse-Client``: it is synchronous, refuses
``http://`` (so it cannot talk to the sandbox), always sends ``If-Match: *`` (no
ETag concurrency), does not retry 429 and pulls in pandas. OrgGuard needs exactly
the opposite on each point, and a handful of Web API calls: WhoAmI, paged
queries, PATCH with ETags, create, delete and ``$batch``.

Service protection is part of the contract, not an accident: 429 is retried after
``Retry-After``, 5xx and transport errors with exponential backoff and jitter, and
a request that may have reached Dataverse is retried only when repeating it is
harmless (GET, PATCH, PUT, DELETE; never a POST that creates, never a ``$batch``
that writes, never a PATCH sent ``at_most_once``).

Nothing here logs a token, a URL (query strings carry mailbox addresses) or a
request body; log lines name the method, the entity set, the status and the attempt.
"""

from __future__ import annotations

import asyncio
import email.message
import json
import logging
import random
import re
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

import httpx

from shared import telemetry
from shared.config.urls import is_loopback
from shared.telemetry.lograte import rate_limited

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

log = rate_limited(logging.getLogger("orgguard.dataverse"))  # an org that keeps failing says so once a minute

API_PATH = "/api/data/v9.2/"
MAX_PAGE_SIZE = 5000  # Prefer: odata.maxpagesize upper bound
MAX_BATCH = 1000  # requests per $batch
LOCAL_DEV_TOKEN = "orgguard-local-dev"  # noqa: S105 - a public, well-known development value
RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "PATCH", "PUT", "DELETE"})
# Transport errors raised before the request left this process: always safe to repeat.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_ENTITY_SET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ID_IN_PARENS = re.compile(r"\(([^()]+)\)\s*$")

Sleep = Callable[[float], Awaitable[None]]


# ---------------------------------------------------------------------------
# Errors


class DataverseError(Exception):
    """A failed Web API call, with the OData error body's code and message when there was one."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    def __str__(self) -> str:
        prefix = " ".join(str(part) for part in (self.status, self.code) if part is not None)
        return f"{prefix}: {self.message}" if prefix else self.message


class PreconditionFailed(DataverseError):
    """412: the row changed since its ETag was read (or it does not exist under ``If-Match: *``)."""


class Throttled(DataverseError):
    """429 after every retry: the org's service-protection budget is spent."""

    def __init__(
        self, message: str, *, status: int | None = 429, code: str | None = None, retry_after: float = 0.0
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


def error_from(status: int, content: bytes, *, reason: str = "", retry_after: float | None = None) -> DataverseError:
    """The error for a non-2xx answer, parsed from the OData body ``{"error": {"code", "message"}}``."""
    code, message = _odata_error(content)
    message = message or reason or f"HTTP {status}"
    if status == 412:
        return PreconditionFailed(message, status=status, code=code)
    if status == 429:
        return Throttled(message, status=status, code=code, retry_after=retry_after or 0.0)
    return DataverseError(message, status=status, code=code)


def _odata_error(content: bytes) -> tuple[str | None, str | None]:
    try:
        payload = json.loads(content) if content else None
    except ValueError:
        text = content.decode("utf-8", "replace").strip()
        return None, text[:500] or None
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None, None
    code, message = error.get("code"), error.get("message")
    return (str(code) if code is not None else None), (str(message) if message is not None else None)


# ---------------------------------------------------------------------------
# Tokens


class TokenProvider(Protocol):
    async def token(self, resource: str) -> str:
        """A bearer token for ``resource`` (the org URL's scheme and host)."""
        ...


class LocalDevToken:
    """For orgs on loopback (the sandbox): a fixed development token, no Azure login.

    The sandbox treats each distinct token as a distinct user, so OrgGuard's own
    writes are told apart from an admin's exactly as in a real org.
    """

    def __init__(self, value: str = LOCAL_DEV_TOKEN) -> None:
        self._value = value

    async def token(self, resource: str) -> str:
        return self._value


_SHARED_CREDENTIALS: dict[str | None, AsyncTokenCredential] = {}


class AzureIdentityToken:
    """Entra ID tokens from azure-identity: managed identity in Azure, ``az login`` on a laptop.

    One credential per process (it caches and refreshes tokens); azure.identity is
    imported on first use, never at module import, to keep cold starts short.
    """

    def __init__(self, *, client_id: str | None = None, credential: AsyncTokenCredential | None = None) -> None:
        self._client_id = client_id
        self._credential = credential

    async def token(self, resource: str) -> str:
        credential = self._credential or _shared_credential(self._client_id)
        access = await credential.get_token(f"{resource.rstrip('/')}/.default")
        return access.token


def _shared_credential(client_id: str | None) -> AsyncTokenCredential:
    credential = _SHARED_CREDENTIALS.get(client_id)
    if credential is None:
        from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()
        _SHARED_CREDENTIALS[client_id] = credential
    return credential


async def aclose_shared_credentials() -> None:
    """Close the process-wide credentials (host shutdown)."""
    while _SHARED_CREDENTIALS:
        _, credential = _SHARED_CREDENTIALS.popitem()
        await credential.close()


def token_provider_for(url: str, *, client_id: str | None = None) -> TokenProvider:
    """The loopback rule: a local development token for loopback orgs, azure-identity for the rest."""
    if is_loopback(url):
        return LocalDevToken()
    return AzureIdentityToken(client_id=client_id)


# ---------------------------------------------------------------------------
# Values


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # total tries per request, the first included
    base_delay: float = 0.5
    max_delay: float = 30.0  # also caps Retry-After
    timeout: float = 30.0  # per try
    jitter: bool = True

    def backoff(self, attempt: int) -> float:
        """Delay after failed try number ``attempt`` (1-based): exponential, capped, half jittered."""
        delay: float = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return delay / 2 + random.uniform(0, delay / 2) if self.jitter else delay


@dataclass(frozen=True)
class WhoAmI:
    business_unit_id: str
    user_id: str
    organization_id: str


@dataclass(frozen=True)
class BatchOperation:
    """One request inside ``$batch``; ``url`` is relative to the Web API root, e.g. ``mailboxes(<id>)``."""

    method: str
    url: str
    body: Mapping[str, Any] | None = None
    etag: str | None = None


@dataclass(frozen=True)
class BatchResult:
    """What Dataverse answered for one operation; ``status`` is None when it was never processed."""

    status: int | None
    body: dict[str, Any] | None = None
    error: DataverseError | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and self.status < 400

    @property
    def entity_id(self) -> str | None:
        """The id of a row the operation created, from ``OData-EntityId``."""
        header = self.headers.get("odata-entityid") or self.headers.get("OData-EntityId")
        return _id_from_uri(header) if header else None


def odata_string(value: str) -> str:
    """An OData string literal: ``O'Neil`` -> ``'O''Neil'``."""
    return "'" + value.replace("'", "''") + "'"


def normalize_id(raw: str) -> str:
    """A row id as Dataverse spells it in URLs (refuses anything that is not a GUID)."""
    try:
        return str(uuid.UUID(raw.strip().strip("{}")))
    except ValueError:
        raise ValueError("a Dataverse row id must be a GUID") from None


def _check_entity_set(entity_set: str) -> str:
    if not _ENTITY_SET.match(entity_set):
        raise ValueError(f"not an entity set name: {entity_set!r}")
    return entity_set


def _id_from_uri(uri: str) -> str | None:
    match = _ID_IN_PARENS.search(uri)
    return match.group(1) if match else None


def _entity_set_of(url: str) -> str:
    """The entity set a (relative or absolute) Web API URL addresses, for logs only."""
    path = urlsplit(url).path
    tail = path.split(API_PATH, 1)[-1] if API_PATH in path else path
    return re.split(r"[(/?]", tail.lstrip("/"), maxsplit=1)[0] or "?"


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------
# The client


class DataverseClient:
    """One org's Web API. ``requests_sent`` counts every HTTP request, retries included."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        *,
        http: httpx.AsyncClient | None = None,
        retry: RetryPolicy = RetryPolicy(),
        user_agent: str = "OrgGuard/0.1",
        sleep: Sleep = asyncio.sleep,
        org: str = "",
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("an org URL needs http(s)://host")
        if parts.scheme == "http" and not is_loopback(base_url):
            raise ValueError("plain http is allowed only for loopback orgs (bearer tokens would travel in clear)")
        self.base_url = base_url.rstrip("/")
        self.api_root = self.base_url + API_PATH
        self.resource = f"{parts.scheme}://{parts.netloc}"
        self.requests_sent = 0
        self.org = org  # the registered org's name, for telemetry
        self._tokens = tokens
        self._retry = retry
        self._sleep = sleep
        self._user_agent = user_agent
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=retry.timeout)

    async def __aenter__(self) -> DataverseClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # -- operations ---------------------------------------------------------

    async def who_am_i(self) -> WhoAmI:
        payload = _json(await self._send("GET", self.api_root + "WhoAmI"))
        return WhoAmI(
            business_unit_id=str(payload["BusinessUnitId"]),
            user_id=str(payload["UserId"]),
            organization_id=str(payload["OrganizationId"]),
        )

    async def query(
        self, entity_set: str, *, select: Sequence[str], filter: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Yield the matching rows a page at a time, following ``@odata.nextLink`` as given."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        prefer = {"Prefer": f"odata.maxpagesize={min(page_size, MAX_PAGE_SIZE)}"}
        url: str | None = self._collection_url(entity_set, select, filter)
        while url:
            payload = _json(await self._send("GET", url, headers=prefer))
            yield list(payload.get("value", []))
            next_link = payload.get("@odata.nextLink")
            url = str(next_link) if next_link else None

    async def get(self, entity_set: str, id: str, *, select: Sequence[str]) -> dict[str, Any] | None:
        """One row (with its ``@odata.etag``), or None when it does not exist."""
        url = f"{self._row_url(entity_set, id)}?$select={','.join(select)}"
        try:
            return _json(await self._send("GET", url))
        except DataverseError as exc:
            if exc.status == 404:
                return None
            raise

    async def patch(
        self,
        entity_set: str,
        id: str,
        values: Mapping[str, Any],
        *,
        etag: str | None = None,
        at_most_once: bool = False,
    ) -> None:
        """Update a row; ``If-Match`` is the ETag, or ``*`` so a PATCH never creates a row.

        ``at_most_once``: the write has an effect beyond its values (scheduling Test & Enable), so it is
        not repeated once it may have reached Dataverse; the caller reads the row back instead.
        """
        headers = {"Content-Type": "application/json", "If-Match": etag or "*"}
        url = self._row_url(entity_set, id)
        await self._send("PATCH", url, headers=headers, content=_dumps(values), idempotent=not at_most_once)

    async def create(self, entity_set: str, values: Mapping[str, Any]) -> str:
        """Create a row and return its id."""
        url = self.api_root + _check_entity_set(entity_set)
        response = await self._send("POST", url, headers={"Content-Type": "application/json"}, content=_dumps(values))
        header = response.headers.get("odata-entityid") or response.headers.get("location")
        new_id = _id_from_uri(header) if header else None
        if new_id is None and response.content:
            new_id = _id_from_uri(str(_json(response).get("@odata.id", "")))
        if new_id is None:
            raise DataverseError("Dataverse did not say which row it created", status=response.status_code)
        return new_id

    async def delete(self, entity_set: str, id: str) -> None:
        await self._send("DELETE", self._row_url(entity_set, id))

    async def batch(
        self, operations: Sequence[BatchOperation], *, atomic: bool = False, continue_on_error: bool = True
    ) -> list[BatchResult]:
        """Run operations through ``$batch``, at most 1000 per request, one result per operation in order.

        ``atomic`` puts them in one change set (all or nothing), so it cannot span
        more than one request. Without ``continue_on_error`` Dataverse stops at the
        first failure; the operations it never reached (in that request and in the
        chunks after it) come back with ``status=None``.
        """
        if atomic and len(operations) > MAX_BATCH:
            raise ValueError(f"an atomic change set holds at most {MAX_BATCH} operations")
        if atomic and any(op.method.upper() == "GET" for op in operations):
            raise ValueError("GET is not allowed inside a change set")
        results: list[BatchResult] = []
        for start in range(0, len(operations), MAX_BATCH):
            chunk = operations[start : start + MAX_BATCH]
            if not continue_on_error and any(not r.ok for r in results):
                results.extend(_not_processed(len(chunk)))
                continue
            results.extend(await self._batch_chunk(chunk, atomic=atomic, continue_on_error=continue_on_error))
        return results

    # -- plumbing -----------------------------------------------------------

    async def _batch_chunk(
        self, chunk: Sequence[BatchOperation], *, atomic: bool, continue_on_error: bool
    ) -> list[BatchResult]:
        boundary = f"batch_{uuid.uuid4()}"
        body = encode_batch(chunk, api_root=self.api_root, boundary=boundary, atomic=atomic)
        headers = {"Content-Type": f'multipart/mixed; boundary="{boundary}"'}
        if continue_on_error:
            headers["Prefer"] = "odata.continue-on-error"
        # Only reads are repeated once a batch may have reached Dataverse: its writes may have committed
        # (a PATCH that schedules Test & Enable twice is two tests); the caller reads them back instead.
        idempotent = all(op.method.upper() == "GET" for op in chunk)
        response = await self._send(
            "POST", self.api_root + "$batch", headers=headers, content=body, idempotent=idempotent, accept_error=True
        )
        content_type = response.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/"):
            if response.is_success:
                raise DataverseError("$batch answered without a multipart body", status=response.status_code)
            raise error_from(response.status_code, response.content, reason=response.reason_phrase)
        return match_batch_results(len(chunk), parse_batch_response(content_type, response.content), atomic=atomic)

    def _collection_url(self, entity_set: str, select: Sequence[str], filter: str | None) -> str:
        url = f"{self.api_root}{_check_entity_set(entity_set)}?$select={','.join(select)}"
        if filter:
            url += "&$filter=" + quote(filter, safe="()',=:$/@")
        return url

    def _row_url(self, entity_set: str, id: str) -> str:
        return f"{self.api_root}{_check_entity_set(entity_set)}({normalize_id(id)})"

    async def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        try:
            token = await self._tokens.token(self.resource)
        except Exception as exc:
            raise DataverseError(f"no token for the org: {type(exc).__name__}", code="token") from exc
        headers = {
            "Authorization": f"Bearer {token}",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
            "Accept": "application/json",
            "User-Agent": self._user_agent,
        }
        headers.update(extra or {})
        return headers

    async def _send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        idempotent: bool | None = None,
        accept_error: bool = False,
    ) -> httpx.Response:
        """Send with retries; raise ``DataverseError`` for a final non-2xx unless ``accept_error``."""
        safe_to_repeat = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        entity_set = _entity_set_of(url)
        policy = self._retry
        for attempt in range(1, policy.attempts + 1):
            last = attempt == policy.attempts
            request_headers = await self._headers(headers)
            self.requests_sent += 1
            with telemetry.span(
                f"dataverse {method}", service="dataverse", org=self.org, operation=entity_set, attempt=attempt,
                **{"http.request.method": method},
            ) as span:  # fmt: skip
                try:
                    response = await self._http.request(
                        method, url, headers=request_headers, content=content, timeout=policy.timeout
                    )
                except httpx.TransportError as exc:
                    telemetry.note(span, **{"error.type": type(exc).__name__})
                    telemetry.count(telemetry.OUTSIDE_CALLS, service="dataverse", org=self.org, status="transport")
                    log.warning(
                        "dataverse %s %s failed: %s (attempt %d)", method, entity_set, type(exc).__name__, attempt
                    )
                    if last or not (safe_to_repeat or isinstance(exc, _NOT_SENT)):
                        raise DataverseError(f"{type(exc).__name__}: {exc}", code="transport") from exc
                    await self._sleep(policy.backoff(attempt))
                    continue
                telemetry.note(span, **{"http.response.status_code": response.status_code})
            telemetry.count(telemetry.OUTSIDE_CALLS, service="dataverse", org=self.org, status=response.status_code)
            status = response.status_code
            log.log(
                logging.DEBUG if status < 400 else logging.WARNING,
                "dataverse %s %s -> %d (attempt %d)",
                method,
                entity_set,
                status,
                attempt,
            )
            if status == 429:
                wait = _retry_after(response)
                wait = policy.backoff(attempt) if wait is None else min(wait, policy.max_delay)
                if last:
                    raise error_from(status, response.content, reason=response.reason_phrase, retry_after=wait)
                telemetry.count(telemetry.THROTTLE_WAIT, wait, service="dataverse", org=self.org)
                await self._sleep(wait)
                continue
            if status in RETRYABLE_STATUS and safe_to_repeat and not last:
                await self._sleep(policy.backoff(attempt))
                continue
            if status >= 400 and not accept_error:
                raise error_from(status, response.content, reason=response.reason_phrase)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")


def _dumps(values: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(values), separators=(",", ":")).encode("utf-8")


def _json(response: httpx.Response) -> dict[str, Any]:
    if not response.content:
        return {}
    try:
        payload = response.json()
    except ValueError:
        raise DataverseError("Dataverse answered with a body that is not JSON", status=response.status_code) from None
    if not isinstance(payload, dict):
        raise DataverseError("Dataverse answered with JSON that is not an object", status=response.status_code)
    return payload


# ---------------------------------------------------------------------------
# $batch wire format (OData 4.0 multipart/mixed, as the Dataverse Web API takes it)

CRLF = "\r\n"


def encode_batch(operations: Sequence[BatchOperation], *, api_root: str, boundary: str, atomic: bool) -> bytes:
    """The multipart/mixed body; with ``atomic`` every operation sits in one change set with a Content-ID."""
    lines: list[str] = []
    if atomic:
        changeset = f"changeset_{uuid.uuid4()}"
        lines += [f"--{boundary}", f'Content-Type: multipart/mixed; boundary="{changeset}"', ""]
        for number, op in enumerate(operations, start=1):
            lines += [f"--{changeset}", *_encode_operation(op, api_root=api_root, content_id=number)]
        lines += [f"--{changeset}--", ""]
    else:
        for op in operations:
            lines += [f"--{boundary}", *_encode_operation(op, api_root=api_root, content_id=None)]
    lines += [f"--{boundary}--", ""]
    return CRLF.join(lines).encode("utf-8")


def _encode_operation(op: BatchOperation, *, api_root: str, content_id: int | None) -> list[str]:
    method = op.method.upper()
    url = op.url if op.url.startswith(("http://", "https://")) else api_root + op.url.lstrip("/")
    part = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        part.append(f"Content-ID: {content_id}")
    part += ["", f"{method} {url} HTTP/1.1"]
    if op.etag or method == "PATCH":
        part.append(f"If-Match: {op.etag or '*'}")
    if op.body is not None:
        part += ["Content-Type: application/json; type=entry", "", json.dumps(dict(op.body), separators=(",", ":"))]
    else:
        part += [""]
    part.append("")
    return part


@dataclass(frozen=True)
class _PartResponse:
    status: int
    headers: httpx.Headers
    body: bytes
    content_id: str | None


def parse_batch_response(content_type: str, body: bytes) -> list[_PartResponse]:
    """Every application/http response in a $batch answer, change sets flattened, in order."""
    responses: list[_PartResponse] = []
    for part_headers, part_body in _split_multipart(body, _boundary(content_type)):
        part_type = part_headers.get("content-type", "")
        if part_type.lower().startswith("multipart/"):
            responses += parse_batch_response(part_type, part_body)
        else:
            responses.append(_parse_http_response(part_body, part_headers.get("content-id")))
    return responses


def match_batch_results(count: int, responses: Sequence[_PartResponse], *, atomic: bool) -> list[BatchResult]:
    """One result per operation: a failed change set fails all of it; unreached operations get status None."""
    results = [_result(r) for r in responses]
    if atomic and len(results) == 1 and count > 1 and not results[0].ok:
        failed = results[0]
        return [failed] * count
    if atomic and len(results) == count and all(r.content_id for r in responses):
        by_id = {r.content_id: result for r, result in zip(responses, results, strict=True)}
        results = [by_id.get(str(number), _not_processed(1)[0]) for number in range(1, count + 1)]
    return results[:count] + _not_processed(count - len(results))


def _not_processed(count: int) -> list[BatchResult]:
    error = DataverseError("not processed: the batch stopped at an earlier error", code="not_processed")
    return [BatchResult(status=None, error=error) for _ in range(max(0, count))]


def _result(response: _PartResponse) -> BatchResult:
    error = None
    if response.status >= 400:
        error = error_from(response.status, response.body)
    body: dict[str, Any] | None = None
    if response.body.strip():
        try:
            decoded = json.loads(response.body)
            body = decoded if isinstance(decoded, dict) else {"value": decoded}
        except ValueError:
            body = None
    return BatchResult(status=response.status, body=body, error=error, headers=response.headers)


def _boundary(content_type: str) -> str:
    message = email.message.Message()
    message["Content-Type"] = content_type
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise DataverseError("a multipart answer without a boundary")
    return boundary


def _split_multipart(body: bytes, boundary: str) -> list[tuple[httpx.Headers, bytes]]:
    """Parts of a multipart body; tolerant of LF-only line ends, which some servers write."""
    delimiter = b"--" + boundary.encode("ascii")
    parts: list[tuple[httpx.Headers, bytes]] = []
    for segment in body.split(delimiter)[1:]:
        if segment.startswith(b"--"):
            break
        segment = segment.split(b"\n", 1)[1] if b"\n" in segment else b""  # rest of the delimiter line
        segment = segment[:-2] if segment.endswith(b"\r\n") else segment.removesuffix(b"\n")
        head, payload = _split_head(segment)
        parts.append((_parse_headers(head), payload))
    return parts


def _split_head(segment: bytes) -> tuple[bytes, bytes]:
    match = re.search(rb"\r?\n\r?\n", segment)
    if match is None:
        return segment, b""
    return segment[: match.start()], segment[match.end() :]


def _parse_headers(head: bytes) -> httpx.Headers:
    headers = httpx.Headers()
    for line in head.decode("utf-8", "replace").splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip():
            headers[name.strip()] = value.strip()
    return headers


def _parse_http_response(raw: bytes, content_id: str | None) -> _PartResponse:
    head, payload = _split_head(raw.lstrip(b"\r\n"))
    status_line, _, header_block = head.partition(b"\n")
    fields = status_line.decode("ascii", "replace").split(maxsplit=2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise DataverseError("a $batch part is not an HTTP response")
    return _PartResponse(
        status=int(fields[1]),
        headers=_parse_headers(header_block),
        body=payload.strip(),
        content_id=content_id.strip() if content_id else None,
    )

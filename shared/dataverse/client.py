"""A thin async client for the Dataverse Web API, one per org.

Why not Microsoft's ``PowerPlatform-Dataverse-Client``: it is synchronous, refuses
``http://`` (so it cannot talk to the sandbox), always sends ``If-Match: *`` (no
ETag concurrency), does not retry 429 and pulls in pandas. OrgGuard needs exactly
the opposite on each point, and a handful of Web API calls: WhoAmI, paged
queries, PATCH with ETags, create, delete and ``$batch``.

Service protection is part of the contract, not an accident: 429 is retried after
``Retry-After`` as given (never sooner; a longer wait than the caller's ``max_delay`` is
handed back as ``Throttled`` rather than cut short), 5xx and transport errors with exponential backoff and jitter, and
a request that may have reached Dataverse is retried only when repeating it is
harmless (GET, PATCH, PUT, DELETE; never a POST that creates, never a ``$batch``
that writes, never a PATCH sent ``at_most_once``).

Nothing here logs a token, a URL (query strings carry mailbox addresses) or a
request body; log lines name the method, the entity set, the status and the attempt.

``DataverseClient`` is the ``port.OrgClient`` the service layer is given; the
``$batch`` wire format is in ``batch``, bearer tokens in ``tokens``, and clients are
built in ``clients`` only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared import telemetry
from shared.config.urls import bearer_target
from shared.dataverse import bodies
from shared.dataverse.batch import encode_batch, match_batch_results, not_processed, parse_batch_response
from shared.dataverse.port import (
    API_PATH,
    MAX_BATCH,
    MAX_PAGE_SIZE,
    BatchOperation,
    BatchResult,
    DataverseError,
    RetryPolicy,
    WhoAmI,
    encoded_filter,
    error_from,
    id_from_uri,
    normalize_id,
)
from shared.dataverse.tls import tls_context
from shared.dataverse.tokens import TokenProvider
from shared.telemetry.lograte import rate_limited

log = rate_limited(logging.getLogger("orgguard.dataverse"))  # an org that keeps failing says so once a minute

RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "PATCH", "PUT", "DELETE"})
# Transport errors raised before the request left this process: always safe to repeat.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_ENTITY_SET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Sleep = Callable[[float], Awaitable[None]]
DEFAULT_RETRY = RetryPolicy()


class DataverseClient:
    """One org's Web API. ``requests_sent`` counts every HTTP request, retries included."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        *,
        http: httpx.AsyncClient | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        user_agent: str = "OrgGuard/0.1",
        sleep: Sleep = asyncio.sleep,
        org: str = "",
    ) -> None:
        parts = bearer_target(base_url, "an org URL")
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
        self._http = http or httpx.AsyncClient(timeout=retry.timeout, verify=tls_context())

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
        new_id = id_from_uri(header) if header else None
        if new_id is None and response.content:
            new_id = id_from_uri(str(_json(response).get("@odata.id", "")))
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
                results.extend(not_processed(len(chunk)))
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
            url += "&$filter=" + encoded_filter(filter)
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
            with telemetry.span(
                f"dataverse {method}", service="dataverse", org=self.org, operation=entity_set, attempt=attempt,
                **{"http.request.method": method},
            ) as span:  # fmt: skip
                try:
                    response = await self._http.request(
                        method, url, headers=request_headers, content=content, timeout=policy.timeout
                    )
                    self.requests_sent += 1
                except httpx.TransportError as exc:
                    self.requests_sent += 1
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
                # Retry-After as given: a request sent earlier only extends the penalty (FACTS.md, "Checked
                # again"). A wait longer than this caller waits in place goes back to it (the executor defers
                # the action until then) instead of being cut short.
                given = _retry_after(response)
                wait = policy.backoff(attempt) if given is None else given
                if last or wait > policy.max_delay:
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
        payload = bodies.loads(response.content)
    except ValueError:
        raise DataverseError("Dataverse answered with a body that is not JSON", status=response.status_code) from None
    if not isinstance(payload, dict):
        raise DataverseError("Dataverse answered with JSON that is not an object", status=response.status_code)
    return payload


def _check_entity_set(entity_set: str) -> str:
    if not _ENTITY_SET.match(entity_set):
        raise ValueError(f"not an entity set name: {entity_set!r}")
    return entity_set


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

"""What the service layer may know of the Dataverse Web API: errors, values, limits and ``OrgClient``.

The service layer (the executor, sweeps, migrations, the page's org rows) talks to
an org through ``OrgClient`` and never sees the HTTP client behind it
(``client.DataverseClient``), its tokens or its ``$batch`` wire format, so a fake
org or a different transport fits in without touching it. Pure: no httpx, no Azure.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from shared.domain import backoff
from shared.domain.environments import Environment
from shared.domain.model import Org

API_PATH = "/api/data/v9.2/"
MAX_PAGE_SIZE = 5000  # Prefer: odata.maxpagesize upper bound
MAX_BATCH = 1000  # requests per $batch
_ID_IN_PARENS = re.compile(r"\(([^()]+)\)\s*$")


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
# Values


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # total tries per request, the first included
    base_delay: float = 0.5
    max_delay: float = 30.0  # also the longest Retry-After waited in place (longer: Throttled)
    timeout: float = 30.0  # per try
    jitter: bool = True

    def backoff(self, attempt: int) -> float:
        """Delay after failed try number ``attempt`` (1-based): exponential, capped, half jittered."""
        return backoff.delay(attempt, base=self.base_delay, cap=self.max_delay, jitter=0.5 if self.jitter else 0.0)


@dataclass(frozen=True, slots=True)
class WhoAmI:
    """Dataverse's ``WhoAmI`` answer: the caller's user, business unit and the org it is in."""

    business_unit_id: str
    user_id: str
    organization_id: str


@dataclass(frozen=True, slots=True)
class BatchOperation:
    """One request inside ``$batch``; ``url`` is relative to the Web API root, e.g. ``mailboxes(<id>)``."""

    method: str
    url: str
    body: Mapping[str, Any] | None = None
    etag: str | None = None


@dataclass(frozen=True, slots=True)
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
        return id_from_uri(header) if header else None


def encoded_filter(filter: str) -> str:
    """A ``$filter`` expression as it goes into a URL's query string."""
    return quote(filter, safe="()',=:$/@")


def odata_string(value: str) -> str:
    """An OData string literal: ``O'Neil`` -> ``'O''Neil'``."""
    return "'" + value.replace("'", "''") + "'"


def normalize_id(raw: str) -> str:
    """A row id as Dataverse spells it in URLs (refuses anything that is not a GUID)."""
    try:
        return str(uuid.UUID(raw.strip().strip("{}")))
    except ValueError:
        raise ValueError("a Dataverse row id must be a GUID") from None


def id_from_uri(uri: str) -> str | None:
    """The row id at the end of a row URI: ``.../mailboxes(<id>)`` -> ``<id>``."""
    match = _ID_IN_PARENS.search(uri)
    return match.group(1) if match else None


# ---------------------------------------------------------------------------
# The client, as the service layer uses it


class OrgClient(Protocol):
    """One org's Web API. ``client.DataverseClient`` is the real one."""

    @property
    def requests_sent(self) -> int:
        """Every HTTP request sent so far, retries included (the executor reports it)."""
        ...

    async def who_am_i(self) -> WhoAmI: ...

    def query(
        self, entity_set: str, *, select: Sequence[str], filter: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The matching rows a page at a time."""
        ...

    async def get(self, entity_set: str, id: str, *, select: Sequence[str]) -> dict[str, Any] | None:
        """One row (with its ``@odata.etag``), or None when it does not exist."""
        ...

    async def patch(
        self,
        entity_set: str,
        id: str,
        values: Mapping[str, Any],
        *,
        etag: str | None = None,
        at_most_once: bool = False,
    ) -> None:
        """Update a row (never create one); ``at_most_once``: never repeated once it may have arrived."""
        ...

    async def batch(
        self, operations: Sequence[BatchOperation], *, atomic: bool = False, continue_on_error: bool = True
    ) -> list[BatchResult]:
        """Operations through ``$batch``, one result per operation in order."""
        ...

    async def aclose(self) -> None: ...


ClientFor = Callable[[Org], OrgClient]
"""A client for each org: a pool of them (``clients.ClientPool``) or a pacer's (``pacing.Pacer``)."""

Connect = Callable[[Org, RetryPolicy], OrgClient]
"""Builds a new client for one org with its own retries; the caller closes it (``clients.Connector``)."""


# ---------------------------------------------------------------------------
# The tenant's environments (the Global Discovery Service)


class EnvironmentDirectory(Protocol):
    """Every environment of the tenant the caller can see (``discovery.GlobalDiscovery`` is the real one)."""

    async def environments(self) -> list[Environment]: ...

    async def aclose(self) -> None: ...

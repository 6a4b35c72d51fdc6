"""Posting execution contexts to registered service endpoints, as Dataverse's webhook plug-in does."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from html import unescape
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from sandbox.context import serialize
from sandbox.model import Record
from sandbox.state import OrgState, SandboxState, now_iso

RETRIED = frozenset({502, 503, 504})  # Dataverse retries these exactly once
EVENT_LOG_LIMIT = 10_000
_SETTING = re.compile(r"""<setting\s+name\s*=\s*["']([^"']*)["']\s+value\s*=\s*["']([^"']*)["']\s*/>""")


def settings_pairs(authvalue: str | None) -> list[tuple[str, str]]:
    """`<settings><setting name="x" value="y" /></settings>`: how authvalue carries headers or query strings."""
    return [(unescape(name), unescape(value)) for name, value in _SETTING.findall(authvalue or "")]


@dataclass(frozen=True)
class Target:
    url: str
    headers: dict[str, str]


def target(endpoint: Record) -> Target:
    """Where and with what credentials to post, from the serviceendpoint row (authtype 4, 5 or 6)."""
    url, authtype, authvalue = str(endpoint.get("url") or ""), endpoint.get("authtype"), endpoint.get("authvalue")
    headers: dict[str, str] = {}
    query: list[tuple[str, str]] = []
    if authtype == 5:
        headers.update(settings_pairs(str(authvalue or "")))
    elif authtype == 4 and authvalue:
        query.append(("code", str(authvalue)))
    elif authtype == 6:
        query.extend(settings_pairs(str(authvalue or "")))
    if query:
        parts = urlsplit(url)
        joined = "&".join(part for part in (parts.query, urlencode(query)) if part)
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, joined, parts.fragment))
    return Target(url, headers)


@dataclass
class Delivery:
    status: int | None
    text: str
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        """What the saving user is told: never the endpoint's body, which Dataverse does not read."""
        reason = self.error if self.status is None else f"it answered HTTP {self.status}"
        return (
            "Endpoint unavailable: the webhook service endpoint may be configured incorrectly or is not "
            f"available ({reason})."
        )


class Poster:
    """One HTTP client for every org; logs each attempt in `state.events`."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        return self._client

    async def close(self) -> None:
        await self.cancel_pending()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def post(
        self, org: OrgState, step: Record, endpoint: Record, context: dict[str, Any], attempt_limit: int = 2
    ) -> Delivery:
        """Post once, and once more on 502/503/504 (what Dataverse does for a synchronous step)."""
        body, trimmed = serialize(context, int(self.state.setting(org, "max_context_bytes")))
        delivery = Delivery(None, "", "not attempted")
        for attempt in range(1, attempt_limit + 1):
            delivery = await self._send(org, endpoint, context, body, trimmed)
            self._log(org, step, endpoint, context, trimmed, attempt, delivery, body)
            if delivery.ok or delivery.status not in RETRIED:
                break
        return delivery

    def post_later(self, org: OrgState, step: Record, endpoint: Record, context: dict[str, Any]) -> None:
        """An asynchronous step: delivered in the background, retried, never failing the save."""
        task = asyncio.get_running_loop().create_task(self._post_async(org, step, endpoint, context))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def cancel_pending(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def drain(self) -> None:
        """Wait for background deliveries (tests and benchmarks call this through /_sandbox/events?wait)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _post_async(self, org: OrgState, step: Record, endpoint: Record, context: dict[str, Any]) -> None:
        retries = int(self.state.setting(org, "event_retries"))
        delay = float(self.state.setting(org, "event_retry_delay_s"))
        body, trimmed = serialize(context, int(self.state.setting(org, "max_context_bytes")))
        for attempt in range(1, retries + 2):
            delivery = await self._send(org, endpoint, context, body, trimmed)
            self._log(org, step, endpoint, context, trimmed, attempt, delivery, body)
            if delivery.ok:
                return
            if attempt <= retries:
                await asyncio.sleep(delay * attempt)

    async def _send(
        self, org: OrgState, endpoint: Record, context: dict[str, Any], body: bytes, trimmed: bool
    ) -> Delivery:
        where = target(endpoint)
        headers = {
            **where.headers,
            "Content-Type": "application/json",
            "x-ms-dynamics-organization": f"{org.name}.crm.dynamics.com",
            "x-ms-dynamics-entity-name": str(context.get("PrimaryEntityName")),
            "x-ms-dynamics-request-name": str(context.get("MessageName")),
            "x-ms-correlation-request-id": str(context.get("CorrelationId")),
        }
        if trimmed:
            headers["x-ms-dynamics-msg-size-exceeded"] = "true"
        # "The timeout is 60 seconds." (use-webhooks.md); a lower setting only makes tests quicker
        timeout = min(float(self.state.setting(org, "webhook_timeout_s")), 60.0)
        try:
            response = await self.client.post(where.url, content=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            return Delivery(None, "", f"the call timed out after {timeout:g} s")
        except httpx.HTTPError as error:
            return Delivery(None, "", f"{type(error).__name__}: {error}")
        return Delivery(response.status_code, response.text[:4000], None)

    def _log(
        self,
        org: OrgState,
        step: Record,
        endpoint: Record,
        context: dict[str, Any],
        trimmed: bool,
        attempt: int,
        delivery: Delivery,
        body: bytes,
    ) -> None:
        events = self.state.events
        events.append(
            {
                "id": str(uuid.uuid4()),
                "at": now_iso(),
                "org": org.name,
                "step": step.get("name"),
                "stepid": step.get("sdkmessageprocessingstepid"),
                "endpoint": endpoint.get("name"),
                "url": endpoint.get("url"),
                "stage": context.get("Stage"),
                "mode": context.get("Mode"),
                "primary_entity_id": context.get("PrimaryEntityId"),
                "correlation_id": context.get("CorrelationId"),
                "attempt": attempt,
                "status": delivery.status,
                "response": delivery.text[:1000],
                "error": delivery.error,
                "size_exceeded": trimmed,
                "bytes": len(body),
                "context": _posted(context, trimmed),
            }
        )
        if len(events) > EVENT_LOG_LIMIT:
            del events[: len(events) - EVENT_LOG_LIMIT]


def _posted(context: dict[str, Any], trimmed: bool) -> dict[str, Any]:
    if not trimmed:
        return context
    return dict(context, ParentContext=None, InputParameters=[], PreEntityImages=[], PostEntityImages=[])

"""The Dataverse Global Discovery Service: every environment (org) of the tenant, for ``orgguard discover``.

``GET <service>/api/discovery/v2.0/Instances`` answers ``{"value": [Instance, ...]}``; an Instance carries ``Id``
(the OrganizationId), ``UniqueName``, ``UrlName``, ``FriendlyName``, ``Url`` (the application URL, which is also
the Web API's base), ``ApiUrl``, ``State`` (0 enabled, 1 disabled), ``Version``, ``OrganizationType`` (the
``Microsoft.Dynamics.CRM.OrganizationType`` enumeration), ``EnvironmentId`` and ``Region``, among others
(learn.microsoft.com/power-apps/developer/data-platform/discovery-service, "Instance EntitySet"). The token's
scope is the service's own: ``https://globaldisco.crm.dynamics.com/.default`` for the commercial cloud (the
other clouds have their own service address, ``ORGGUARD_DISCOVERY_URL``). It lists what the signed-in identity
can access; a user who is a delegated administrator only, or filtered out by a security group, sees less.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from shared.config.urls import bearer_target
from shared.dataverse.port import DataverseError, error_from
from shared.dataverse.tls import tls_context
from shared.dataverse.tokens import TokenProvider, token_provider_for
from shared.domain.environments import Environment
from shared.domain.model import DomainError, normalize_guid

GLOBAL_DISCOVERY = "https://globaldisco.crm.dynamics.com"
INSTANCES = "/api/discovery/v2.0/Instances"
MAX_PAGES = 50


class GlobalDiscovery:
    """The Global Discovery Service at ``base_url`` (an ``EnvironmentDirectory``)."""

    def __init__(self, base_url: str, tokens: TokenProvider, *, timeout: float = 30.0) -> None:
        parts = bearer_target(base_url, "the discovery service")
        self.base_url = base_url.rstrip("/")
        self.resource = f"{parts.scheme}://{parts.netloc}"
        self._tokens = tokens
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False, verify=tls_context())

    async def environments(self) -> list[Environment]:
        found: list[Environment] = []
        url: str | None = self.base_url + INSTANCES
        for _ in range(MAX_PAGES):
            if url is None:
                return found
            doc = await self._get(url)
            rows = doc.get("value")
            if not isinstance(rows, list):
                raise DataverseError("the discovery service answered without a list of instances")
            found += [environment(row) for row in rows if isinstance(row, dict)]
            link = doc.get("@odata.nextLink")
            url = link if isinstance(link, str) and link.startswith(self.resource) else None
        raise DataverseError(f"the discovery service kept paging past {MAX_PAGES} pages")

    async def _get(self, url: str) -> dict[str, Any]:
        try:
            token = await self._tokens.token(self.resource)
        except Exception as exc:  # azure-identity's errors carry credential chains: name the kind only
            raise DataverseError(f"no token for {self.resource}/.default ({type(exc).__name__})") from None
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "OData-Version": "4.0"}
        try:
            answer = await self._http.get(url, headers=headers)
        except httpx.TimeoutException:
            raise DataverseError(f"the discovery service at {self.resource} did not answer in time") from None
        except httpx.TransportError as exc:
            what = type(exc).__name__
            raise DataverseError(f"cannot reach the discovery service at {self.resource}: {what}") from None
        if answer.status_code != 200:
            raise error_from(answer.status_code, answer.content, reason=answer.reason_phrase)
        try:
            doc = answer.json()
        except (ValueError, json.JSONDecodeError):
            raise DataverseError("the discovery service answered something that is not JSON") from None
        if not isinstance(doc, dict):
            raise DataverseError("the discovery service answered something that is not an OData collection")
        return doc

    async def aclose(self) -> None:
        await self._http.aclose()


def environment(row: dict[str, Any]) -> Environment:
    """One Instance as OrgGuard reads it; one without an id or URL is refused, naming what is missing."""
    try:
        org_id = normalize_guid(row.get("Id"), field="Id")
    except DomainError:
        raise DataverseError(f"an instance has no usable Id ({str(row.get('Id'))[:40]!r})") from None
    url = row.get("Url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise DataverseError(f"instance {org_id} has no usable Url")
    kind = row.get("OrganizationType")
    return Environment(
        id=org_id,
        unique_name=_text(row.get("UniqueName")),
        url_name=_text(row.get("UrlName")),
        friendly_name=_text(row.get("FriendlyName")) or _text(row.get("UniqueName")),
        url=url.rstrip("/"),
        organization_type=kind if isinstance(kind, int) and not isinstance(kind, bool) else None,
        enabled=row.get("State") == 0,
        environment_id=_text(row.get("EnvironmentId")) or None,
        region=_text(row.get("Region")) or None,
        version=_text(row.get("Version")) or None,
    )


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def connect_discovery(base_url: str, *, client_id: str | None) -> GlobalDiscovery:
    """A discovery client: a local development token on loopback (the sandbox), azure-identity elsewhere."""
    return GlobalDiscovery(base_url, token_provider_for(base_url, client_id=client_id))

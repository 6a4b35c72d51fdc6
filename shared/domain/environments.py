"""Environments: what kind of org each one is (production, sandbox, trial ...), and the tenant's environments
as the Dataverse Global Discovery Service lists them.

An org's type comes from its registration (``type:`` in the orgs file) or from discovery, and policy
conditions read it (``claimant.type``, ``owner.type``), so "a non-production org never takes a mailbox from
production" is one rule. The names are the Power Platform admin center's environment types. Discovery's
``OrganizationType`` is the ``Microsoft.Dynamics.CRM.OrganizationType`` enumeration
(learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/organizationtype); the members that
are not a customer's environment (support, back-end, placeholder ...) have no type here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.domain.model import DomainError


class OrgType(StrEnum):
    PRODUCTION = "production"
    SANDBOX = "sandbox"
    TRIAL = "trial"
    DEVELOPER = "developer"
    DEFAULT = "default"  # the tenant's default environment
    TEAMS = "teams"  # Dataverse for Teams


ORG_TYPES: tuple[str, ...] = tuple(t.value for t in OrgType)

# OrganizationType (0 Customer ... 16 Platform) -> the environment type an admin knows it by.
_BY_ORGANIZATION_TYPE: dict[int, OrgType] = {
    0: OrgType.PRODUCTION,  # Customer
    4: OrgType.PRODUCTION,  # Secondary: further production environments
    5: OrgType.SANDBOX,  # CustomerTest
    6: OrgType.SANDBOX,  # CustomerFreeTest: a sandbox outside the sandbox quota
    7: OrgType.SANDBOX,  # CustomerPreview: the release preview programme
    9: OrgType.TRIAL,  # TestDrive
    11: OrgType.TRIAL,  # EmailTrial
    12: OrgType.DEFAULT,  # Default
    13: OrgType.DEVELOPER,  # Developer
    14: OrgType.TRIAL,  # Trial
    15: OrgType.TEAMS,  # Teams
}
ORGANIZATION_TYPE_NAMES = (
    "Customer", "Monitoring", "Support", "BackEnd", "Secondary", "CustomerTest", "CustomerFreeTest",
    "CustomerPreview", "Placeholder", "TestDrive", "MsftInvestigation", "EmailTrial", "Default", "Developer",
    "Trial", "Teams", "Platform",
)  # fmt: skip


def org_type(value: object, *, field: str = "type") -> str | None:
    """An org's type as written in an orgs file (any case, spaces around it), or None when absent."""
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() not in ORG_TYPES:
        raise DomainError(f"{field} must be one of {', '.join(ORG_TYPES)}, not {value!r}", field=field)
    return value.strip().lower()


def type_of(organization_type: object) -> OrgType | None:
    """The environment type of discovery's ``OrganizationType`` number; None when it is no customer environment."""
    if isinstance(organization_type, bool) or not isinstance(organization_type, int):
        return None
    return _BY_ORGANIZATION_TYPE.get(organization_type)


def organization_type_name(organization_type: object) -> str:
    if isinstance(organization_type, int) and 0 <= organization_type < len(ORGANIZATION_TYPE_NAMES):
        return ORGANIZATION_TYPE_NAMES[organization_type]
    return f"unknown ({organization_type})"


_NAME = re.compile(r"[^a-z0-9]+")


def suggested_name(url_name: str, unique_name: str = "") -> str:
    """An org name for the orgs file: lowercase letters, digits and hyphens (it names a Key Vault secret and an app
    setting), from the environment's URL name, else its unique name."""
    name = _NAME.sub("-", (url_name or unique_name).lower()).strip("-")
    return name[:60].strip("-") or "org"


@dataclass(frozen=True)
class Environment:
    """One environment (Dataverse org) of the tenant, as the Global Discovery Service describes it."""

    id: str  # the OrganizationId
    unique_name: str
    url_name: str
    friendly_name: str
    url: str  # the application URL, which is also the Web API's base (``<url>/api/data/v9.2/``)
    organization_type: int | None
    enabled: bool  # State 0
    environment_id: str | None = None
    region: str | None = None
    version: str | None = None

    @property
    def type(self) -> OrgType | None:
        return type_of(self.organization_type)

    @property
    def name(self) -> str:
        return suggested_name(self.url_name, self.unique_name)


@dataclass(frozen=True)
class Discovered:
    """An environment, and the registered org it is (by OrganizationId), if any."""

    environment: Environment
    registered_as: str | None


def compare(environments: Iterable[Environment], registered: dict[str, str]) -> list[Discovered]:
    """Each environment with the name it is registered under (``registered``: org id -> name), by friendly name."""
    found = [Discovered(e, registered.get(e.id.lower())) for e in environments]
    return sorted(found, key=lambda d: (d.environment.friendly_name.casefold(), d.environment.id))


def choose(discovered: list[Discovered], wanted: Iterable[str]) -> list[Discovered]:
    """The environments ``wanted`` names (a suggested name, unique name, URL name or id), each once; an unknown or
    disabled one is refused, naming it, and so is one registered already."""
    chosen: list[Discovered] = []
    for want in wanted:
        key = want.strip().lower()
        hit = next(
            (
                d
                for d in discovered
                if key
                in {
                    d.environment.name,
                    d.environment.unique_name.lower(),
                    d.environment.url_name.lower(),
                    d.environment.id.lower(),
                }
            ),
            None,
        )
        if hit is None:
            names = ", ".join(d.environment.name for d in discovered) or "none"
            raise DomainError(f"no environment {want!r} in the tenant (found: {names})", field="register")
        if hit.registered_as is not None:
            raise DomainError(f"{want!r} is registered already, as {hit.registered_as}", field="register")
        if not hit.environment.enabled:
            raise DomainError(f"{want!r} is disabled in the tenant; it cannot call OrgGuard", field="register")
        if hit not in chosen:
            chosen.append(hit)
    return chosen


@dataclass(frozen=True)
class OrgEntry:
    """An org as the orgs file lists it (``orgguard discover --register`` writes these)."""

    name: str
    id: str
    url: str
    key: str = field(repr=False)
    type: str | None = None
    label: str = ""

    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "id": self.id, "url": self.url, "webhook_key": self.key}
        if self.type:
            doc["type"] = self.type
        if self.label:
            doc["label"] = self.label
        return doc

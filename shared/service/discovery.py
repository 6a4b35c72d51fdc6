"""Every environment of the tenant, registered or not, and registering the chosen ones in one step.

``orgguard discover`` lists what the Dataverse Global Discovery Service answers (through the
``EnvironmentDirectory`` port), each environment beside the registered org it is (by OrganizationId).
``--register`` adds the chosen ones to the orgs file with a new webhook key each and their environment type
(``shared.config.orgs_file``), then registers OrgGuard's webhooks in each (``orgguard register``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from typing import Any

from shared.dataverse.port import EnvironmentDirectory
from shared.domain.environments import Discovered, OrgEntry, compare, organization_type_name
from shared.domain.orgs import OrgRegistry


async def discover(directory: EnvironmentDirectory, orgs: OrgRegistry) -> list[Discovered]:
    """The tenant's environments, each with the name it is registered under (None: not registered)."""
    return compare(await directory.environments(), {org.id: org.name for org in orgs})


def new_key() -> str:
    """A webhook key: 256 random bits, URL-safe, with no white space (keys are compared exactly)."""
    return secrets.token_urlsafe(32)


def entries_for(chosen: Iterable[Discovered], taken: Iterable[str], key: Callable[[], str] = new_key) -> list[OrgEntry]:
    """Orgs-file entries for the chosen environments: a name no registered org has, a new key, the type."""
    names = set(taken)
    out: list[OrgEntry] = []
    for found in chosen:
        env = found.environment
        name, n = env.name, 2
        while name in names:
            name, n = f"{env.name}-{n}", n + 1
        names.add(name)
        out.append(OrgEntry(name, env.id, env.url, key(), env.type.value if env.type else None, env.friendly_name))
    return out


def discovered_view(found: Discovered) -> dict[str, Any]:
    env = found.environment
    return {
        "name": env.name,
        "friendly_name": env.friendly_name,
        "id": env.id,
        "url": env.url,
        "type": env.type.value if env.type else None,
        "organization_type": organization_type_name(env.organization_type),
        "state": "enabled" if env.enabled else "disabled",
        "registered": found.registered_as is not None,
        "registered_as": found.registered_as,
        "unique_name": env.unique_name,
        "region": env.region,
        "environment_id": env.environment_id,
        "version": env.version,
    }

"""The registered orgs: the Dynamics 365 orgs OrgGuard hears, looked up by name, by id and by webhook key.

Where they come from (``orgs.yaml``, the document in ORGGUARD_ORGS, keys in app settings or
Key Vault) is configuration's business: ``shared.config.orgs`` builds the registry.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from shared.domain.model import DomainError, Org, UnknownOrg


class OrgsError(DomainError, title="Invalid orgs file"):
    """An orgs file OrgGuard cannot use."""


@dataclass(frozen=True)
class RegisteredOrg:
    org: Org
    key: str = field(repr=False)


class OrgRegistry:
    def __init__(self, entries: list[RegisteredOrg]) -> None:
        self._by_name = {e.org.name: e for e in entries}
        self._by_id = {e.org.id: e for e in entries}
        if len(self._by_name) != len(entries) or len(self._by_id) != len(entries):
            raise OrgsError("org names and ids must be unique")

    def __iter__(self) -> Iterator[Org]:
        return (e.org for e in self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str) -> Org:
        entry = self._by_name.get(name)
        if entry is None:
            raise UnknownOrg(f"{name!r} is not a registered org", field="org")
        return entry.org

    def by_id(self, org_id: str) -> Org | None:
        entry = self._by_id.get(org_id.lower())
        return entry.org if entry else None

    def key_for(self, name: str) -> str:
        """The webhook key OrgGuard registers in ``name`` (never logged)."""
        self.get(name)
        return self._by_name[name].key

    def org_for_key(self, key: str) -> Org | None:
        """The org whose webhook key this is; every key is compared in constant time."""
        found: Org | None = None
        for entry in self._by_name.values():
            if hmac.compare_digest(entry.key.encode(), key.encode()):
                found = entry.org
        return found

    def with_app_user(self, name: str, user_id: str) -> None:
        """Record OrgGuard's own systemuser in an org (learned through WhoAmI)."""
        entry = self._by_name[name]
        org = replace(entry.org, app_user_id=user_id.lower())
        new = RegisteredOrg(org, entry.key)
        self._by_name[name] = new
        self._by_id[org.id] = new

"""Loading the registry of orgs OrgGuard hears (``orgs.yaml``, or the document ORGGUARD_ORGS holds) and their keys.

The registry itself is the domain's (``shared.domain.orgs``).

A key is a literal, ``env:NAME`` (in Azure, the app setting may itself be a
Key Vault reference resolved by the platform), or
``keyvault:https://<vault>.vault.azure.net/secrets/<name>`` read once at start
with the app's managed identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from shared.config.documents import TooComplex, load_yaml
from shared.config.environment import environment
from shared.config.settings import (
    inline_document,
    is_key_vault_reference,
    secret_problem,
    unresolved_reference,
)
from shared.domain.environments import org_type
from shared.domain.model import DomainError, Org, normalize_guid
from shared.domain.orgs import OrgRegistry, OrgsError, RegisteredOrg

# OrgsError: what its callers catch; OrgRegistry: shared.dataverse.registration still imports it from here
# (TODO(lead): from shared.domain.orgs once the Dataverse split lands).
__all__ = ["OrgRegistry", "OrgsError", "load_orgs", "parse_orgs", "resolve_key"]


def resolve_key(spec: str, env: Mapping[str, str], *, where: str = "webhook_key") -> str:
    """The key ``spec`` names, checked: never an unresolved Key Vault reference, never with white space."""
    source = f"{where} (a literal)"
    if spec.startswith("env:"):
        name = spec[4:]
        value = env.get(name)
        if not value:
            raise OrgsError(f"environment variable {name} (a webhook key) is not set", field="webhook_key")
        if is_key_vault_reference(value):
            raise OrgsError(unresolved_reference(name) + f" (the webhook key of {where})", field="webhook_key")
        key, source = value, f"environment variable {name} ({where})"
    elif spec.startswith("keyvault:"):
        key, source = _read_key_vault_secret(spec[len("keyvault:") :]), f"the Key Vault secret for {where}"
    else:
        key = spec
    if problem := secret_problem(key):
        raise OrgsError(f"the webhook key in {source} {problem}", field="webhook_key")
    return key


def _read_key_vault_secret(uri: str) -> str:  # pragma: no cover - needs Azure
    import httpx
    from azure.identity import DefaultAzureCredential

    token = DefaultAzureCredential().get_token("https://vault.azure.net/.default").token
    response = httpx.get(uri, params={"api-version": "7.4"}, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    if response.status_code != 200:
        raise OrgsError(f"Key Vault answered {response.status_code} for a webhook key", field="webhook_key")
    return str(response.json()["value"])


def parse_orgs(doc: object, env: Mapping[str, str] | None = None) -> OrgRegistry:
    environ = environment() if env is None else env  # webhook keys named env:NAME
    if not isinstance(doc, dict) or not isinstance(doc.get("orgs"), list):
        raise OrgsError("the orgs file needs a top-level 'orgs' list", field="orgs")
    entries = []
    for i, item in enumerate(doc["orgs"]):
        where = f"orgs[{i}]"
        if not isinstance(item, dict):
            raise OrgsError(f"{where} must be a mapping", field=where)
        entries.append(_parse_entry(item, where, environ))
    return OrgRegistry(entries)


def _parse_entry(item: dict[str, Any], where: str, env: Mapping[str, str]) -> RegisteredOrg:
    for name in ("name", "id", "url", "webhook_key"):
        if not isinstance(item.get(name), str) or not item[name].strip():
            raise OrgsError(f"{where}.{name} is required and must be a string", field=f"{where}.{name}")
    url = item["url"].rstrip("/")
    if not url.startswith(("https://", "http://127.", "http://localhost", "http://[::1]")):
        raise OrgsError(f"{where}.url must be https (plain http only on loopback)", field=f"{where}.url")
    org = Org(
        id=normalize_guid(item["id"], field=f"{where}.id"),
        name=item["name"].strip(),
        url=url,
        label=str(item.get("label", "")),
        app_user_id=normalize_guid(item["app_user_id"], field=f"{where}.app_user_id")
        if item.get("app_user_id")
        else None,
        type=_type(item.get("type"), where),
    )
    return RegisteredOrg(org, resolve_key(item["webhook_key"], env, where=f"{where} ({org.name})"))


def _type(value: object, where: str) -> str | None:
    """The org's environment type (production, sandbox, trial, ...), when the entry gives one."""
    try:
        return org_type(value, field=f"{where}.type")
    except DomainError as exc:
        raise OrgsError(exc.detail, field=exc.field) from None


def load_orgs(path: str | Path, env: Mapping[str, str] | None = None) -> OrgRegistry:
    """The registry from an orgs file, or from the document ORGGUARD_ORGS carries inline."""
    inline = inline_document(path) if isinstance(path, str) else None
    if inline is not None:
        try:
            return parse_orgs(yaml.safe_load(inline), env)
        except yaml.YAMLError as exc:
            raise OrgsError(f"ORGGUARD_ORGS is not valid YAML or JSON: {exc}", field="ORGGUARD_ORGS") from None
    p = Path(path)
    if not p.exists():
        raise OrgsError(f"the orgs file {p} does not exist (set ORGGUARD_ORGS)", field="ORGGUARD_ORGS")
    try:
        doc = load_yaml(p.read_text(encoding="utf-8"))
    except TooComplex as exc:
        raise OrgsError(f"{p}: {exc}", field="ORGGUARD_ORGS") from None
    except yaml.YAMLError as exc:
        raise OrgsError(f"{p} is not valid YAML: {exc}", field="ORGGUARD_ORGS") from None
    return parse_orgs(doc, env)

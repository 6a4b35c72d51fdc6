"""Where a ``tables:`` ledger URL points, and the credential that reaches an account by Entra ID."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qs, urlsplit

from shared.ledger.port import LedgerError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

DEFAULT_PREFIX: Final = "orgguard"

_credentials: dict[str | None, TokenCredential] = {}
_credentials_lock = threading.Lock()


def default_credential(client_id: str | None = None) -> TokenCredential:
    """One credential per identity and process (it caches tokens): the managed identity ``client_id``
    (``Settings.azure_client_id``), else DefaultAzureCredential (``az login`` on a laptop)."""
    with _credentials_lock:
        if client_id not in _credentials:
            from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

            _credentials[client_id] = (
                ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()
            )
        return _credentials[client_id]


@dataclass(frozen=True)
class Target:
    """Where a ``tables:`` URL points: a connection string or an account URL, and the table prefix."""

    connection_string: str | None
    account_url: str | None
    prefix: str


def parse_target(url: str) -> Target:
    """``tables:<connection string>[;TablePrefix=p]`` or ``tables:https://<account>...[?prefix=p]``."""
    rest = url.removeprefix("tables:").strip()
    if not rest:
        raise LedgerError("the tables: ledger URL names no account (tables:UseDevelopmentStorage=true, ...)")
    if rest.lower().startswith(("https://", "http://")):
        parts = urlsplit(rest)
        prefix = (parse_qs(parts.query).get("prefix") or [DEFAULT_PREFIX])[0]
        if not parts.netloc:
            raise LedgerError("the tables: account URL names no host")
        return Target(None, f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}", prefix)
    kept: list[str] = []
    prefix = DEFAULT_PREFIX
    for segment in rest.split(";"):
        name, sep, value = segment.partition("=")
        if name.strip().lower() == "tableprefix" and sep:
            prefix = value.strip()
        elif segment.strip():
            kept.append(segment.strip())
    if not kept:
        raise LedgerError("the tables: connection string is empty")
    return Target(";".join(kept), None, prefix)


def is_cosmos(endpoint: str) -> bool:
    """Cosmos DB for Table, which returns query results unsorted."""
    host = urlsplit(endpoint).hostname or ""
    return ".table.cosmos." in host or ".table.cosmosdb." in host

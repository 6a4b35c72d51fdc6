"""The one place a ``DataverseClient`` is built: per org, with its token provider and retries.

Everything else is handed a factory (``port.ClientFor``, ``port.Connect``,
``pacing.PacedConnect``) and never builds a client itself, so the composition root
decides once which identity (``client_id``) OrgGuard uses in the orgs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal

import httpx

from shared.dataverse import mailboxes
from shared.dataverse.client import DataverseClient
from shared.dataverse.payloads import MailboxRow
from shared.dataverse.port import RetryPolicy
from shared.dataverse.tokens import token_provider_for
from shared.domain.model import Org


class _Default(Enum):
    ENVIRONMENT = "AZURE_CLIENT_ID"


FROM_ENVIRONMENT: Final = _Default.ENVIRONMENT
ClientId = str | None | Literal[_Default.ENVIRONMENT]


def environment_client_id() -> str | None:
    """The managed identity's client id from ``AZURE_CLIENT_ID`` (None: the default credential chain)."""
    # TODO(lead): inject from bootstrap (read it in settings); the last read of the environment in shared/dataverse.
    return os.environ.get("AZURE_CLIENT_ID") or None


def _resolve(client_id: ClientId) -> str | None:
    return environment_client_id() if client_id is FROM_ENVIRONMENT else client_id


def connect(
    org: Org, *, client_id: str | None, retry: RetryPolicy | None = None, http: httpx.AsyncClient | None = None
) -> DataverseClient:
    """A client for ``org``: a local development token on loopback, azure-identity (``client_id``) elsewhere.

    With ``http`` it sends through that client (a pacer's) and leaves closing it to its owner.
    """
    tokens = token_provider_for(org.url, client_id=client_id)
    return DataverseClient(org.url, tokens, http=http, retry=retry or RetryPolicy(), org=org.name)


@dataclass(frozen=True)
class Connector:
    """``connect`` with the identity bound: the factory handed to read-backs and pacers."""

    client_id: str | None

    def __call__(self, org: Org, retry: RetryPolicy, http: httpx.AsyncClient | None = None) -> DataverseClient:
        return connect(org, client_id=self.client_id, retry=retry, http=http)


class ClientPool:
    """One client per org, for the life of one event loop (a ``port.ClientFor``)."""

    def __init__(self, retry: RetryPolicy | None = None, *, client_id: ClientId = FROM_ENVIRONMENT) -> None:
        self._clients: dict[str, DataverseClient] = {}
        self._retry = retry
        self._client_id = _resolve(client_id)

    def __call__(self, org: Org) -> DataverseClient:
        client = self._clients.get(org.name)
        if client is None:
            client = self._clients[org.name] = connect(org, client_id=self._client_id, retry=self._retry)
        return client

    @property
    def requests_sent(self) -> int:
        return sum(c.requests_sent for c in self._clients.values())

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def read_back(org: Org, mailbox_id: str) -> MailboxRow | None:
    """``mailboxes.read_back`` through a client of its own (the gate's read-back of a trimmed payload)."""
    # TODO(lead): inject from bootstrap (mailboxes.read_back with a Connector built from settings).
    return mailboxes.read_back(org, mailbox_id, connect=Connector(environment_client_id()))

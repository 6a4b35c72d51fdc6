"""The one place a ``DataverseClient`` is built: per org, with its token provider and retries.

Everything else is handed a factory (``port.ClientFor``, ``port.Connect``,
``pacing.PacedConnect``) and never builds a client itself, so the composition root
decides once which identity (``client_id``) OrgGuard uses in the orgs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import httpx

from shared.dataverse.client import DataverseClient
from shared.dataverse.pacing import Pacer
from shared.dataverse.port import RetryPolicy
from shared.dataverse.tokens import token_provider_for
from shared.domain.model import Org


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


class ClientPool(Pacer):
    """One client per org, for the life of one event loop (a ``port.ClientFor``), paced like a job's.

    Its clients read each org's service-protection headers as a job's do (``pacing``), so the
    executor sizes its ``$batch``es to what is left and leaves an org alone while it is over
    its budget; a request never waits for an org longer than the retry policy's ``max_delay``
    (it is refused with ``Throttled`` instead, nothing sent).
    """

    def __init__(self, retry: RetryPolicy | None = None, *, client_id: str | None) -> None:
        retry = retry or RetryPolicy()
        super().__init__(Connector(client_id), retry=retry, patience_s=retry.max_delay)

    def __call__(self, org: Org) -> DataverseClient:
        return cast(DataverseClient, super().__call__(org))  # built by ``Connector``: a ``DataverseClient``

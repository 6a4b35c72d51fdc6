"""Bearer tokens for the Web API: a fixed development token on loopback, Entra ID everywhere else.

Nothing here logs or returns a token anywhere but to the client that sends it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from shared.config.urls import is_loopback

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

LOCAL_DEV_TOKEN = "orgguard-local-dev"  # noqa: S105 - a public, well-known development value


class TokenProvider(Protocol):
    async def token(self, resource: str) -> str:
        """A bearer token for ``resource`` (the org URL's scheme and host)."""
        ...


class LocalDevToken:
    """For orgs on loopback (the sandbox): a fixed development token, no Azure login.

    The sandbox treats each distinct token as a distinct user, so OrgGuard's own
    writes are told apart from an admin's exactly as in a real org.
    """

    def __init__(self, value: str = LOCAL_DEV_TOKEN) -> None:
        self._value = value

    async def token(self, resource: str) -> str:
        return self._value


_SHARED_CREDENTIALS: dict[str | None, AsyncTokenCredential] = {}


class AzureIdentityToken:
    """Entra ID tokens from azure-identity: managed identity in Azure, ``az login`` on a laptop.

    One credential per process (it caches and refreshes tokens); azure.identity is
    imported on first use, never at module import, to keep cold starts short.
    """

    def __init__(self, *, client_id: str | None = None, credential: AsyncTokenCredential | None = None) -> None:
        self._client_id = client_id
        self._credential = credential

    async def token(self, resource: str) -> str:
        credential = self._credential or _shared_credential(self._client_id)
        access = await credential.get_token(f"{resource.rstrip('/')}/.default")
        return access.token


def _shared_credential(client_id: str | None) -> AsyncTokenCredential:
    credential = _SHARED_CREDENTIALS.get(client_id)
    if credential is None:
        from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()
        _SHARED_CREDENTIALS[client_id] = credential
    return credential


def token_provider_for(url: str, *, client_id: str | None = None) -> TokenProvider:
    """The loopback rule: a local development token for loopback orgs, azure-identity for the rest."""
    if is_loopback(url):
        return LocalDevToken()
    return AzureIdentityToken(client_id=client_id)

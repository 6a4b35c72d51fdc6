"""The one client factory: which identity a client uses, and who closes the HTTP client under it."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from shared.dataverse.clients import ClientPool, Connector, connect
from shared.dataverse.pacing import Pacer
from shared.dataverse.port import RetryPolicy
from shared.dataverse.tokens import AzureIdentityToken, LocalDevToken
from shared.domain.model import Org

REMOTE = Org(id="3f0e6c1a-5b7d-4e2a-9c11-2a6f0b8d4e01", name="contoso-na", url="https://contoso-na.crm.dynamics.com")
SANDBOX = Org(id="8a2d4f60-1c3b-4f7e-b5a9-7d0c9e2f6a12", name="contoso-jp", url="http://127.0.0.1:7999/orgs/contoso-jp")


def identity(client: object) -> object:
    tokens = client._tokens  # type: ignore[attr-defined]
    return tokens._client_id if isinstance(tokens, AzureIdentityToken) else type(tokens)


def test_a_pool_uses_the_identity_it_is_given_not_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", "from-the-environment")
    assert identity(ClientPool(client_id="given")(REMOTE)) == "given"
    assert identity(ClientPool(client_id=None)(REMOTE)) is None  # the default credential chain
    # Nothing in the dataverse package reads AZURE_CLIENT_ID any more: Settings does, and bootstrap passes it.


def test_a_loopback_org_gets_the_development_token_whatever_the_identity() -> None:
    assert identity(ClientPool(client_id="given")(SANDBOX)) is LocalDevToken


def test_a_pool_keeps_one_client_per_org_and_closes_them() -> None:
    pool = ClientPool(RetryPolicy(attempts=1), client_id=None)
    first = pool(REMOTE)
    assert pool(REMOTE) is first and pool(SANDBOX) is not first
    asyncio.run(pool.aclose())
    assert first._http.is_closed  # type: ignore[attr-defined]
    assert pool(REMOTE) is not first  # a closed pool starts afresh


def test_a_client_on_a_given_http_client_leaves_closing_it_to_its_owner() -> None:
    async def go() -> httpx.AsyncClient:
        http = httpx.AsyncClient()
        client = connect(REMOTE, client_id=None, http=http)
        await client.aclose()
        assert not http.is_closed
        await http.aclose()
        return http

    assert asyncio.run(go()).is_closed


def test_a_pacer_builds_its_clients_through_the_factory_it_is_given_on_its_own_paced_http() -> None:
    built: list[tuple[str, RetryPolicy, httpx.AsyncClient]] = []

    def recording(org: Org, retry: RetryPolicy, http: httpx.AsyncClient) -> object:
        built.append((org.name, retry, http))
        return Connector(client_id="given")(org, retry, http)

    pacer = Pacer(connect=recording)  # type: ignore[arg-type]
    client = pacer(REMOTE)
    assert pacer(REMOTE) is client and len(built) == 1
    name, retry, http = built[0]
    assert (name, retry, identity(client)) == ("contoso-na", pacer.retry, "given")
    assert http.event_hooks["request"] and http.event_hooks["response"]  # every request passes the org's pace
    asyncio.run(pacer.aclose())
    assert http.is_closed


def test_clients_for_many_orgs_load_the_certificate_bundle_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each httpx client would load the CA bundle again (about 18 ms of CPU); the process loads it once."""
    import ssl

    from shared.dataverse.tls import tls_context

    tls_context.cache_clear()
    loads: list[object] = []
    real = ssl.SSLContext.load_verify_locations

    def counted(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        loads.append(args or kwargs)
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    orgs = [Org(id=f"3f0e6c1a-5b7d-4e2a-9c11-2a6f0b8d4e0{i}", name=f"org{i}", url=f"https://org{i}.crm.dynamics.com")
            for i in range(5)]  # fmt: skip
    pool, pacer = ClientPool(RetryPolicy(attempts=1), client_id=None), Pacer(connect=Connector(client_id=None))
    try:
        clients = [pool(org) for org in orgs] + [pacer(org) for org in orgs]
        assert len({id(c) for c in clients}) == 10
        assert len(loads) == 1
    finally:
        asyncio.run(pool.aclose())
        asyncio.run(pacer.aclose())

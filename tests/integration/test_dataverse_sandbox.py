"""The Web API client and register() against the sandbox's simulated orgs over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from sandbox.server import running
from shared.dataverse.client import DataverseClient
from shared.dataverse.clients import Connector
from shared.dataverse.pacing import Pacer
from shared.dataverse.port import BatchOperation, PreconditionFailed, RetryPolicy, Throttled
from shared.dataverse.registration import register
from shared.dataverse.tokens import LocalDevToken, token_provider_for
from shared.domain.model import Org

pytestmark = pytest.mark.sandbox

CONTOSO_NA = "3f0e6c1a-5b7d-4e2a-9c11-2a6f0b8d4e01"
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, timeout=10.0)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    with running(port=0, loopback_webhooks=True) as server:
        yield str(getattr(server, "url", server)).rstrip("/")


@pytest.fixture(autouse=True)
def reset(sandbox: str) -> Iterator[None]:
    yield
    httpx.post(f"{sandbox}/_sandbox/reset").raise_for_status()


def client_for(sandbox: str, org: str = "contoso-na", **kwargs: Any) -> DataverseClient:
    url = f"{sandbox}/orgs/{org}"
    return DataverseClient(url, kwargs.pop("tokens", token_provider_for(url)), retry=FAST, **kwargs)


async def first_page(client: DataverseClient, size: int) -> list[dict[str, Any]]:
    async with aclosing(client.query("mailboxes", select=["mailboxid"], page_size=size)) as pages:
        async for page in pages:
            return page
    raise AssertionError("no mailboxes")


def test_who_am_i_names_the_org_and_tells_tokens_apart(sandbox: str) -> None:
    async def go() -> tuple[Any, Any]:
        async with client_for(sandbox) as ours, client_for(sandbox, tokens=LocalDevToken("an-admin")) as admin:
            return await ours.who_am_i(), await admin.who_am_i()

    ours, admin = asyncio.run(go())
    assert ours.organization_id == CONTOSO_NA
    assert ours.user_id != admin.user_id


def test_paging_returns_every_mailbox_once(sandbox: str) -> None:
    async def go() -> tuple[list[str], list[int]]:
        async with client_for(sandbox) as client:
            all_at_once = [r["mailboxid"] async for p in client.query("mailboxes", select=["mailboxid"]) for r in p]
            sizes: list[int] = []
            paged: list[str] = []
            async for page in client.query("mailboxes", select=["mailboxid"], page_size=7):
                sizes.append(len(page))
                paged += [row["mailboxid"] for row in page]
            assert sorted(paged) == sorted(all_at_once)
            return paged, sizes

    paged, sizes = asyncio.run(go())
    assert len(paged) == len(set(paged)) > 7
    assert all(size <= 7 for size in sizes) and len(sizes) > 1


def test_patch_honours_etags(sandbox: str) -> None:
    async def go() -> None:
        async with client_for(sandbox) as client:
            mailbox_id = (await first_page(client, 1))[0]["mailboxid"]
            row = await client.get("mailboxes", mailbox_id, select=["actdeliverymethod"])
            assert row is not None
            await client.patch("mailboxes", mailbox_id, {"actdeliverymethod": 2}, etag=row["@odata.etag"])
            with pytest.raises(PreconditionFailed):
                await client.patch("mailboxes", mailbox_id, {"actdeliverymethod": 1}, etag=row["@odata.etag"])
            after = await client.get("mailboxes", mailbox_id, select=["actdeliverymethod"])
            assert after is not None and after["actdeliverymethod"] == 2

    asyncio.run(go())


def test_batch_patches_each_mailbox(sandbox: str) -> None:
    async def go() -> None:
        async with client_for(sandbox) as client:
            page = await first_page(client, 3)
            ops = [BatchOperation("PATCH", f"mailboxes({r['mailboxid']})", {"actdeliverymethod": 2}) for r in page]
            results = await client.batch(ops)
            assert [r.status for r in results] == [204] * len(ops)
            for row in page:
                after = await client.get("mailboxes", row["mailboxid"], select=["actdeliverymethod"])
                assert after is not None and after["actdeliverymethod"] == 2

    asyncio.run(go())


def test_register_is_idempotent_against_the_sandbox(sandbox: str) -> None:
    async def go() -> tuple[Any, Any]:
        async with client_for(sandbox) as client:
            first = await register(client, org_name="contoso-na", base_url="http://127.0.0.1:9", key="k")
            second = await register(client, org_name="contoso-na", base_url="http://127.0.0.1:9", key="k")
            return first, second

    first, second = asyncio.run(go())
    assert len(first.created) == 7
    assert not second.changed and len(second.unchanged) == 7


def test_a_spent_budget_ends_in_throttled(sandbox: str) -> None:
    httpx.put(f"{sandbox}/_sandbox/settings", json={"budget": 2, "window_s": 60}).raise_for_status()

    async def go() -> None:
        async with client_for(sandbox) as client:
            with pytest.raises(Throttled) as caught:
                for _ in range(10):
                    await client.who_am_i()
            assert caught.value.retry_after > 0

    asyncio.run(go())


def test_a_pacer_paces_the_clients_its_factory_builds(sandbox: str) -> None:
    """A job's clients come from the one factory; the pacer puts them on its paced HTTP client."""
    httpx.put(f"{sandbox}/_sandbox/settings", json={"budget": 50, "window_s": 60}).raise_for_status()
    org = Org(id=CONTOSO_NA, name="contoso-na", url=f"{sandbox}/orgs/contoso-na")

    async def go() -> tuple[int, int, int | None, list[int]]:
        pacer = Pacer(connect=Connector(client_id=None))
        try:
            client = pacer(org)
            await client.who_am_i()
            results = await client.batch([BatchOperation("GET", "WhoAmI"), BatchOperation("GET", "WhoAmI")])
            pace = pacer.pace("contoso-na")
            return pace.requests, pace.operations, pace.remaining, [r.status or 0 for r in results]
        finally:
            await pacer.aclose()

    requests, operations, remaining, statuses = asyncio.run(go())
    assert statuses == [200, 200]
    assert (requests, operations) == (2, 3)  # one request, then a $batch of two: it counts once as a request
    assert remaining == 48  # learned from the org's answers: the $batch spent one request, as documented

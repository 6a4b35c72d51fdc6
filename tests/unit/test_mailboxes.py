"""The mailbox reads over the port: any ``OrgClient`` will do, and the clients they are given are closed."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from shared.dataverse.mailboxes import find_mailbox, read_back
from shared.dataverse.port import BatchResult, ClientFor, DataverseError, OrgClient, RetryPolicy, WhoAmI
from shared.domain.model import MailboxKey, Org
from shared.ledger import deadline
from shared.service.org_rows import read_rows

ORG = Org(id="3f0e6c1a-5b7d-4e2a-9c11-2a6f0b8d4e01", name="contoso-na", url="https://contoso-na.crm.dynamics.com")
OTHER = Org(id="8a2d4f60-1c3b-4f7e-b5a9-7d0c9e2f6a12", name="contoso-jp", url="https://contoso-jp.crm.dynamics.com")
AIKO = "0d3c6a1e-6f31-4b8e-9d2a-6c1f1f0e9a11"
USER = "6b8e2a40-9c1d-4e3f-a7b5-1d2c3e4f5a6b"
# contains(emailaddress,'<literal>') and statecode eq 0, with '' standing for ' inside the literal
_CONTAINS = re.compile(r"^contains\(emailaddress,'((?:[^']|'')*)'\) and statecode eq 0$")


class FakeOrg:
    """An org's mailbox table in memory, answering the queries OrgGuard's mailbox reads send."""

    def __init__(self, rows: Sequence[dict[str, Any]], *, answer_after: float = 0.0) -> None:
        self.rows = list(rows)
        self.answer_after = answer_after
        self.requests_sent = 0
        self.closed = False

    async def who_am_i(self) -> WhoAmI:
        return WhoAmI("bu", "me", ORG.id)

    async def query(
        self, entity_set: str, *, select: Sequence[str], filter: str | None = None, page_size: int = 5000
    ) -> AsyncIterator[list[dict[str, Any]]]:
        self.requests_sent += 1
        found = _CONTAINS.match(filter or "")
        assert entity_set == "mailboxes" and found, filter
        needle = found.group(1).replace("''", "'").casefold()
        matching = [
            {c: r.get(c) for c in select}
            for r in self.rows
            if needle in str(r.get("emailaddress") or "").casefold() and r.get("statecode") == 0
        ]
        for start in range(0, len(matching), 2):  # two rows a page: paging is followed
            yield matching[start : start + 2]

    async def get(self, entity_set: str, id: str, *, select: Sequence[str]) -> dict[str, Any] | None:
        self.requests_sent += 1
        await asyncio.sleep(self.answer_after)
        row = next((r for r in self.rows if r["mailboxid"] == id), None)
        return None if row is None else {c: row.get(c) for c in select}

    async def patch(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("a read never writes")

    async def batch(self, *args: Any, **kwargs: Any) -> list[BatchResult]:
        raise AssertionError("a read never writes")

    async def aclose(self) -> None:
        self.closed = True


def row(address: str, mailbox_id: str = AIKO, **values: Any) -> dict[str, Any]:
    return {"mailboxid": mailbox_id, "emailaddress": address, "statecode": 0, **values}


def test_the_fake_is_an_org_client() -> None:
    client: OrgClient = FakeOrg([])  # mypy checks the port's shape against it
    assert client.requests_sent == 0


def test_find_mailbox_takes_the_active_row_whose_address_normalizes_to_the_key() -> None:
    org = FakeOrg(
        [
            row("aiko.tanaka@contoso.com.example", "11111111-1111-4111-8111-111111111111"),
            row("Aiko.Tanaka@Contoso.com", "22222222-2222-4222-8222-222222222222", statecode=1),
            row("not an address aiko.tanaka@contoso.com", "33333333-3333-4333-8333-333333333333"),
            row("  AIKO.TANAKA@contoso.COM "),
        ]
    )
    found = asyncio.run(find_mailbox(org, MailboxKey.parse("aiko.tanaka@contoso.com")))
    assert found is not None and found["mailboxid"] == AIKO


def test_find_mailbox_quotes_an_apostrophe_and_says_none_when_no_row_matches() -> None:
    org = FakeOrg([row("o'neil@contoso.com")])
    assert asyncio.run(find_mailbox(org, MailboxKey.parse("o'neil@contoso.com"))) == {
        "mailboxid": AIKO,
        "emailaddress": "o'neil@contoso.com",
        "statecode": 0,
    }
    assert asyncio.run(find_mailbox(org, MailboxKey.parse("oneil@contoso.com"))) is None


def built_by(orgs: list[FakeOrg]) -> Any:
    """A ``port.Connect`` handing out ``orgs`` in turn, keeping the retries it was asked for."""
    asked: list[RetryPolicy] = []

    def connect(org: Org, retry: RetryPolicy) -> OrgClient:
        asked.append(retry)
        return orgs[len(asked) - 1]

    connect.asked = asked  # type: ignore[attr-defined]
    return connect


def test_read_back_reads_the_row_and_closes_the_client_it_was_given() -> None:
    org = FakeOrg(
        [row("aiko.tanaka@contoso.com", actdeliverymethod=1, orgmarkedasprimaryforexchangesync=True,
             _regardingobjectid_value=USER)]
    )  # fmt: skip
    connect = built_by([org])

    found = read_back(ORG, AIKO, connect=connect)

    assert found is not None
    assert (found.address, found.act_method, found.primary_flag, found.active, found.regarding_id) == (
        "aiko.tanaka@contoso.com", 1, True, True, USER
    )  # fmt: skip
    assert org.closed
    assert connect.asked[0].attempts == 3  # a read-back retries briefly: the gate is waiting


def test_a_read_back_past_the_gates_deadline_gives_up_and_still_closes_its_client() -> None:
    org = FakeOrg([row("aiko.tanaka@contoso.com")], answer_after=5.0)
    with deadline.bound(deadline.Deadline(0.3, reserve=0.0)), pytest.raises(deadline.DeadlineExceeded):
        read_back(ORG, AIKO, connect=built_by([org]))
    assert org.closed


def test_a_read_back_with_no_time_left_builds_no_client() -> None:
    connect = built_by([])
    with deadline.bound(deadline.Deadline(0.0, reserve=0.0)), pytest.raises(deadline.DeadlineExceeded):
        read_back(ORG, AIKO, connect=connect)
    assert connect.asked == []


def test_a_gone_row_reads_back_as_none() -> None:
    assert read_back(ORG, AIKO, connect=built_by([FakeOrg([])])) is None


class Unreachable(FakeOrg):
    async def query(self, *args: Any, **kwargs: Any) -> AsyncIterator[list[dict[str, Any]]]:
        raise DataverseError("Service Unavailable", status=503)
        yield []  # an async generator, like the real one


def test_org_rows_read_through_the_clients_they_are_given() -> None:
    clients = {ORG.name: FakeOrg([row("aiko.tanaka@contoso.com")]), OTHER.name: Unreachable([])}
    client_for: ClientFor = lambda org: clients[org.name]  # noqa: E731

    rows = asyncio.run(read_rows([ORG, OTHER], MailboxKey.parse("aiko.tanaka@contoso.com"), client_for))

    assert [r.doc()["found"] for r in rows] == [True, None]
    assert rows[1].error == "503: Service Unavailable"
    assert not any(c.closed for c in clients.values())  # the caller's clients: the caller closes them

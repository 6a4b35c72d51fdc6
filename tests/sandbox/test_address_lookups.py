"""Filters that pin mailbox addresses are answered from the address index, with the answer a full scan would give."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.sandbox.conftest import api

SELECT = "mailboxid,emailaddress,statecode"


def read(admin: httpx.Client, filter: str, page: int = 5000) -> list[dict[str, Any]]:
    """Every row the filter selects, following the next links."""
    url: str | None = api("contoso-na") + "mailboxes"
    params: dict[str, str] | None = {"$select": SELECT, "$filter": filter}
    out: list[dict[str, Any]] = []
    while url:
        answer = admin.get(url, params=params, headers={"Prefer": f"odata.maxpagesize={page}"})
        assert answer.status_code == 200, answer.text
        out += answer.json()["value"]
        url, params = answer.json().get("@odata.nextLink"), None
    return out


def ids(rows: list[dict[str, Any]]) -> set[str]:
    return {r["mailboxid"] for r in rows}


@pytest.fixture
def everyone(admin: httpx.Client) -> list[dict[str, Any]]:
    return read(admin, "statecode eq 0 or statecode eq 1")


def fold(address: str) -> str:
    """How Dataverse compares strings: case-insensitive, trailing spaces ignored (SQL Server's rule)."""
    return address.casefold().rstrip(" ")


def spelled(address: str) -> str:
    """How a query may spell an address another way than the row does."""
    return address.upper().replace("'", "''")


@pytest.mark.parametrize(
    "shape",
    [
        "{either}",
        "statecode eq 0 and ({either})",
        "({either}) and statecode eq 1",
        "({either}) and ({either})",
    ],
)
def test_an_or_of_addresses_answers_what_a_scan_answers(admin: httpx.Client, everyone: list[dict[str, Any]], shape):
    inactive = [fold(r["emailaddress"]) for r in everyone if r["statecode"] == 1][:5]
    wanted = [*sorted({fold(r["emailaddress"]) for r in everyone})[::7][:35], *inactive, "nobody@contoso.com"]
    either = " or ".join(f"emailaddress eq '{spelled(a)}'" for a in wanted)
    filter = shape.format(either=either)
    expected = {
        r["mailboxid"]
        for r in everyone
        if fold(r["emailaddress"]) in wanted
        and ("statecode eq 0" not in filter or r["statecode"] == 0)
        and ("statecode eq 1" not in filter or r["statecode"] == 1)
    }
    assert expected
    assert ids(read(admin, filter)) == expected


def test_an_or_that_does_not_pin_every_term_reads_every_row(admin: httpx.Client, everyone: list[dict[str, Any]]):
    first = fold(everyone[0]["emailaddress"])
    found = read(admin, f"emailaddress eq '{spelled(first)}' or statecode eq 1")
    expected = {r["mailboxid"] for r in everyone if fold(r["emailaddress"]) == first}
    expected |= {r["mailboxid"] for r in everyone if r["statecode"] == 1}
    assert ids(found) == expected
    not_first = read(admin, f"not (emailaddress eq '{spelled(first)}')")
    assert ids(not_first) == {r["mailboxid"] for r in everyone if fold(r["emailaddress"]) != first}


def test_more_rows_than_a_page_are_paged_as_a_scan_pages_them(admin: httpx.Client, everyone: list[dict[str, Any]]):
    wanted = sorted({fold(r["emailaddress"]) for r in everyone})[:12]
    either = " or ".join(f"emailaddress eq '{spelled(a)}'" for a in wanted)
    expected = {r["mailboxid"] for r in everyone if fold(r["emailaddress"]) in wanted}
    assert len(expected) > 3
    assert ids(read(admin, either, page=3)) == expected


def test_an_or_of_primary_keys_answers_what_a_scan_answers(admin: httpx.Client, everyone: list[dict[str, Any]]):
    """OrgGuard reads promotes' rows back by id, 50 at a time: the primary key's index answers them."""
    wanted = [r["mailboxid"] for r in everyone[::5][:50]]
    missing = "00000000-0000-0000-0000-0000000000aa"
    either = " or ".join(f"mailboxid eq {i.upper()}" for i in [*wanted, missing])
    assert ids(read(admin, either)) == set(wanted)
    assert ids(read(admin, f"statecode eq 1 and ({either})")) == {
        r["mailboxid"] for r in everyone if r["mailboxid"] in wanted and r["statecode"] == 1
    }


def test_a_conjunction_of_an_address_and_an_id_is_decided_row_by_row(admin: httpx.Client, everyone):
    row = everyone[3]
    both = f"emailaddress eq '{spelled(fold(row['emailaddress']))}' and mailboxid eq {row['mailboxid']}"
    assert ids(read(admin, both)) == {row["mailboxid"]}
    other = everyone[4]["mailboxid"]
    assert read(admin, f"emailaddress eq '{spelled(fold(row['emailaddress']))}' and mailboxid eq {other}") == []
    mixed = f"emailaddress eq '{spelled(fold(row['emailaddress']))}' or mailboxid eq {other}"
    expected = {r["mailboxid"] for r in everyone if fold(r["emailaddress"]) == fold(row["emailaddress"])} | {other}
    assert ids(read(admin, mixed)) == expected


def test_a_row_named_both_by_its_address_and_by_its_id_is_answered_once(
    admin: httpx.Client, everyone: list[dict[str, Any]]
) -> None:
    row = next(r for r in everyone if r["statecode"] == 0)
    both = f"emailaddress eq '{spelled(row['emailaddress'])}' or mailboxid eq {row['mailboxid']}"
    assert [r["mailboxid"] for r in read(admin, both)] == [row["mailboxid"]]  # Dataverse returns a row once

"""Shared by the sweep and migration suites: a sandbox, a container wired to it, org state read back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from shared import bootstrap
from tests.factories import container, registry

HOLD_EVERY_CLAIM = "version: 1\nmode: enforce\ndefault: hold\nrules: []\n"
ADMIN = {"Authorization": "Bearer an-org-admin"}  # a human admin in the orgs, not OrgGuard
API = "/orgs/{org}/api/data/v9.2/"
STATE = (
    "mailboxid,emailaddress,actdeliverymethod,orgmarkedasprimaryforexchangesync,actstatus,"
    "testemailconfigurationretrycount,versionnumber,statecode"
)


def wired(tmp_path: Path, base_url: str, policy: str = HOLD_EVERY_CLAIM) -> bootstrap.Container:
    """A container on a SQLite ledger under ``tmp_path`` whose orgs are the sandbox at ``base_url``."""
    return container(tmp_path, policy, orgs=registry(base_url))


def rows(sandbox: httpx.Client, org: str, filter: str | None = None) -> list[dict[str, Any]]:
    """Every mailbox row of ``org`` as its Web API answers it (paged)."""
    url: str | None = API.format(org=org) + "mailboxes"
    params: dict[str, str] | None = {"$select": STATE, **({"$filter": filter} if filter else {})}
    out: list[dict[str, Any]] = []
    while url:
        answer = sandbox.get(url, params=params, headers={**ADMIN, "Prefer": "odata.maxpagesize=5000"})
        answer.raise_for_status()
        doc = answer.json()
        out += doc["value"]
        url, params = doc.get("@odata.nextLink"), None
    return out


def row_for(sandbox: httpx.Client, org: str, address: str) -> dict[str, Any]:
    found = rows(sandbox, org, f"emailaddress eq '{address}'")
    assert len(found) == 1, f"{address} in {org}: {found}"
    return found[0]


def exchange(sandbox: httpx.Client, address: str) -> str | None:
    answer = sandbox.get(f"/_sandbox/exchange/{address}")
    answer.raise_for_status()
    org: str | None = answer.json()["org"]
    return org


def writes(sandbox: httpx.Client) -> dict[str, int]:
    """Requests other than reads each org received (PATCH, POST, DELETE, PUT; inside batches too)."""
    counters = sandbox.get("/_sandbox/requests").json()
    return {org: sum(n for method, n in c["by_method"].items() if method != "GET") for org, c in counters.items()}


def reset_sandbox(base_url: str, timeout: float = 60) -> Iterator[httpx.Client]:
    """A client on a sandbox put back to its seeded state before and after the test (for fixtures)."""
    with httpx.Client(base_url=base_url, timeout=timeout) as client:
        client.post("/_sandbox/reset").raise_for_status()
        yield client
        client.post("/_sandbox/reset").raise_for_status()

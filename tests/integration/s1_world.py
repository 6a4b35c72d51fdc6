"""S1's world, shared by the S1 suites: the sandbox's orgs with OrgGuard registered in each, over real HTTP.

The sandbox is driven only through its Web API (as an org admin would) and its /_sandbox/ control routes;
OrgGuard's outbox is carried out the way its timer would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from functions.local_host import create_local_app
from sandbox.server import running
from shared import bootstrap
from shared.config.settings import Settings
from shared.domain.model import CaseQuery, CaseState
from shared.ledger.sqlite import SqliteLedger
from shared.service.outbox import has_pending
from tests.factories import AIKO, registry
from tests.hosting import installed
from tests.serving import serve

API = "/api/data/v9.2"
SEMANTICS = ["overwrite", "alert", "disable-other"]


@dataclass
class World:
    sandbox: httpx.Client
    sandbox_url: str
    orgguard: str
    c: bootstrap.Container

    def admin(self, org: str) -> httpx.Client:
        """An org admin of ``org`` (its own bearer token: its own systemuser in the sandbox)."""
        return httpx.Client(
            base_url=f"{self.sandbox_url}/orgs/{org}{API}",
            headers={"Authorization": f"Bearer admin-of-{org}"},
            timeout=30,
        )

    def aiko(self, org: str) -> dict:
        with self.admin(org) as client:
            rows = client.get(
                "mailboxes",
                params={
                    "$select": "mailboxid,emailaddress,actdeliverymethod,orgmarkedasprimaryforexchangesync,actstatus",
                    "$filter": "contains(emailaddress,'aiko.tanaka@contoso.com')",
                },
            ).json()["value"]
        assert len(rows) == 1, rows
        return rows[0]

    def test_and_enable(self, org: str, *, checkbox: bool = False) -> httpx.Response:
        row = self.aiko(org)
        body = {"testemailconfigurationscheduled": True}
        if checkbox:
            body["orgmarkedasprimaryforexchangesync"] = True
        with self.admin(org) as client:
            return client.patch(f"mailboxes({row['mailboxid']})", json=body, headers={"If-Match": "*"})

    def exchange(self) -> str | None:
        return self.sandbox.get(f"/_sandbox/exchange/{AIKO.address}").json()["org"]

    def settings(self, **values: object) -> None:
        self.sandbox.put("/_sandbox/settings", json=values).raise_for_status()

    def cases(self) -> list[dict]:
        """OrgGuard's cases through its API, as the admin whose save was stopped can read them."""
        answer = httpx.get(f"{self.orgguard}/api/cases", headers={"Authorization": "Bearer t"}, timeout=30)
        answer.raise_for_status()
        return answer.json()["items"]

    def carry_out(self) -> None:
        """Run the outbox until nothing is pending (what the timer / local host loop does)."""
        for _ in range(40):
            asyncio.run(self.c.run_actions())
            if not has_pending(self.c.ledger):
                return
        raise AssertionError("actions still pending")

    def wait_until_carried_out(self, timeout: float = 15) -> None:
        """Until the actions OrgGuard started on its own (after deciding an event) are done."""
        deadline = time.monotonic() + timeout
        while has_pending(self.c.ledger):
            if time.monotonic() > deadline:
                raise AssertionError("OrgGuard's own round did not finish")
            time.sleep(0.05)

    def wait_for_case(self, count: int = 1, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while len(self.c.ledger.cases(CaseQuery()).items) < count:
            if time.monotonic() > deadline:
                raise AssertionError("OrgGuard recorded no case from the asynchronous event")
            time.sleep(0.05)


@contextmanager
def open_world(tmp_path) -> Iterator[World]:
    """The sandbox's orgs with OrgGuard registered in each (OrgGuard on a loopback port: the exception is on)."""
    with running(mailboxes=20, overlap=0.3, loopback_webhooks=True) as sandbox_url:
        c = bootstrap.build(
            Settings(ledger=f"sqlite:///{tmp_path}/l.db", orgs="-", policy=str(tmp_path / "none"), admin_token="t"),
            ledger=SqliteLedger(tmp_path / "l.db"),
            orgs=registry(sandbox_url),
        )
        with (
            installed(c),
            serve(create_local_app(c, background=False)) as orgguard_url,
            httpx.Client(base_url=sandbox_url, timeout=30) as sandbox,
        ):
            asyncio.run(c.register(c.orgs.names, orgguard_url))
            yield World(sandbox, sandbox_url, orgguard_url, c)


def na_owns_aiko(w: World) -> None:
    """NA's admin enables the mailbox first: uncontested, NA becomes the owner."""
    r = w.test_and_enable("contoso-na")
    assert r.status_code == 204, r.text
    assert w.c.ledger.mailbox(AIKO).ownership.owner == "contoso-na"
    assert w.exchange() == "contoso-na"


def given_na_owns_aiko(w: World, policy: str, **sandbox: object) -> None:
    """The start of every S1 story: ``policy`` saved, the sandbox set as ``sandbox`` says, NA owning Aiko's mailbox."""
    w.c.service.save_policy(policy, actor="test")
    if sandbox:
        w.settings(**sandbox)
    na_owns_aiko(w)


def assert_na_keeps_aiko(w: World) -> None:
    """The block held: Exchange and the ledger say NA, JP's row is set to None, every case is applied."""
    assert w.exchange() == "contoso-na"
    assert w.aiko("contoso-jp")["actdeliverymethod"] == 2
    assert w.aiko("contoso-na")["actdeliverymethod"] == 1
    assert w.c.ledger.mailbox(AIKO).ownership.owner == "contoso-na"
    cases = w.c.ledger.cases(CaseQuery()).items
    assert cases and all(case.state is CaseState.APPLIED for case in cases), [c.state for c in cases]


def assert_jp_took_aiko(w: World) -> None:
    """The override took effect: Exchange and the ledger say JP, JP's row is primary, NA's is set to None."""
    assert w.exchange() == "contoso-jp"
    jp, na = w.aiko("contoso-jp"), w.aiko("contoso-na")
    assert (jp["actdeliverymethod"], jp["orgmarkedasprimaryforexchangesync"]) == (1, True)
    assert (na["actdeliverymethod"], na["orgmarkedasprimaryforexchangesync"]) == (2, False)
    assert w.c.ledger.mailbox(AIKO).ownership.owner == "contoso-jp"

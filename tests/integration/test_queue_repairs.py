"""Decisions drive the work: an after-the-fact claim is repaired within seconds through the local work queue.

The local host as `orgguard serve` runs it with a queue: its outbox round (the safety net) runs once a
minute, so a repair within seconds of the claim can only have come through the queue. The sandbox's
orgs call no gate here; they post the asynchronous event, as Dataverse does after the save.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from functions.local_host import SAFETY_NET_S, create_local_app
from sandbox.server import running
from shared import bootstrap
from shared.config.settings import Settings
from shared.domain.model import CaseQuery, CaseState
from shared.ledger.sqlite import SqliteLedger
from tests.factories import AIKO, BLOCKING_POLICY, registry
from tests.integration.s1_world import World, na_owns_aiko
from tests.serving import serve

pytestmark = pytest.mark.sandbox


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    events = tmp_path / "decisions.jsonl"
    with running(mailboxes=20, overlap=0.3, loopback_webhooks=True) as sandbox_url:
        settings = Settings(
            ledger=f"sqlite:///{tmp_path}/l.db",
            orgs="-",
            policy=str(tmp_path / "none"),
            admin_token="t",
            bus=f"sqlite:///{tmp_path}/bus.db",
            decision_events=f"file:{events}",
        )
        c = bootstrap.build(settings, ledger=SqliteLedger(tmp_path / "l.db"), orgs=registry(sandbox_url))
        c.service.save_policy(BLOCKING_POLICY, actor="test")
        bootstrap.install(c)
        with (
            serve(create_local_app(c, background=True)) as orgguard_url,
            httpx.Client(base_url=sandbox_url, timeout=30) as sandbox,
        ):
            asyncio.run(c.register(c.orgs.names, orgguard_url))
            yield World(sandbox, sandbox_url, orgguard_url, c)
        bootstrap.install(None)
        c.close()


def until(check, timeout: float) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - start


def test_an_after_the_fact_claim_is_repaired_within_seconds_through_the_queue(world: World, tmp_path: Path):
    na_owns_aiko(world)
    world.settings(gate=False, events=True, semantics="overwrite")
    start = time.monotonic()
    assert world.test_and_enable("contoso-jp").status_code == 204  # no gate: JP takes the mailbox over...
    took = until(lambda: world.exchange() == "contoso-na", timeout=20)  # ...and OrgGuard gives it back
    assert time.monotonic() - start < SAFETY_NET_S / 2  # long before the safety net's first round
    assert world.aiko("contoso-jp")["actdeliverymethod"] == 2
    until(lambda: all(c.state is CaseState.APPLIED for c in world.c.ledger.cases(CaseQuery()).items), timeout=10)
    assert took < 15

    # and the decision went out as an event for other systems
    lines = (tmp_path / "decisions.jsonl").read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in lines]
    blocked = [e for e in events if e["data"]["effect"] == "block"]
    assert blocked and blocked[0]["type"] == "com.orgguard.decision.v1" and blocked[0]["specversion"] == "1.0"
    assert blocked[0]["data"]["mailbox"] == AIKO.address and blocked[0]["data"]["claimant"] == "contoso-jp"
    assert world.c.bus.work is not None and world.c.bus.work.dead_letters() == []

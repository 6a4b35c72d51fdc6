"""Dead letters on the page: the overview counts them, an Admin reads why each was dead-lettered, replays one
(the local host's consumer takes it at once) and purges another after saying so twice."""

from __future__ import annotations

import json
import re

import pytest

from shared.bus.port import Received
from tests.browser.accessibility import check_accessible
from tests.browser.steps import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.sandbox]


def test_an_admin_reads_replays_and_purges_dead_letters(open_page, make_host, shoot):
    host = make_host(bus=True)
    (address,) = host.contest(1)
    (held,) = host.held()
    c = host.c
    assert c.bus.work is not None and c.bus.inbound is not None
    c.bus.work.reject(
        Received(json.dumps({"case": held.id}).encode(), "w-1", "mbx-1", {"kind": "orgguard.work"}, delivery_count=3),
        "MaxDeliveryCountExceeded",
        "delivered 3 time(s) without being completed (the ledger was down)",
    )
    c.bus.inbound.reject(
        Received(b"{oops", "dv-1", None, {}, delivery_count=1), "malformed", "the body is not valid JSON"
    )
    (work,) = c.bus.work.dead_letters()
    (inbound,) = c.bus.inbound.dead_letters()

    page = open_page()
    sign_in(page, host.url)
    count = page.locator("#dead-count")
    count.wait_for()
    assert "2 dead letters (work: 1, dataverse: 1)" in count.inner_text()
    shoot(page, "overview")
    count.get_by_role("link").click()
    page.get_by_role("heading", name="Dead letters", level=1).wait_for()  # the overview has an h2 of that name
    rows = page.locator("table.cards tbody tr")
    assert rows.count() == 2
    text = page.locator("main").inner_text()
    assert "MaxDeliveryCountExceeded" in text and "the body is not valid JSON" in text
    assert held.id[:8] in text  # the work names its case, linked
    assert check_accessible(page) == []
    shoot(page, "list")

    page.get_by_role("button", name=f"Replay {work.id}").click()
    page.get_by_role("button", name=f"Replay {work.id}").wait_for(state="detached")
    page.locator("#status").get_by_text(f"{work.id} is back in the work queue").wait_for()
    host.wait(lambda: c.bus.work.counts().active == 0, "the consumer to take the replayed work")
    assert c.bus.work.dead_letters() == []  # its case exists now: carried out, not dead-lettered again

    purge = page.get_by_role("button", name=f"Purge {inbound.id}")
    purge.click()
    assert re.search("Purge for good", purge.inner_text())  # once more, it cannot be undone
    assert c.bus.inbound.dead_letters() != []
    purge.click()
    page.get_by_text("No dead letters.").wait_for()
    page.locator("#status").get_by_text(f"{inbound.id} was purged").wait_for()
    shoot(page, "empty")
    page.goto(host.url + "/#/")
    page.get_by_text("No dead letters.").wait_for()
    assert address  # the held case's mailbox is still held: nothing here touched it

"""Lost answers never duplicate an org write: a real proxy between the executor and the sandbox.

The proxy forwards the executor's write, lets the org commit it, and hangs up
before the answer gets back (or holds the write and delivers it late). Each
row must still be written once, each promote must schedule Test & Enable
once, and every action must end applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest

from shared.domain.model import ActionStatus, CaseQuery, MailboxKey
from shared.service.orgguard import OrgGuard
from tests.integration.test_executor_sandbox import (
    API,
    assert_all_applied_once,
    configure,
    contested_world,
    drain,
    patches,
    rows,
)
from tests.proxy import HttpProxy, proxy_to

pytestmark = pytest.mark.sandbox


def writes(org: str, *, batch: bool):
    """A proxy rule: the executor's PATCH (alone, or in a $batch) to ``org``, not its reads."""

    def match(request: str) -> bool:
        line = request.split("\r\n", 1)[0]
        if f"/orgs/{org}/" not in line:
            return False
        if batch:
            return line.startswith("POST ") and "$batch" in line and "\r\nPATCH " in request
        return line.startswith("PATCH ")

    return match


def enables_run(base: str, org: str, ids: list[str]) -> dict[str, int]:
    """How many times Test & Enable ran on each row (the org's own counter)."""
    with httpx.Client(headers={"Authorization": "Bearer reader"}, timeout=30) as client:
        return {
            mid: client.get(f"{base}/orgs/{org}{API}/mailboxes({mid})?$select=testemailconfigurationretrycount").json()[
                "testemailconfigurationretrycount"
            ]
            for mid in ids
        }


@dataclass
class Wire:
    """The sandbox at ``base``, and an OrgGuard whose executor reaches it only through ``proxy``."""

    base: str
    proxy: HttpProxy
    service: OrgGuard
    keys: list[MailboxKey]
    jp_ids: list[str]  # JP's rows for ``keys``, which OrgGuard promotes
    tested_before: dict[str, int]


@contextmanager
def through_a_proxy(tmp_path, count: int) -> Iterator[Wire]:
    """``count`` mailboxes moving from NA to JP; the orgs send no gate calls or events, so only the executor writes."""
    from sandbox.server import running

    with running(mailboxes=200, overlap=0.8) as base, proxy_to(base) as (proxy, via_proxy):
        service, keys = contested_world(tmp_path, via_proxy, count)
        jp_rows = rows(base, "contoso-jp")
        jp_ids = [jp_rows[key]["mailboxid"] for key in keys]
        tested_before = enables_run(base, "contoso-jp", jp_ids)
        configure(base, {"gate": False, "events": False})
        with httpx.Client(base_url=base) as control:
            control.delete("/_sandbox/requests")
        yield Wire(base, proxy, service, keys, jp_ids, tested_before)


def assert_each_applied_and_tested_once(w: Wire) -> None:
    assert_all_applied_once(w.service, w.base, w.keys)
    tested_after = enables_run(w.base, "contoso-jp", w.jp_ids)
    assert all(tested_after[mid] == w.tested_before[mid] + 1 for mid in w.jp_ids), "Test & Enable ran twice"


@pytest.mark.parametrize("count", [1, 12], ids=["one-patch-per-org", "batch-per-org"])
def test_answers_lost_after_the_org_committed_do_not_repeat_writes(tmp_path, count: int):
    with through_a_proxy(tmp_path, count) as w:
        w.proxy.drop_answers(writes("contoso-na", batch=count > 1))  # the demotes land; their answer is lost
        w.proxy.drop_answers(writes("contoso-jp", batch=count > 1))  # so do the promotes
        drain(w.service, timeout=5)
        assert len(w.proxy.dropped) == 2, w.proxy.dropped
        assert_each_applied_and_tested_once(w)
        assert patches(w.base) == 2 * count, "a row was written twice"


@pytest.mark.parametrize("count", [1, 6], ids=["one-patch", "batch"])
def test_a_promote_that_arrives_late_cannot_schedule_a_second_test(tmp_path, count: int):
    """The first promote is held on the wire, the executor moves on and sends it again; then the first arrives."""
    with through_a_proxy(tmp_path, count) as w:
        w.proxy.hold(writes("contoso-jp", batch=count > 1))
        drain(w.service, timeout=0.5)  # the held promote times out; read back: not there; sent again
        assert w.proxy._held, "the proxy held nothing"
        w.proxy.deliver_held()  # the first copy reaches the org after all
        assert_each_applied_and_tested_once(w)


def test_an_unreadable_org_keeps_the_baseline_for_the_next_attempt(tmp_path):
    """The answer is lost and the read-back fails too: the next attempt reads back before sending again."""
    with through_a_proxy(tmp_path, 1) as w:
        patched = []

        def promote_then_reads(request: str) -> bool:
            line = request.split("\r\n", 1)[0]
            if "/orgs/contoso-jp/" not in line:
                return False
            if line.startswith("PATCH "):
                patched.append(line)
                return True
            return bool(patched) and line.startswith("GET ")

        w.proxy.drop_answers(promote_then_reads, count=4)  # the promote's answer, then every read-back try
        drain(w.service, timeout=5, rounds=1)
        cases = w.service.ledger.cases(CaseQuery()).items
        promote = next(a for c in cases for a in c.actions if a.org == "contoso-jp")
        assert promote.status is ActionStatus.PENDING and "answer lost" in (promote.last_error or "")
        assert "row before: etag=" in (promote.last_error or "")
        drain(w.service, timeout=5)
        assert_each_applied_and_tested_once(w)

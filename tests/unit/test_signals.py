"""The held-cases line the housekeeping timer writes for the held-cases alert."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from shared.domain.model import utcnow
from shared.service.signals import held_cases, report_held
from tests.factories import BLOCKING_POLICY, HOLDING_POLICY, MailboxKey, claim, container


def test_nothing_is_written_when_no_case_waits(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    c = container(tmp_path, BLOCKING_POLICY)
    c.service.handle_claim(claim("contoso-na", op="1"))
    c.service.handle_claim(claim("contoso-jp", op="2"))  # blocked, not held
    with caplog.at_level(logging.INFO, logger="orgguard.signals"):
        assert report_held(c.service).count == 0
    assert not [r for r in caplog.records if r.name == "orgguard.signals"]


def test_counts_every_held_case_across_pages_and_ages_the_oldest(tmp_path) -> None:
    c = container(tmp_path, HOLDING_POLICY)
    start = utcnow()
    for i in range(205):  # more than one page of 200
        c.service.clock = lambda i=i: start + timedelta(minutes=i)
        key = MailboxKey(f"user{i}@contoso.com")
        c.service.handle_claim(claim("contoso-na", key=key, op=f"na-{i}"))
        c.service.handle_claim(claim("contoso-jp", key=key, op=f"jp-{i}"))
    held = held_cases(c.service, start + timedelta(hours=10))
    assert held.count == 205
    assert held.oldest_hours == pytest.approx(10.0)


def test_a_decided_case_no_longer_counts(tmp_path) -> None:
    c = container(tmp_path, HOLDING_POLICY)
    c.service.handle_claim(claim("contoso-na", op="1"))
    held = c.service.handle_claim(claim("contoso-jp", op="2"))
    assert held.case_id
    c.service.deny(held.case_id, actor="approver", reason="NA stays")
    assert held_cases(c.service, utcnow()).count == 0

"""Case-list cursors are tamper-evident on every ledger, and shared by every instance of one deployment."""

from __future__ import annotations

import base64
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.model import CaseQuery, DomainError, Effect
from shared.ledger.port import Ledger
from tests.contract.conftest import Clock, contested, mailbox


def pages(ledger: Ledger, n: int = 4) -> str:
    clock = Clock()
    for i in range(n):
        contested(ledger, clock, Effect.BLOCK, key=mailbox(i))
    cursor = ledger.cases(CaseQuery(limit=1)).next
    assert cursor
    return cursor


def refused(ledger: Ledger, cursor: str) -> bool:
    try:
        ledger.cases(CaseQuery(limit=1, cursor=cursor))
    except DomainError as exc:
        return exc.field == "cursor"
    return False


def test_an_edited_cursor_is_refused_and_the_real_one_still_pages(ledger: Ledger) -> None:
    cursor = pages(ledger)
    position, _, tag = cursor.rpartition(".")
    raw = base64.urlsafe_b64decode(position + "=" * (-len(position) % 4))
    forged = base64.urlsafe_b64encode(raw.replace(b"9", b"8", 1) if b"9" in raw else raw + b"0").decode().rstrip("=")
    for bad in (f"{forged}.{tag}", position, f"{position}.", f"{position}.{tag[:-1]}", f"{tag}.{position}"):
        assert refused(ledger, bad), bad
    assert len(ledger.cases(CaseQuery(limit=1, cursor=cursor)).items) == 1


def test_another_instance_of_the_same_ledger_takes_the_cursor(ledger: Ledger, instances: Callable[[], Ledger]) -> None:
    cursor = pages(ledger)
    second = instances()
    assert [c.id for c in second.cases(CaseQuery(limit=1, cursor=cursor)).items] == [
        c.id for c in ledger.cases(CaseQuery(limit=1, cursor=cursor)).items
    ]


def test_a_cursor_from_another_deployment_is_refused(ledger: Ledger, tmp_path) -> None:
    from shared.ledger.sqlite import SqliteLedger

    elsewhere = SqliteLedger(tmp_path / "elsewhere.db")
    try:
        foreign = pages(elsewhere)
    finally:
        elsewhere.close()
    pages(ledger)
    assert refused(ledger, foreign)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edit=st.text(min_size=1, max_size=80))
def test_no_made_up_cursor_gets_a_page(ledger: Ledger, edit: str) -> None:
    if not ledger.cases(CaseQuery(limit=1)).next:
        pages(ledger)
    cursor = ledger.cases(CaseQuery(limit=1)).next
    assert cursor
    if edit != cursor:
        assert refused(ledger, edit) and refused(ledger, cursor + edit)

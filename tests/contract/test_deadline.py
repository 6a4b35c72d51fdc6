"""A decision that misses its deadline is never recorded, on every ledger; a slow account is cut off in time."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from shared.ledger.deadline import Deadline, DeadlineExceeded, bound
from shared.ledger.port import Ledger, LedgerError
from shared.ledger.tables import TableLedger
from tests.azurite import connection_string
from tests.contract.conftest import T0, claim, decide, event_key, mailbox
from tests.proxy import proxy_to


def nothing_recorded(ledger: Ledger, op: str, audit_entries: int) -> None:
    assert ledger.event(event_key("contoso-na", op)) is None
    assert ledger.mailbox(mailbox(1)).version == 0
    assert ledger.verify_audit().entries == audit_entries


def test_a_commit_after_its_deadline_records_nothing(ledger: Ledger) -> None:
    change = decide(ledger.mailbox(mailbox(1)), "contoso-na", "na:late", T0)
    entries = ledger.verify_audit().entries
    with bound(Deadline(0.2, reserve=0.0)):
        time.sleep(0.25)  # the decision took too long
        with pytest.raises(DeadlineExceeded):
            ledger.commit(change)
    nothing_recorded(ledger, "na:late", entries)


def test_an_abandoned_decision_is_never_committed(ledger: Ledger) -> None:
    change = decide(ledger.mailbox(mailbox(1)), "contoso-na", "na:abandoned", T0)
    entries = ledger.verify_audit().entries
    answered = Deadline(30)
    assert answered.abandon()  # the caller was already told "could not decide"
    with bound(answered), pytest.raises(DeadlineExceeded):
        ledger.commit(change)
    nothing_recorded(ledger, "na:abandoned", entries)


def test_a_commit_in_time_is_recorded_and_the_answer_waits_for_it(ledger: Ledger) -> None:
    change = decide(ledger.mailbox(mailbox(1)), "contoso-na", "na:in-time", T0)
    work = Deadline(30)
    with bound(work):
        ledger.commit(change)
    assert not work.abandon(), "after a commit the answering side must deliver it, not give up"
    assert ledger.event(event_key("contoso-na", "na:in-time")) is not None


@pytest.mark.azurite
def test_a_stalled_table_account_is_cut_off_at_the_deadline(azurite: str) -> None:
    port = re.search(r"TableEndpoint=http://127\.0\.0\.1:(\d+)", azurite).group(1)  # type: ignore[union-attr]
    with proxy_to(f"http://127.0.0.1:{port}") as (proxy, _):
        ledger = TableLedger.from_connection_string(connection_string(proxy.port), prefix=f"d{uuid.uuid4().hex[:12]}")
        try:
            claim(ledger, mailbox(2), "contoso-na", "na:before", T0)  # works through the proxy
            entries = ledger.verify_audit().entries
            proxy.stall()  # before the decision's reads: nothing is claimed, nothing can land
            started = time.monotonic()
            with bound(Deadline(1.0)), pytest.raises(DeadlineExceeded):
                ledger.commit(decide(ledger.mailbox(mailbox(1)), "contoso-na", "na:stalled", T0))
            assert time.monotonic() - started < 1.5
            proxy.resume()
            nothing_recorded(ledger, "na:stalled", entries)
            change = decide(ledger.mailbox(mailbox(1)), "contoso-na", "na:claimed", T0)
            proxy.stall()  # after the reads: the commit is claimed, then the account stops answering
            started = time.monotonic()
            with bound(Deadline(1.0)), pytest.raises(LedgerError, match="may or may not be recorded"):
                ledger.commit(change)
            assert time.monotonic() - started < 4.0  # ended, not retried for minutes
            proxy.resume()
        finally:
            ledger.drop_tables()
            ledger.close()


def is_transaction(line: str) -> bool:
    return line.startswith("POST ") and "$batch" in line


@pytest.fixture(params=[False, True], ids=["new-mailbox", "owned-mailbox"])
def proxied(azurite: str, request: pytest.FixtureRequest):
    """A Table ledger whose every call crosses a proxy that can lose or delay them; mailbox 1 new or owned."""
    port = re.search(r"TableEndpoint=http://127\.0\.0\.1:(\d+)", azurite).group(1)  # type: ignore[union-attr]
    with proxy_to(f"http://127.0.0.1:{port}") as (proxy, _):
        ledger = TableLedger.from_connection_string(connection_string(proxy.port), prefix=f"d{uuid.uuid4().hex[:12]}")
        try:
            if request.param:
                claim(ledger, mailbox(1), "contoso-na", "na:owner", T0)
            yield proxy, ledger
        finally:
            ledger.drop_tables()
            ledger.close()


@pytest.mark.azurite
def test_a_transaction_whose_answer_is_lost_is_recorded_once(proxied) -> None:  # type: ignore[no-untyped-def]
    proxy, ledger = proxied
    version = ledger.mailbox(mailbox(1)).version
    proxy.drop_answers(is_transaction)
    change, _ = claim(ledger, mailbox(1), "contoso-jp", "jp:lost-answer", T0)
    assert proxy.dropped, "the proxy did not lose the answer"
    assert change is not None and ledger.event(event_key("contoso-jp", "jp:lost-answer")) is not None
    assert ledger.mailbox(mailbox(1)).version == version + 1  # once, not twice
    assert ledger.verify_audit().ok


@pytest.mark.azurite
def test_a_transaction_delivered_after_its_deadline_cannot_land(proxied) -> None:  # type: ignore[no-untyped-def]
    proxy, ledger = proxied
    view = ledger.mailbox(mailbox(1))
    change = decide(view, "contoso-jp", "jp:late", T0)
    entries = ledger.verify_audit().entries
    proxy.hold(is_transaction)
    with bound(Deadline(1.0)), pytest.raises(DeadlineExceeded):
        ledger.commit(change)
    assert len(proxy.deliver_held()) == 1  # the network delivers the transaction after all
    assert ledger.event(event_key("contoso-jp", "jp:late")) is None
    assert ledger.mailbox(mailbox(1)).version == view.version
    assert ledger.verify_audit().entries == entries

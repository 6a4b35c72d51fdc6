"""What only the Table Storage ledger has: keys, limits, URLs, credentials, recovery, Cosmos DB's unsorted reads."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.server import free_port
from shared.domain.model import (
    ActionStatus,
    AuditEvent,
    Case,
    CaseQuery,
    CaseState,
    Change,
    Effect,
    HistoryEntry,
    MailboxKey,
)
from shared.ledger import open_ledger
from shared.ledger.port import LedgerError
from shared.ledger.tables import TableLedger, account, check_entity, escape, get_text, parse_target, put_text
from tests.azurite import connection_string
from tests.contract.conftest import T0, Clock, claim, contested, decide, event_key, mailbox

pytestmark = pytest.mark.azurite
LATER = T0 + timedelta(days=1)


@pytest.fixture
def make(azurite: str) -> Iterator[Callable[..., TableLedger]]:
    """Instances of one fresh Table Storage ledger (same prefix), with the options a test needs."""
    prefix, opened = f"x{uuid.uuid4().hex[:12]}", []

    def build(**options: Any) -> TableLedger:
        opened.append(TableLedger.from_connection_string(azurite, prefix=options.pop("prefix", prefix), **options))
        return opened[-1]

    yield build
    for ledger in opened:
        ledger.drop_tables()
        ledger.close()


# --- keys and limits ---------------------------------------------------------------------


@given(st.text(max_size=300))
def test_any_text_escapes_to_a_valid_key(value: str) -> None:
    key = escape(value)
    check_entity({"PartitionKey": key, "RowKey": f"case|{key}|action|{key}"})
    assert not set(key) & set("/\\#?|~'%")


@given(st.lists(st.text(max_size=80), min_size=2, max_size=20, unique=True))
def test_different_values_never_share_a_key(values: list[str]) -> None:
    assert len({escape(v) for v in values}) == len(values)


@settings(max_examples=30)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=70_000))
def test_long_text_splits_into_properties_table_storage_accepts_and_joins_back(text: str) -> None:
    entity = put_text({"PartitionKey": "p", "RowKey": "r"}, "Doc", text)
    check_entity(entity)
    assert get_text(entity, "Doc") == text


@pytest.mark.parametrize(
    ("entity", "message"),
    [
        ({"PartitionKey": "a/b", "RowKey": "r"}, "refuses in keys"),
        ({"PartitionKey": "p", "RowKey": "tab\there"}, "refuses in keys"),
        ({"PartitionKey": "p" * 256, "RowKey": "r"}, "longer than 255 bytes"),
        ({"PartitionKey": "p", "RowKey": "r", "Doc": "x" * 40_000}, "64 KiB"),
        ({"PartitionKey": "p", "RowKey": "r", **{f"P{i}": i for i in range(253)}}, "252"),
        ({"PartitionKey": "p", "RowKey": "r", **{f"D{i}": "x" * 30_000 for i in range(20)}}, "1 MiB"),
    ],
    ids=["slash", "control", "long-key", "big-property", "many-properties", "big-entity"],
)
def test_limits_azurite_does_not_enforce_are_checked_before_sending(entity: dict[str, Any], message: str) -> None:
    with pytest.raises(LedgerError, match=message):
        check_entity(entity)


def test_a_change_too_large_for_one_transaction_is_refused_whole(make: Callable[..., TableLedger]) -> None:
    ledger, clock, key = make(), Clock(), mailbox(1)
    claim(ledger, key, "contoso-na", "na:1", clock())
    before = (ledger.mailbox(key), ledger.verify_audit().entries)
    # Shapes production does not write, on purpose: what a transaction cannot hold must be refused whole.
    huge = AuditEvent("x", key.address, "y", {"blob": "z" * 1_200_000}, clock())
    with pytest.raises(LedgerError, match="1 MiB"):
        ledger.commit(Change(key, 1, audit=(huge,)))
    owned = ledger.mailbox(key)  # 40 claims decided at once, 2 actions each: over 100 writes
    many = tuple(decide(owned, "contoso-jp", f"jp:{i}", clock()).cases[0] for i in range(40))
    with pytest.raises(LedgerError, match="at most 100"):
        ledger.commit(Change(key, 1, cases=many))
    one_note = replace(many[0], history=(HistoryEntry(clock(), CaseState.HELD, "x", "n" * 500_000),))
    with pytest.raises(LedgerError, match="even with its history trimmed"):
        ledger.commit(Change(key, 1, cases=(one_note,)))
    assert (ledger.mailbox(key), ledger.verify_audit().entries) == before
    assert ledger.cases(CaseQuery(mailbox=key)).items == ()


def test_a_long_error_text_is_kept_to_its_first_32000_characters(make: Callable[..., TableLedger]) -> None:
    ledger = make()
    case = contested(ledger, Clock(), Effect.BLOCK)
    failed = ledger.record_attempt(case.actions[0].id, ActionStatus.FAILED, "e" * 100_000)
    assert failed.last_error is not None and len(failed.last_error) <= 32_000
    assert failed.last_error.startswith("e" * 31_000) and failed.last_error.endswith("more characters not kept]")
    assert ledger.case(case.id).actions[0] == failed  # type: ignore[union-attr]
    assert ledger.verify_audit().ok


# --- URLs, prefixes, credentials -------------------------------------------------------------


def test_ledger_urls_name_a_connection_string_or_an_account_and_a_prefix() -> None:
    dev = parse_target("tables:UseDevelopmentStorage=true")
    assert (dev.connection_string, dev.account_url, dev.prefix) == ("UseDevelopmentStorage=true", None, "orgguard")
    keyed = parse_target("tables:DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k==;TablePrefix=prod;")
    assert (
        keyed.connection_string == "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k=="
        and keyed.prefix == "prod"
    )
    url = parse_target("tables:https://acct.table.core.windows.net/?prefix=staging")
    assert (url.account_url, url.prefix) == ("https://acct.table.core.windows.net", "staging")
    for bad in ("tables:", "tables:  ", "tables:TablePrefix=x", "tables:https://"):
        with pytest.raises(LedgerError):
            parse_target(bad)


def test_an_account_url_uses_the_managed_identity_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client id comes from Settings (AZURE_CLIENT_ID) through bootstrap, never from the environment here."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    monkeypatch.setattr(account, "_credentials", {})
    monkeypatch.setenv("AZURE_CLIENT_ID", "not-read-here")
    identity = "11111111-2222-3333-4444-555555555555"
    ledger = open_ledger("tables:https://acct.table.core.windows.net?prefix=prod", client_id=identity)  # nothing sent
    assert isinstance(ledger, TableLedger) and ledger.prefix == "prod"
    assert isinstance(account.default_credential(identity), ManagedIdentityCredential)
    assert account.default_credential(identity) is account.default_credential(identity)  # one per identity
    assert isinstance(account.default_credential(None), DefaultAzureCredential)
    cosmos = TableLedger.from_account_url("https://acct.table.cosmos.azure.com", credential=FakeCredential())
    assert cosmos._sorted is False and ledger._sorted is True
    with pytest.raises(LedgerError, match="https"):
        TableLedger.from_account_url("http://127.0.0.1:10002/devstoreaccount1")
    with pytest.raises(LedgerError, match="prefix"):
        TableLedger.from_connection_string("UseDevelopmentStorage=true", prefix="no-dashes")


class FakeCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise AssertionError("no token is asked for before the first request")


def test_prefixes_keep_environments_apart_in_one_account(make: Callable[..., TableLedger]) -> None:
    prod, test = make(prefix=f"p{uuid.uuid4().hex[:8]}"), make(prefix=f"t{uuid.uuid4().hex[:8]}")
    claim(prod, mailbox(1), "contoso-na", "na:1", T0)
    prod.save_policy("version: 1\n", "admin")
    assert test.mailbox(mailbox(1)).version == 0 and test.policy() is None and test.verify_audit().entries == 0


def test_unreachable_storage_is_a_ledger_error_not_a_crash() -> None:
    ledger = TableLedger.from_connection_string(connection_string(free_port()), prefix="down",
                                                client_options={"retry_total": 0})  # fmt: skip
    with pytest.raises(LedgerError, match="could not"):
        ledger.ping()
    with pytest.raises(LedgerError):
        ledger.mailbox(mailbox(1))
    ledger.close()


# --- an instance that dies between its transaction and its roll-forward -----------------------


def decided_then_crashed(dying: TableLedger, monkeypatch: pytest.MonkeyPatch, key: MailboxKey, effect: Effect,
                         clock: Clock) -> Case:  # fmt: skip
    """A contested claim ``dying`` commits and then dies before rolling its journal forward; the case it opened."""
    claim(dying, key, "contoso-na", "na:1", clock())
    monkeypatch.setattr(dying, "_roll_forward", lambda journal: False)
    change, _ = claim(dying, key, "contoso-jp", "jp:1", clock(), effect)
    assert change is not None
    return change.cases[0]


def test_work_a_dead_instance_left_is_finished_by_the_sweep(make: Callable[..., TableLedger],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    case = decided_then_crashed(make(), monkeypatch, mailbox(1), Effect.BLOCK, Clock())
    patient = make()  # a live instance that does not take over young work, but reads its claims at once
    assert patient.mailbox(mailbox(1)).version == 2  # the decision itself is recorded
    assert [c.org for c in patient.claims(mailbox(1))] == ["contoso-jp", "contoso-na"]
    sweeper = make(takeover_after=timedelta(0))
    assert [a.id for a in sweeper.pending_actions(now=LATER)] == [a.id for a in case.actions]
    assert sweeper.case(case.id) == case and sweeper.event(event_key("contoso-jp", "jp:1")) is not None
    assert sweeper.audit_entries()[-1].event.actor == "contoso-jp"
    assert sweeper.verify_audit().ok and sweeper.verify_audit().entries == 2
    assert list(sweeper.table("mailboxes").query_entities("PartitionKey eq '~journals'")) == []
    assert sweeper.recover() == 0


def test_the_next_writer_finishes_a_dead_instances_work(make: Callable[..., TableLedger],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    clock = Clock()
    case = decided_then_crashed(make(), monkeypatch, mailbox(2), Effect.OVERRIDE, clock)
    next_writer = make(takeover_after=timedelta(0))
    claim(next_writer, mailbox(2), "contoso-eu", "eu:1", clock(), Effect.BLOCK)
    assert next_writer.case(case.id) is not None
    assert [c.org for c in next_writer.claims(mailbox(2))] == ["contoso-eu", "contoso-jp", "contoso-na"]
    assert next_writer.verify_audit().entries == 3 and next_writer.verify_audit().ok


def test_a_deleted_audit_head_is_reported(make: Callable[..., TableLedger]) -> None:
    ledger = make()
    ledger.append_audit(AuditEvent("a", "b", "c"))
    ledger.table("audit").delete_entity("chain", "head")
    report = ledger.verify_audit()
    assert not report.ok and report.reason == "the audit head is missing"
    with pytest.raises(LedgerError, match="beyond its head"):
        make().append_audit(AuditEvent("d", "e", "f"))


# --- Cosmos DB for Table returns query results unsorted -----------------------------------------


def test_reads_that_sort_themselves_give_the_same_answers(make: Callable[..., TableLedger]) -> None:
    ledger, unsorted, clock = make(), make(sorted_results=False), Clock()
    made = [contested(ledger, clock, Effect.HOLD if i % 2 else Effect.BLOCK, key=mailbox(i % 2)).id for i in range(5)]
    for i in range(3):
        ledger.append_audit(AuditEvent("x", f"s{i}", "t"))
        ledger.save_policy(f"version: {i + 2}\n", "admin")
    for reader in (ledger, unsorted):
        first = reader.cases(CaseQuery(limit=2))
        rest = reader.cases(CaseQuery(limit=10, cursor=first.next))
        assert [c.id for c in first.items + rest.items] == made[::-1]
        assert [c.event_key for c in reader.claims(mailbox(0), limit=2)] == [
            c.event_key for c in ledger.claims(mailbox(0), limit=2)
        ]
        assert [e.seq for e in reader.audit_entries(after=3, limit=4)] == [4, 5, 6, 7]
        assert reader.policy() is not None and reader.policy().version == 3  # type: ignore[union-attr]
        assert reader.verify_audit().ok

"""Mailbox-partition rows: records as entities and back, a case's history trimmed and an error clipped to fit."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from shared.domain.model import Action, Case, ClaimKind, ClaimRecord, Effect, EventOutcome, MailboxKey, Origin
from shared.ledger import codec
from shared.ledger.port import LedgerError
from shared.ledger.tables.entities import Entity, opt, put_text
from shared.ledger.tables.keys import ROOT, action_rk, case_rk

CASE_DOC_CHARS: Final = 400_000  # a case document (ASCII JSON) beyond this has its history trimmed
ERROR_CHARS: Final = 32_000

_TRIM_NOTE = re.compile(r"^(\d+) older history entries were trimmed")


def fit_case(case: Case) -> str:
    """The case as stored: JSON, with its history trimmed (and a note) if it would not fit."""
    doc = codec.case_doc(case)
    text = json.dumps(doc)
    if len(text) <= CASE_DOC_CHARS:
        return text
    history: list[dict[str, Any]] = doc["history"]
    trimmed = 0
    if len(history) > 1 and (m := _TRIM_NOTE.match(str(history[1].get("note", "")))):
        trimmed = int(m.group(1))
        history = [history[0], *history[2:]]
    base = len(json.dumps({**doc, "history": history[:1]})) + 400
    keep: list[dict[str, Any]] = []
    for entry in reversed(history[1:]):
        cost = len(json.dumps(entry)) + 2
        if base + cost > CASE_DOC_CHARS:
            break
        base += cost
        keep.append(entry)
    keep.reverse()
    dropped = history[1 : len(history) - len(keep)]
    if dropped:
        note = {
            "at": dropped[-1]["at"],
            "state": dropped[-1]["state"],
            "actor": "orgguard",
            "note": f"{trimmed + len(dropped)} older history entries were trimmed to keep the case within "
            "Table Storage's 1 MiB entity limit",
        }
        doc["history"] = [history[0], note, *keep]
    text = json.dumps(doc)
    if len(text) > CASE_DOC_CHARS:
        raise LedgerError(
            f"case {case.id} takes {len(text)} characters even with its history trimmed; "
            f"a Table Storage entity holds at most 1 MiB"
        )
    return text


def clip_error(error: str | None) -> str | None:
    """At most ``ERROR_CHARS`` characters, saying how many were dropped (clipping twice changes nothing)."""
    if error is None or len(error) <= ERROR_CHARS:
        return error
    keep = ERROR_CHARS - 80
    return error[:keep] + f" ... [{len(error) - keep} more characters not kept]"


def root_entity(pk: str, address: str, version: int, seq: int, ownership: str | None) -> Entity:
    """The mailbox's root row: Version counts decisions, Seq every transaction on the partition."""
    return {"PartitionKey": pk, "RowKey": ROOT, "Address": address, "Version": version, "Seq": seq,
            "Ownership": ownership}  # fmt: skip


def action_entity(pk: str, action: Action, sort: str) -> Entity:
    action = replace(action, last_error=clip_error(action.last_error))
    entity: Entity = {"PartitionKey": pk, "RowKey": action_rk(action.case_id, action.id), "ActionId": action.id}
    entity |= {"CaseId": action.case_id, "Status": action.status.value, "Sort": sort}
    return put_text(entity, "Doc", json.dumps(codec.action_doc(action)))


def case_entity(pk: str, case: Case, sort: str, action_ids: list[str]) -> Entity:
    entity: Entity = {"PartitionKey": pk, "RowKey": case_rk(case.id), "CaseId": case.id, "Address": case.key.address}
    entity |= {"State": case.state.value, "Owner": case.owner, "Claimant": case.claimant, "Sort": sort}
    entity |= {"ActionIds": json.dumps(action_ids)}
    return put_text(entity, "Doc", fit_case(case))


def outcome_from(row: Mapping[str, Any]) -> EventOutcome:
    return EventOutcome(row["EventKey"], Effect(row["Effect"]), opt(row.get("CaseId")), codec.must_ts(row["At"]))


def claim_from(address: str, row: Mapping[str, Any]) -> ClaimRecord:
    return ClaimRecord(
        MailboxKey(address),
        row["Org"],
        ClaimKind(row["Kind"]),
        Origin(row["Origin"]),
        row["EventKey"],
        Effect(row["Effect"]),
        opt(row.get("CaseId")),
        codec.must_ts(row["At"]),
    )

"""The Update pipeline of a mailbox: synchronous steps, the save, Test & Enable, asynchronous steps.

This is the part of Dataverse OrgGuard lives inside. A synchronous pre-operation step whose
filtering attributes are in the update is called first; a non-2xx answer (or no answer)
cancels the save. Then the row is written; if the update scheduled Test & Enable, Exchange's
OrgID semantics run at once (deterministic, where the real service runs them minutes later);
and the asynchronous steps get the context with pre and post images once the transaction
commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sandbox import context as ctx
from sandbox.model import MAILBOX, Mailbox, Record, attribute_name, mailbox_key
from sandbox.odata import PLUGIN_FAILED, ODataError
from sandbox.state import OrgState, SandboxState, UnitOfWork, alert, now_iso, stable_id
from sandbox.webhooks import Poster

UPDATE = stable_id("sdkmessage", "Update")
UPDATE_MAILBOX = stable_id("sdkmessagefilter", "Update", "mailbox")


@dataclass(frozen=True)
class Step:
    row: Record
    endpoint: Record
    stage: int
    mode: int
    attributes: frozenset[str] | None  # None: every attribute
    pre: list[tuple[str, list[str] | None]]  # (entity alias, columns or None for all)
    post: list[tuple[str, list[str] | None]]

    def wants(self, changed: set[str]) -> bool:
        return self.attributes is None or bool(self.attributes & changed)


def _columns(attributes: object) -> list[str] | None:
    names = [name.strip().lower() for name in str(attributes or "").split(",") if name.strip()]
    if not names:
        return None
    by_attribute = {attribute_name(column): column for column in MAILBOX.columns}
    return [by_attribute[name] for name in names if name in by_attribute]


def steps(org: OrgState) -> list[Step]:
    """The enabled steps on Update of mailbox whose handler is a service endpoint, in stage and rank order."""
    endpoints = org.tables["serviceendpoints"]
    images = org.tables["sdkmessageprocessingstepimages"].rows.values()
    found = []
    for row in org.tables["sdkmessageprocessingsteps"].rows.values():
        if row.get("_sdkmessageid_value") != UPDATE or row.get("statecode") not in (0, None):
            continue
        if row.get("_sdkmessagefilterid_value") not in (UPDATE_MAILBOX, None):
            continue
        endpoint = endpoints.get(str(row.get("_eventhandler_value") or ""))
        if endpoint is None:
            continue
        step_id = row.get("sdkmessageprocessingstepid")
        mine = [image for image in images if image.get("_sdkmessageprocessingstepid_value") == step_id]
        filtering = {name.strip().lower() for name in str(row.get("filteringattributes") or "").split(",")} - {""}
        found.append(
            Step(
                row=row,
                endpoint=endpoint,
                stage=int(str(row.get("stage") or 40)),
                mode=int(str(row.get("mode") or 0)),
                attributes=frozenset(filtering) or None,
                pre=[
                    (str(i.get("entityalias")), _columns(i.get("attributes")))
                    for i in mine
                    if i.get("imagetype") in (0, 2)
                ],
                post=[
                    (str(i.get("entityalias")), _columns(i.get("attributes")))
                    for i in mine
                    if i.get("imagetype") in (1, 2)
                ],
            )
        )
    return sorted(found, key=lambda step: (step.stage, int(str(step.row.get("rank") or 1))))


def snapshot(row: Record) -> dict[str, object]:
    return {column: row.get(column) for column in MAILBOX.columns}


class Pipeline:
    def __init__(self, state: SandboxState, poster: Poster) -> None:
        self.state = state
        self.poster = poster

    async def update(
        self, org: OrgState, user_id: str, row: Mailbox, changes: dict[str, object], unit: UnitOfWork
    ) -> None:
        """Run one Update of a mailbox inside `unit`; raise ODataError when a synchronous step refuses it."""
        operation = ctx.Operation(org, user_id, str(uuid.uuid4()), str(uuid.uuid4()), datetime.now(UTC))
        changed = {attribute_name(column) for column in changes}
        registered = steps(org) if org.tables["sdkmessageprocessingsteps"].rows else []
        before = snapshot(row)
        if self.state.setting(org, "gate"):
            for step in registered:
                if step.mode == 0 and step.stage < 40 and step.wants(changed):
                    await self._gate(operation, step, row, changes, before)
        self._apply(org, user_id, row, changes, unit)
        after = snapshot(row)
        if changes.get("testemailconfigurationscheduled") is True:
            self.test_and_enable(org, row, unit)
        self._queue_events(operation, registered, row, changes, changed, before, after, unit)

    def _apply(self, org: OrgState, user_id: str, row: Mailbox, changes: dict[str, object], unit: UnitOfWork) -> None:
        for column, value in changes.items():
            unit.write(org, org.mailboxes, row, column, value)
        self._touch(org, row, user_id, unit)

    def _touch(self, org: OrgState, row: Record, user_id: str, unit: UnitOfWork) -> None:
        unit.write(org, org.mailboxes, row, "modifiedon", now_iso())
        unit.write(org, org.mailboxes, row, "_modifiedby_value", user_id)
        unit.write(org, org.mailboxes, row, "versionnumber", org.version())

    async def _gate(
        self, operation: ctx.Operation, step: Step, row: Mailbox, changes: dict[str, object], before: dict[str, object]
    ) -> None:
        org = operation.org
        target = self._target(operation, row, changes, synchronous=True)
        pre = [(alias, ctx.image(org, MAILBOX, before, columns)) for alias, columns in step.pre]
        context = ctx.build(
            operation,
            step_id=str(step.row.get("sdkmessageprocessingstepid")),
            step_name=str(step.row.get("name")),
            stage=step.stage,
            mode=0,
            operation_id=str(uuid.uuid4()),
            target=target,
            record_id=row.mailboxid,
            pre=pre,
            post=[],
        )
        delivery = await self.poster.post(org, step.row, step.endpoint, context)
        if not delivery.ok:
            raise ODataError(
                400,
                f"The synchronous step '{step.row.get('name')}' (service endpoint '{step.endpoint.get('name')}') "
                f"cancelled the operation. {delivery.describe()}",
                PLUGIN_FAILED,
            )

    def _target(
        self, operation: ctx.Operation, row: Mailbox, changes: dict[str, object], synchronous: bool
    ) -> dict[str, Any]:
        org = operation.org
        attributes: list[tuple[str, object]] = [
            (attribute_name(column), ctx.encode(org, MAILBOX, column, value)) for column, value in changes.items()
        ]
        attributes.append(("mailboxid", row.mailboxid))
        if synchronous:  # the platform stamps these before pre-operation
            attributes.append(("modifiedon", ctx.date(operation.created_on)))
            attributes.append(
                ("modifiedby", ctx.reference("systemuser", operation.user_id, org.user_name(operation.user_id)))
            )
        return ctx.entity("mailbox", row.mailboxid, attributes)

    def _queue_events(
        self,
        operation: ctx.Operation,
        registered: list[Step],
        row: Mailbox,
        changes: dict[str, object],
        changed: set[str],
        before: dict[str, object],
        after: dict[str, object],
        unit: UnitOfWork,
    ) -> None:
        org = operation.org
        if not self.state.setting(org, "events"):
            return
        for step in registered:
            if step.mode != 1 or not step.wants(changed):
                continue
            context = ctx.build(
                operation,
                step_id=str(step.row.get("sdkmessageprocessingstepid")),
                step_name=str(step.row.get("name")),
                stage=40,
                mode=1,
                operation_id=str(uuid.uuid4()),
                target=self._target(operation, row, changes, synchronous=False),
                record_id=row.mailboxid,
                pre=[(alias, ctx.image(org, MAILBOX, before, columns)) for alias, columns in step.pre],
                post=[(alias, ctx.image(org, MAILBOX, after, columns)) for alias, columns in step.post],
            )
            unit.after_commit.append(partial(self.poster.post_later, org, step.row, step.endpoint, context))

    def test_and_enable(self, org: OrgState, row: Mailbox, unit: UnitOfWork) -> None:
        """Exchange's answer to Test & Enable under the org's `semantics` (see FACTS.md)."""
        table = org.mailboxes
        unit.write(org, table, row, "testemailconfigurationscheduled", False)
        unit.write(org, table, row, "testmailboxaccesscompletedon", now_iso())
        unit.write(org, table, row, "testemailconfigurationretrycount", row.testemailconfigurationretrycount + 1)
        if row.actdeliverymethod != 1 or row.statecode != 0:
            return
        key = mailbox_key(row.emailaddress or "")
        holder = self.state.exchange.get(key)
        semantics = self.state.setting(org, "semantics")
        checkbox = bool(row.orgmarkedasprimaryforexchangesync)
        if holder not in (None, org.name) and semantics == "alert" and not checkbox:
            unit.write(org, table, row, "actstatus", 2)
            unit.write(org, table, row, "mailboxstatus", 2)
            unit.add(org.tables["tracelogs"], alert(org, row, str(uuid.uuid4()), now_iso()))
            return
        unit.set_exchange(self.state, key, org.name)
        unit.write(org, table, row, "actstatus", 1)
        unit.write(org, table, row, "mailboxstatus", 1)
        unit.write(org, table, row, "isactsyncorgflagset", True)
        if checkbox and self.state.setting(org, "checkbox_resets"):
            unit.write(org, table, row, "orgmarkedasprimaryforexchangesync", False)
        loser = self.state.orgs.get(holder) if holder not in (None, org.name) else None
        if loser is not None and semantics == "disable-other":
            self._disable(loser, key, unit)

    def _disable(self, org: OrgState, key: str, unit: UnitOfWork) -> None:
        """The other org's row for the address goes to ACT None, written by that org's SYSTEM user."""
        system = stable_id(org.id, "SYSTEM")
        for row_id in list(org.mailboxes.by_key.get(key, [])):
            row = org.mailboxes.get(row_id)
            if not isinstance(row, Mailbox) or row.actdeliverymethod == 2:
                continue
            changes: dict[str, object] = {"actdeliverymethod": 2, "isactsyncorgflagset": False}
            operation = ctx.Operation(org, system, str(uuid.uuid4()), str(uuid.uuid4()), datetime.now(UTC))
            before = snapshot(row)
            self._apply(org, system, row, changes, unit)
            registered = steps(org) if org.tables["sdkmessageprocessingsteps"].rows else []
            changed = {attribute_name(column) for column in changes}
            self._queue_events(operation, registered, row, changes, changed, before, snapshot(row), unit)

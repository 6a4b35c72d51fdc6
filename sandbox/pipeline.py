"""The Update pipeline of a mailbox: synchronous steps, the save, Test & Enable, asynchronous steps.

This is the part of Dataverse OrgGuard lives inside. A synchronous pre-operation step whose
filtering attributes are in the update is called first; a non-2xx answer (or no answer)
cancels the save. Then the row is written; if the update scheduled Test & Enable, it runs
(see `sandbox.testenable`); and the asynchronous steps get the context with pre and post
images once the transaction commits. Steps the caller bypasses (`sandbox.bypass`) do not run.

A failing synchronous webhook shows the saving user an "Endpoint Unavailable" error and
nothing of the endpoint's answer: "The system cannot parse any data returned with the body of
the response, it will only look at the response StatusCode value" (powerapps-docs
`developer/data-platform/use-webhooks.md`, "Troubleshoot WebHook registrations";
`register-web-hook.md`, "Synchronous mode"). The sandbox's event log
(`/_sandbox/events`) keeps the answer for tests.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sandbox import context as ctx
from sandbox.bypass import NOTHING, Bypass
from sandbox.model import MAILBOX, Mailbox, Record, attribute_name
from sandbox.odata import PLUGIN_FAILED, ODataError
from sandbox.state import OrgState, SandboxState, UnitOfWork, now_iso, stable_id
from sandbox.testenable import TestEnable
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

    @property
    def id(self) -> str:
        return str(self.row.get("sdkmessageprocessingstepid"))

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
        self.tests = TestEnable(state, self)

    async def update(
        self,
        org: OrgState,
        user_id: str,
        row: Mailbox,
        changes: dict[str, object],
        unit: UnitOfWork,
        bypass: Bypass = NOTHING,
    ) -> None:
        """Run one Update of a mailbox inside `unit`; raise ODataError when a synchronous step refuses it."""
        operation = ctx.Operation(org, user_id, str(uuid.uuid4()), str(uuid.uuid4()), datetime.now(UTC))
        changed = {attribute_name(column) for column in changes}
        registered = steps(org) if org.tables["sdkmessageprocessingsteps"].rows else []
        before = snapshot(row)
        if self.state.setting(org, "gate"):
            for step in registered:
                if step.mode == 0 and step.stage < 40 and step.wants(changed) and not bypass.skips(step.id, 0):
                    await self._gate(operation, step, row, changes, before)
        self._apply(org, user_id, row, changes, unit)
        after = snapshot(row)
        if changes.get("testemailconfigurationscheduled") is True:
            self.tests.scheduled(org, row, unit)
        self._queue_events(operation, registered, row, changes, changed, before, after, unit, bypass)

    def system_update(self, org: OrgState, row: Mailbox, changes: dict[str, object], unit: UnitOfWork) -> None:
        """A write by the org's SYSTEM user (Test & Enable's outcome): asynchronous steps only."""
        system = stable_id(org.id, "SYSTEM")
        operation = ctx.Operation(org, system, str(uuid.uuid4()), str(uuid.uuid4()), datetime.now(UTC))
        before = snapshot(row)
        self._apply(org, system, row, changes, unit)
        registered = steps(org) if org.tables["sdkmessageprocessingsteps"].rows else []
        changed = {attribute_name(column) for column in changes}
        self._queue_events(operation, registered, row, changes, changed, before, snapshot(row), unit)

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
        target = self._target(operation, row, changes, stamped=True)
        pre = [(alias, ctx.image(org, MAILBOX, before, columns)) for alias, columns in step.pre]
        context = ctx.build(
            operation,
            step_id=step.id,
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
        self,
        operation: ctx.Operation,
        row: Mailbox,
        changes: dict[str, object],
        *,
        stamped: bool,
        on_behalf: bool = False,
    ) -> dict[str, Any]:
        """Target: the changed columns and the key; `stamped` adds what the platform stamps before pre-operation."""
        org = operation.org
        attributes: list[tuple[str, object]] = [
            (attribute_name(column), ctx.encode(org, MAILBOX, column, value)) for column, value in changes.items()
        ]
        attributes.append(("mailboxid", row.mailboxid))
        if stamped:
            attributes.append(("modifiedon", ctx.date(operation.created_on)))
            attributes.append(
                ("modifiedby", ctx.reference("systemuser", operation.user_id, org.user_name(operation.user_id)))
            )
        if on_behalf:
            attributes.append(("modifiedonbehalfby", None))
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
        bypass: Bypass = NOTHING,
    ) -> None:
        org = operation.org
        if not self.state.setting(org, "events"):
            return
        for step in registered:
            if step.mode != 1 or not step.wants(changed) or bypass.skips(step.id, 1):
                continue
            operation_id = str(uuid.uuid4())
            name = str(step.row.get("name"))
            context = ctx.build(
                operation,
                step_id=step.id,
                step_name=name,
                stage=40,
                mode=1,
                operation_id=operation_id,
                target=self._target(operation, row, changes, stamped=True, on_behalf=True),
                record_id=row.mailboxid,
                pre=[(alias, ctx.image(org, MAILBOX, before, columns)) for alias, columns in step.pre],
                post=[
                    *((alias, ctx.image(org, MAILBOX, after, columns)) for alias, columns in step.post),
                    (ctx.PRIMARY_NAME_IMAGE, ctx.primary_name_image(MAILBOX, after)),
                ],
                isolation=ctx.ISOLATION_NONE,
                parent=ctx.main_operation(
                    operation,
                    step_id=step.id,
                    step_name=name,
                    operation_id=operation_id,
                    target=self._target(operation, row, changes, stamped=False),
                    record_id=row.mailboxid,
                ),
            )
            unit.after_commit.append(partial(self.poster.post_later, org, step.row, step.endpoint, context))

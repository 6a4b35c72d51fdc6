"""`/_sandbox/` routes: seed, reset, settings, faults, Exchange, logs. For tests and demos only."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, replace
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from sandbox.bypass import PRV_BUSINESS_LOGIC, PRV_PLUGINS, holds
from sandbox.model import mailbox_key
from sandbox.seed import seed
from sandbox.state import (
    SEMANTICS,
    Fault,
    GraphCounters,
    GraphFault,
    GraphUser,
    OrgState,
    SandboxState,
    stable_id,
)
from sandbox.testenable import TestEnable
from sandbox.webhooks import Poster

PROTECTION = ("budget", "window_s", "execution_budget_s", "execution_cost_s", "concurrency")
NOT_NULL = (
    "semantics",
    "gate",
    "events",
    "window_s",
    "execution_cost_s",
    "webhook_timeout_s",
    "loopback_webhooks",
    "max_context_bytes",
    "test_enable_delay_s",
    "bypass_step_ids_limit",
)


class FaultSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: int = Field(ge=400, le=599)
    count: int = Field(default=1, ge=0)
    methods: list[str] | None = None
    match: str | None = None
    retry_after: int | None = Field(default=None, ge=0)


class GraphFaultSpec(BaseModel):
    """The next `count` Graph requests whose path and query contain `match` answer `status` (or late, or garbled)."""

    model_config = ConfigDict(extra="forbid")
    status: int = Field(default=503, ge=200, le=599)
    count: int = Field(default=1, ge=0)
    match: str | None = None
    retry_after: int | None = Field(default=None, ge=0)
    malformed: bool = False
    delay_ms: int = Field(default=0, ge=0, le=60_000)
    skip: int = Field(default=0, ge=0)


class GraphUserSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    displayName: str = Field(min_length=1)
    mail: str = Field(min_length=3)
    userPrincipalName: str | None = None
    usageLocation: str = ""
    country: str = ""
    department: str = ""
    companyName: str = "Contoso"
    officeLocation: str = ""
    proxyAddresses: list[str] = []
    groups: list[str] = []


class MembersSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=1, le=50_000)


class SettingsUpdate(BaseModel):
    """Any subset; with `org` the values apply to that org only, otherwise to all."""

    model_config = ConfigDict(extra="forbid")
    org: str | None = None
    semantics: Literal["overwrite", "alert", "disable-other"] | None = None
    gate: bool | None = None
    events: bool | None = None
    budget: int | None = Field(default=None, ge=0)  # null: no limit
    window_s: float | None = Field(default=None, gt=0)
    execution_budget_s: float | None = Field(default=None, gt=0)  # null: no limit
    execution_cost_s: float | None = Field(default=None, ge=0)
    concurrency: int | None = Field(default=None, ge=1)  # null: no limit
    webhook_timeout_s: float | None = Field(default=None, gt=0, le=60)
    loopback_webhooks: bool | None = None
    max_context_bytes: int | None = Field(default=None, ge=1)
    checkbox_resets: bool | None = None
    test_enable_delay_s: float | None = Field(default=None, ge=0, le=3600)
    bypass_step_ids_limit: int | None = Field(default=None, ge=0, le=400)
    event_retries: int | None = Field(default=None, ge=0, le=10)
    event_retry_delay_s: float | None = Field(default=None, ge=0)
    fail: FaultSpec | None = None
    latency_ms: int | None = Field(default=None, ge=0, le=60_000)
    graph_fail: GraphFaultSpec | list[GraphFaultSpec] | None = None


class SeedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mailboxes: int = Field(default=60, ge=1, le=200_000)
    overlap: float = Field(default=0.3, ge=0, le=1)
    seed: int = 7
    orgs: int = Field(default=3, ge=1, le=50)


class ExchangeUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    org: str | None


class UserUpdate(BaseModel):
    """Roles of the user a bearer token stands for; with `org` in that org only, otherwise in every org."""

    model_config = ConfigDict(extra="forbid")
    org: str | None = None
    system_administrator: bool | None = None
    privileges: list[Literal["prvBypassCustomBusinessLogic", "prvBypassCustomPlugins"]] | None = None


def user_view(org: OrgState, user_id: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "system_administrator": user_id in org.administrators,
        "privileges": sorted(org.privileges.get(user_id, set())),
        "bypass": {privilege: holds(org, user_id, privilege) for privilege in (PRV_BUSINESS_LOGIC, PRV_PLUGINS)},
    }


def settings_view(state: SandboxState) -> dict[str, Any]:
    return {
        "graph_fail": [asdict(f) for f in state.graph_faults if f.count > 0],
        "global": asdict(state.settings),
        "orgs": {
            org.name: {
                "overrides": dict(org.overrides),
                "fail": None if org.fault is None else {**asdict(org.fault), "methods": _methods(org.fault)},
                "latency_ms": org.latency_ms,
            }
            for org in state.orgs.values()
        },
        "semantics_choices": list(SEMANTICS),
    }


def _methods(fault: Fault) -> list[str] | None:
    return None if fault.methods is None else sorted(fault.methods)


def _cleared(record: list[Any]) -> dict[str, int]:
    """Forget what the sandbox recorded (events posted, mail sent) and say how much that was."""
    count = len(record)
    record.clear()
    return {"cleared": count}


def router(state: SandboxState, poster: Poster, tests: TestEnable) -> APIRouter:
    routes = APIRouter(prefix="/_sandbox", tags=["sandbox control"])

    def orgs_named(name: str | None) -> list[OrgState]:
        if name is None:
            return list(state.orgs.values())
        org = state.org(name)
        if org is None:
            raise HTTPException(404, f"no org named {name}")
        return [org]

    @routes.get("/exchange/{address:path}")
    async def exchange(address: str) -> dict[str, Any]:
        return {"address": mailbox_key(address), "org": state.exchange.get(mailbox_key(address))}

    @routes.put("/exchange/{address:path}")
    async def set_exchange(address: str, update: ExchangeUpdate) -> dict[str, Any]:
        if update.org is not None and update.org not in state.orgs:
            raise HTTPException(404, f"no org named {update.org}")
        state.exchange[mailbox_key(address)] = update.org
        return {"address": mailbox_key(address), "org": update.org}

    @routes.get("/settings")
    async def get_settings() -> dict[str, Any]:
        return settings_view(state)

    @routes.put("/settings")
    async def put_settings(update: SettingsUpdate) -> dict[str, Any]:
        given = update.model_fields_set - {"org", "fail", "latency_ms", "graph_fail"}
        if "graph_fail" in update.model_fields_set:
            specs = update.graph_fail if isinstance(update.graph_fail, list) else [update.graph_fail]
            state.graph_faults = [GraphFault(**spec.model_dump()) for spec in specs if spec is not None and spec.count]
        values = {name: getattr(update, name) for name in given}
        for name in NOT_NULL:
            if name in values and values[name] is None:
                raise HTTPException(422, f"{name} cannot be null")
        if update.org is not None:
            org = state.org(update.org)
            if org is None:
                raise HTTPException(404, f"no org named {update.org}")
            targets = [org]
            org.overrides.update(values)
        else:
            targets = list(state.orgs.values())
            for name, value in values.items():
                setattr(state.settings, name, value)
        for org in targets:
            if any(name in values for name in PROTECTION):
                org.windows.clear()
            if "fail" in update.model_fields_set:
                fail = update.fail
                org.fault = (
                    None
                    if fail is None or fail.count == 0
                    else Fault(
                        fail.status,
                        fail.count,
                        None if fail.methods is None else frozenset(m.upper() for m in fail.methods),
                        fail.match,
                        fail.retry_after,
                    )
                )
            if update.latency_ms is not None:
                org.latency_ms = update.latency_ms
        return settings_view(state)

    @routes.post("/reset")
    async def reset() -> dict[str, Any]:
        """Back to the seeded world: same seed, default settings, no registration, empty logs."""
        await poster.cancel_pending()
        await tests.cancel_pending()
        params = state.seeded_with
        state.settings = replace(state.defaults)
        state.adopt(await asyncio.to_thread(seed, None, params.mailboxes, params.overlap, params.seed, params.orgs))
        return {"reset": True, **asdict(params)}

    @routes.post("/seed")
    async def reseed(request: SeedRequest) -> dict[str, Any]:
        """A new world with these parameters; settings stay, registration and logs go."""
        await poster.cancel_pending()
        await tests.cancel_pending()
        fresh = await asyncio.to_thread(seed, None, request.mailboxes, request.overlap, request.seed, request.orgs)
        state.adopt(fresh)
        return {"seeded": True, **request.model_dump(), "orgs": list(state.orgs)}

    @routes.get("/orgs")
    async def orgs(request: Request) -> list[dict[str, Any]]:
        base = str(request.base_url).rstrip("/")
        held: dict[str | None, int] = {}
        for holder in state.exchange.values():
            held[holder] = held.get(holder, 0) + 1
        return [
            {
                "name": org.name,
                "id": org.id,
                "url": f"{base}/orgs/{org.name}",
                "webapi": f"{base}/orgs/{org.name}/api/data/v9.2/",
                "business_unit_id": org.business_unit_id,
                "mailboxes": len(org.mailboxes),
                "systemusers": len(org.systemusers),
                "queues": len(org.tables["queues"]),
                "tracelogs": len(org.tables["tracelogs"]),
                "serviceendpoints": len(org.tables["serviceendpoints"]),
                "steps": len(org.tables["sdkmessageprocessingsteps"]),
                "exchange_held": held.get(org.name, 0),
            }
            for org in state.orgs.values()
        ]

    @routes.get("/requests")
    async def requests() -> dict[str, Any]:
        return {org.name: asdict(org.counters) for org in state.orgs.values()}

    @routes.delete("/requests")
    async def clear_requests() -> dict[str, Any]:
        for org in state.orgs.values():
            org.counters = type(org.counters)()
        return {org.name: asdict(org.counters) for org in state.orgs.values()}

    @routes.get("/events")
    async def events(
        org: str | None = None, stage: int | None = None, mode: int | None = None, wait: float = 0.0, limit: int = 1000
    ) -> dict[str, Any]:
        """Posted contexts and their answers; `wait=s` first waits (up to s) for background deliveries."""
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(poster.drain(), timeout=wait)
        found = [
            event
            for event in state.events
            if (org is None or event["org"] == org)
            and (stage is None or event["stage"] == stage)
            and (mode is None or event["mode"] == mode)
        ]
        return {"events": found[-limit:] if limit > 0 else [], "pending": poster.pending}

    @routes.delete("/events")
    async def clear_events() -> dict[str, int]:
        return _cleared(state.events)

    @routes.get("/mail")
    async def mail() -> dict[str, Any]:
        return {"mail": list(state.mail)}

    @routes.get("/users/{token}")
    async def get_user(token: str, org: str | None = None) -> dict[str, Any]:
        """The systemuser a bearer token stands for in each org, and its bypass privileges."""
        return {each.name: user_view(each, each.user_for_token(token)) for each in orgs_named(org)}

    @routes.put("/users/{token}")
    async def put_user(token: str, update: UserUpdate) -> dict[str, Any]:
        """Make the token's user a System Administrator (who holds the bypass privileges) or grant them alone."""
        if "system_administrator" in update.model_fields_set and update.system_administrator is None:
            raise HTTPException(422, "system_administrator cannot be null")
        answer = {}
        for each in orgs_named(update.org):
            user_id = each.user_for_token(token)
            if update.system_administrator is True:
                each.administrators.add(user_id)
            elif update.system_administrator is False:
                each.administrators.discard(user_id)
            if update.privileges is not None:
                each.privileges[user_id] = set(update.privileges)
            answer[each.name] = user_view(each, user_id)
        return answer

    @routes.get("/test-enable")
    async def test_enable_jobs(wait: float = 0.0, org: str | None = None) -> dict[str, Any]:
        """Test & Enable jobs (and the old owners' synchronizations) the orgs ran or will run; `wait=s` first
        waits (up to s) for the pending ones."""
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tests.drain(), timeout=wait)
        jobs = [job.view() for job in tests.jobs if org is None or job.org == org]
        return {"jobs": jobs, "pending": sum(1 for job in jobs if job["state"] == "pending")}

    @routes.post("/test-enable/run")
    async def run_test_enable(
        org: str | None = None, kind: Literal["test-and-enable", "synchronization"] | None = None
    ) -> dict[str, Any]:
        """Run the pending jobs (of one org, of one kind) now, whatever their delay: a race staged on purpose."""
        if org is not None:
            orgs_named(org)
        ran = await tests.run_pending(org, kind)
        return {"ran": ran, "jobs": [job.view() for job in tests.jobs], "pending": tests.pending}

    @routes.delete("/mail")
    async def clear_mail() -> dict[str, int]:
        return _cleared(state.mail)

    @routes.get("/graph")
    async def graph_requests() -> dict[str, Any]:
        """What Graph was asked (a $batch counts once in `http`), for tests and benchmarks."""
        return {**asdict(state.graph_counters), "users": len(state.graph_users), "groups": len(state.groups)}

    @routes.delete("/graph/requests")
    async def clear_graph_requests() -> dict[str, Any]:
        state.graph_counters = GraphCounters()
        return asdict(state.graph_counters)

    @routes.post("/graph/users", status_code=201)
    async def add_graph_user(spec: GraphUserSpec) -> dict[str, Any]:
        """A directory user; two users may share an address (the conflict real tenants have)."""
        groups = tuple(state.group(name).id for name in spec.groups)
        user = GraphUser.at(
            spec.mail,
            spec.displayName,
            user_id=stable_id("graph-user", len(state.graph_users), spec.mail, spec.displayName),
            place=(spec.usageLocation, spec.country),
            department=spec.department,
            groups=groups,
            office=spec.officeLocation,
            company=spec.companyName,
            upn=spec.userPrincipalName,
            proxies=tuple(spec.proxyAddresses),
        )
        state.add_graph_user(user)
        return user.as_json()

    @routes.post("/graph/groups/{name}/members")
    async def add_members(name: str, spec: MembersSpec) -> dict[str, Any]:
        """`count` new users in group `name` (created if missing): a large group to page through."""
        group = state.group(name)
        start = len(group.members)
        for n in range(start, start + spec.count):
            address = f"member{n}.{group.id[:8]}@contoso.com"
            user_id = stable_id("graph-member", group.id, n)
            state.add_graph_user(GraphUser.at(address, f"Member {n}", user_id=user_id, groups=(group.id,)))
        return {"group": group.id, "members": len(group.members)}

    return routes

"""The admin API: mailboxes, cases, policy, audit, health (CONTRACT, HTTP)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from functions.deps import Name, Prose, container, limited_body, role
from functions.health import health_checks
from shared.auth import Principal, Role
from shared.model import CaseQuery, CaseState, ClaimKind, MailboxKey
from shared.views import case_view, decision_view, mailbox_view

router = APIRouter(prefix="/api", tags=["admin"])

Reader = Annotated[Principal, Depends(role(Role.READER))]
Approver = Annotated[Principal, Depends(role(Role.APPROVER))]
Admin = Annotated[Principal, Depends(role(Role.ADMIN))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OwnerChange(Strict):
    org: Name = Field(min_length=1, max_length=100)
    reason: Prose = Field(min_length=1, max_length=1000)


class Resolution(Strict):
    reason: Prose = Field(min_length=1, max_length=1000)


class WhatIf(Strict):
    mailbox: Name = Field(min_length=3, max_length=254)
    claimant: Name = Field(min_length=1, max_length=100)
    owner: Name | None = Field(default=None, max_length=100)
    kind: ClaimKind = ClaimKind.TEST_ENABLE


@router.get("/mailboxes/{address}")
async def get_mailbox(address: str, _: Reader) -> dict[str, Any]:
    key = MailboxKey.parse(address)
    report = await run_in_threadpool(container().service.mailbox, key)
    return mailbox_view(report)


@router.put("/mailboxes/{address}/owner", status_code=202)
async def put_owner(address: str, body: OwnerChange, who: Admin) -> dict[str, Any]:
    key = MailboxKey.parse(address)
    case = await run_in_threadpool(
        lambda: container().service.designate_owner(key, body.org, actor=who.name, reason=body.reason)
    )
    return case_view(case)


@router.get("/cases")
async def list_cases(
    _: Reader,
    state: CaseState | None = None,
    org: str | None = None,
    mailbox: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    query = CaseQuery(
        state=state,
        org=org,
        mailbox=MailboxKey.parse(mailbox, field="mailbox") if mailbox else None,
        limit=limit,
        cursor=cursor,
    )
    page = await run_in_threadpool(container().service.cases, query)
    return {"items": [case_view(c) for c in page.items], "next": page.next}


@router.get("/cases/{case_id}")
async def get_case(case_id: str, _: Reader) -> dict[str, Any]:
    return case_view(await run_in_threadpool(container().service.case, case_id))


@router.post("/cases/{case_id}/approve")
async def approve(case_id: str, body: Resolution, who: Approver) -> dict[str, Any]:
    case = await run_in_threadpool(lambda: container().service.approve(case_id, actor=who.name, reason=body.reason))
    return case_view(case)


@router.post("/cases/{case_id}/deny")
async def deny(case_id: str, body: Resolution, who: Approver) -> dict[str, Any]:
    case = await run_in_threadpool(lambda: container().service.deny(case_id, actor=who.name, reason=body.reason))
    return case_view(case)


@router.post("/actions/{action_id}/retry", status_code=202)
async def retry_action(action_id: str, who: Admin) -> dict[str, Any]:
    await run_in_threadpool(lambda: container().service.retry_action(action_id, actor=who.name))
    return {"action": action_id, "status": "pending"}


@router.get("/policy")
async def get_policy(_: Reader) -> dict[str, Any]:
    version, text = await run_in_threadpool(container().service.policy_text)
    policy = container().service.policy()
    return {"version": version, "text": text, "policy": policy.model_dump(mode="json")}


@router.put("/policy")
async def put_policy(request: Request, who: Admin) -> dict[str, Any]:
    """YAML or JSON (JSON is YAML); 422 with every error when invalid, and nothing saved."""
    raw = await limited_body(request)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        from shared.policy import PolicyError

        raise PolicyError("the policy is not UTF-8 text", errors=[{"path": "", "message": "not UTF-8"}]) from None
    await run_in_threadpool(lambda: container().service.save_policy(text, actor=who.name))
    version, _ = container().service.policy_text()
    return {"version": version, "policy": container().service.policy().model_dump(mode="json")}


@router.post("/policy/evaluate")
async def evaluate(body: WhatIf, _: Reader) -> dict[str, Any]:
    key = MailboxKey.parse(body.mailbox, field="mailbox")
    decision = await run_in_threadpool(lambda: container().service.evaluate(key, body.claimant, body.owner, body.kind))
    return {"mailbox": key.address, "claimant": body.claimant, **decision_view(decision), "recorded": False}


@router.get("/audit/verify")
async def verify(_: Reader) -> dict[str, Any]:
    ok, entries, reason = await run_in_threadpool(container().service.verify_audit)
    return {"ok": ok, "entries": entries, "reason": reason}


@router.get("/health")
async def health() -> JSONResponse:
    """Within a second whatever the ledger does: 503 with the reason when a dependency is down or stuck."""
    checks = await health_checks()
    ok = all(check.get("ok") for check in checks.values())
    return JSONResponse({"ok": ok, "checks": checks}, status_code=200 if ok else 503)

"""The admin API: mailboxes, cases, policy, audit, health (CONTRACT, HTTP)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from functions.deps import Name, Prose, container, policy_body, role
from functions.health import dead_letter_counts, health_checks
from shared.domain.auth import Principal, Role
from shared.domain.model import CaseQuery, CaseState, ClaimKind, MailboxKey
from shared.service.views import case_view, decision_view, mailbox_view, overview_view

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


class CaseFilter(BaseModel):
    # Not stripped: a mailbox filter with a hidden character is refused, not trimmed into another address.
    model_config = ConfigDict(extra="forbid")
    state: CaseState | Literal["open"] | None = None
    org: str | None = Field(default=None, max_length=100)
    mailbox: str | None = Field(default=None, max_length=254)


class BulkDecision(Strict):
    filter: CaseFilter = Field(default_factory=CaseFilter)
    decision: Literal["approve", "deny"]
    reason: str = Field(min_length=1, max_length=1000)


def case_query(f: CaseFilter, *, limit: int = 50, cursor: str | None = None) -> CaseQuery:
    return CaseQuery.of(state=f.state, org=f.org, mailbox=f.mailbox, limit=limit, cursor=cursor)


@router.get("/cases")
async def list_cases(
    _: Reader,
    state: CaseState | Literal["open"] | None = None,
    org: str | None = None,
    mailbox: Annotated[str | None, Query(max_length=254)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """A page of cases, newest first, and how many match in all."""
    query = case_query(CaseFilter(state=state, org=org, mailbox=mailbox), limit=limit, cursor=cursor)
    service = container().service
    page = await run_in_threadpool(service.cases, query)
    total = await run_in_threadpool(service.count_cases, query)
    return {"items": [case_view(c) for c in page.items], "next": page.next, "total": total}


@router.get("/overview")
async def overview(_: Reader) -> dict[str, Any]:
    """What needs attention: cases per state, per org, and the oldest held case with its expiry."""
    return overview_view(await run_in_threadpool(container().service.overview))


@router.post("/cases:bulk")
async def decide_many(body: BulkDecision, who: Approver) -> dict[str, Any]:
    """Approve or deny every held case the filter matches (up to 500 a request); each is decided once."""
    query = case_query(body.filter)
    report = await run_in_threadpool(
        lambda: container().service.decide_many(
            query, approve=body.decision == "approve", actor=who.name, reason=body.reason
        )
    )
    return {
        "decided": len(report.decided),
        "cases": report.decided,
        "skipped": [{"case": case, "state": state, "reason": why} for case, state, why in report.skipped],
        "more": report.more,
    }


@router.get("/cases/{case_id}")
async def get_case(case_id: str, _: Reader) -> dict[str, Any]:
    return case_view(await run_in_threadpool(container().service.case, case_id))


@router.post("/cases/{case_id}/approve")
async def approve(case_id: str, body: Resolution, who: Approver) -> dict[str, Any]:
    case = await run_in_threadpool(lambda: container().service.approve(case_id, actor=who.name, reason=body.reason))
    return case_view(case)


@router.post("/cases/{case_id}/reevaluate")
async def reevaluate(case_id: str, who: Approver) -> dict[str, Any]:
    """Decide a held case again (after a Graph outage, say): still held, or resolved as the policy now says."""
    case = await run_in_threadpool(lambda: container().service.reevaluate(case_id, actor=who.name))
    return case_view(case)


@router.post("/cases/{case_id}/deny")
async def deny(case_id: str, body: Resolution, who: Approver) -> dict[str, Any]:
    case = await run_in_threadpool(lambda: container().service.deny(case_id, actor=who.name, reason=body.reason))
    return case_view(case)


@router.post("/actions/{action_id}/retry", status_code=202)
async def retry_action(action_id: str, who: Admin) -> dict[str, Any]:
    """A failed action goes back to the outbox; 409 with its status when it is not failed."""
    action = await run_in_threadpool(lambda: container().service.retry_action(action_id, actor=who.name))
    return {"action": action.id, "status": action.status.value}


@router.get("/policy")
async def get_policy(_: Reader) -> dict[str, Any]:
    version, text = await run_in_threadpool(container().service.policy_text)
    policy = container().service.policy()
    warnings = container().service.policy_warnings(policy)
    return {"version": version, "text": text, "policy": policy.model_dump(mode="json"), "warnings": warnings}


@router.put("/policy")
async def put_policy(request: Request, who: Admin) -> dict[str, Any]:
    """YAML or JSON (JSON is YAML); 422 with every error when invalid, and nothing saved."""
    text = await policy_body(request)
    saved = await run_in_threadpool(lambda: container().service.save_policy(text, actor=who.name))
    version, _ = container().service.policy_text()
    warnings = container().service.policy_warnings(saved)  # saved all the same: a warning is not an error
    return {"version": version, "policy": saved.model_dump(mode="json"), "warnings": warnings}


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
    checks, letters = await asyncio.gather(health_checks(), dead_letter_counts())
    ok = all(check.get("ok") for check in checks.values() if not check.get("advisory"))
    doc: dict[str, Any] = {"ok": ok, "checks": checks}
    if letters is not None:
        doc["deadletters"] = letters  # informational: dead letters never make OrgGuard unhealthy
    return JSONResponse(doc, status_code=200 if ok else 503)

"""Governance over HTTP: exemptions, the compliance report, and the impact of a policy before it is saved."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from functions.deps import Name, Prose, container, policy_body, role
from shared.domain.auth import Principal, Role
from shared.domain.exemptions import Scope
from shared.domain.model import DomainError
from shared.service.compliance import MAX_SWEEPS, compliance_report
from shared.service.exemptions import Exemptions
from shared.service.impact import MAX_DAYS, policy_impact
from shared.service.views import exemption_view

router = APIRouter(prefix="/api", tags=["governance"])

Reader = Annotated[Principal, Depends(role(Role.READER))]
Admin = Annotated[Principal, Depends(role(Role.ADMIN))]
SUBJECTS = tuple(s.value for s in Scope)


class NewExemption(BaseModel):
    """Exactly one of mailbox, domain, user (userPrincipalName or object id) or orgs (two org names)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    mailbox: Name | None = Field(default=None, max_length=254)
    domain: Name | None = Field(default=None, max_length=253)
    user: Name | None = Field(default=None, max_length=254)
    orgs: list[Name] | None = Field(default=None, max_length=2)
    reason: Prose = Field(min_length=1, max_length=1000)
    ticket: Name = Field(min_length=1, max_length=100)
    expires: Name = Field(min_length=1, max_length=40, description="the last day it applies, like 2026-12-31 (UTC)")

    @model_validator(mode="after")
    def one_subject(self) -> NewExemption:
        given = [name for name in SUBJECTS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of {', '.join(SUBJECTS)}" + (f", not {' and '.join(given)}" if given else "")
            )
        return self

    @property
    def scope(self) -> str:
        return next(name for name in SUBJECTS if getattr(self, name) is not None)


def _desk() -> Exemptions:
    return Exemptions(container().service)


@router.get("/exemptions")
async def list_exemptions(_: Reader, state: Literal["active", "expired", "removed"] | None = None) -> dict[str, Any]:
    """Every exemption (or those in ``state`` today), oldest first, and the set's version."""
    desk = _desk()
    book = await run_in_threadpool(desk.book)
    today = desk.today()
    items = [exemption_view(e, today) for e in book.items if state is None or e.state(today).value == state]
    return {"version": book.version, "items": items}


@router.post("/exemptions", status_code=201)
async def add_exemption(body: NewExemption, who: Admin) -> dict[str, Any]:
    """Exempt a mailbox, a user, a domain or two orgs until a date; 409 naming the exemption that covers it already."""
    desk = _desk()
    added = await run_in_threadpool(
        lambda: desk.add(
            body.scope,
            getattr(body, body.scope),
            reason=body.reason,
            ticket=body.ticket,
            expires=body.expires,
            actor=who.name,
        )
    )
    return exemption_view(added, desk.today())


@router.delete("/exemptions/{exemption_id}")
async def remove_exemption(
    exemption_id: str,
    who: Admin,
    reason: Annotated[Prose | None, Query(max_length=1000, description="why it ends early")] = None,
) -> dict[str, Any]:
    """End an exemption now; 404 when there is none, 409 when it was removed already (of two admins, one does)."""
    desk = _desk()
    removed = await run_in_threadpool(lambda: desk.remove(exemption_id, actor=who.name, reason=reason, exact=True))
    return exemption_view(removed, desk.today())


@router.get("/reports/compliance")
async def compliance(
    _: Reader, sweeps: Annotated[int, Query(ge=1, le=MAX_SWEEPS, description="the trend's length")] = 10
) -> dict[str, Any]:
    """Per org and per rule: compliant, in conflict, exempt, held, failed; the last sweep; the trend over sweeps."""
    return await run_in_threadpool(lambda: compliance_report(container().service, sweeps=sweeps))


@router.post("/policy/impact")
async def impact(
    request: Request,
    _: Reader,
    days: Annotated[int, Query(ge=1, le=MAX_DAYS, description="how far back competing claims are replayed")] = 30,
) -> dict[str, Any]:
    """A candidate policy (YAML or JSON, as for ``PUT /api/policy``) against the ledger: what would change. 422
    with every error of an invalid one; nothing is recorded either way."""
    text = await policy_body(request)
    return await run_in_threadpool(lambda: policy_impact(container().service, text, days=days))


class DiscoveryUnavailable(DomainError, status=502, title="Discovery unavailable"):
    """The Dataverse Global Discovery Service could not be asked (a fault outside OrgGuard)."""


@router.get("/discovery")
async def discovery(_: Reader) -> dict[str, Any]:
    """Every environment the Dataverse Global Discovery Service shows OrgGuard's identity, registered or not (the
    CLI's ``orgguard discover --register`` registers them); 502 saying why when the service cannot be asked."""
    from shared.dataverse.port import DataverseError
    from shared.service.discovery import discovered_view

    c = container()
    try:
        found = await c.environments()
    except (DataverseError, ValueError) as exc:
        raise DiscoveryUnavailable(f"the discovery service at {c.settings.discovery_url} failed: {exc}") from None
    return {"discovery": c.settings.discovery_url, "environments": [discovered_view(d) for d in found]}

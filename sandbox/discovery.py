"""The Dataverse Global Discovery Service for the sandbox's orgs, at ``/discovery/api/discovery/v2.0/Instances``.

As documented (learn.microsoft.com/power-apps/developer/data-platform/discovery-service): an OData v4.0 entity
set ``Instances`` whose entities carry ``ApiUrl``, ``DatacenterId``, ``EnvironmentId``, ``FriendlyName``, ``Id``
(the OrganizationId), ``IsUserSysAdmin``, ``LastUpdated``, ``OrganizationType`` (the OrganizationType enumeration,
learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/organizationtype: 0 Customer, 5
CustomerTest, 13 Developer, 14 Trial, ...), ``Purpose``, ``Region``, ``SchemaType``, ``State`` (0 enabled, 1
disabled), ``StatusMessage``, ``TenantId``, ``TrialExpirationDate``, ``UniqueName``, ``UrlName``, ``Version`` and
``Url``; ``$select`` picks properties; a request without a bearer token gets a bearer challenge ("Authentication").
The answer is always a collection ("GDS always returns an array of values"). Every org of the sandbox is listed;
its URL is the sandbox's own, so OrgGuard registers against it like any other.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sandbox.state import OrgState, SandboxState, stable_id

PREFIX = "/discovery"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
# OrganizationType per org: the first two are production, the third a sandbox, the rest a trial and a developer.
TYPES = {"contoso-na": 0, "contoso-jp": 0, "contoso-eu": 5}
REGIONS = {"contoso-na": "NA", "contoso-jp": "JPN", "contoso-eu": "EUR"}


def instance(org: OrgState, base: str, index: int) -> dict[str, Any]:
    kind = TYPES.get(org.name, 14 if index % 2 else 13)
    words = org.name.replace("-", " ").split()
    return {
        "ApiUrl": f"{base}/orgs/{org.name}",
        "DatacenterId": stable_id("datacenter", REGIONS.get(org.name, "NA")),
        "DatacenterName": None,
        "EnvironmentId": stable_id("environment", org.id),
        "FriendlyName": " ".join(w.upper() if len(w) <= 2 else w.capitalize() for w in words),
        "Id": org.id,
        "IsUserSysAdmin": True,
        "LastUpdated": "2025-11-20T09:30:00Z",
        "OrganizationType": kind,
        "Purpose": "OrgGuard sandbox",
        "Region": REGIONS.get(org.name, "NA"),
        "SchemaType": "Standard",
        "State": 0,
        "StatusMessage": 6,  # InstancePickerReady
        "TenantId": TENANT,
        "TrialExpirationDate": "2026-12-31T00:00:00Z" if kind == 14 else None,
        "UniqueName": f"unq{org.id.replace('-', '')[:24]}",
        "UrlName": org.name,
        "Version": "9.2.25113.00165",
        "Url": f"{base}/orgs/{org.name}",
    }


def router(state: SandboxState) -> APIRouter:
    routes = APIRouter(prefix=PREFIX)

    @routes.get("/api/discovery/v2.0/Instances")
    async def instances(request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            challenge = f'Bearer authorization_uri="https://login.microsoftonline.com/common", resource_id="{PREFIX}"'
            return Response(status_code=401, headers={"WWW-Authenticate": challenge})
        base = str(request.base_url).rstrip("/")
        rows = [instance(org, base, i) for i, org in enumerate(state.orgs.values())]
        select = [p.strip() for p in request.query_params.get("$select", "").split(",") if p.strip()]
        if select:
            unknown = [p for p in select if rows and p not in rows[0]]
            if unknown:
                error = {"code": "0x80060888", "message": f"Could not find a property named '{unknown[0]}'."}
                return JSONResponse({"error": error}, status_code=400)
            rows = [{p: row[p] for p in select} for row in rows]
        context = f"{base}{PREFIX}/api/discovery/v2.0/$metadata#Instances"
        return JSONResponse(
            {"@odata.context": context, "value": rows},
            headers={"OData-Version": "4.0", "Content-Type": "application/json; odata.metadata=minimal"},
        )

    return routes

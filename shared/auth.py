"""Who is calling the admin API, and what they may do.

Behind App Service Authentication the platform's ``X-MS-CLIENT-PRINCIPAL``
header is trusted (the platform strips forged copies only when it is on);
locally a bearer token from settings stands for the Admin role.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

from shared.model import DomainError


class Role(IntEnum):
    READER = 1
    APPROVER = 2
    ADMIN = 3

    @property
    def app_role(self) -> str:
        return f"OrgGuard.{self.name.title()}"


class Unauthenticated(DomainError):
    status = 401
    title = "Authentication required"


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role

    def require(self, role: Role) -> None:
        if self.role < role:
            raise Forbidden(f"this needs the {role.app_role} role")


def _roles(claims: list[dict[str, str]], role_typ: str) -> Role | None:
    names = {c.get("val") for c in claims if c.get("typ") in (role_typ, "roles")}
    best = None
    for role in Role:
        if role.app_role in names:
            best = role
    return best


def principal_from_easyauth(header: str) -> Principal:
    try:
        doc = json.loads(base64.b64decode(header, validate=True))
        claims = doc["claims"]
        role_typ = doc.get("role_typ", "roles")
        name_typ = doc.get("name_typ", "name")
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise Unauthenticated("the client principal header is malformed") from None
    if not isinstance(claims, list):
        raise Unauthenticated("the client principal header is malformed")
    role = _roles(claims, role_typ)
    if role is None:
        raise Forbidden("the caller has no OrgGuard app role")
    name = next((c.get("val", "") for c in claims if c.get("typ") == name_typ), "") or "unknown"
    return Principal(name, role)


def authenticate(headers: Mapping[str, str], *, mode: str, admin_token: str | None) -> Principal:
    """The principal behind a request; raise Unauthenticated / Forbidden."""
    if mode == "easyauth":
        header = headers.get("x-ms-client-principal")
        if not header:
            raise Unauthenticated("sign in through App Service Authentication")
        return principal_from_easyauth(header)
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("send Authorization: Bearer <ORGGUARD_ADMIN_TOKEN>")
    if not admin_token or not hmac.compare_digest(token.strip().encode(), admin_token.encode()):
        raise Forbidden("the bearer token is not this OrgGuard's admin token")
    return Principal("local-admin", Role.ADMIN)

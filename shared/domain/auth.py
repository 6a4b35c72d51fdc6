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

from shared.domain.model import DomainError, hidden_character


class Role(IntEnum):
    READER = 1
    APPROVER = 2
    ADMIN = 3

    @property
    def app_role(self) -> str:
        return f"OrgGuard.{self.name.title()}"


class Unauthenticated(DomainError, status=401, title="Authentication required"):
    """No identity on a request that needs one."""


class Forbidden(DomainError, status=403, title="Forbidden"):
    """An identity without the role the request needs."""


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role

    def require(self, role: Role) -> None:
        if self.role < role:
            raise Forbidden(f"this needs the {role.app_role} role")


MAX_PRINCIPAL = 32 * 1024  # App Service's header with many group claims stays well under this


def _roles(claims: list[tuple[str, str]], role_typ: str) -> Role | None:
    names = {val for typ, val in claims if typ in (role_typ, "roles")}
    best = None
    for role in Role:
        if role.app_role in names:
            best = role
    return best


def _claims(doc: object) -> tuple[list[tuple[str, str]], str, str]:
    """The (typ, val) claims and the role and name claim types; ValueError for any other shape."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    claims, role_typ, name_typ = doc.get("claims"), doc.get("role_typ", "roles"), doc.get("name_typ", "name")
    if not isinstance(claims, list) or not isinstance(role_typ, str) or not isinstance(name_typ, str):
        raise ValueError("claims is not a list, or role_typ / name_typ is not text")
    pairs = []
    for claim in claims:
        if (
            not isinstance(claim, dict)
            or not isinstance(claim.get("typ"), str)
            or not isinstance(claim.get("val"), str)
        ):
            raise ValueError("a claim is not an object with text typ and val")
        pairs.append((claim["typ"], claim["val"]))
    return pairs, role_typ, name_typ


def principal_from_easyauth(header: str) -> Principal:
    """The caller from App Service's ``X-MS-CLIENT-PRINCIPAL``; 401 for a header of any other shape."""
    try:
        if len(header) > MAX_PRINCIPAL:
            raise ValueError("too large")
        claims, role_typ, name_typ = _claims(json.loads(base64.b64decode(header, validate=True)))
    except (binascii.Error, ValueError, RecursionError):  # bad base64, not UTF-8, not JSON, nesting, shape
        raise Unauthenticated("the client principal header is malformed") from None
    role = _roles(claims, role_typ)
    if role is None:
        raise Forbidden("the caller has no OrgGuard app role")
    name = next((val for typ, val in claims if typ == name_typ and val), "unknown")
    if hidden_character(name) is not None:
        raise Unauthenticated("the client principal's name holds a control character")
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
    if not admin_token or not hmac.compare_digest(token.encode(), admin_token.encode()):  # exactly, nothing trimmed
        raise Forbidden("the bearer token is not this OrgGuard's admin token")
    return Principal("local-admin", Role.ADMIN)

"""Request-scoped helpers shared by the routers: the container, the caller, the body."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BeforeValidator

from shared import bootstrap
from shared.dataverse.payloads import MAX_BODY, check_size
from shared.domain.auth import Principal, Role, authenticate
from shared.domain.model import hidden_character

if TYPE_CHECKING:
    from shared.config.settings import Settings


def container() -> bootstrap.Container:
    return bootstrap.container()


def webhook_settings() -> Settings:
    """The settings the webhooks answer by, without waiting for the container to be built.

    Read from the environment while the first request is still building the container (its
    ledger may be the stuck part); the built-in defaults if the environment is invalid, which
    the build itself then reports.
    """
    from shared.config.settings import Settings, SettingsError  # pydantic-settings: not on ``import function_app``

    c = bootstrap.built()
    if c is not None:
        return c.settings
    try:
        return Settings.from_env()
    except SettingsError:
        return Settings()


def caller(request: Request) -> Principal:
    c = bootstrap.container()
    return authenticate(request.headers, mode=c.settings.auth, admin_token=c.settings.admin_token)


# Declares the bearer scheme in the OpenAPI document (the Authorize button of /api/docs);
# ``authenticate`` reads the headers itself, so behind Easy Auth the platform's principal still counts.
BEARER = HTTPBearer(
    scheme_name="bearer",
    description="Locally ORGGUARD_ADMIN_TOKEN; behind App Service Authentication an Entra token for the app.",
    auto_error=False,
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


def role(needed: Role) -> Callable[..., Principal]:
    def dependency(request: Request, _token: Credentials) -> Principal:
        principal = caller(request)
        principal.require(needed)
        return principal

    return dependency


async def limited_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The body, refused with 413 as soon as it grows past ``limit``."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit():
        check_size(int(declared), limit=limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        check_size(size, limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _visible(value: object, *, allow: str) -> object:
    """Refuse control and invisible characters before pydantic trims white space off the ends."""
    if isinstance(value, str) and (bad := hidden_character(value, allow=allow)) is not None:
        raise ValueError(f"holds a control or invisible character (U+{ord(bad):04X})")
    return value


Name = Annotated[str, BeforeValidator(partial(_visible, allow=""))]
"""An org name, an address, a domain: nothing hidden anywhere in it."""
Prose = Annotated[str, BeforeValidator(partial(_visible, allow="\n\t"))]
"""A reason a person writes: line breaks and tabs, but no other control character (it goes to the audit log)."""


async def policy_body(request: Request) -> str:
    """A policy sent as the body (YAML or JSON), bounded, as UTF-8 text; otherwise 422 saying so."""
    raw = await limited_body(request)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        from shared.domain.policy import PolicyError

        raise PolicyError("the policy is not UTF-8 text", errors=[{"path": "", "message": "not UTF-8"}]) from None

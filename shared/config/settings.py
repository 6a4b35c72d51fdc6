"""The one settings loader: environment variables, same names as Azure app settings."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from shared.domain.model import DomainError, MailboxKey, hidden_character

GateOnError = Literal["block", "allow"]
AuthMode = Literal["token", "easyauth"]


class SettingsError(DomainError):
    title = "Invalid settings"


def inline_document(value: str) -> str | None:
    """The document itself when a setting carries it rather than a file name.

    In Azure, ORGGUARD_ORGS and ORGGUARD_POLICY hold the orgs (JSON, from
    infra/orgs.json) and the first policy (YAML text, from infra/policy.yaml):
    the deployed package ships neither file. A file name never starts with
    ``{`` or ``[`` nor spans lines, so the two cannot be confused.
    """
    text = value.strip()
    if text.startswith(("{", "[")) or "\n" in text:
        return value
    return None


@dataclass(frozen=True)
class Settings:
    ledger: str = "sqlite:///.orgguard/ledger.db"
    orgs: str = "orgs.yaml"
    policy: str = "policy.yaml"
    admin_token: str | None = None
    gate_on_error: GateOnError = "block"
    auth: AuthMode = "token"
    sweep_schedule: str = "0 0 */6 * * *"
    max_body: int = 256 * 1024
    app_insights: str | None = None  # APPLICATIONINSIGHTS_CONNECTION_STRING: telemetry to Azure Monitor
    app_insights_auth: str | None = None  # APPLICATIONINSIGHTS_AUTHENTICATION_STRING: Entra ingestion
    telemetry: str | None = None  # ORGGUARD_TELEMETRY: "console" or "file:PATH" for local telemetry
    graph_url: str | None = None  # Microsoft Graph base; None: no directory, no mail
    mail_from: str | None = None  # the mailbox notifications are sent from
    public_url: str | None = None  # the page's address, for links in mail
    graph_timeout_s: float = 3.0  # how long a decision waits for Graph before it goes on without it

    @property
    def mail(self) -> bool:
        """Whether notifications can be sent (Graph and a sender mailbox)."""
        return bool(self.graph_url and self.mail_from)

    gate_deadline_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        for name, value in e.items():
            if name.startswith("ORGGUARD_") and is_key_vault_reference(value):
                raise SettingsError(unresolved_reference(name), field=name)
        admin_token = e.get("ORGGUARD_ADMIN_TOKEN") or None
        if admin_token is not None and (problem := secret_problem(admin_token)):
            raise SettingsError(f"ORGGUARD_ADMIN_TOKEN {problem}", field="ORGGUARD_ADMIN_TOKEN")
        on_error = e.get("ORGGUARD_GATE_ON_ERROR", "block").strip().lower()
        if on_error not in ("block", "allow"):
            raise SettingsError("ORGGUARD_GATE_ON_ERROR must be 'block' or 'allow'", field="ORGGUARD_GATE_ON_ERROR")
        auth = e.get("ORGGUARD_AUTH", "token").strip().lower()
        if auth not in ("token", "easyauth"):
            raise SettingsError("ORGGUARD_AUTH must be 'token' or 'easyauth'", field="ORGGUARD_AUTH")
        telemetry = e.get("ORGGUARD_TELEMETRY", "").strip()
        if telemetry and telemetry != "console" and not (telemetry.startswith("file:") and telemetry[5:].strip()):
            raise SettingsError("ORGGUARD_TELEMETRY must be 'console' or 'file:PATH'", field="ORGGUARD_TELEMETRY")
        return cls(
            gate_deadline_s=gate_deadline(e.get("ORGGUARD_GATE_DEADLINE_S")),
            ledger=e.get("ORGGUARD_LEDGER") or cls.ledger,
            orgs=e.get("ORGGUARD_ORGS") or cls.orgs,
            policy=e.get("ORGGUARD_POLICY") or cls.policy,
            admin_token=admin_token,
            gate_on_error=on_error,  # type: ignore[arg-type]
            auth=auth,  # type: ignore[arg-type]
            sweep_schedule=e.get("ORGGUARD_SWEEP_SCHEDULE") or cls.sweep_schedule,
            app_insights=e.get("APPLICATIONINSIGHTS_CONNECTION_STRING") or None,
            app_insights_auth=e.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING") or None,
            telemetry=telemetry or None,
            graph_url=_url(e, "ORGGUARD_GRAPH_URL", loopback_http=True),
            mail_from=_address(e, "ORGGUARD_MAIL_FROM"),
            public_url=_url(e, "ORGGUARD_PUBLIC_URL", loopback_http=False, any_http=True),
            graph_timeout_s=_seconds(e, "ORGGUARD_GRAPH_TIMEOUT_S", cls.graph_timeout_s),
        )


def _url(e: Mapping[str, str], name: str, *, loopback_http: bool, any_http: bool = False) -> str | None:
    """An http(s) base URL without a trailing slash (msgraph-sdk's base_url must not end with one)."""
    raw = (e.get(name) or "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name} must be an http(s) URL, not {raw!r}", field=name)
    if parts.scheme == "http" and not any_http:
        from shared.config.urls import is_loopback

        if not (loopback_http and is_loopback(raw)):
            raise SettingsError(f"{name} must use https (plain http only on loopback, for the sandbox)", field=name)
    if parts.query or parts.fragment:
        raise SettingsError(f"{name} must not carry a query or fragment", field=name)
    return raw.rstrip("/")


def _address(e: Mapping[str, str], name: str) -> str | None:
    raw = (e.get(name) or "").strip()
    if not raw:
        return None
    try:
        return MailboxKey.parse(raw, field=name).address
    except DomainError as exc:
        raise SettingsError(f"{name}: {exc.detail}", field=name) from None


def _seconds(e: Mapping[str, str], name: str, default: float) -> float:
    raw = (e.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, not {raw!r}", field=name) from None
    if not 0 < value <= 50:
        raise SettingsError(f"{name} must be more than 0 and at most 50 seconds", field=name)
    return value


DATAVERSE_TIMEOUT_S = 60.0  # Dataverse cancels the save when its webhook has not answered by then
MAX_GATE_DEADLINE_S = 55.0  # the answer must leave before Dataverse stops listening, network included


def gate_deadline(raw: str | None) -> float:
    """``ORGGUARD_GATE_DEADLINE_S``: seconds, more than 0 and well under Dataverse's 60 (default 10)."""
    if raw is None or not raw.strip():
        return Settings.gate_deadline_s
    name = "ORGGUARD_GATE_DEADLINE_S"
    try:
        value = float(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, not {raw.strip()[:40]!r}", field=name) from None
    if not math.isfinite(value):
        raise SettingsError(f"{name} must be a finite number of seconds", field=name)
    if value <= 0:
        raise SettingsError(f"{name} must be more than 0 seconds", field=name)
    if value >= MAX_GATE_DEADLINE_S:
        raise SettingsError(
            f"{name} is {value:g} s; it must stay well under Dataverse's {DATAVERSE_TIMEOUT_S:g} s webhook timeout "
            f"(less than {MAX_GATE_DEADLINE_S:g} s; the default is {Settings.gate_deadline_s:g})",
            field=name,
        )
    return value


_KEY_VAULT_REFERENCE = re.compile(r"^\s*@Microsoft\.KeyVault\(", re.IGNORECASE)


def is_key_vault_reference(value: str) -> bool:
    """An App Service Key Vault reference the platform left as it was (it could not resolve it)."""
    return bool(_KEY_VAULT_REFERENCE.match(value))


def unresolved_reference(name: str) -> str:
    return (
        f"{name} holds an unresolved Key Vault reference (@Microsoft.KeyVault(...)): App Service could not "
        "resolve it, so the reference itself would be used as the secret. Give the app's managed identity "
        "access to the secret (Key Vault Secrets User) and check the reference's SecretUri or VaultName/SecretName"
    )


def secret_problem(value: str) -> str | None:
    """Why ``value`` cannot serve as a key or token compared exactly against an HTTP header, or None.

    HTTP trims the spaces around a header's value, so a secret with white space at its ends (a
    trailing newline from a file, say) could never match; control characters never belong in one.
    """
    if is_key_vault_reference(value):
        return "is an unresolved Key Vault reference (@Microsoft.KeyVault(...)), not a secret"
    if value != value.strip() or any(c.isspace() for c in value) or hidden_character(value) is not None:
        return "holds white space or a control character; a key must be sent and compared exactly"
    return None

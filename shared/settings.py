"""The one settings loader: environment variables, same names as Azure app settings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from shared.model import DomainError

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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
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
            ledger=e.get("ORGGUARD_LEDGER") or cls.ledger,
            orgs=e.get("ORGGUARD_ORGS") or cls.orgs,
            policy=e.get("ORGGUARD_POLICY") or cls.policy,
            admin_token=e.get("ORGGUARD_ADMIN_TOKEN") or None,
            gate_on_error=on_error,  # type: ignore[arg-type]
            auth=auth,  # type: ignore[arg-type]
            sweep_schedule=e.get("ORGGUARD_SWEEP_SCHEDULE") or cls.sweep_schedule,
            app_insights=e.get("APPLICATIONINSIGHTS_CONNECTION_STRING") or None,
            app_insights_auth=e.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING") or None,
            telemetry=telemetry or None,
        )

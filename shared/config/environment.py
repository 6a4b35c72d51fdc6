"""The process environment, and the one setting read before the settings are: the sweep's schedule.

``Settings`` (``settings.py``) reads every variable OrgGuard knows, on pydantic-settings; the timers need
ORGGUARD_SWEEP_SCHEDULE at import (their decorator takes it), and ``import function_app`` must not pay for
pydantic-settings, so that one variable is read here with the same rule (an empty variable is an unset one)
and ``Settings`` takes its default from here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

SWEEP_SCHEDULE: Final = "0 0 */6 * * *"  # ORGGUARD_SWEEP_SCHEDULE's default: every six hours


def environment() -> Mapping[str, str]:
    """The process environment. Read through here only: by ``Settings.from_env``, ``sweep_schedule``, and for
    the webhook keys an orgs file names as ``env:NAME`` (``shared.config.orgs``)."""
    return os.environ


def sweep_schedule(env: Mapping[str, str] | None = None) -> str:
    """ORGGUARD_SWEEP_SCHEDULE alone: the timer decorator needs it at import, before the settings are checked
    whole (a bad other setting must not stop the app from indexing its functions; the container reports it)."""
    return (environment() if env is None else env).get("ORGGUARD_SWEEP_SCHEDULE") or SWEEP_SCHEDULE

"""Bypassing custom business logic with the optional parameters Dataverse takes as request headers.

Source: "Bypass custom Dataverse logic" (powerapps-docs `developer/data-platform/bypass-custom-business-logic.md`):

* `MSCRM.BypassBusinessLogicExecution: CustomSync`, `CustomAsync` or `CustomSync,CustomAsync`
  bypasses synchronous, asynchronous or both kinds of custom logic;
* `MSCRM.BypassBusinessLogicExecutionStepIds: <ids>` bypasses only those registered steps ("If
  the step ID passed doesn't run in the given request, it's ignored"); "the default limit on the
  number of steps you can pass is three";
* the legacy `MSCRM.BypassCustomPluginExecution: true` bypasses synchronous logic only;
* the first two need the `prvBypassCustomBusinessLogic` privilege, the legacy one
  `prvBypassCustomPlugins`; "By default, only users with the system administrator security
  role have this privilege". A caller without it gets PrivilegeDenied (`0x80040220`, "The user
  does not hold the necessary privileges.", data-service-error-codes.md), HTTP 403.

OrgGuard's webhook steps are custom steps here (FACTS.md: very likely, unconfirmed). The
wording of the errors for a malformed header value is the sandbox's own (undocumented).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sandbox.odata import BAD_REQUEST, ODataError
from sandbox.state import OrgState, SandboxState
from sandbox.validation import GUID

BUSINESS_LOGIC = "mscrm.bypassbusinesslogicexecution"
STEP_IDS = "mscrm.bypassbusinesslogicexecutionstepids"
LEGACY = "mscrm.bypasscustompluginexecution"
HEADERS = (BUSINESS_LOGIC, STEP_IDS, LEGACY)
PRV_BUSINESS_LOGIC = "prvBypassCustomBusinessLogic"
PRV_PLUGINS = "prvBypassCustomPlugins"
PRIVILEGE_IDS = {
    PRV_BUSINESS_LOGIC: "0ea552b0-a491-4470-9a1b-82068deccf66",
    PRV_PLUGINS: "148a9eaf-d0c4-4196-9852-c3a38e35f6a1",
}
PRIVILEGE_DENIED = "0x80040220"
_KINDS = {"customsync": "sync", "customasync": "async"}


@dataclass(frozen=True)
class Bypass:
    """Which custom steps one request skips."""

    sync: bool = False
    async_: bool = False
    step_ids: frozenset[str] = frozenset()

    def skips(self, step_id: str, mode: int) -> bool:
        return step_id.lower() in self.step_ids or (self.sync if mode == 0 else self.async_)


NOTHING = Bypass()


def holds(org: OrgState, user_id: str, privilege: str) -> bool:
    """System Administrators hold both bypass privileges; anyone else only if granted."""
    return user_id in org.administrators or privilege in org.privileges.get(user_id, set())


def requested(state: SandboxState, org: OrgState, user_id: str, headers: Mapping[str, str]) -> Bypass:
    """The bypass a request asks for (lower-case header names), or the 400/403 Dataverse answers."""
    sync = async_ = False
    step_ids: frozenset[str] = frozenset()
    needed: list[str] = []
    if BUSINESS_LOGIC in headers:
        kinds = _kinds(headers[BUSINESS_LOGIC])
        sync, async_ = "sync" in kinds, "async" in kinds
        needed.append(PRV_BUSINESS_LOGIC)
    if STEP_IDS in headers:
        step_ids = _step_ids(headers[STEP_IDS], int(state.setting(org, "bypass_step_ids_limit")))
        needed.append(PRV_BUSINESS_LOGIC)
    if LEGACY in headers and _legacy(headers[LEGACY]):
        sync = True
        needed.append(PRV_PLUGINS)
    for privilege in needed:
        if not holds(org, user_id, privilege):
            raise ODataError(
                403,
                f"The user does not hold the necessary privileges. Principal user (Id={user_id}) is missing "
                f"{privilege} privilege (Id={PRIVILEGE_IDS[privilege]}).",
                PRIVILEGE_DENIED,
            )
    return Bypass(sync, async_, step_ids) if needed else NOTHING


def _kinds(value: str) -> set[str]:
    tokens = [token.strip().lower() for token in value.split(",") if token.strip()]
    if not tokens or any(token not in _KINDS for token in tokens):
        raise ODataError(
            400,
            f"The value '{value}' of MSCRM.BypassBusinessLogicExecution is not valid: "
            "use CustomSync, CustomAsync or CustomSync,CustomAsync.",
            BAD_REQUEST,
        )
    return {_KINDS[token] for token in tokens}


def _step_ids(value: str, limit: int) -> frozenset[str]:
    ids = [token.strip().strip('"').strip() for token in value.strip().strip('"').split(",") if token.strip()]
    bad = [token for token in ids if not GUID.match(token)]
    if not ids or bad:
        raise ODataError(
            400,
            f"MSCRM.BypassBusinessLogicExecutionStepIds must list step ids (GUIDs); '{bad[0] if bad else value}' "
            "is not one.",
            BAD_REQUEST,
        )
    if len(ids) > limit:
        raise ODataError(
            400,
            f"MSCRM.BypassBusinessLogicExecutionStepIds lists {len(ids)} steps; the limit "
            f"(BypassBusinessLogicExecutionStepIdsLimit) is {limit}.",
            BAD_REQUEST,
        )
    return frozenset(token.lower() for token in ids)


def _legacy(value: str) -> bool:
    text = value.strip().lower()
    if text not in ("true", "false"):
        raise ODataError(400, f"MSCRM.BypassCustomPluginExecution must be true or false, not '{value}'.", BAD_REQUEST)
    return text == "true"

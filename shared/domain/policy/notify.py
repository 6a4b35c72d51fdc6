"""Who OrgGuard tells, by mail through Graph (the policy's ``notify:``); every key has a default."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator

from shared.domain.policy.values import Duration, OwnerOrg, Recipients, Says, Section

Flag = Annotated[bool, Field(strict=True)]


class Notify(Section):
    """Recipients are addresses or ``group:<name>`` (the group's members, through Graph)."""

    # Keys OrgGuard does not know are kept (a newer policy may carry them) and named in the warnings.
    model_config = ConfigDict(extra="allow")
    shape = "must be a mapping like {stopped_admin: true, operations: [...]}"
    noun = "notify"
    null_is_absent = ("operations", "owners")

    stopped_admin: Flag = True  # the admin whose claim was blocked or held
    approvers: Flag = True  # approval.approvers, when a case is held
    remind_before: Duration | None = timedelta(days=1)  # a reminder this long before a held case expires
    expired: Flag = True  # the approvers and the stopped admin, when a held case expired
    # per owner org: who hears of a block or override carried out
    owners: Annotated[dict[OwnerOrg, Recipients], Says("a mapping of org names to recipients")] = {}
    operations: Recipients = []  # a digest of failed actions
    digest_every: Duration = timedelta(days=1)

    @model_validator(mode="before")
    @classmethod
    def _keys_as_text(cls, data: Any) -> Any:
        """A key OrgGuard does not know is kept by its text (``1:`` too), to be named in the warnings."""
        return {str(k): v for k, v in data.items()} if isinstance(data, dict) else data


NOTIFY_KEYS: tuple[str, ...] = tuple(Notify.keys())

"""What a valid policy will not do as written in this deployment (shown on validate, explain and PUT)."""

from __future__ import annotations

from shared.domain.policy.effects import label
from shared.domain.policy.notify import NOTIFY_KEYS
from shared.domain.policy.schema import Policy
from shared.domain.policy.users import user_conditions


def policy_warnings(policy: Policy, *, directory: bool, mail: bool) -> list[str]:
    """Each thing ``policy`` will not do here: user conditions without Graph, notices without mail, unknown keys."""
    out: list[str] = []
    used = user_conditions(policy)
    if used and not directory:
        more = f" (and {len(used) - 1} more)" if len(used) > 1 else ""
        out.append(
            f"{used[0]}{more} reads the user through Microsoft Graph, but no Graph is configured "
            "(ORGGUARD_GRAPH_URL): these conditions never match"
        )
    n = policy.notify
    out += [
        f"notify.{name} is not a notify setting this OrgGuard knows ({', '.join(NOTIFY_KEYS)}); it is ignored"
        for name in n.model_extra or {}
    ]
    warns = [f"rules[{i}]" for i, r in enumerate(policy.rules) if "warn" in label(r.effect)]
    if policy.default.value == "warn":
        warns.append("default")
    if warns and not mail:
        out.append(
            f"{warns[0]}{' (and more)' if len(warns) > 1 else ''} warns, but no mail can be sent "
            "(ORGGUARD_GRAPH_URL and ORGGUARD_MAIL_FROM): a warned claim is only recorded"
        )
    tells = n.stopped_admin or (n.approvers and policy.approval.approvers) or n.owners or n.operations
    if "notify" in policy.model_fields_set and tells and not mail:
        out.append(
            "notify names people to tell, but no mail can be sent (ORGGUARD_GRAPH_URL and ORGGUARD_MAIL_FROM): "
            "nobody is told"
        )
    return out

"""The policy: which org keeps a mailbox when a second org claims it.

``schema`` and ``notify`` are the policy as written (pydantic models), ``values`` the
kinds of value they hold, ``parsing`` turns a read document into a ``Policy`` or a
``PolicyError`` with every mistake and its path, ``engine`` decides, ``users`` is the
directory a decision may ask, ``warnings`` says what a valid policy will not do here.
Reading policy text (YAML or JSON) is ``shared.config.policy_file``'s.
"""

from shared.domain.policy.effects import ENTRY_POINTS, RULE_EFFECTS, ByOrigin, RuleEffect
from shared.domain.policy.engine import DEFAULT_RULE, UNCONTESTED, Situation, decide, designated_primary, explain
from shared.domain.policy.notify import NOTIFY_KEYS, Notify
from shared.domain.policy.parsing import PolicyError, parse_policy
from shared.domain.policy.schema import (
    DEFAULT_EFFECTS,
    Approval,
    Designation,
    Mode,
    OnExpiry,
    Policy,
    Rule,
    When,
    default_policy,
)
from shared.domain.policy.users import (
    USER_PREFIX,
    NoUserDirectory,
    UserDirectory,
    UserUnknown,
    reads_groups,
    user_conditions,
)
from shared.domain.policy.values import GROUP_PREFIX, parse_duration
from shared.domain.policy.warnings import policy_warnings

__all__ = [
    "DEFAULT_EFFECTS",
    "DEFAULT_RULE",
    "ENTRY_POINTS",
    "GROUP_PREFIX",
    "NOTIFY_KEYS",
    "RULE_EFFECTS",
    "UNCONTESTED",
    "USER_PREFIX",
    "Approval",
    "ByOrigin",
    "Designation",
    "Mode",
    "NoUserDirectory",
    "Notify",
    "OnExpiry",
    "Policy",
    "PolicyError",
    "Rule",
    "RuleEffect",
    "Situation",
    "UserDirectory",
    "UserUnknown",
    "When",
    "decide",
    "default_policy",
    "designated_primary",
    "explain",
    "parse_duration",
    "parse_policy",
    "policy_warnings",
    "reads_groups",
    "user_conditions",
]

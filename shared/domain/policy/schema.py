"""The policy as an admin writes it (normative YAML in DESIGN.md, "Policy"), as pydantic models.

Each rule a value must follow is declared here or in ``values.py``; ``parsing.py`` runs
them and words what they refuse.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)

from shared.domain.model import ACT_ONLY, Effect, Origin
from shared.domain.policy.effects import RULE_EFFECTS, ByOrigin, RuleEffect, effect_for, effect_spec
from shared.domain.policy.notify import Notify
from shared.domain.policy.values import (
    AddressPatterns,
    DomainPatterns,
    Duration,
    Fences,
    Kinds,
    Orgs,
    OrgTypes,
    Origins,
    Recipients,
    Says,
    Section,
    Texts,
    Window,
    registered,
)

Mode = Literal["enforce", "dry-run"]
OnExpiry = Literal["block", "override"]
DefaultEffect = Literal[Effect.BLOCK, Effect.OVERRIDE, Effect.HOLD, Effect.AUDIT, Effect.WARN]

DEFAULT_EFFECTS: tuple[str, ...] = ("block", "override", "hold", "audit", "warn")
RULE_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"


class When(Section):
    """Conditions of a rule or designation; all set ones must match. None = not set."""

    model_config = ConfigDict(validate_by_alias=True, serialize_by_alias=True)
    shape = "must be a mapping of conditions"

    claimant: Orgs = None
    owner: Orgs = None
    claimant_type: OrgTypes = Field(default=None, alias="claimant.type")
    owner_type: OrgTypes = Field(default=None, alias="owner.type")
    origin: Origins = None
    kind: Kinds = None
    mailbox_address: AddressPatterns = Field(default=None, alias="mailbox.address")
    mailbox_domain: DomainPatterns = Field(default=None, alias="mailbox.domain")
    user_usage_location: Texts = Field(default=None, alias="user.usageLocation")
    user_country: Texts = Field(default=None, alias="user.country")
    user_department: Texts = Field(default=None, alias="user.department")
    user_company_name: Texts = Field(default=None, alias="user.companyName")
    user_office_location: Texts = Field(default=None, alias="user.officeLocation")
    user_member_of: Texts = Field(default=None, alias="user.memberOf")
    during: Window = None

    @classmethod
    def unknown_key(cls, key: object) -> str:
        return f"unknown condition {key!r}; use one of {', '.join(cls.keys())}"

    @model_serializer(mode="wrap")
    def _only_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        return {name: value for name, value in dumped.items() if value is not None}


class Designation(Section):
    """``primary`` entry: mailboxes matching ``when`` should be owned by ``org``."""

    shape = "a designation must be a mapping with org and when"
    noun = "a designation"
    null_is_absent = ("when",)

    when: When = When.model_construct()  # as When(): the defaults, without building the validator at import
    org: Annotated[
        str,
        StringConstraints(strict=True, strip_whitespace=True, min_length=1),
        AfterValidator(registered),
        Field(description="the org that should own these mailboxes"),
        Says("an org name"),
    ]


class Rule(Section):
    shape = "a rule must be a mapping with id, effect and optionally when"
    noun = "a rule"
    null_is_absent = ("when", "description")

    id: Annotated[
        str,
        Field(strict=True, pattern=RULE_ID, description="a short name that decisions and cases cite"),
        Says("letters, digits, '.', '_', ':' or '-' (at most 100)"),
    ]
    when: When = When.model_construct()  # as When(): the defaults, without building the validator at import
    effect: Annotated[
        RuleEffect | ByOrigin,
        BeforeValidator(effect_spec),
        Field(description=f"one of {', '.join(RULE_EFFECTS)}, or one per entry point ({{gate: block, after: audit}})"),
    ]
    dry_run: Annotated[bool, Field(strict=True)] = False
    description: Annotated[str | None, Field(strict=True)] = None

    def effect_for(self, origin: Origin) -> str:
        """The rule's effect on a claim heard through ``origin`` (``effects.py``)."""
        return effect_for(self.effect, origin)


class Approval(Section):
    shape = "must be a mapping with approvers, expires_after and on_expiry"
    noun = "approval"
    null_is_absent = ("approvers",)

    approvers: Recipients = []
    expires_after: Duration = timedelta(days=3)
    on_expiry: OnExpiry = "block"


def _not_prefer_primary(value: object) -> object:
    if value == "prefer-primary":
        raise ValueError(
            "prefer-primary cannot be the default: when neither org is designated "
            "there is no rule left to fall through to; use block, override, hold or audit"
        )
    return value


class Policy(Section):
    """A whole policy; keys OrgGuard does not know at the top level are left alone (a newer policy may add some)."""

    model_config = ConfigDict(extra="ignore")
    shape = "the policy must be a mapping with version, mode, default and rules"
    null_is_absent = ("primary", "rules", "approval", "notify", "fence")

    version: Annotated[
        int,
        Field(strict=True, ge=1, description="a positive whole number, raised with every change"),
        Says("a positive whole number"),
    ]
    mode: Mode = "enforce"
    default: Annotated[DefaultEffect, BeforeValidator(_not_prefer_primary), Field(title="effect")] = Effect.HOLD
    primary: list[Designation] = []
    rules: list[Rule] = []
    approval: Approval = Approval.model_construct()  # as Approval() (a test holds them equal)
    notify: Notify = Notify.model_construct()  # as Notify()
    fence: Annotated[
        Fences, Field(description="what a demote sets to None in the losing org: act, or act and email")
    ] = ACT_ONLY


def default_policy() -> Policy:
    """What applies before any policy was saved: every competing claim waits for a human.

    Version 0 is what no saved policy can be, so it is built without validation.
    """
    return Policy.model_construct(version=0)

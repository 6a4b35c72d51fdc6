"""What a policy's values may be: each kind of value, its rule, and the sentence that refuses it.

The policy's models (``schema.py``, ``notify.py``) are built from these types and pydantic
applies them. A rule pydantic states itself (a type, a choice, a pattern, a bound, a required
or unknown key) is declared on the model; a rule it cannot state is a validator here, raising
``ValueError`` with the sentence an admin reads. ``parsing.py`` turns either into one error
with its path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar

import idna
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationInfo, model_validator

from shared.domain.environments import OrgType
from shared.domain.model import ClaimKind, DomainError, Fence, MailboxKey, Origin, hidden_character

KNOWN_ORGS = "known_orgs"  # the validation context's registered org names (absent: not checked)
GROUP_PREFIX = "group:"
_GLOB = re.compile(r"[*?\[\]]")
_DURATION = re.compile(
    r"^P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?$"
)


def kind(value: object) -> str:
    """How a wrong value is named in an error message."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value[:60]!r}"
    if isinstance(value, datetime | date):
        return f"the date {value.isoformat()}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"


@dataclass(frozen=True)
class Says:
    """What a field must be, in words, for the sentence when pydantic refuses its value ("must be ..., not ...")."""

    what: str


class Section(BaseModel):
    """A mapping in the policy: its keys are its fields, and an unknown key is an error.

    ``shape`` says what the mapping must be when something else is written there; the keys
    in ``null_is_absent`` may be written as null, meaning "as by default".
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)  # built when a policy is first read

    shape: ClassVar[str] = "must be a mapping"
    noun: ClassVar[str] = "it"
    null_is_absent: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and cls.null_is_absent:
            return {k: v for k, v in data.items() if not (v is None and k in cls.null_is_absent)}
        return data

    @classmethod
    def keys(cls) -> list[str]:
        return [f.alias or name for name, f in cls.model_fields.items()]

    @classmethod
    def unknown_key(cls, key: object) -> str:
        return f"unknown key {key!r}; {cls.noun} has {', '.join(cls.keys())}"


# --- text, and one value or a list of them ---------------------------------------------------


def _text(value: object) -> str:
    """Non-empty text without hidden characters, trimmed."""
    if isinstance(value, str):
        if (bad := hidden_character(value)) is not None:
            raise ValueError(f"holds a control or invisible character (U+{ord(bad):04X})")
        if value.strip():
            return value.strip()
    if isinstance(value, bool):
        raise ValueError(f"must be text, not {kind(value)}; YAML reads bare yes/no/on/off/NO as booleans, so quote it")
    raise ValueError(f"must be non-empty text, not {kind(value)}")


def _one_or_more(value: object) -> list[object]:
    """A condition names one value or a non-empty list of them."""
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ValueError("must name at least one value")
    return values


def registered(name: str, info: ValidationInfo) -> str:
    """The org name, when it is one of the registered orgs the validation context names (or none are named)."""
    known = info.context.get(KNOWN_ORGS) if isinstance(info.context, Mapping) else None
    if known is not None and name not in known:
        raise ValueError(f"{name!r} is not a registered org (registered: {', '.join(sorted(known)) or 'none'})")
    return name


# A condition's value types: a condition written as null is an error, not "no condition", so null is
# checked too (the field's default None means the condition is not set).
Text = Annotated[str, BeforeValidator(_text)]
OrgName = Annotated[str, BeforeValidator(_text), AfterValidator(registered)]
Texts = Annotated[tuple[Text, ...] | None, BeforeValidator(_one_or_more)]
Orgs = Annotated[tuple[OrgName, ...] | None, BeforeValidator(_one_or_more)]


def _among(allowed: type[StrEnum]) -> Callable[[object], list[object]]:
    """One or more of ``allowed``; an unknown one is named at the condition (the others pass on to be checked)."""
    names = tuple(a.value for a in allowed)

    def check(value: object) -> list[object]:
        values = _one_or_more(value)
        for item in values:
            try:
                name = _text(item)
            except ValueError:
                continue  # said at its own place in the list
            if name not in names:
                raise ValueError(f"unknown value {name!r}; use one of {', '.join(names)}")
        return values

    return check


Origins = Annotated[tuple[Annotated[Origin, BeforeValidator(_text)], ...] | None, BeforeValidator(_among(Origin))]
Kinds = Annotated[tuple[Annotated[ClaimKind, BeforeValidator(_text)], ...] | None, BeforeValidator(_among(ClaimKind))]
OrgTypes = Annotated[tuple[Annotated[OrgType, BeforeValidator(_text)], ...] | None, BeforeValidator(_among(OrgType))]


def _fences_act(value: tuple[Fence, ...]) -> tuple[Fence, ...]:
    """ACT is always fenced: it is what stops the losing org from claiming the mailbox; duplicates go."""
    if Fence.ACT not in value:
        raise ValueError("must include act: a demote always sets appointments, contacts and tasks to None")
    return tuple(dict.fromkeys(value))


Fences = Annotated[
    tuple[Annotated[Fence, BeforeValidator(_text)], ...], BeforeValidator(_among(Fence)), AfterValidator(_fences_act)
]


# --- mailbox patterns ------------------------------------------------------------------------


def _domain_pattern(pattern: str) -> str:
    """Lower-case, IDNA (``bücher.de`` -> ``xn--bcher-kva.de``) so it compares with MailboxKey."""
    if "@" in pattern or not pattern.strip("."):
        raise ValueError(f"{pattern!r} is not a domain pattern like contoso.com or *.contoso.com")
    labels = []
    for label in pattern.rstrip(".").split("."):
        if label.isascii() or _GLOB.search(label):
            labels.append(label.lower())
            continue
        try:
            labels.append(str(idna.encode(label, uts46=True).decode("ascii")).lower())
        except (idna.IDNAError, UnicodeError):
            raise ValueError(f"{pattern!r} is not a valid domain name") from None
    return ".".join(labels)


def _address_pattern(pattern: str) -> str:
    local, at, domain = pattern.rpartition("@")
    if not at or not local:
        raise ValueError(
            f"{pattern!r} is not an address pattern like ceo@contoso.com or *@contoso.com "
            "(use mailbox.domain for a domain)"
        )
    return f"{local.casefold()}@{_domain_pattern(domain)}"


AddressPatterns = Annotated[
    tuple[Annotated[str, BeforeValidator(_text), AfterValidator(_address_pattern)], ...] | None,
    BeforeValidator(_one_or_more),
]
DomainPatterns = Annotated[
    tuple[Annotated[str, BeforeValidator(_text), AfterValidator(_domain_pattern)], ...] | None,
    BeforeValidator(_one_or_more),
]


# --- dates -----------------------------------------------------------------------------------


def _day(value: object) -> date:
    if isinstance(value, datetime):
        raise ValueError(f"must be a date like 2026-11-01, without a time of day, not {value.isoformat()}")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise ValueError(f"{value!r} is not a date like 2026-11-01")
    raise ValueError(f"must be a date like 2026-11-01, not {kind(value)}")


def _two_days(value: object) -> object:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"must be [start, end] dates like [2026-11-01, 2026-12-31], not {kind(value)}")
    return value


def _ordered(window: tuple[date, date] | None) -> tuple[date, date] | None:
    if window is None:
        return None
    start, end = window
    if end < start:
        raise ValueError(f"ends ({end}) before it starts ({start})")
    return window


Day = Annotated[date, BeforeValidator(_day)]
Window = Annotated[tuple[Day, Day] | None, BeforeValidator(_two_days), AfterValidator(_ordered)]


# --- people to tell ---------------------------------------------------------------------------


def _recipient(name: str) -> str:
    """An address (normalized) or ``group:<name>``."""
    if name.casefold().startswith(GROUP_PREFIX):
        group = name[len(GROUP_PREFIX) :].strip()
        if not group:
            raise ValueError("group: needs the group's display name, like group:OrgGuard Approvers")
        return f"{GROUP_PREFIX}{group}"
    try:
        return MailboxKey.parse(name).address
    except DomainError as exc:
        raise ValueError(f"{name!r} is neither an address nor group:<name> ({exc.detail})") from None


def _listed(value: object) -> object:
    """One recipient or a list of them; an empty list is nobody."""
    return value if isinstance(value, list | tuple) else [value]


Recipients = Annotated[
    list[Annotated[str, BeforeValidator(_text), AfterValidator(_recipient)]], BeforeValidator(_listed)
]


def _org_key(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be keyed by an org name, not {kind(value)}")
    return value.strip()


OwnerOrg = Annotated[str, BeforeValidator(_org_key), AfterValidator(registered)]


# --- lengths of time --------------------------------------------------------------------------


def parse_duration(value: object) -> timedelta:
    """An ISO 8601 duration with a fixed length (weeks, days, hours, minutes, seconds): P3D, PT12H, P1DT2H."""
    if not isinstance(value, str):
        raise ValueError(f"must be an ISO 8601 duration like P3D, PT12H or P1DT2H, not {kind(value)}")
    match = _DURATION.match(value.strip().upper())
    if not match or value.strip().upper() in ("P", "PT") or value.strip().upper().endswith("T"):
        raise ValueError(f"{value!r} is not an ISO 8601 duration like P3D, PT12H or P1DT2H")
    parts = match.groupdict()
    if parts["years"] or parts["months"]:
        raise ValueError(f"{value!r} uses years or months, which have no fixed length; use days (P30D) or weeks")
    try:
        length = timedelta(
            weeks=int(parts["weeks"] or 0),
            days=int(parts["days"] or 0),
            hours=int(parts["hours"] or 0),
            minutes=int(parts["minutes"] or 0),
            seconds=float((parts["seconds"] or "0").replace(",", ".")),
        )
    except OverflowError:
        raise ValueError(f"{value!r} is longer than any calendar allows") from None
    if length <= timedelta(0):
        raise ValueError(f"{value!r} must be longer than zero")
    return length


def _duration(value: object) -> object:
    return value if isinstance(value, timedelta) else parse_duration(value)


Duration = Annotated[timedelta, BeforeValidator(_duration)]

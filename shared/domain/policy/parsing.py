"""From a read document to a ``Policy``, or a ``PolicyError`` naming every mistake with its path.

An admin fixing a policy wants every mistake at once, each with a path
(``rules[1].effect``) and a sentence. Pydantic checks the document against the models
and reports every error it finds; this module words each one (``Says``, a field's
description, a section's shape) and adds the check that compares entries with each
other (rule ids are unique), which pydantic leaves to the whole document. Errors are
listed in the order the document is written, each section's cross-checks after its
own errors. Reading the text (YAML or JSON, within bounds) is configuration's job
(``shared.config.policy_file``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from shared.domain.model import DomainError
from shared.domain.policy.schema import Policy
from shared.domain.policy.values import KNOWN_ORGS, Says, Section, kind

_GENERIC = {"list_type": "a list", "bool_type": "true or false", "string_type": "text", "dict_type": "a mapping"}


class PolicyError(DomainError, status=422, title="Invalid policy"):
    """A policy that cannot be used, with every error found and where it is."""

    def __init__(self, detail: str, *, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail, field="policy")
        self.errors: list[dict[str, str]] = errors if errors is not None else [{"path": "", "message": detail}]

    @classmethod
    def listing(cls, errors: list[dict[str, str]]) -> PolicyError:
        """The error for ``errors`` (at least one), its detail naming the first and how many more."""
        first = errors[0]
        where = f"{first['path']}: " if first["path"] else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return cls(f"{where}{first['message']}{more}", errors=errors)


def parse_policy(doc: object, *, known_orgs: Collection[str] | None = None) -> Policy:
    """The policy in ``doc`` (a document already read from YAML or JSON), checked whole.

    With ``known_orgs``, every org a rule, designation or notify.owners names must be one of them.
    """
    if doc is None:
        raise PolicyError.listing(
            [{"path": "", "message": "the policy is empty; it needs at least version, default and rules"}]
        )
    context = None if known_orgs is None else {KNOWN_ORGS: frozenset(known_orgs)}
    found: list[_Found] = []
    policy: Policy | None = None
    try:
        policy = Policy.model_validate(doc, context=context)
    except ValidationError as exc:
        found = [_Found.at(e["loc"], doc, _sentence(e)) for e in exc.errors(include_url=False)]
    found += _duplicate_ids(doc)
    if found or policy is None:
        found.sort(key=lambda f: (f.place[:1], f.crosscheck, f.place))
        raise PolicyError.listing([{"path": f.path, "message": f.message} for f in found])
    return policy


@dataclass(frozen=True)
class _Found:
    path: str  # rules[0].when.user.usageLocation[1]
    place: tuple[int, ...]  # where the path is written in the document, for the order of the list
    message: str
    crosscheck: bool = False

    @classmethod
    def at(cls, loc: tuple[int | str, ...], doc: object, message: str, *, crosscheck: bool = False) -> _Found:
        """The path as written: an index only where the document has a list (one value may stand for a list)."""
        path, place, node = "", [], doc
        for part in loc:
            if isinstance(node, Mapping) and part in node:
                place.append(list(node).index(part))
                path, node = (f"{path}.{part}" if path else str(part)), node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                place.append(part)
                path, node = f"{path}[{part}]", node[part]
            elif isinstance(part, str) and part != "[key]":  # a key that is missing
                place.append(-1)
                path, node = (f"{path}.{part}" if path else part), None
        return cls(path, tuple(place), message, crosscheck)


def _duplicate_ids(doc: object) -> list[_Found]:
    """Rule ids are unique: the second use of one names the first."""
    rules = doc.get("rules") if isinstance(doc, Mapping) else None
    if not isinstance(rules, list):
        return []
    first: dict[str, int] = {}
    found = []
    for i, raw in enumerate(rules):
        rule_id = raw.get("id") if isinstance(raw, Mapping) else None
        if not isinstance(rule_id, str):
            continue
        if rule_id in first:
            message = f"duplicate rule id {rule_id!r}; rules[{first[rule_id]}] has it already"
            found.append(_Found.at(("rules", i, "id"), doc, message, crosscheck=True))
        else:
            first[rule_id] = i
    return found


def _sentence(error: ErrorDetails) -> str:
    """What pydantic refused, in the words an admin reads."""
    loc, ctx = error["loc"], error.get("ctx") or {}
    if error["type"] == "value_error":  # a rule of values.py, which words its own refusal
        return str(ctx.get("error", error["msg"]))
    if error["type"] in ("extra_forbidden", "invalid_key"):
        return _section_of(loc[:-1]).unknown_key(loc[-1])
    if error["type"] == "model_type":
        return f"{_section_of(loc).shape}, not {kind(error['input'])}"
    name, field = _field_at(loc)
    if field is not None and error["type"] == "missing":
        return f"is required: {field.description}"
    if field is not None and error["type"] == "literal_error":
        allowed = [str(getattr(a, "value", a)) for a in get_args(field.annotation)]
        shown = repr(error["input"]) if isinstance(error["input"], str) else kind(error["input"])
        return f"unknown {field.title or name} {shown}; use one of {', '.join(allowed)}"
    says = next((m.what for m in field.metadata if isinstance(m, Says)), None) if field else None
    what = says or _GENERIC.get(error["type"])
    return f"must be {what}, not {kind(error['input'])}" if what else error["msg"]


def _walk(loc: tuple[int | str, ...]) -> tuple[type[Section], str, FieldInfo | None]:
    """The section the last field on ``loc`` belongs to, and that field (None: the section itself, or unknown)."""
    section: type[Section] = Policy
    name, field = "", None
    for part in loc:
        if not isinstance(part, str):
            continue  # an index into a list
        if field is not None:
            inner = _section_in(field.annotation)
            if inner is None:  # further parts are inside the field's value (a key of notify.owners)
                break
            section = inner
        fields = {f.alias or n: (n, f) for n, f in section.model_fields.items()}
        if part not in fields:
            return section, part, None
        name, field = fields[part]
    return section, name, field


def _field_at(loc: tuple[int | str, ...]) -> tuple[str, FieldInfo | None]:
    _, name, field = _walk(loc)
    return name, field


def _section_of(loc: tuple[int | str, ...]) -> type[Section]:
    """The section the value at ``loc`` is (or is in)."""
    section, _, field = _walk(loc)
    return (_section_in(field.annotation) if field is not None else None) or section


def _section_in(annotation: Any) -> type[Section] | None:
    """The section type a field holds (itself, or in a list of them)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation if issubclass(annotation, Section) else None
    return next((s for a in get_args(annotation) if (s := _section_in(a)) is not None), None)

"""The policy engine: which org keeps a mailbox when a second org claims it.

Pure on purpose: it parses the text it is handed and decides from a
``Situation`` that already holds everything a decision reads (the claim, the
ledger's owner, the user's Graph attributes, the time). The gate, the queue,
the sweep, ``POST /api/policy/evaluate`` and ``orgguard policy explain`` all
call the same ``decide``, so they cannot disagree.

Validation walks the raw document itself rather than leaning on pydantic's
errors: an admin fixing a policy wants every mistake at once, with a path
(``rules[1].effect``) and a sentence, including the cross-field ones (duplicate
ids, unregistered orgs) in rules that are broken in other ways too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any, Literal, Protocol

import idna
import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, ValidationError, model_serializer

from shared.config.documents import BoundedLoader, TooComplex, load_json
from shared.domain.model import ClaimKind, Decision, DomainError, Effect, MailboxKey, Origin, hidden_character

Mode = Literal["enforce", "dry-run"]
RuleEffect = Literal["block", "override", "hold", "audit", "prefer-primary"]
OnExpiry = Literal["block", "override"]

RULE_EFFECTS: tuple[str, ...] = ("block", "override", "hold", "audit", "prefer-primary")
DEFAULT_EFFECTS: tuple[str, ...] = ("block", "override", "hold", "audit")
UNCONTESTED = "uncontested"
DEFAULT_RULE = "default"


class PolicyError(DomainError):
    """A policy that cannot be used, with every error found and where it is."""

    status = 422
    title = "Invalid policy"

    def __init__(self, detail: str, *, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail, field="policy")
        self.errors: list[dict[str, str]] = errors if errors is not None else [{"path": "", "message": detail}]


# ---------------------------------------------------------------------------
# The policy as loaded (normative YAML in DESIGN.md, "Policy")


class When(BaseModel):
    """Conditions of a rule or designation; all set ones must match. None = not set."""

    model_config = ConfigDict(frozen=True, validate_by_alias=True, serialize_by_alias=True)

    claimant: tuple[str, ...] | None = None
    owner: tuple[str, ...] | None = None
    origin: tuple[Origin, ...] | None = None
    kind: tuple[ClaimKind, ...] | None = None
    mailbox_address: tuple[str, ...] | None = Field(default=None, alias="mailbox.address")
    mailbox_domain: tuple[str, ...] | None = Field(default=None, alias="mailbox.domain")
    user_usage_location: tuple[str, ...] | None = Field(default=None, alias="user.usageLocation")
    user_country: tuple[str, ...] | None = Field(default=None, alias="user.country")
    user_department: tuple[str, ...] | None = Field(default=None, alias="user.department")
    user_company_name: tuple[str, ...] | None = Field(default=None, alias="user.companyName")
    user_office_location: tuple[str, ...] | None = Field(default=None, alias="user.officeLocation")
    user_member_of: tuple[str, ...] | None = Field(default=None, alias="user.memberOf")
    during: tuple[date, date] | None = None

    @model_serializer(mode="wrap")
    def _only_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        return {name: value for name, value in dumped.items() if value is not None}


class Designation(BaseModel):
    """``primary`` entry: mailboxes matching ``when`` should be owned by ``org``."""

    model_config = ConfigDict(frozen=True)

    when: When = When()
    org: str


class Rule(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    when: When = When()
    effect: RuleEffect
    dry_run: bool = False
    description: str | None = None


class Approval(BaseModel):
    model_config = ConfigDict(frozen=True)

    approvers: list[str] = []
    expires_after: timedelta = timedelta(days=3)
    on_expiry: OnExpiry = "block"


class Notify(BaseModel):
    """Who OrgGuard tells, by mail through Graph (``notify:``); every key has a default.

    Recipients are addresses or ``group:<name>`` (the group's members, through Graph).
    """

    # Keys OrgGuard does not know are kept (a newer policy may carry them) and named in the warnings.
    model_config = ConfigDict(frozen=True, extra="allow")

    stopped_admin: bool = True  # the admin whose claim was blocked or held
    approvers: bool = True  # approval.approvers, when a case is held
    remind_before: timedelta | None = timedelta(days=1)  # a reminder this long before a held case expires
    expired: bool = True  # the approvers and the stopped admin, when a held case expired
    owners: dict[str, list[str]] = {}  # per owner org: who hears of a block or override carried out
    operations: list[str] = []  # a digest of failed actions
    digest_every: timedelta = timedelta(days=1)


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: int
    mode: Mode = "enforce"
    default: Effect = Effect.HOLD
    primary: list[Designation] = []
    rules: list[Rule] = []
    approval: Approval = Approval()
    notify: Notify = Notify()


def default_policy() -> Policy:
    """What applies before any policy was saved: every competing claim waits for a human."""
    return Policy(version=0)


# ---------------------------------------------------------------------------
# Loading and validation

_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
_GLOB = re.compile(r"[*?\[\]]")
_DURATION = re.compile(
    r"^P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?$"
)
_RULE_KEYS = ("id", "when", "effect", "dry_run", "description")
_DESIGNATION_KEYS = ("when", "org")
_APPROVAL_KEYS = ("approvers", "expires_after", "on_expiry")
_NOTIFY_FLAGS = ("stopped_admin", "approvers", "expired")
_NOTIFY_KEYS = (*_NOTIFY_FLAGS, "remind_before", "owners", "operations", "digest_every")
GROUP_PREFIX = "group:"


def load_policy(text: str, *, known_orgs: Collection[str] | None = None) -> Policy:
    """Parse and validate a policy (YAML or JSON); PolicyError lists every error with its path.

    With ``known_orgs``, every org a rule or designation names must be one of them.
    """
    reader = _Reader(known_orgs)
    doc = _parse(text, reader)
    if reader.errors:
        raise reader.failure()
    if doc is None:
        reader.error("", "the policy is empty; it needs at least version, default and rules")
        raise reader.failure()
    if not isinstance(doc, Mapping):
        reader.error("", f"the policy must be a mapping with version, mode, default and rules, not {_kind(doc)}")
        raise reader.failure()
    normalized = reader.policy(doc)
    if not reader.errors:
        try:
            return Policy.model_validate(normalized)
        except ValidationError as exc:  # the reader above should have said it first; never a 500
            for e in exc.errors():
                reader.error(".".join(str(part) for part in e["loc"]), e["msg"])
    raise reader.failure()


def _parse(text: str, reader: _Reader) -> object:
    """JSON when it parses as JSON (PyYAML reads a few JSON documents differently), YAML otherwise.

    Either way within ``shared.config.documents``' bounds: a document that would explode is refused fast.
    """
    try:
        return load_json(text, object_pairs_hook=_json_object(reader))
    except TooComplex as exc:
        reader.errors[:] = [{"path": "", "message": str(exc)}]
        return None
    except (ValueError, RecursionError):
        reader.errors.clear()  # not JSON after all: read it as YAML, which JSON mostly is
    doc: object = None
    loader = None
    try:
        loader = _Loader(text)
        doc = loader.get_single_data()
    except TooComplex as exc:
        reader.error("", str(exc))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reader.error("", f"YAML syntax error{where}: {exc.problem or exc.context or 'unreadable'}")
    except yaml.YAMLError as exc:
        reader.error("", f"YAML syntax error: {exc}")
    except (ValueError, TypeError, RecursionError) as exc:
        reader.error("", f"the policy could not be read as YAML: {exc.__class__.__name__}")
    finally:
        if loader is not None:
            loader.dispose()
            reader.errors.extend(loader.duplicates)
    return doc


def _json_object(reader: _Reader) -> Callable[[list[tuple[str, object]]], dict[str, object]]:
    def build(pairs: list[tuple[str, object]]) -> dict[str, object]:
        seen: dict[str, object] = {}
        for key, value in pairs:
            if key in seen:
                reader.error("", f"the key {key!r} appears twice in one object; the second would replace the first")
            seen[key] = value
        return seen

    return build


class _Loader(BoundedLoader):
    """The bounded SafeLoader, reporting duplicate keys too (PyYAML keeps the last one silently)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[dict[str, str]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            ident = (key_node.tag, key_node.value)
            if ident in seen:
                line = key_node.start_mark.line + 1
                message = f"line {line}: the key {key_node.value!r} appears twice; the second would replace the first"
                self.duplicates.append({"path": "", "message": message})
            seen.add(ident)
        return super().construct_mapping(node, deep)


def _timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> object:
    """An impossible date (2026-02-30) stays text, so validation can say where it is."""
    try:
        return loader.construct_yaml_timestamp(node)
    except ValueError:
        return loader.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


class _Reader:
    """Walks the raw document, normalizing what is good and collecting every error with its path."""

    def __init__(self, known_orgs: Collection[str] | None) -> None:
        self.known_orgs = None if known_orgs is None else frozenset(known_orgs)
        self.errors: list[dict[str, str]] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append({"path": path, "message": message})

    def failure(self) -> PolicyError:
        first = self.errors[0]
        where = f"{first['path']}: " if first["path"] else ""
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        return PolicyError(f"{where}{first['message']}{more}", errors=list(self.errors))

    # --- top level --------------------------------------------------------------------

    def policy(self, doc: Mapping[Any, Any]) -> dict[str, object]:
        out: dict[str, object] = {}
        version = doc.get("version")
        if "version" not in doc:
            self.error("version", "is required: a positive whole number, raised with every change")
        elif not isinstance(version, int) or isinstance(version, bool) or version < 1:
            self.error("version", f"must be a positive whole number, not {_kind(version)}")
        else:
            out["version"] = version
        if "mode" in doc:
            out["mode"] = self.choice("mode", doc["mode"], ("enforce", "dry-run"), "mode")
        if "default" in doc:
            out["default"] = self.default_effect(doc["default"])
        out["primary"] = [self.designation(f"primary[{i}]", d) for i, d in enumerate(self.items("primary", doc))]
        rules = [self.rule(f"rules[{i}]", r) for i, r in enumerate(self.items("rules", doc))]
        self.unique_ids(doc.get("rules"))
        out["rules"] = rules
        if doc.get("approval") is not None:
            out["approval"] = self.approval(doc["approval"])
        if doc.get("notify") is not None:
            out["notify"] = self.notify(doc["notify"])
        return out

    def items(self, name: str, doc: Mapping[Any, Any]) -> list[object]:
        value = doc.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(name, f"must be a list, not {_kind(value)}")
            return []
        return value

    def default_effect(self, value: object) -> object:
        if value == "prefer-primary":
            self.error(
                "default",
                "prefer-primary cannot be the default: when neither org is designated "
                "there is no rule left to fall through to; use block, override, hold or audit",
            )
            return None
        return self.choice("default", value, DEFAULT_EFFECTS, "effect")

    def choice(self, path: str, value: object, allowed: Sequence[str], what: str) -> object:
        if isinstance(value, str) and value in allowed:
            return value
        shown = repr(value) if isinstance(value, str) else _kind(value)
        self.error(path, f"unknown {what} {shown}; use one of {', '.join(allowed)}")
        return None

    def unknown_keys(self, path: str, value: Mapping[Any, Any], allowed: Sequence[str], what: str) -> None:
        for key in value:
            if key not in allowed:
                self.error(f"{path}.{key}", f"unknown key {key!r}; {what} has {', '.join(allowed)}")

    # --- rules and designations ---------------------------------------------------------

    def rule(self, path: str, raw: object) -> dict[str, object]:
        if not isinstance(raw, Mapping):
            self.error(path, f"a rule must be a mapping with id, effect and optionally when, not {_kind(raw)}")
            return {}
        self.unknown_keys(path, raw, _RULE_KEYS, "a rule")
        out: dict[str, object] = {}
        rule_id = raw.get("id")
        if "id" not in raw:
            self.error(f"{path}.id", "is required: a short name that decisions and cases cite")
        elif not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
            self.error(
                f"{path}.id", f"must be letters, digits, '.', '_', ':' or '-' (at most 100), not {_kind(rule_id)}"
            )
        else:
            out["id"] = rule_id
        if "effect" not in raw:
            self.error(f"{path}.effect", f"is required: one of {', '.join(RULE_EFFECTS)}")
        else:
            out["effect"] = self.choice(f"{path}.effect", raw["effect"], RULE_EFFECTS, "effect")
        out["when"] = self.when(f"{path}.when", raw.get("when"))
        if "dry_run" in raw:
            if isinstance(raw["dry_run"], bool):
                out["dry_run"] = raw["dry_run"]
            else:
                self.error(f"{path}.dry_run", f"must be true or false, not {_kind(raw['dry_run'])}")
        if raw.get("description") is not None:
            if isinstance(raw["description"], str):
                out["description"] = raw["description"]
            else:
                self.error(f"{path}.description", f"must be text, not {_kind(raw['description'])}")
        return out

    def unique_ids(self, rules: object) -> None:
        if not isinstance(rules, list):
            return
        first: dict[str, int] = {}
        for i, raw in enumerate(rules):
            rule_id = raw.get("id") if isinstance(raw, Mapping) else None
            if not isinstance(rule_id, str):
                continue
            if rule_id in first:
                self.error(f"rules[{i}].id", f"duplicate rule id {rule_id!r}; rules[{first[rule_id]}] has it already")
            else:
                first[rule_id] = i

    def designation(self, path: str, raw: object) -> dict[str, object]:
        if not isinstance(raw, Mapping):
            self.error(path, f"a designation must be a mapping with org and when, not {_kind(raw)}")
            return {}
        self.unknown_keys(path, raw, _DESIGNATION_KEYS, "a designation")
        out: dict[str, object] = {"when": self.when(f"{path}.when", raw.get("when"))}
        org = raw.get("org")
        if "org" not in raw:
            self.error(f"{path}.org", "is required: the org that should own these mailboxes")
        elif not isinstance(org, str) or not org.strip():
            self.error(f"{path}.org", f"must be an org name, not {_kind(org)}")
        else:
            self.known_org(f"{path}.org", org.strip())
            out["org"] = org.strip()
        return out

    def known_org(self, path: str, name: str) -> None:
        if self.known_orgs is not None and name not in self.known_orgs:
            registered = ", ".join(sorted(self.known_orgs)) or "none"
            self.error(path, f"{name!r} is not a registered org (registered: {registered})")

    # --- conditions ---------------------------------------------------------------------

    def when(self, path: str, raw: object) -> dict[str, object]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            self.error(path, f"must be a mapping of conditions, not {_kind(raw)}")
            return {}
        out: dict[str, object] = {}
        for name, value in raw.items():
            read = _CONDITIONS.get(name) if isinstance(name, str) else None
            if read is None:
                self.error(f"{path}.{name}", f"unknown condition {name!r}; use one of {', '.join(_CONDITIONS)}")
                continue
            normalized = read(self, f"{path}.{name}", value)
            if normalized is not None:
                out[name] = normalized
        return out

    def strings(self, path: str, value: object) -> tuple[str, ...] | None:
        """A string or a non-empty list of strings; None (with errors) when it is not."""
        values = value if isinstance(value, list) else [value]
        if not values:
            self.error(path, "must name at least one value")
            return None
        good: list[str] = []
        for i, item in enumerate(values):
            item_path = f"{path}[{i}]" if isinstance(value, list) else path
            if isinstance(item, str) and (bad := hidden_character(item)) is not None:
                self.error(item_path, f"holds a control or invisible character (U+{ord(bad):04X})")
            elif isinstance(item, str) and item.strip():
                good.append(item.strip())
            elif isinstance(item, bool):
                self.error(
                    item_path,
                    f"must be text, not {_kind(item)}; YAML reads bare yes/no/on/off/NO as booleans, so quote it",
                )
            else:
                self.error(item_path, f"must be non-empty text, not {_kind(item)}")
        return tuple(good) if len(good) == len(values) else None

    def orgs(self, path: str, value: object) -> tuple[str, ...] | None:
        names = self.strings(path, value)
        for i, name in enumerate(names or ()):
            self.known_org(f"{path}[{i}]" if isinstance(value, list) else path, name)
        return names

    def address_patterns(self, path: str, value: object) -> tuple[str, ...] | None:
        patterns = self.strings(path, value)
        if patterns is None:
            return None
        out: list[str] = []
        for p in patterns:
            local, at, domain = p.rpartition("@")
            if not at or not local:
                self.error(
                    path,
                    f"{p!r} is not an address pattern like ceo@contoso.com or *@contoso.com "
                    "(use mailbox.domain for a domain)",
                )
                continue
            ascii_domain = self.domain_pattern(path, domain)
            if ascii_domain is not None:
                out.append(f"{local.casefold()}@{ascii_domain}")
        return tuple(out) if len(out) == len(patterns) else None

    def domain_patterns(self, path: str, value: object) -> tuple[str, ...] | None:
        patterns = self.strings(path, value)
        if patterns is None:
            return None
        out = [d for p in patterns if (d := self.domain_pattern(path, p)) is not None]
        return tuple(out) if len(out) == len(patterns) else None

    def domain_pattern(self, path: str, pattern: str) -> str | None:
        """Lower-case, IDNA (``bücher.de`` -> ``xn--bcher-kva.de``) so it compares with MailboxKey."""
        if "@" in pattern or not pattern.strip("."):
            self.error(path, f"{pattern!r} is not a domain pattern like contoso.com or *.contoso.com")
            return None
        labels = []
        for label in pattern.rstrip(".").split("."):
            if label.isascii() or _GLOB.search(label):
                labels.append(label.lower())
                continue
            try:
                labels.append(str(idna.encode(label, uts46=True).decode("ascii")).lower())
            except (idna.IDNAError, UnicodeError):
                self.error(path, f"{pattern!r} is not a valid domain name")
                return None
        return ".".join(labels)

    def during(self, path: str, value: object) -> tuple[date, date] | None:
        if not isinstance(value, list) or len(value) != 2:
            self.error(path, f"must be [start, end] dates like [2026-11-01, 2026-12-31], not {_kind(value)}")
            return None
        start, end = (self.day(f"{path}[{i}]", v) for i, v in enumerate(value))
        if start is None or end is None:
            return None
        if end < start:
            self.error(path, f"ends ({end}) before it starts ({start})")
            return None
        return (start, end)

    def day(self, path: str, value: object) -> date | None:
        if isinstance(value, datetime):
            self.error(path, f"must be a date like 2026-11-01, without a time of day, not {value.isoformat()}")
            return None
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
                try:
                    return date.fromisoformat(value.strip())
                except ValueError:
                    pass
            self.error(path, f"{value!r} is not a date like 2026-11-01")
            return None
        self.error(path, f"must be a date like 2026-11-01, not {_kind(value)}")
        return None

    # --- approval -----------------------------------------------------------------------

    def approval(self, raw: object) -> dict[str, object]:
        if not isinstance(raw, Mapping):
            self.error("approval", f"must be a mapping with approvers, expires_after and on_expiry, not {_kind(raw)}")
            return {}
        self.unknown_keys("approval", raw, _APPROVAL_KEYS, "approval")
        out: dict[str, object] = {}
        if raw.get("approvers") is not None:
            approvers = raw["approvers"]
            if isinstance(approvers, list) and not approvers:
                out["approvers"] = []
            elif (names := self.recipients("approval.approvers", approvers)) is not None:
                out["approvers"] = list(names)
        if "expires_after" in raw:
            out["expires_after"] = self.duration("approval.expires_after", raw["expires_after"])
        if "on_expiry" in raw:
            out["on_expiry"] = self.choice("approval.on_expiry", raw["on_expiry"], ("block", "override"), "on_expiry")
        return out

    # --- notify -------------------------------------------------------------------------

    def notify(self, raw: object) -> dict[str, object]:
        if not isinstance(raw, Mapping):
            self.error("notify", f"must be a mapping like {{stopped_admin: true, operations: [...]}}, not {_kind(raw)}")
            return {}
        out: dict[str, object] = {str(k): v for k, v in raw.items() if k not in _NOTIFY_KEYS}  # warned about
        for flag in _NOTIFY_FLAGS:
            if flag in raw:
                if isinstance(raw[flag], bool):
                    out[flag] = raw[flag]
                else:
                    self.error(f"notify.{flag}", f"must be true or false, not {_kind(raw[flag])}")
        if "remind_before" in raw:
            value = raw["remind_before"]
            out["remind_before"] = None if value is None else self.duration("notify.remind_before", value)
        if "digest_every" in raw:
            out["digest_every"] = self.duration("notify.digest_every", raw["digest_every"])
        ops = self.recipients("notify.operations", raw["operations"]) if raw.get("operations") is not None else None
        if ops is not None:
            out["operations"] = list(ops)
        if raw.get("owners") is not None:
            out["owners"] = self.owners(raw["owners"])
        return out

    def owners(self, raw: object) -> dict[str, list[str]]:
        if not isinstance(raw, Mapping):
            self.error("notify.owners", f"must map org names to recipients, not {_kind(raw)}")
            return {}
        out: dict[str, list[str]] = {}
        for org, value in raw.items():
            path = f"notify.owners.{org}"
            if not isinstance(org, str) or not org.strip():
                self.error(path, f"must be keyed by an org name, not {_kind(org)}")
                continue
            self.known_org(path, org.strip())
            if (names := self.recipients(path, value)) is not None:
                out[org.strip()] = list(names)
        return out

    def recipients(self, path: str, value: object) -> tuple[str, ...] | None:
        """Mail recipients: addresses (normalized) or ``group:<name>``; an empty list is nobody."""
        if value == []:
            return ()
        names = self.strings(path, value)
        if names is None:
            return None
        out: list[str] = []
        for i, name in enumerate(names):
            item_path = f"{path}[{i}]" if isinstance(value, list) else path
            if name.casefold().startswith(GROUP_PREFIX):
                group = name[len(GROUP_PREFIX) :].strip()
                if group:
                    out.append(f"{GROUP_PREFIX}{group}")
                else:
                    self.error(item_path, "group: needs the group's display name, like group:OrgGuard Approvers")
                continue
            try:
                out.append(MailboxKey.parse(name).address)
            except DomainError as exc:
                self.error(item_path, f"{name!r} is neither an address nor group:<name> ({exc.detail})")
        return tuple(out) if len(out) == len(names) else None

    def duration(self, path: str, value: object) -> timedelta | None:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.error(path, str(exc))
            return None


def _read_strings(reader: _Reader, path: str, value: object) -> tuple[str, ...] | None:
    return reader.strings(path, value)


def _read_choices(allowed: Sequence[str]) -> Callable[[_Reader, str, object], tuple[str, ...] | None]:
    def read(reader: _Reader, path: str, value: object) -> tuple[str, ...] | None:
        names = reader.strings(path, value)
        if names is None:
            return None
        bad = [n for n in names if n not in allowed]
        for n in bad:
            reader.error(path, f"unknown value {n!r}; use one of {', '.join(allowed)}")
        return None if bad else names

    return read


_CONDITIONS: dict[str, Callable[[_Reader, str, object], object]] = {
    "claimant": _Reader.orgs,
    "owner": _Reader.orgs,
    "origin": _read_choices(tuple(o.value for o in Origin)),
    "kind": _read_choices(tuple(k.value for k in ClaimKind)),
    "mailbox.address": _Reader.address_patterns,
    "mailbox.domain": _Reader.domain_patterns,
    "user.usageLocation": _read_strings,
    "user.country": _read_strings,
    "user.department": _read_strings,
    "user.companyName": _read_strings,
    "user.officeLocation": _read_strings,
    "user.memberOf": _read_strings,
    "during": _Reader.during,
}


def parse_duration(value: object) -> timedelta:
    """An ISO 8601 duration with a fixed length (weeks, days, hours, minutes, seconds): P3D, PT12H, P1DT2H."""
    if not isinstance(value, str):
        raise ValueError(f"must be an ISO 8601 duration like P3D, PT12H or P1DT2H, not {_kind(value)}")
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


def _kind(value: object) -> str:
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


# ---------------------------------------------------------------------------
# Deciding


@dataclass(frozen=True)
class Situation:
    """Everything a decision reads; built by the service layer from the claim and the ledger."""

    key: MailboxKey
    claimant: str
    owner: str | None
    origin: Origin
    kind: ClaimKind
    user: Mapping[str, object]
    now: datetime
    user_note: str | None = None  # why the user's attributes are unknown (Graph unavailable, no such user, ...)
    # False when ``owner`` is not the ledger's but the org a dry-run sweep lets claim first
    owner_recorded: bool = True

    @property
    def contested(self) -> bool:
        return self.owner is not None and self.owner != self.claimant


class UserUnknown(Exception):
    """The directory cannot say who is behind a mailbox; ``reason`` is a sentence for the explanation.

    ``outage`` is true when the directory itself failed (timeout, 5xx, 429, a bad
    answer): the same question may get an answer later.
    """

    def __init__(self, reason: str, *, outage: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.outage = outage


class UserDirectory(Protocol):
    """The Graph attributes of the user behind a mailbox (usageLocation, country, department, memberOf, ...).

    ``attributes`` answers from a cache or asks the directory within a strict time
    limit; it raises ``UserUnknown`` rather than wait: a decision never blocks on it.
    ``prefetch`` resolves many mailboxes at once (a sweep), so that ``attributes``
    answers them from the cache.
    """

    @property
    def configured(self) -> bool: ...

    def attributes(self, key: MailboxKey, *, groups: bool = True) -> Mapping[str, object]: ...

    def prefetch(self, keys: Sequence[MailboxKey], *, groups: bool = True) -> None: ...


class NoUserDirectory:
    """No directory configured: user conditions never match (policy validation warns about it)."""

    configured = False

    def attributes(self, key: MailboxKey, *, groups: bool = True) -> Mapping[str, object]:
        return {}

    def prefetch(self, keys: Sequence[MailboxKey], *, groups: bool = True) -> None:
        return None


USER_PREFIX = "user."


def user_conditions(policy: Policy) -> list[str]:
    """Where ``policy`` reads the user behind a mailbox, as paths (``primary[1].when.user.usageLocation``)."""
    found: list[str] = []
    whens = [(f"primary[{i}]", d.when) for i, d in enumerate(policy.primary)]
    whens += [(f"rules[{i}]", r.when) for i, r in enumerate(policy.rules)]
    for path, when in whens:
        found += [f"{path}.when.{name}" for name in when.model_dump() if name.startswith(USER_PREFIX)]
    return found


def reads_groups(policy: Policy) -> bool:
    """Whether a decision needs the user's groups (one more Graph request per user)."""
    return any(path.endswith(".user.memberOf") for path in user_conditions(policy))


def policy_warnings(policy: Policy, *, directory: bool, mail: bool) -> list[str]:
    """What a valid policy will not do as written in this deployment (shown on validate, explain and PUT)."""
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
        f"notify.{name} is not a notify setting this OrgGuard knows ({', '.join(_NOTIFY_KEYS)}); it is ignored"
        for name in n.model_extra or {}
    ]
    tells = n.stopped_admin or (n.approvers and policy.approval.approvers) or n.owners or n.operations
    if "notify" in policy.model_fields_set and tells and not mail:
        out.append(
            "notify names people to tell, but no mail can be sent (ORGGUARD_GRAPH_URL and ORGGUARD_MAIL_FROM): "
            "nobody is told"
        )
    return out


@dataclass(frozen=True)
class _Check:
    ok: bool
    why: str


@dataclass(frozen=True)
class _Outcome:
    decision: Decision
    trace: list[str]


def decide(policy: Policy, s: Situation) -> Decision:
    """The decision on one claim: uncontested ones are allowed, competing ones go through the rules."""
    return _evaluate(policy, s).decision


def explain(policy: Policy, s: Situation) -> list[str]:
    """The rule-by-rule trace behind ``decide``: what was checked and why it did or did not match."""
    return _evaluate(policy, s).trace


def designated_primary(policy: Policy, s: Situation) -> str | None:
    """The org the first matching ``primary`` designation names, if any."""
    found = _designation(policy, s)
    return found[1].org if found else None


def _designation(policy: Policy, s: Situation) -> tuple[int, Designation] | None:
    for i, designation in enumerate(policy.primary):
        if _failed(designation.when, s) is None:
            return i, designation
    return None


def _evaluate(policy: Policy, s: Situation) -> _Outcome:
    dry_run = policy.mode == "dry-run"
    if not s.contested:
        why = "which no org owns yet" if s.owner is None else "which it already owns"
        sentence = f"{s.claimant} claimed {s.key}, {why}; rule {UNCONTESTED} allows it{_dry(dry_run)}."
        return _Outcome(
            Decision(Effect.ALLOW, UNCONTESTED, sentence, dry_run),
            [f"{UNCONTESTED}: {s.claimant} claimed {s.key}, {why}; rules decide competing claims only"],
        )
    trace: list[str] = []
    for n, rule in enumerate(policy.rules, start=1):
        head = f"rule {n} {rule.id} ({rule.effect})"
        failed = _failed(rule.when, s)
        if failed is not None:
            trace.append(f"{head}: no match, {failed.why}")
            continue
        applied = _apply(policy, rule, s, dry_run or rule.dry_run)
        if isinstance(applied, str):
            trace.append(f"{head}: no match, {applied}")
            continue
        decision, why = applied
        decision = _noted(decision, s)
        trace.append(f"{head}: matches, {why} -> {decision.effect.value}")
        trace.extend(
            f"rule {m} {later.id} ({later.effect}): not checked, an earlier rule matched"
            for m, later in enumerate(policy.rules[n:], start=n + 1)
        )
        return _Outcome(decision, trace)
    trace.append(f"no rule matched: the {DEFAULT_RULE} effect {policy.default.value} applies")
    verb = _verb(policy.default, s, "it")
    sentence = f"{_contest(s)}; no rule matched and the {DEFAULT_RULE} rule {verb}{_dry(dry_run)}."
    return _Outcome(_noted(Decision(policy.default, DEFAULT_RULE, sentence, dry_run), s), trace)


def _noted(decision: Decision, s: Situation) -> Decision:
    """The decision with the reason user conditions could not match, when the directory could not say."""
    if not s.user_note:
        return decision
    return replace(decision, explanation=f"{decision.explanation} Conditions on the user did not match: {s.user_note}.")


def _apply(policy: Policy, rule: Rule, s: Situation, dry_run: bool) -> tuple[Decision, str] | str:
    """A matching rule's decision and why, or why prefer-primary falls through to the next rule."""
    why = "; ".join(c.why for c in _checks(rule.when, s)) or "it has no conditions"
    if rule.effect != "prefer-primary":
        effect = Effect(rule.effect)
        scope = _scope(rule.when)
        subject = f"claims {scope}" if scope else "every competing claim"
        sentence = f"{_contest(s)}; rule {rule.id} {_verb(effect, s, subject)}{_dry(dry_run)}."
        return Decision(effect, rule.id, sentence, dry_run), why
    found = _designation(policy, s)
    if found is None:
        return f"no primary designation matches {s.key}"
    i, designation = found
    terms = _terms(designation.when)
    basis = f"primary[{i}] designates {designation.org} for {terms or 'every mailbox'}"
    if designation.org == s.claimant:
        effect, verb = Effect.OVERRIDE, f"lets {s.claimant} take over"
    elif designation.org == s.owner:
        effect, verb = Effect.BLOCK, f"blocks it and the mailbox stays with {s.owner}"
    else:
        return f"{basis}, neither the claimant nor the owner"
    sentence = f"{_contest(s)}; rule {rule.id} {verb}, as {basis}{_dry(dry_run)}."
    return Decision(effect, rule.id, sentence, dry_run), f"{why}; {basis}"


def _contest(s: Situation) -> str:
    if not s.owner_recorded:
        unrecorded = "the ledger names no registered owner"
        return f"{s.claimant} claimed {s.key}, which {s.owner} also syncs and would own first ({unrecorded})"
    return f"{s.claimant} claimed {s.key}, owned by {s.owner}"


def _dry(dry_run: bool) -> str:
    return " (dry run: nothing is written to the orgs)" if dry_run else ""


def _verb(effect: Effect, s: Situation, subject: str) -> str:
    if effect is Effect.BLOCK:
        return f"blocks {subject}, so the mailbox stays with {s.owner}"
    if effect is Effect.OVERRIDE:
        return f"lets {subject} take over, so the mailbox moves to {s.claimant}"
    if effect is Effect.HOLD:
        return f"holds {subject} for an approver"
    if effect is Effect.AUDIT:
        return f"only records {subject}, changing nothing"
    return f"decides {effect.value} for {subject}"


# --- conditions --------------------------------------------------------------------------


def _failed(when: When, s: Situation) -> _Check | None:
    """The first condition that does not match, or None when all do (no conditions: always)."""
    return next((c for c in _checks(when, s) if not c.ok), None)


def _checks(when: When, s: Situation) -> Iterator[_Check]:
    """Lazily, so evaluation stops at the first condition that fails."""
    if when.claimant is not None:
        yield _one_of("claimant", s.claimant, when.claimant)
    if when.owner is not None:
        yield _one_of("owner", s.owner, when.owner)
    if when.origin is not None:
        yield _one_of("origin", str(s.origin), when.origin)
    if when.kind is not None:
        yield _one_of("kind", str(s.kind), when.kind)
    if when.mailbox_address is not None:
        yield _glob("mailbox.address", s.key.address.strip().casefold(), when.mailbox_address)
    if when.mailbox_domain is not None:
        yield _glob("mailbox.domain", s.key.address.rpartition("@")[2].rstrip(".").lower(), when.mailbox_domain)
    for name, values in _user_values(when):
        if values is not None:
            yield _user_attribute(name, s.user.get(name), values, s.user_note)
    if when.user_member_of is not None:
        yield _member_of(s.user.get("memberOf"), when.user_member_of, s.user_note)
    if when.during is not None:
        yield _during(_utc_date(s.now), when.during)


def _one_of(name: str, actual: str | None, values: Sequence[str]) -> _Check:
    ok = actual is not None and actual in values
    if len(values) == 1:
        return _Check(ok, f"{name} {actual or 'none'} {'is' if ok else 'is not'} {values[0]}")
    return _Check(ok, f"{name} {actual or 'none'} {'is one' if ok else 'is none'} of {_list(values)}")


def _glob(name: str, actual: str, patterns: Sequence[str]) -> _Check:
    ok = any(fnmatchcase(actual, p) for p in patterns)
    return _Check(ok, f"{name} {actual} {'matches' if ok else 'does not match'} {_list(patterns)}")


def _user_values(when: When) -> tuple[tuple[str, tuple[str, ...] | None], ...]:
    return (
        ("usageLocation", when.user_usage_location),
        ("country", when.user_country),
        ("department", when.user_department),
        ("companyName", when.user_company_name),
        ("officeLocation", when.user_office_location),
    )


def _unknown(name: str, note: str | None) -> str:
    return f"{name} is not known ({note or 'the directory did not supply it'})"


def _user_attribute(name: str, actual: object, values: Sequence[str], note: str | None = None) -> _Check:
    if not isinstance(actual, str) or not actual.strip():
        return _Check(False, _unknown(f"user.{name}", note))
    ok = actual.strip().casefold() in {v.casefold() for v in values}
    return _Check(ok, f"user.{name} {actual} {'matches' if ok else 'does not match'} {_list(values)}")


def _member_of(actual: object, groups: Sequence[str], note: str | None = None) -> _Check:
    if isinstance(actual, str):
        actual = [actual]
    if not isinstance(actual, list | tuple | set | frozenset):
        return _Check(False, _unknown("user.memberOf", note))
    mine = {g.strip().casefold() for g in actual if isinstance(g, str)}
    hits = [g for g in groups if g.casefold() in mine]
    if hits:
        return _Check(True, f"the user is a member of {_list(hits)}")
    return _Check(False, f"the user is a member of none of {_list(groups)}")


def _during(today: date, window: tuple[date, date]) -> _Check:
    start, end = window
    ok = start <= today <= end
    return _Check(ok, f"{today} is {'within' if ok else 'outside'} {start} to {end}")


def _utc_date(now: datetime) -> date:
    """The UTC calendar day of ``now``; a naive time is taken as UTC already."""
    if now.tzinfo is None:
        return now.date()
    try:
        return now.astimezone(UTC).date()
    except OverflowError:  # the first or last representable day in another zone
        return now.date()


def _list(values: Sequence[str]) -> str:
    return ", ".join(values)


def _terms(when: When) -> str:
    """The conditions as written: "mailbox.domain contoso.co.jp and user.usageLocation JP"."""
    dumped = when.model_dump(mode="json")
    return " and ".join(f"{name} {' to '.join(v) if name == 'during' else _list(v)}" for name, v in dumped.items())


def _scope(when: When) -> str:
    """The conditions in words, for the explanation: "from contoso-dev, contoso-test"."""
    parts = []
    if when.claimant is not None:
        parts.append(f"from {_list(when.claimant)}")
    if when.owner is not None:
        parts.append(f"against {_list(when.owner)}")
    if when.origin is not None:
        parts.append(f"arriving via {_list(when.origin)}")
    if when.kind is not None:
        parts.append(f"of kind {_list(when.kind)}")
    if when.mailbox_address is not None:
        parts.append(f"for {_list(when.mailbox_address)}")
    if when.mailbox_domain is not None:
        parts.append(f"in {_list(when.mailbox_domain)}")
    for name, values in _user_values(when):
        if values is not None:
            parts.append(f"where user.{name} is {_list(values)}")
    if when.user_member_of is not None:
        parts.append(f"where the user is in {_list(when.user_member_of)}")
    if when.during is not None:
        parts.append(f"between {when.during[0]} and {when.during[1]}")
    return " ".join(parts)

"""Every environment variable OrgGuard reads is read here, with the same names as the Azure app settings
(ORGGUARD_SWEEP_SCHEDULE is also read alone, without pydantic, by ``environment.py`` for the timers).

``Settings`` is the app's (the Function App, the local host, the CLI on the local ledger);
``OperatorSettings`` is the operator's shell (the CLI going through an OrgGuard's API). Both
are pydantic-settings models: each field names its variable (``validation_alias``), and each
kind of value has one rule, written once below (a number of seconds, an http(s) base URL, a
mailbox address, a secret, a choice). An empty variable is an unset one (its default applies),
and so is an all-space value where spaces could mean nothing else (numbers, URLs, addresses).
A bad value is one ``SettingsError`` naming the variable.

``Settings(...)`` holds exactly what it is given (tests and the local host build it so);
``Settings.from_env()`` reads the environment (or the mapping it is handed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import partial
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic_core import PydanticUseDefault
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from shared.config.environment import SWEEP_SCHEDULE, environment
from shared.domain.model import DomainError, MailboxKey, hidden_character

GateOnError = Literal["block", "allow"]
AuthMode = Literal["token", "easyauth"]

DATAVERSE_TIMEOUT_S = 60.0  # Dataverse cancels the save when its webhook has not answered by then
MAX_GATE_DEADLINE_S = 55.0  # the answer must leave before Dataverse stops listening, network included
DEFAULT_GATE_DEADLINE_S = 10.0


class SettingsError(DomainError, title="Invalid settings"):
    """An environment variable OrgGuard cannot use."""


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


# --- one rule per kind of value ---------------------------------------------------------------


def _blank_is_unset(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        raise PydanticUseDefault()
    return value


def _seconds(value: object, *, most: float, below: bool = False, too_long: str = "") -> float:
    """A number of seconds, finite, more than 0 and at most ``most`` (less than it when ``below``)."""
    raw = str(value).strip()
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"must be a number of seconds, not {raw[:40]!r}") from None
    if not math.isfinite(seconds):
        raise ValueError("must be a finite number of seconds")
    if seconds <= 0:
        raise ValueError("must be more than 0 seconds")
    if seconds > most or (below and seconds >= most):
        raise ValueError(too_long.format(seconds=seconds) if too_long else f"must be at most {most:g} seconds")
    return seconds


def _base_url(value: object, *, plain_http: Literal["loopback", "anywhere"]) -> str:
    """An http(s) base URL without a trailing slash (msgraph-sdk's base_url must not end with one).

    Plain http only on loopback (the sandbox) unless ``plain_http`` is "anywhere" (a page's address).
    """
    from urllib.parse import urlsplit

    from shared.config.urls import is_loopback

    raw = str(value).strip()
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL, not {raw!r}")
    if parts.scheme == "http" and plain_http == "loopback" and not is_loopback(raw):
        raise ValueError("must use https (plain http only on loopback, for the sandbox)")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or fragment")
    return raw.rstrip("/")


def _address(value: object) -> str:
    try:
        return MailboxKey.parse(str(value).strip()).address
    except DomainError as exc:
        raise ValueError(f"is not a mailbox address: {exc.detail}") from None


def _secret(value: str) -> str:
    if problem := secret_problem(value):
        raise ValueError(problem)
    return value


def _word(value: object) -> object:
    """A choice is written in any case, with spaces around it."""
    return value.strip().lower() if isinstance(value, str) else value


def _telemetry(value: str) -> str:
    if value != "console" and not (value.startswith("file:") and value[5:].strip()):
        raise ValueError("must be 'console' or 'file:PATH'")
    return value


_ENTITY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,258}[A-Za-z0-9])?")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))+")


def _entity(value: object) -> str:
    """A Service Bus queue or topic name: letters, digits, '.', '-', '_', '/', starting and ending with a letter or
    digit, at most 260 characters."""
    raw = str(value).strip()
    if not _ENTITY.fullmatch(raw):
        raise ValueError(f"is not a Service Bus queue or topic name: {raw[:60]!r}")
    return raw


def _namespace(value: object) -> str:
    """A namespace's fully qualified name (``<name>.servicebus.windows.net``), no scheme, no port."""
    raw = str(value).strip().lower()
    if not _HOST.fullmatch(raw):
        raise ValueError(f"must be a fully qualified namespace such as sb-orgguard.servicebus.windows.net, not {raw!r}")
    return raw


def _bus(value: object) -> str:
    """``servicebus`` (Azure Service Bus) or ``sqlite:///PATH`` (the local queue)."""
    raw = str(value).strip()
    if raw.lower() == "servicebus":
        return "servicebus"
    if raw.startswith("sqlite:///") and raw[len("sqlite:///") :].strip():
        return raw
    raise ValueError(f"must be 'servicebus' or 'sqlite:///PATH', not {raw[:60]!r}")


def _events(value: object) -> str:
    """``servicebus:<topic>``, ``file:PATH``, or off (``off``, or unset)."""
    raw = str(value).strip()
    if raw.lower() in ("off", "false", "0", "no"):
        raise PydanticUseDefault()
    if raw.startswith("servicebus:"):
        return "servicebus:" + _entity(raw[len("servicebus:") :])
    if raw.startswith("file:") and raw[len("file:") :].strip():
        return raw
    raise ValueError(f"must be 'servicebus:<topic>', 'file:PATH' or 'off', not {raw[:60]!r}")


def _flag(value: object) -> object:
    """On for 1/true/yes/on (any case); anything else is off, as the timer sweep has always read it."""
    return value.strip().lower() in ("1", "true", "yes", "on") if isinstance(value, str) else value


Blank = BeforeValidator(_blank_is_unset)  # last in an Annotated list, so it runs first
Text = Annotated[str, BeforeValidator(lambda v: str(v).strip())]
Secret = Annotated[str, AfterValidator(_secret)]
Choice = BeforeValidator(_word)
Flag = Annotated[bool, BeforeValidator(_flag)]
Telemetry = Annotated[Text, AfterValidator(_telemetry), Blank]
GateSeconds = Annotated[
    float,
    BeforeValidator(
        partial(
            _seconds,
            most=MAX_GATE_DEADLINE_S,
            below=True,
            too_long=f"is {{seconds:g}} s; it must stay well under Dataverse's {DATAVERSE_TIMEOUT_S:g} s webhook "
            f"timeout (less than {MAX_GATE_DEADLINE_S:g} s; the default is {DEFAULT_GATE_DEADLINE_S:g})",
        )
    ),
    Blank,
]
GraphSeconds = Annotated[float, BeforeValidator(partial(_seconds, most=50)), Blank]
ApiUrl = Annotated[str, BeforeValidator(partial(_base_url, plain_http="loopback")), Blank]
PageUrl = Annotated[str, BeforeValidator(partial(_base_url, plain_http="anywhere")), Blank]
Address = Annotated[str, BeforeValidator(_address), Blank]
Entity = Annotated[str, BeforeValidator(_entity), Blank]
Namespace = Annotated[str, BeforeValidator(_namespace), Blank]
Bus = Annotated[str, BeforeValidator(_bus), Blank]
Events = Annotated[str, BeforeValidator(_events), Blank]


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (the process environment by default)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name: value for name, value in self._environ.items() if value or not self.env_ignore_empty}


class _FromEnvironment(BaseSettings):
    """What both settings share: read by variable name, an empty one is unset, a bad one names its variable."""

    model_config = SettingsConfigDict(
        frozen=True,
        case_sensitive=True,
        env_ignore_empty=True,
        validate_by_name=True,
        validate_by_alias=True,
        extra="ignore",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the environment is read by from_env alone, so Settings(...) is what it is given

    @classmethod
    def _read(cls, env: Mapping[str, str] | None) -> dict[str, Any]:
        return _Environment(cls, environment() if env is None else env)()

    @classmethod
    def _refusal(cls, exc: ValidationError) -> SettingsError:
        """The first bad value, as a sentence naming its variable."""
        error = exc.errors()[0]
        key = str(error["loc"][0]) if error["loc"] else ""
        by_alias = {str(f.validation_alias): f for f in cls.model_fields.values()}
        field = cls.model_fields.get(key) or by_alias.get(key)
        name = str(field.validation_alias or key) if field is not None else key
        if error["type"] == "value_error":
            message = str((error.get("ctx") or {}).get("error", error["msg"]))
        elif error["type"] == "literal_error" and field is not None:
            message = "must be " + " or ".join(repr(a) for a in get_args(field.annotation))
        else:
            message = error["msg"]
        return SettingsError(f"{name} {message}", field=name)


class Settings(_FromEnvironment):
    """The app's settings (``infra/app/functions.bicep`` sets them in Azure; ``make infra-check`` compares)."""

    ledger: str = Field(default="sqlite:///.orgguard/ledger.db", validation_alias="ORGGUARD_LEDGER")
    orgs: str = Field(default="orgs.yaml", validation_alias="ORGGUARD_ORGS")  # a file, or the document itself
    policy: str = Field(default="policy.yaml", validation_alias="ORGGUARD_POLICY")  # the same (the first policy)
    admin_token: Secret | None = Field(default=None, validation_alias="ORGGUARD_ADMIN_TOKEN", repr=False)
    gate_on_error: Annotated[GateOnError, Choice] = Field(default="block", validation_alias="ORGGUARD_GATE_ON_ERROR")
    auth: Annotated[AuthMode, Choice] = Field(default="token", validation_alias="ORGGUARD_AUTH")
    sweep_schedule: str = Field(default=SWEEP_SCHEDULE, validation_alias="ORGGUARD_SWEEP_SCHEDULE")
    sweep_apply: Flag = Field(default=False, validation_alias="ORGGUARD_SWEEP_APPLY")  # whether the timer sweep acts
    # telemetry to Azure Monitor, and Entra ingestion (the Functions host reads these too)
    app_insights: str | None = Field(default=None, validation_alias="APPLICATIONINSIGHTS_CONNECTION_STRING")
    app_insights_auth: str | None = Field(default=None, validation_alias="APPLICATIONINSIGHTS_AUTHENTICATION_STRING")
    # "console" or "file:PATH" for local telemetry
    telemetry: Telemetry | None = Field(default=None, validation_alias="ORGGUARD_TELEMETRY")
    # Microsoft Graph (None: no directory, no mail), the mailbox notices are sent from, the page's address for links
    graph_url: ApiUrl | None = Field(default=None, validation_alias="ORGGUARD_GRAPH_URL")
    mail_from: Address | None = Field(default=None, validation_alias="ORGGUARD_MAIL_FROM")
    public_url: PageUrl | None = Field(default=None, validation_alias="ORGGUARD_PUBLIC_URL")
    # how long a decision waits for Graph before it goes on without it
    graph_timeout_s: GraphSeconds = Field(default=3.0, validation_alias="ORGGUARD_GRAPH_TIMEOUT_S")
    # how long the gate may take: well under Dataverse's 60 s webhook timeout
    gate_deadline_s: GateSeconds = Field(default=DEFAULT_GATE_DEADLINE_S, validation_alias="ORGGUARD_GATE_DEADLINE_S")
    # the user-assigned managed identity's client id (Dataverse, Graph, Table Storage); None: the default chain's
    azure_client_id: Text | None = Field(default=None, validation_alias="AZURE_CLIENT_ID")
    # the bus: OrgGuard's work queue (at once instead of at the next minute), Dataverse's queue, decision events.
    # ORGGUARD_BUS unset: no queue (the outbox is carried out by the minute timer alone); `orgguard serve` sets sqlite.
    bus: Bus | None = Field(default=None, validation_alias="ORGGUARD_BUS")
    work_queue: Entity = Field(default="orgguard-work", validation_alias="ORGGUARD_WORK_QUEUE")
    dataverse_queue: Entity = Field(default="orgguard-events", validation_alias="ORGGUARD_QUEUE")
    rejected_queue: Entity = Field(default="orgguard-rejected", validation_alias="ORGGUARD_REJECTED_QUEUE")
    # the namespaces (the Functions host reads the same settings for the triggers' connections)
    bus_namespace: Namespace | None = Field(default=None, validation_alias="OrgGuardBus__fullyQualifiedNamespace")
    dataverse_namespace: Namespace | None = Field(
        default=None, validation_alias="ServiceBusConnection__fullyQualifiedNamespace"
    )
    decision_events: Events | None = Field(default=None, validation_alias="ORGGUARD_DECISION_EVENTS")
    # the Dataverse Global Discovery Service (`orgguard discover`, GET /api/discovery): another cloud's, the sandbox's
    discovery_url: ApiUrl = Field(
        default="https://globaldisco.crm.dynamics.com", validation_alias="ORGGUARD_DISCOVERY_URL"
    )

    @property
    def mail(self) -> bool:
        """Whether notifications can be sent (Graph and a sender mailbox)."""
        return bool(self.graph_url and self.mail_from)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, under: Mapping[str, str] | None = None) -> Settings:
        """The settings in the environment (or ``env``), over the values ``under`` gives for variables it leaves
        unset; SettingsError naming the first bad variable."""
        environ = environment() if env is None else env
        if under:
            environ = {**under, **{name: value for name, value in environ.items() if value}}
        for name, value in environ.items():
            if name.startswith("ORGGUARD_") and is_key_vault_reference(value):
                raise SettingsError(unresolved_reference(name), field=name)
        try:
            found = cls(**cls._read(environ))
        except ValidationError as exc:
            raise cls._refusal(exc) from None
        found.check_bus()
        return found

    def check_bus(self) -> None:
        """Service Bus needs its namespace: ``SettingsError`` naming what is missing."""
        topic = (self.decision_events or "").startswith("servicebus:")
        wants = [name for name, on in (("ORGGUARD_BUS", self.bus == "servicebus"), ("ORGGUARD_DECISION_EVENTS", topic))
                 if on]  # fmt: skip
        if wants and not self.bus_namespace:
            name = "OrgGuardBus__fullyQualifiedNamespace"
            raise SettingsError(f"{wants[0]} uses Service Bus, so {name} must name its namespace", field=name)


class OperatorSettings(_FromEnvironment):
    """The operator's shell, for the CLI going through an OrgGuard's API (``--url``)."""

    url: Text | None = Field(default=None, validation_alias="ORGGUARD_URL")  # the API to go through, as --url
    api_scope: Text | None = Field(default=None, validation_alias="ORGGUARD_API_SCOPE")  # Entra token scope for --url
    admin_token: Text | None = Field(default=None, validation_alias="ORGGUARD_ADMIN_TOKEN", repr=False)  # as the API's
    user: Text = Field(default="operator", validation_alias="USER")  # the CLI names its actor after the local user

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        try:
            return cls(**cls._read(env))
        except ValidationError as exc:
            raise cls._refusal(exc) from None


_KEY_VAULT_REFERENCE = re.compile(r"^\s*@Microsoft\.KeyVault\(", re.IGNORECASE)


def is_key_vault_reference(value: str) -> bool:
    """An App Service Key Vault reference the platform left as it was (it could not resolve it)."""
    return bool(_KEY_VAULT_REFERENCE.match(value))


def unresolved_reference(name: str) -> str:
    return (
        f"{name} holds an unresolved Key Vault reference (@Microsoft.KeyVault(...)): App Service could not "
        "resolve it, so the reference itself would be used as the secret. Give the app's managed identity "
        "access to the secret (Key Vault Secrets User) and check the reference's SecretUri or VaultName/SecretName"
    )


def secret_problem(value: str) -> str | None:
    """Why ``value`` cannot serve as a key or token compared exactly against an HTTP header, or None.

    HTTP trims the spaces around a header's value, so a secret with white space at its ends (a
    trailing newline from a file, say) could never match; control characters never belong in one.
    """
    if is_key_vault_reference(value):
        return "is an unresolved Key Vault reference (@Microsoft.KeyVault(...)), not a secret"
    if value != value.strip() or any(c.isspace() for c in value) or hidden_character(value) is not None:
        return "holds white space or a control character; a key must be sent and compared exactly"
    return None

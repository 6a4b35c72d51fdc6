"""Settings are read once, from the environment, and a bad value is refused with the setting's name."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.config.environment import sweep_schedule
from shared.config.settings import OperatorSettings, Settings, SettingsError


@pytest.mark.parametrize(("raw", "seconds"), [(None, 10.0), ("", 10.0), ("2.5", 2.5), (" 30 ", 30.0), ("54.9", 54.9)])
def test_the_gate_deadline_is_seconds_under_dataverse_s_timeout(raw: str | None, seconds: float) -> None:
    env = {} if raw is None else {"ORGGUARD_GATE_DEADLINE_S": raw}
    assert Settings.from_env(env).gate_deadline_s == seconds


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("0", "more than 0"),
        ("-3", "more than 0"),
        ("nan", "finite"),
        ("inf", "finite"),
        ("ten", "a number of seconds"),
        ("55", "well under Dataverse's 60 s"),
        ("60", "well under Dataverse's 60 s"),
        ("600", "well under Dataverse's 60 s"),
    ],
)
def test_a_gate_deadline_dataverse_would_not_wait_for_is_refused(raw: str, says: str) -> None:
    with pytest.raises(SettingsError, match=says) as refused:
        Settings.from_env({"ORGGUARD_GATE_DEADLINE_S": raw})
    assert refused.value.field == "ORGGUARD_GATE_DEADLINE_S"


# --- every variable is read here, one rule per kind of value ------------------------------------------------------

SB = "servicebus.windows.net"
# variable: (raw value, field) when the field holds the raw value as it is, else (raw value, field, value)
EVERY_VARIABLE: dict[str, tuple[Any, ...]] = {
    "ORGGUARD_LEDGER": ("sqlite:///x.db", "ledger"),
    "ORGGUARD_ORGS": ("mine.yaml", "orgs"),
    "ORGGUARD_POLICY": ("version: 1\n", "policy"),
    "ORGGUARD_ADMIN_TOKEN": ("a-token-0123456789", "admin_token"),
    "ORGGUARD_GATE_ON_ERROR": (" Allow ", "gate_on_error", "allow"),
    "ORGGUARD_AUTH": ("EASYAUTH", "auth", "easyauth"),
    "ORGGUARD_SWEEP_SCHEDULE": ("0 0 * * * *", "sweep_schedule"),
    "ORGGUARD_SWEEP_APPLY": ("Yes", "sweep_apply", True),
    "APPLICATIONINSIGHTS_CONNECTION_STRING": ("InstrumentationKey=x", "app_insights"),
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": ("Authorization=AAD", "app_insights_auth"),
    "ORGGUARD_TELEMETRY": ("file:/tmp/t.jsonl", "telemetry"),
    "ORGGUARD_GRAPH_URL": ("https://graph.microsoft.com/v1.0", "graph_url"),
    "ORGGUARD_MAIL_FROM": ("OrgGuard@contoso.com", "mail_from", "orgguard@contoso.com"),
    "ORGGUARD_PUBLIC_URL": ("http://orgguard.contoso.com/", "public_url", "http://orgguard.contoso.com"),
    "ORGGUARD_GRAPH_TIMEOUT_S": ("4", "graph_timeout_s", 4.0),
    "ORGGUARD_GATE_DEADLINE_S": ("5", "gate_deadline_s", 5.0),
    "ORGGUARD_BUS": (" sqlite:///.orgguard/bus.db ", "bus", "sqlite:///.orgguard/bus.db"),
    "ORGGUARD_WORK_QUEUE": ("work-1", "work_queue"),
    "ORGGUARD_QUEUE": ("dataverse.in", "dataverse_queue"),
    "ORGGUARD_REJECTED_QUEUE": ("rejects", "rejected_queue"),
    "OrgGuardBus__fullyQualifiedNamespace": (f"SB-OG.{SB}", "bus_namespace", f"sb-og.{SB}"),
    "ServiceBusConnection__fullyQualifiedNamespace": (f"sb-dv.{SB}", "dataverse_namespace"),
    "ORGGUARD_DECISION_EVENTS": ("file:/tmp/e.jsonl", "decision_events"),
    "AZURE_CLIENT_ID": ("0f3c9a52-0000-4000-8000-000000000001", "azure_client_id"),
    "ORGGUARD_DISCOVERY_URL": (
        "https://globaldisco.crm9.dynamics.com/",
        "discovery_url",
        "https://globaldisco.crm9.dynamics.com",
    ),
}


@pytest.mark.parametrize("name", EVERY_VARIABLE)
def test_each_setting_is_read_from_its_variable(name: str) -> None:
    raw, field, *rest = EVERY_VARIABLE[name]
    value = rest[0] if rest else raw
    assert getattr(Settings.from_env({name: raw}), field) == value
    assert getattr(Settings.from_env({}), field) == getattr(Settings(), field)  # unset: the default


def test_every_field_of_the_settings_names_its_variable() -> None:
    assert {str(f.validation_alias) for f in Settings.model_fields.values()} == set(EVERY_VARIABLE)


@pytest.mark.parametrize("name", [n for n in EVERY_VARIABLE if n != "ORGGUARD_SWEEP_APPLY"])
def test_an_empty_variable_is_an_unset_one(name: str) -> None:
    assert Settings.from_env({name: ""}) == Settings()


@pytest.mark.parametrize(
    "name", ["ORGGUARD_GRAPH_URL", "ORGGUARD_MAIL_FROM", "ORGGUARD_GRAPH_TIMEOUT_S", "ORGGUARD_TELEMETRY"]
)
def test_spaces_alone_are_unset_where_they_could_mean_nothing_else(name: str) -> None:
    assert Settings.from_env({name: "   "}) == Settings()


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("ORGGUARD_GATE_ON_ERROR", "  ", "must be 'block' or 'allow'"),
        ("ORGGUARD_AUTH", "entra", "must be 'token' or 'easyauth'"),
        ("ORGGUARD_TELEMETRY", "file:", "must be 'console' or 'file:PATH'"),
        ("ORGGUARD_ADMIN_TOKEN", "   ", "white space"),
        ("ORGGUARD_PUBLIC_URL", "orgguard.contoso.com", "http(s) URL"),
        ("ORGGUARD_GRAPH_URL", "http://graph.contoso.com/v1.0", "https"),  # bearer tokens in clear
        ("ORGGUARD_GRAPH_URL", "graph.microsoft.com/v1.0", "http(s) URL"),
        ("ORGGUARD_GRAPH_URL", "https://graph.microsoft.com/v1.0?x=1", "query"),
        ("ORGGUARD_MAIL_FROM", "orgguard", "exactly one '@'"),
        ("ORGGUARD_PUBLIC_URL", "ftp://orgguard.contoso.com", "http(s) URL"),
        ("ORGGUARD_GRAPH_TIMEOUT_S", "soon", "number of seconds"),
        ("ORGGUARD_GRAPH_TIMEOUT_S", "0", "more than 0"),
        ("ORGGUARD_GRAPH_TIMEOUT_S", "61", "at most 50"),
        ("ORGGUARD_BUS", "amqp://broker", "must be 'servicebus' or 'sqlite:///PATH'"),
        ("ORGGUARD_BUS", "sqlite:///", "must be 'servicebus' or 'sqlite:///PATH'"),
        ("ORGGUARD_WORK_QUEUE", "-work", "not a Service Bus queue or topic name"),
        ("ORGGUARD_QUEUE", "events queue", "not a Service Bus queue or topic name"),
        ("ORGGUARD_REJECTED_QUEUE", "x" * 261, "not a Service Bus queue or topic name"),
        ("OrgGuardBus__fullyQualifiedNamespace", "https://sb.servicebus.windows.net/", "fully qualified namespace"),
        ("ServiceBusConnection__fullyQualifiedNamespace", "localhost", "fully qualified namespace"),
        ("ORGGUARD_DECISION_EVENTS", "kafka:decisions", "'servicebus:<topic>', 'file:PATH' or 'off'"),
        ("ORGGUARD_DECISION_EVENTS", "servicebus:", "not a Service Bus queue or topic name"),
    ],
)
def test_a_bad_value_is_refused_with_its_variable(name: str, value: str, words: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({name: value})
    assert refused.value.field == name and refused.value.detail.startswith(f"{name} ") and words in refused.value.detail


@pytest.mark.parametrize(
    "env", [{"ORGGUARD_BUS": "servicebus"}, {"ORGGUARD_DECISION_EVENTS": "servicebus:orgguard-decisions"}]
)
def test_service_bus_without_its_namespace_is_refused_naming_the_missing_setting(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert refused.value.field == "OrgGuardBus__fullyQualifiedNamespace"
    with_namespace = Settings.from_env({**env, "OrgGuardBus__fullyQualifiedNamespace": "sb-o.servicebus.windows.net"})
    assert with_namespace.bus_namespace == "sb-o.servicebus.windows.net"


def test_decision_events_are_off_unless_asked_for() -> None:
    assert Settings().decision_events is None
    assert Settings.from_env({"ORGGUARD_DECISION_EVENTS": " OFF "}).decision_events is None


def test_the_sweep_acts_only_when_told_so() -> None:
    assert [
        Settings.from_env({"ORGGUARD_SWEEP_APPLY": v}).sweep_apply for v in ("1", "on", "TRUE", "0", "no", "x")
    ] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def test_settings_built_by_hand_hold_what_they_are_given_and_never_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("ORGGUARD_AUTH", "easyauth")
    monkeypatch.setenv("ORGGUARD_GATE_DEADLINE_S", "nonsense")  # from_env would refuse it
    assert (Settings().auth, Settings(ledger="memory:").ledger) == ("token", "memory:")
    with pytest.raises(SettingsError, match="ORGGUARD_GATE_DEADLINE_S"):
        Settings.from_env()


def test_values_under_the_environment_fill_only_what_it_leaves_unset() -> None:
    env = {"ORGGUARD_POLICY": "mine.yaml", "ORGGUARD_ORGS": ""}
    under = {"ORGGUARD_ORGS": ".orgguard/orgs.yaml", "ORGGUARD_POLICY": ".orgguard/policy.yaml"}
    s = Settings.from_env(env, under=under)
    assert (s.orgs, s.policy) == (".orgguard/orgs.yaml", "mine.yaml")


def test_the_admin_token_stays_out_of_the_settings_repr() -> None:
    token = "a-token-0123456789"
    assert token not in repr(Settings.from_env({"ORGGUARD_ADMIN_TOKEN": token}))
    assert token not in repr(OperatorSettings.from_env({"ORGGUARD_ADMIN_TOKEN": token}))


def test_the_sweep_schedule_is_read_alone_so_a_bad_other_setting_does_not_stop_the_timers_loading() -> None:
    bad = {"ORGGUARD_GATE_DEADLINE_S": "ten"}
    assert sweep_schedule(bad) == Settings().sweep_schedule
    assert sweep_schedule({**bad, "ORGGUARD_SWEEP_SCHEDULE": "0 30 * * * *"}) == "0 30 * * * *"


_ENV_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), _ENV_TEXT), st.dictionaries(st.sampled_from(["ORGGUARD_GATE_DEADLINE_S", "X"]), _ENV_TEXT))
def test_the_sweep_schedule_read_alone_is_what_the_settings_read(value: str | None, others: dict[str, str]) -> None:
    """The timers read ORGGUARD_SWEEP_SCHEDULE without pydantic-settings; it must be the value ``Settings`` reads."""
    env = others if value is None else {**others, "ORGGUARD_SWEEP_SCHEDULE": value}
    assert sweep_schedule(env) == Settings._read(env).get("ORGGUARD_SWEEP_SCHEDULE", Settings().sweep_schedule) or (
        Settings().sweep_schedule
    )
    assert sweep_schedule(env) == Settings.from_env({"ORGGUARD_SWEEP_SCHEDULE": value or ""}).sweep_schedule


def test_the_operator_s_shell() -> None:
    shell = OperatorSettings.from_env(
        {"ORGGUARD_URL": " https://orgguard.contoso.com ", "ORGGUARD_API_SCOPE": "api://x/.default", "USER": "ann"}
    )
    assert (shell.url, shell.api_scope, shell.admin_token, shell.user) == (
        "https://orgguard.contoso.com",
        "api://x/.default",
        None,
        "ann",
    )
    assert OperatorSettings.from_env({}).user == "operator"


READS_ENVIRONMENT = re.compile(r"\bos\.environ\b|\bos\.getenv\b|\bgetenv\(|envvar=")


def test_the_environment_is_read_in_shared_config_environment_only() -> None:
    repo = Path(__file__).resolve().parents[2]
    readers = {
        path.relative_to(repo).as_posix()
        for folder in ("shared", "functions")
        for path in (repo / folder).rglob("*.py")
        if READS_ENVIRONMENT.search(path.read_text(encoding="utf-8"))
    } | ({"function_app.py"} if READS_ENVIRONMENT.search((repo / "function_app.py").read_text()) else set())
    assert readers == {"shared/config/environment.py"}  # Settings and the timers' schedule read through it

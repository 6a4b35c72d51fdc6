"""The alerts read what the app writes: each log-based alert's filter is run over the lines the code emits.

The Functions host sends log records to Application Insights as `traces` rows
whose `message` is the formatted text (extra fields do not travel), so the
contract between infra/app/alerts.bicep and the code is that text. These tests
evaluate each query's `startswith` / `contains` filters and its `parse`
pattern in Python over the formats the deployed code logs with, and over a
line the held-cases report really writes.
"""

from __future__ import annotations

import ast
import logging
import re
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from shared.domain.model import utcnow
from shared.service.signals import HELD_CASES, report_held
from tests.factories import HOLDING_POLICY, claim, container

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "infra" / "app" / "alerts.bicep"
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}


@cache
def alerts() -> dict[str, dict[str, Any]]:
    parsed: Any = BicepParser().parse(file_path=ALERTS)
    return dict(parsed["resources"])


def query_of(symbol: str) -> str:
    query: str = alerts()[symbol]["config"]["properties"]["criteria"]["allOf"][0]["query"]
    return query


def traces_filter(query: str) -> list[tuple[str, str]]:
    """[(operator, literal)] of `message startswith "..."` / `message contains "..."`."""
    assert query.startswith("traces |"), query
    return re.findall(r'message (startswith|contains) "([^"]*)"', query)


def matches(message: str, filters: list[tuple[str, str]]) -> bool:
    return all(message.startswith(v) if op == "startswith" else v in message for op, v in filters)


def kql_parse(message: str, query: str) -> dict[str, str] | None:
    """KQL `parse message with "a" x:long "b" y:real "c"` as a regex over the literal pieces."""
    spec = re.search(r"parse message with (.*?) \|", query)
    assert spec, query
    pattern = ""
    for literal, name in re.findall(r'"([^"]*)"|(\w+):\w+', spec.group(1)):
        pattern += re.escape(literal) if literal else rf"(?P<{name}>[-0-9.]+)"
    found = re.match(pattern, message)
    return found.groupdict() if found else None


def logged_formats() -> list[str]:
    """Every format string the deployed code passes to a logger, constants resolved, placeholders filled."""
    formats = []
    for path in [REPO / "function_app.py", *(REPO / "functions").rglob("*.py"), *(REPO / "shared").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        constants = {
            t.id: n.value.value
            for n in tree.body
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
                continue
            if node.func.attr not in LOG_METHODS:
                continue
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                formats.append(first.value)
            elif isinstance(first, ast.Name) and first.id in constants:
                formats.append(constants[first.id])
    return [re.sub(r"%[-.0-9]*[sdfr]", "x", f) for f in formats]


@pytest.mark.parametrize("symbol", ["failedActions", "degradedGate", "heldCases"])
def test_each_log_alert_matches_a_line_the_code_writes(symbol: str) -> None:
    filters = traces_filter(query_of(symbol))
    assert filters, f"{symbol}: no message filter"
    written = [f for f in logged_formats() if matches(f, filters)]
    assert written, f"{symbol}: no log line in the code passes {filters}"


def test_a_failed_action_line_is_not_mistaken_for_another_failure() -> None:
    filters = traces_filter(query_of("failedActions"))
    assert matches("action 01J (demote in contoso-jp) failed: 403 Forbidden", filters)
    assert not matches("WhoAmI failed in contoso-jp: timeout", filters)
    assert not matches("job 7 failed: boom", filters)


def test_the_held_cases_alert_reads_the_age_the_housekeeping_reports(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = container(tmp_path, HOLDING_POLICY)
    start = utcnow()
    c.service.clock = lambda: start
    c.service.handle_claim(claim("contoso-na", op="1"))
    held = c.service.handle_claim(claim("contoso-jp", op="2"))
    assert held.case_id
    c.service.clock = lambda: start + timedelta(hours=30)
    with caplog.at_level(logging.INFO, logger="orgguard.signals"):
        report_held(c.service)
    lines = [r.getMessage() for r in caplog.records if r.name == "orgguard.signals"]
    assert lines == ["held cases: 1, oldest 30.0 h"]
    query = query_of("heldCases")
    assert matches(lines[0], traces_filter(query))
    parsed = kql_parse(lines[0], query)
    assert parsed == {"held": "1", "oldest_hours": "30.0"}
    threshold = BicepParser().parse(file_path=ALERTS)["parameters"]["heldCaseHours"]["default"]
    assert float(parsed["oldest_hours"]) > threshold
    criterion = alerts()["heldCases"]["config"]["properties"]["criteria"]["allOf"][0]
    assert criterion["metricMeasureColumn"] == "oldest_hours" and criterion["threshold"] == "heldCaseHours"
    assert HELD_CASES.startswith(traces_filter(query)[0][1])


def test_the_gate_latency_alert_reads_the_gate_route() -> None:
    from functions.http_api import create_api

    query = query_of("gateLatency")
    route = re.search(r'url contains "([^"]+)"', query)
    assert route and query.startswith("requests |")
    paths = set(create_api().openapi()["paths"])
    assert route.group(1) in paths
    host = (REPO / "host.json").read_text()
    assert '"Host.Results": "Information"' in host, "successful invocations must reach the requests table"


def test_the_dead_letter_alert_watches_the_queue_the_trigger_reads() -> None:
    criterion = alerts()["deadLetters"]["config"]["properties"]["criteria"]["allOf"][0]
    assert criterion["metricName"] == "DeadletteredMessages"
    assert criterion["metricNamespace"] == "Microsoft.ServiceBus/namespaces"
    assert criterion["dimensions"] == [{"name": "EntityName", "operator": "Include", "values": ["serviceBusQueueName"]}]
    work = alerts()["workDeadLetters"]["config"]["properties"]
    assert work["scopes"] == ["busNamespaceId"]
    assert work["criteria"]["allOf"][0]["dimensions"][0]["values"] == "busQueueNames"


def test_every_alert_notifies_the_action_group_when_one_is_given() -> None:
    for symbol, res in alerts().items():
        props = res["config"]["properties"]
        actions = props["actions"]
        assert actions in ("metricActions", {"actionGroups": "logActionGroups"}), symbol
        assert props["enabled"] is True and props["autoMitigate"] is True


def test_the_housekeeping_timer_writes_the_held_cases_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions import timers
    from shared import bootstrap

    c = container(tmp_path, HOLDING_POLICY)
    c.service.handle_claim(claim("contoso-na", op="1"))
    c.service.handle_claim(claim("contoso-jp", op="2"))

    async def no_orgs_to_reach() -> None:  # a held case has no due action; the orgs are not running here
        return None

    monkeypatch.setattr(c, "run_actions", no_orgs_to_reach)
    bootstrap.install(c)
    try:
        with caplog.at_level(logging.INFO, logger="orgguard.signals"):
            timers.run_housekeeping()
    finally:
        bootstrap.install(None)
        c.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "orgguard.signals"]
    assert len(lines) == 1 and matches(lines[0], traces_filter(query_of("heldCases")))

"""OpenTelemetry as operators read it: a span per decision, the counters alerts query, and nothing secret.

The run happens in its own process (``telemetry_run.py``) with ``ORGGUARD_TELEMETRY=file:...``;
this test reads every exported span, metric point and log record back.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.factories import AIKO, KEYS, REPO

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict]]:
    work = tmp_path_factory.mktemp("telemetry")
    out = work / "telemetry.jsonl"
    subprocess.run(
        [sys.executable, "-m", "tests.integration.telemetry_run", str(out), str(work)],
        cwd=REPO, check=True, timeout=240,
    )  # fmt: skip
    text = out.read_text(encoding="utf-8")
    return text, [json.loads(line) for line in text.splitlines()]


def signals(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["signal"] == kind]


def test_each_decision_is_a_span_with_its_effect_rule_origin_and_org(exported):
    _, docs = exported
    decisions = [s for s in signals(docs, "span") if s["name"] == "orgguard.decide"]
    blocked = [s["attributes"] for s in decisions if s["attributes"].get("orgguard.effect") == "block"]
    assert blocked, decisions
    assert blocked[0]["orgguard.org"] == "contoso-jp" and blocked[0]["orgguard.origin"] == "gate"
    assert blocked[0]["orgguard.rule"] and blocked[0]["orgguard.case"]
    assert all(s["ms"] >= 0 for s in decisions)


def test_counters_and_histograms_the_alerts_read(exported):
    _, docs = exported
    names = {m["name"] for m in signals(docs, "metric")}
    assert {"orgguard.decisions", "orgguard.decision.duration", "orgguard.gate.duration",
            "orgguard.actions", "orgguard.outside.requests"} <= names  # fmt: skip
    actions = [p for m in signals(docs, "metric") if m["name"] == "orgguard.actions" for p in m["points"]]
    assert any(p["attributes"].get("orgguard.status") == "applied" for p in actions)
    calls = [p for m in signals(docs, "metric") if m["name"] == "orgguard.outside.requests" for p in m["points"]]
    assert any(p["attributes"].get("orgguard.status") == 429 for p in calls), "throttled calls are counted"
    spans = [s["name"] for s in signals(docs, "span")]
    assert "dataverse PATCH" in spans or "dataverse POST" in spans


def test_nothing_exported_names_a_mailbox_or_carries_a_secret(exported):
    text, docs = exported
    assert signals(docs, "log"), "log records are exported too"
    assert AIKO.address not in text.lower()
    addresses = re.findall(r"[a-z0-9._%+-]+@contoso\.com", text.lower())
    assert all(a.startswith(a[0] + "***") or "***" in a for a in addresses), addresses
    for secret in [*KEYS.values(), "secret-admin-token-42", "admin-of-contoso-jp", "admin-of-contoso-na"]:
        assert secret not in text
    assert "bearer " not in text.lower().replace("bearer ***", "")

"""OpenTelemetry: a span per decision, counters and histograms for what operators alert on.

``configure`` runs once per process, from the composition root:

* ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set: Azure Monitor, through
  ``azure-monitor-opentelemetry`` (imported only then). Its automatic HTTP and
  Azure SDK instrumentations are turned off: they would record request URLs,
  and OrgGuard's URLs carry mailbox addresses (``/api/mailboxes/{address}``,
  Graph ``/users/{address}``, Table Storage keys). OrgGuard records its own
  spans instead, with attributes from ``ALLOWED``.
* ``ORGGUARD_TELEMETRY=console``: spans, metrics and logs printed; ``file:PATH``:
  one JSON document per line, for reading locally and for the test that scans
  everything exported for addresses and secrets.
* neither: the OpenTelemetry API's no-op; an instrument costs a method call.

What may be recorded: org names, effects, rules, origins, kinds, case and action
ids, HTTP methods and statuses, durations. Never a mailbox address, a user id, a
key or a token; log messages pass ``scrub`` on the way out as well.

The names below are what the alerts in ``infra/`` query (see infra/README.md).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import Counter, Histogram, _Gauge

log = logging.getLogger("orgguard.telemetry")

SERVICE = "orgguard"
ALLOWED = frozenset(
    {
        "orgguard.effect", "orgguard.rule", "orgguard.origin", "orgguard.kind", "orgguard.org",
        "orgguard.case", "orgguard.action", "orgguard.status", "orgguard.duplicate", "orgguard.dry_run",
        "orgguard.degraded", "orgguard.answer", "orgguard.service", "orgguard.operation", "orgguard.attempt",
        "orgguard.throttled", "http.request.method", "http.response.status_code", "error.type",
    }
)  # fmt: skip

_tracer = trace.get_tracer(SERVICE)
_meter = metrics.get_meter(SERVICE)


def _counter(name: str, unit: str, description: str) -> Counter:
    """OrgGuard's instruments are all named ``orgguard.<name>``."""
    return _meter.create_counter(f"orgguard.{name}", unit=unit, description=description)


def _histogram(name: str, unit: str, description: str) -> Histogram:
    return _meter.create_histogram(f"orgguard.{name}", unit=unit, description=description)


def _gauge(name: str, unit: str, description: str) -> _Gauge:
    return _meter.create_gauge(f"orgguard.{name}", unit=unit, description=description)


DECISIONS = _counter("decisions", "{decision}", "Claims decided, by effect, origin and org")
DECISION_TIME = _histogram("decision.duration", "ms", "Time to decide and record one claim")
GATE_TIME = _histogram("gate.duration", "ms", "The synchronous gate's answer time, as Dataverse waits on it")
GATE_DEGRADED = _counter("gate.degraded", "{answer}", "Gate answers given per gate.on_error, without a decision")
ACTIONS = _counter("actions", "{attempt}", "Action attempts recorded, by kind, org and status")
OUTSIDE_CALLS = _counter("outside.requests", "{request}", "Requests to Dataverse and Graph, by status")
THROTTLE_WAIT = _histogram("outside.throttle_wait", "s", "Time waited on Retry-After (429) before asking again")
BUS_SENT = _counter("bus.sent", "{message}", "Work and decision events handed to the bus, by status")
DEAD_LETTERED = _counter("bus.dead_lettered", "{message}", "Messages OrgGuard dead-lettered, by queue and reason")
COMPLIANCE = _gauge(
    "compliance",
    "{mailbox}",
    "Mailboxes per org at the last sweep, by status (compliant, conflict, exempt, held, failed)",
)
EXEMPTIONS = _gauge("exemptions", "{exemption}", "Exemptions by status (active, expired)")

_ADDRESS = re.compile(r"[^\s@<>()\[\]\"',;:/]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+")


def scrub(text: str) -> str:
    """Text fit for logs: mailbox addresses reduced to their first letter and domain, bearer tokens removed."""
    text = _BEARER.sub("Bearer ***", text)
    return _ADDRESS.sub(lambda m: f"{m.group(0)[:1]}***@{m.group(0).rsplit('@', 1)[1]}", text)


def attributes(values: Mapping[str, object]) -> dict[str, str | int | float | bool]:
    """``orgguard.<name>`` attributes from keyword values, keeping only the allowed names and plain values."""
    out: dict[str, str | int | float | bool] = {}
    for name, value in values.items():
        key = name if "." in name else f"orgguard.{name}"
        if key not in ALLOWED or value is None:
            continue
        out[key] = value if isinstance(value, str | int | float | bool) else str(value)
    return out


_exporting = False  # set by setup.configure once it installed providers that export


def exporting() -> None:
    """Spans and metrics go somewhere from now on (``setup.configure``). Until then the helpers below return at
    once: with nothing installed OpenTelemetry's own no-ops would drop them anyway, after the attributes were
    built for nothing on every decision."""
    global _exporting
    _exporting = True


@contextmanager
def span(name: str, **values: object) -> Iterator[trace.Span]:
    """A span named ``name`` with allowed attributes; an exception marks it failed and goes on."""
    if not _exporting:
        yield trace.INVALID_SPAN
        return
    with _tracer.start_as_current_span(name, attributes=attributes(values)) as current:
        yield current


def note(current: trace.Span, **values: object) -> None:
    """More allowed attributes on a span, once they are known (the effect after deciding)."""
    if current.is_recording():
        current.set_attributes(attributes(values))


def count(instrument: Any, amount: float = 1, **values: object) -> None:
    """Add to a counter or record in a histogram, with allowed attributes only."""
    if not _exporting:
        return
    labels = attributes(values)
    if hasattr(instrument, "add"):
        instrument.add(amount, labels)
    else:
        instrument.record(amount, labels)


def gauge(instrument: Any, value: float, **values: object) -> None:
    """Set a gauge to ``value``, with allowed attributes only."""
    if not _exporting:
        return
    instrument.set(value, attributes(values))


class Stopwatch:
    """Milliseconds since it started (``time.perf_counter``)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000

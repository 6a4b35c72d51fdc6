"""Setting telemetry up, once per process, from the composition root (``shared.bootstrap``).

Kept apart from the instruments (``shared.telemetry``) that every layer records into: only
the composition root decides where telemetry goes, and only it loads Azure Monitor's
distro or the OpenTelemetry SDK, so the service layer never reaches an Azure SDK.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from opentelemetry import metrics, trace

from shared.telemetry import SERVICE, exporting, scrub

_configured: str | None = None
_lock = threading.Lock()
_providers: list[Any] = []


class ScrubbingFilter(logging.Filter):
    """Scrubs every record leaving through a handler it sits on (defence in depth: OrgGuard logs redacted keys)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


def configure(*, connection_string: str | None, local: str | None, authentication: str | None = None) -> str:
    """Set up exporting once per process (the first call wins, as OpenTelemetry's providers are set once).

    Returns what was set up: ``azure-monitor``, ``console``, ``file`` or ``off``.
    """
    global _configured
    with _lock:
        if _configured is not None:
            return _configured
        connection = (connection_string or "").strip()
        wanted = (local or "").strip()
        if connection:
            _azure_monitor(connection, authentication)
            _configured = "azure-monitor"
        elif wanted == "console":
            _local(None)
            _configured = "console"
        elif wanted.startswith("file:") and wanted.removeprefix("file:").strip():
            _local(Path(wanted.removeprefix("file:").strip()))
            _configured = "file"
        else:
            _configured = "off"
        if _configured != "off":
            exporting()
        return _configured


def ingestion_client_id(authentication: str | None) -> str | None:
    """The managed identity of ``Authorization=AAD;ClientId=<id>`` (Entra ingestion), or None for key ingestion."""
    parts = dict(p.split("=", 1) for p in (authentication or "").split(";") if "=" in p)
    if parts.get("Authorization", "").upper() != "AAD":
        return None
    return parts.get("ClientId", "")


def _azure_monitor(connection: str, authentication: str | None) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor

    off = {"enabled": False}
    extra: dict[str, Any] = {}
    client_id = ingestion_client_id(authentication)
    if client_id is not None:  # local authentication is off on the Application Insights resource
        from azure.identity import ManagedIdentityCredential

        extra["credential"] = ManagedIdentityCredential(client_id=client_id or None)
    configure_azure_monitor(
        connection_string=connection,
        **extra,
        logger_name="orgguard",
        instrumentation_options={
            name: off
            for name in ("azure_sdk", "django", "fastapi", "flask", "psycopg2", "requests", "urllib", "urllib3")
        },
        enable_live_metrics=False,
    )
    for handler in logging.getLogger("orgguard").handlers:
        handler.addFilter(ScrubbingFilter())


def _local(path: Path | None) -> None:
    """Console or JSON-lines exporters, for local runs and the tests."""
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from shared.telemetry import export

    sink = export.Sink(path)
    resource = Resource.create({"service.name": SERVICE})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(export.Spans(sink)))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(export.Metrics(sink), export_interval_millis=5000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    metrics.set_meter_provider(meter_provider)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(export.Logs(sink)))
    handler = LoggingHandler(level=logging.INFO, logger_provider=logger_provider)
    handler.addFilter(ScrubbingFilter())
    logging.getLogger("orgguard").addHandler(handler)
    _providers.extend([tracer_provider, meter_provider, logger_provider])


def flush() -> None:
    """Export everything buffered now (the end of a CLI run, a test)."""
    for provider in _providers:
        provider.force_flush()


def exporter() -> str:
    """Where telemetry goes (for /api/health), never the connection string."""
    return _configured or "not configured"

"""Local exporters: spans, metric points and log records as JSON lines (a file) or printed (the console).

Imported only when ``ORGGUARD_TELEMETRY`` asks for local telemetry; the OpenTelemetry SDK stays
off the import path otherwise.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class Sink:
    """One JSON document per line, to a file (appended) or to standard error."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, doc: dict[str, Any]) -> None:
        line = json.dumps({"signal": kind, **doc}, separators=(",", ":"), default=str)
        with self._lock:
            if self.path is None:
                print(line, file=sys.stderr)
                return
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")


class Spans(SpanExporter):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for s in spans:
            start, end = s.start_time or 0, s.end_time or 0
            self.sink.write(
                "span",
                {
                    "name": s.name,
                    "trace": f"{s.context.trace_id:032x}" if s.context else None,
                    "ms": round((end - start) / 1e6, 3),
                    "status": s.status.status_code.name,
                    "attributes": dict(s.attributes or {}),
                    "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in s.events],
                },
            )
        return SpanExportResult.SUCCESS


class Metrics(MetricExporter):
    def __init__(self, sink: Sink) -> None:
        super().__init__()
        self.sink = sink

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        for resource in metrics_data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points = [json.loads(p.to_json()) for p in metric.data.data_points]
                    self.sink.write("metric", {"name": metric.name, "unit": metric.unit, "points": points})
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


class Logs(LogRecordExporter):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        for item in batch:
            record = item.log_record
            self.sink.write(
                "log",
                {
                    "severity": record.severity_text,
                    "body": str(record.body),
                    "attributes": {k: v for k, v in (record.attributes or {}).items() if not k.startswith("code.")},
                },
            )
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        return None

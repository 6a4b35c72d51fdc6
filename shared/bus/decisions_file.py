"""Decision events to a local file, one CloudEvent (JSON) per line: ``ORGGUARD_DECISION_EVENTS=file:PATH``.

For a laptop and the tests what the Service Bus topic is in Azure: appended under a lock,
so events from several threads never interleave within a line.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

from shared.bus.decisions import CloudEvent
from shared.bus.port import QueueError


class DecisionFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def publish(self, events: Sequence[CloudEvent]) -> None:
        lines = "".join(json.dumps(e.document(), separators=(",", ":")) + "\n" for e in events)
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as out:
                    out.write(lines)
        except OSError as exc:
            raise QueueError(f"cannot write decision events to {self.path}: {exc}") from exc

    def close(self) -> None:
        """Nothing stays open between events."""

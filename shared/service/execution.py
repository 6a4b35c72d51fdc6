"""What one run of the outbox did: the count the worker, the CLI and the benchmarks read."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExecutionReport:
    applied: int = 0
    failed: int = 0
    deferred: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: ExecutionReport) -> None:
        self.applied += other.applied
        self.failed += other.failed
        self.deferred += other.deferred
        self.requests += other.requests
        self.errors += other.errors

"""What one run of the outbox did: the count the worker, the CLI and the benchmarks read."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExecutionReport:
    applied: int = 0
    failed: int = 0
    deferred: int = 0
    held: int = 0  # left unsent for a later round: their org is over its budget, or their lease nearly out
    requests: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: ExecutionReport) -> None:
        self.applied += other.applied
        self.failed += other.failed
        self.deferred += other.deferred
        self.held += other.held
        self.requests += other.requests
        self.errors += other.errors

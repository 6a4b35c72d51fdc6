"""`python -m bench [gate ...]`: run the named benchmarks (all by default; the soak only when asked)."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

USAGE = """usage: python -m bench [SUITE ...]

Run the named benchmarks (every one but the soak when none is named; the soak too when ORGGUARD_SOAK_S is set).
Each prints its tables with the baseline, the ratio, the machine's load and the command that made them.

suites: gate, ledger, tables, executor, dispatch, sweep, graph, impact, soak

sizes (environment): BENCH_LEDGER_MAILBOXES (gate), BENCH_CASES, BENCH_BUDGET_CASES, BENCH_REPEATS (executor),
BENCH_MAILBOXES, BENCH_ORGS, BENCH_REPEATS, BENCH_SWEEP_APPLY=1 (sweep), ORGGUARD_BENCH_TIMER_S (dispatch),
ORGGUARD_SOAK_S, ORGGUARD_SOAK_RATE (soak)
"""


def main() -> None:
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(USAGE, end="")
        return
    from bench.knobs import BadKnob

    try:
        from bench import dispatch, executor, gate, graph, impact, ledger, soak, sweep, tables
    except BadKnob as exc:
        _usage_error(str(exc))
    suites = {
        "gate": gate.main,
        "ledger": ledger.main,
        "tables": tables.main,
        "executor": executor.main,
        "dispatch": dispatch.main,
        "sweep": sweep.main,
        "graph": graph.main,
        "impact": impact.main,
        "soak": soak.main,
    }
    names = sys.argv[1:] or [n for n in suites if n != "soak" or os.environ.get("ORGGUARD_SOAK_S")]
    unknown = [name for name in names if name not in suites]
    if unknown:
        _usage_error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(suites)}")
    for name in names:
        try:
            suites[name]()
        except BadKnob as exc:
            _usage_error(str(exc))


def _usage_error(message: str) -> NoReturn:
    print(f"python -m bench: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()

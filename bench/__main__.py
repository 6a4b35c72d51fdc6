"""`python -m bench [gate ...]`: run the named benchmarks (all by default; the soak only when asked)."""

from __future__ import annotations

import os
import sys

from bench import dispatch, executor, gate, graph, impact, ledger, soak, sweep, tables

SUITES = {
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


def main() -> None:
    names = sys.argv[1:] or [n for n in SUITES if n != "soak" or os.environ.get("ORGGUARD_SOAK_S")]
    for name in names:
        if name not in SUITES:
            sys.exit(f"unknown benchmark {name!r}; choose from {', '.join(SUITES)}")
        SUITES[name]()


if __name__ == "__main__":
    main()

"""`python -m bench [gate ...]`: run the named benchmarks (all by default)."""

from __future__ import annotations

import sys

from bench import executor, gate, graph, ledger, sweep

SUITES = {
    "gate": gate.main,
    "ledger": ledger.main,
    "executor": executor.main,
    "sweep": sweep.main,
    "graph": graph.main,
}


def main() -> None:
    names = sys.argv[1:] or list(SUITES)
    for name in names:
        if name not in SUITES:
            sys.exit(f"unknown benchmark {name!r}; choose from {', '.join(SUITES)}")
        SUITES[name]()


if __name__ == "__main__":
    main()

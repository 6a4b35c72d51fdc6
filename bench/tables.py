"""Table Storage requests per gate decision, counted on the wire against Azurite, by kind of claim.

Each kind (``tests/round_trips.py``: first claim, competing claims the example policy blocks, overrides and
holds, the owner claiming again, a Dataverse retry of the same save) is decided through
``OrgGuard.handle_claim`` on a Table Storage ledger whose HTTP transport counts every request. "On the path"
is every request the deciding thread makes before ``handle_claim`` returns; "off the path" is what the
ledger's backlog threads do for that decision afterwards (indexes, audit chain, journal and marker clean-up).
The baseline is the same scenarios counted on the code before the gate path was trimmed (commit c9724cd),
when everything was on the path. A count, not a time: it does not move with the machine's load.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from bench.report import console, goals, header, table

ROUNDS = 5
# Requests per decision by kind on commit c9724cd (all of them on the gate's path then).
BASELINE = {
    "first claim (allow)": 9,
    "competing claim (block)": 19,
    "competing claim (override)": 21,
    "competing claim (held case)": 17,
    "repeated claim (owner again)": 9,
    "duplicate event (a retry)": 3,
}


def run() -> dict[str, tuple[float, float, str]]:
    """Per kind: requests on the path and off it (means over ``ROUNDS``), and what the path's requests were."""
    from tests.azurite import Azurite
    from tests.round_trips import counted_ledger, example_service, gate_round_trips

    with tempfile.TemporaryDirectory() as tmp:
        azurite = Azurite(Path(tmp))
        azurite.start()
        try:
            ledger, transport = counted_ledger(azurite.connection_string)
            try:
                decided = gate_round_trips(
                    example_service(ledger), transport, rounds=ROUNDS, settle=ledger.settle_backlog
                )
            finally:
                ledger.drop_tables()
                ledger.close()
        finally:
            azurite.stop()
    out = {}
    for kind, runs in decided.items():
        path = sum(len(d.trips) for d in runs) / len(runs)
        after = sum(len(d.after) for d in runs) / len(runs)
        seen = Counter(", ".join(str(t) for t in d.trips) for d in runs).most_common(1)[0][0]
        out[kind] = (path, after, seen)
    return out


def main() -> None:
    from tests.round_trips import TARGET

    header(f"Table Storage requests per gate decision (Azurite, example policy, {ROUNDS} decisions per kind)")
    found = run()
    table(
        ["claim", "on the path", "off the path", "baseline", "ratio"],
        [
            [kind, f"{path:g}", f"{after:g}", BASELINE[kind], f"{path / BASELINE[kind]:.2f}"]
            for kind, (path, after, _) in found.items()
        ],
    )
    for kind, (_, _, seen) in found.items():
        console.print(f"  {kind}: {seen}")
    goals(
        [
            (
                f"5. Table Storage, {kind}",
                f"{path:g} requests (baseline {BASELINE[kind]}, {path / BASELINE[kind]:.2f}x)",
                f"<= {TARGET}",
                path <= TARGET,
            )
            for kind, (path, _, _) in found.items()
        ]
    )

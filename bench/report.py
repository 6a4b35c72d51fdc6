"""Printing benchmark tables the same way everywhere."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

console = Console()


def load() -> str:
    """The machine's load average (1, 5, 15 minutes) and its cores: a figure means little without them."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def header(title: str) -> None:
    cmd = " ".join(["python", "-m", "bench", *sys.argv[1:]])
    console.print(
        f"\n[bold]{title}[/bold]  ({cmd}; Python {platform.python_version()}, {platform.machine()}; {load()})"
    )


def table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    t = Table(*columns)
    for row in rows:
        t.add_row(*(f"{v:,.1f}" if isinstance(v, float) else str(v) for v in row))
    console.print(t)


def goals(rows: Sequence[tuple[str, str, str, bool]]) -> None:
    """Each goal of the performance issue as (goal, the figure with its baseline and ratio, the target, met)."""
    t = Table("goal", "measured (baseline, ratio)", "target", "met")
    for goal, figure, target, met in rows:
        t.add_row(goal, figure, target, "yes" if met else "[red]no[/red]")
    console.print(t)


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)

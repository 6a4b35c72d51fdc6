"""The benchmarks' sizes from the environment: a value they cannot use stops the run before it starts, and says why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import knobs

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", 560), ("  ", 560), ("800", 800), ("1_000", 1000), ("200", 200)],
)
def test_a_usable_size_is_read_and_an_unset_one_is_the_default(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: int
) -> None:
    monkeypatch.setenv("BENCH_SIZE", raw)
    assert knobs.whole("BENCH_SIZE", 560, minimum=200) == expected


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("ten", "a whole number is needed"),
        ("2.5", "a whole number is needed"),
        ("0", "at least 200 is needed (why not)"),
        ("-5", "at least 200 is needed"),
        ("199", "at least 200 is needed"),
    ],
)
def test_a_size_that_cannot_be_used_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, raw: str, says: str) -> None:
    monkeypatch.setenv("BENCH_SIZE", raw)
    with pytest.raises(knobs.BadKnob, match="BENCH_SIZE") as refused:
        knobs.whole("BENCH_SIZE", 560, minimum=200, why="why not")
    assert says in str(refused.value)


@pytest.mark.parametrize("raw", ["soon", "nan", "0", "-1", "0.5"])
def test_an_amount_below_its_least_or_not_a_number_is_refused(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("BENCH_PERIOD", raw)
    with pytest.raises(knobs.BadKnob, match=r"BENCH_PERIOD=.*\(seconds\)"):
        knobs.amount("BENCH_PERIOD", 60.0, minimum=1.0, unit="seconds")


def _bench(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_the_bench_command_exits_2_naming_the_variable_before_any_run_starts() -> None:
    done = _bench("executor", BENCH_BUDGET_CASES="10")
    assert done.returncode == 2
    assert "BENCH_BUDGET_CASES=10: at least 200 is needed" in done.stderr
    assert "Executor against the sandbox" not in done.stdout  # nothing ran


def test_an_unknown_suite_exits_2_and_help_lists_the_suites_and_sizes() -> None:
    unknown = _bench("gat")
    assert unknown.returncode == 2 and "unknown benchmark 'gat'" in unknown.stderr
    helped = _bench("--help")
    assert helped.returncode == 0
    assert "executor" in helped.stdout and "BENCH_BUDGET_CASES" in helped.stdout

"""The benchmarks' environment variables: each read once, with a clear error for a value that cannot be used.

A size of zero or a word where a number belongs used to end a run half way with a ``ZeroDivisionError``
or a ``ValueError`` traceback; now the run does not start, and the message names the variable and what it takes.
"""

from __future__ import annotations

import os


class BadKnob(ValueError):
    """A benchmark's environment variable holds what the benchmark cannot use (``python -m bench`` exits 2)."""


def whole(name: str, default: int, *, minimum: int, why: str = "") -> int:
    """``name`` as a whole number of at least ``minimum`` (``default`` when unset or empty)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise BadKnob(f"{name}={raw!r}: a whole number is needed (default {default})") from None
    if value < minimum:
        raise BadKnob(f"{name}={value}: at least {minimum} is needed{f' ({why})' if why else ''}")
    return value


def amount(name: str, default: float, *, minimum: float, unit: str) -> float:
    """``name`` as a number (of ``unit``) of at least ``minimum`` (``default`` when unset or empty)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadKnob(f"{name}={raw!r}: a number ({unit}) is needed (default {default:g})") from None
    if not value >= minimum:  # NaN fails too
        raise BadKnob(f"{name}={value:g}: at least {minimum:g} ({unit}) is needed")
    return value

"""What the checks share: a problem with its place, and the parsed templates."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

# Keys of a Bicep resource body that are Bicep's own, not part of the request body.
BICEP_KEYWORDS = frozenset({"name", "parent", "scope", "dependsOn"})


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.what}"


def parse_template(path: Path) -> dict[str, Any]:
    """pycep's reading of one template (resources, modules, parameters, variables as dicts)."""
    return _parse(path.read_text(encoding="utf-8"))


@cache
def _parse(text: str) -> dict[str, Any]:
    """Cached by content: pycep takes most of a check's time, and copies of a template read the same."""
    result: Any = BicepParser().parse(text=text)
    return dict(result)


def is_expression(value: Any) -> bool:
    """A pycep function call, operator or loop rather than a literal object (pycep cannot tell a string
    literal from an identifier, so strings are never taken as literals)."""
    if not isinstance(value, dict):
        return False
    if len(value) == 1 and next(iter(value)) in ("function", "operator"):
        return True
    return "loop_type" in value and "config" in value


def body(config: dict[str, Any]) -> dict[str, Any]:
    """A resource's or variable's object, looking through `if (...)` and `[for ...]` wrappers."""
    while "config" in config and ("loop_type" in config or "condition" in config):
        config = config["config"]
    return config

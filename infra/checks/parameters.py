"""Parameter files (*.parameters*.json for azd and az) and .bicepparam files against the template they feed.

Every parameter given must be declared, every parameter without a default
must be given. tree-sitter-bicep does not parse .bicepparam files, so their
`using` line and one-line `param name = value` lines are read here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from checks.model import Problem, parse_template

USING = re.compile(r"^using\s+'([^']+)'\s*$")
PARAM = re.compile(r"^param\s+([A-Za-z_][A-Za-z0-9_]*)\s*=\s*\S")


def _declared(template: Path) -> tuple[set[str], set[str]]:
    params: dict[str, Any] = parse_template(template).get("parameters", {})
    return set(params), {name for name, spec in params.items() if spec.get("default") is None}


def check_json(path: Path, template: Path, root: Path) -> list[Problem]:
    rel = path.relative_to(root).as_posix()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        return [Problem(rel, exc.lineno, f"not JSON: {exc.msg}")]
    given = doc.get("parameters") if isinstance(doc, dict) else None
    if not isinstance(given, dict):
        return [Problem(rel, 1, "no 'parameters' object")]
    return _compare(rel, set(given), template)


def check_bicepparam(path: Path, root: Path) -> list[Problem]:
    rel = path.relative_to(root).as_posix()
    given: set[str] = set()
    template: Path | None = None
    problems = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("//", 1)[0].strip() if not raw.strip().startswith("//") else ""
        if not line:
            continue
        if match := USING.match(line):
            template = (path.parent / match.group(1)).resolve()
        elif match := PARAM.match(line):
            given.add(match.group(1))
        else:
            problems.append(Problem(rel, number, f"cannot read {raw.strip()!r} (one `param name = value` per line)"))
    if template is None or not template.is_file():
        return [*problems, Problem(rel, 1, "no `using '<template>.bicep'` line naming an existing template")]
    return problems + _compare(rel, given, template)


def _compare(rel: str, given: set[str], template: Path) -> list[Problem]:
    declared, required = _declared(template)
    problems = [Problem(rel, 1, f"sets {n}, which {template.name} does not declare") for n in sorted(given - declared)]
    problems += [Problem(rel, 1, f"leaves {n} unset; {template.name} has no default") for n in sorted(required - given)]
    return problems

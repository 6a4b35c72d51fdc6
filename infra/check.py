"""Check the Bicep templates under infra/ for syntax and for meaning, and print their resources.

Bicep cannot be compiled on these machines (no az/bicep CLI), so the
templates are parsed (tree-sitter-bicep for syntax, pycep-parser for
structure) and checked against what Azure publishes and what the code needs:

* syntax: every ERROR / MISSING node of every template;
* API specifications (checks/specs.py): every resource body against the
  vendored REST API specs in infra/specs/ (unknown, read-only and missing
  required properties), every API version published and not a preview where
  a stable one exists;
* app settings (checks/appsettings.py): every setting the deployed code reads
  is set by a template, every setting a template sets is read;
* parameters (checks/parameters.py): parameter files and .bicepparam files
  against the template they feed.

Usage: .venv/bin/python infra/check.py [DIR] [--code ROOT] [--specs DIR]
  DIR    the templates (default: the directory of this script)
  ROOT   the code the settings are checked against (default: this repository)
  specs  the vendored specs (default: DIR/specs, else infra/specs beside this script)
Exit 0 when everything holds, 1 on any problem, 2 on bad usage.
`make infra-check` runs it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tree_sitter
import tree_sitter_bicep
from checks import appsettings, parameters
from checks.model import Problem, parse_template
from checks.specs import Specs, check_templates

HERE = Path(__file__).resolve().parent

_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


@dataclass(frozen=True)
class Declaration:
    """One `resource` or `module` statement of a template."""

    file: str
    kind: str  # "resource" or "module"
    symbol: str
    line: int
    target: str  # resource type, or module path
    api_version: str
    flags: str  # existing / if / for


@dataclass(frozen=True)
class SyntaxProblem:
    file: str
    line: int
    column: int
    what: str


def parse(source: bytes) -> tree_sitter.Tree:
    return _PARSER.parse(source)


def syntax_problems(path: Path, source: bytes, root: Path) -> list[SyntaxProblem]:
    """Every ERROR and MISSING node, with a 1-based position."""
    problems: list[SyntaxProblem] = []
    stack = [parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            what = f"missing {node.type!r}" if node.is_missing else "unexpected " + _snippet(source, node)
            row, col = node.start_point
            problems.append(SyntaxProblem(_rel(path, root), row + 1, col + 1, what))
        stack.extend(reversed(node.children))
    return sorted(problems, key=lambda p: (p.line, p.column))


def declarations(path: Path, source: bytes, root: Path) -> list[Declaration]:
    found: list[Declaration] = []
    for node in parse(source).root_node.named_children:
        if node.type not in ("resource_declaration", "module_declaration"):
            continue
        symbol = _text(source, node.child_by_field_name("name") or _first(node, "identifier"))
        target = _text(source, _first(node, "string")).strip("'")
        kind = "resource" if node.type == "resource_declaration" else "module"
        type_name, _, api_version = target.partition("@") if kind == "resource" else (target, "", "")
        flags = [
            label
            for label, present in (
                ("existing", any(c.type == "existing" for c in node.children)),
                ("if", _first(node, "if_statement") is not None),
                ("for", _first(node, "for_statement") is not None),
            )
            if present
        ]
        line = node.start_point[0] + 1
        found.append(Declaration(_rel(path, root), kind, symbol, line, type_name, api_version, ",".join(flags)))
    return found


def check(root: Path) -> tuple[list[Declaration], list[SyntaxProblem], int]:
    templates = sorted(root.rglob("*.bicep"))
    decls: list[Declaration] = []
    problems: list[SyntaxProblem] = []
    for path in templates:
        source = path.read_bytes()
        problems.extend(syntax_problems(path, source, root))
        decls.extend(declarations(path, source, root))
    return decls, problems, len(templates)


def meaning(root: Path, decls: list[Declaration], code_root: Path, specs_root: Path) -> tuple[list[Problem], str]:
    """Every problem of meaning, and a one-line account of what was checked."""
    templates: dict[str, tuple[dict[str, Any], dict[str, int]]] = {}
    for path in sorted(root.rglob("*.bicep")):
        rel = _rel(path, root)
        lines = {d.symbol: d.line for d in decls if d.file == rel}
        templates[rel] = (parse_template(path), lines)
    specs = Specs(specs_root)
    found = check_templates(specs, templates)
    found += appsettings.check(templates, code_root)
    main = root / "main.bicep"
    for path in sorted(root.glob("*.parameters*.json")):
        found += parameters.check_json(path, main, root)
    for path in sorted(root.rglob("*.bicepparam")):
        found += parameters.check_bicepparam(path, root)
    resources = sum(len(t.get("resources", {})) for t, _ in templates.values())
    account = (
        f"{resources} resources checked against {len(specs.operations)} vendored API operations; "
        f"app settings checked against {code_root}"
    )
    return found, account


def table(decls: list[Declaration]) -> str:
    header = ("file", "kind", "symbol", "type / module", "api version", "flags")
    rows = [(d.file, d.kind, d.symbol, d.target, d.api_version, d.flags) for d in decls]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", type=Path, default=HERE)
    parser.add_argument("--code", type=Path, default=HERE.parent)
    parser.add_argument("--specs", type=Path, default=None)
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    root: Path = args.dir.resolve()
    if not root.is_dir():
        print(f"check.py: {root} is not a directory", file=sys.stderr)
        return 2
    specs_root = args.specs or (root / "specs" if (root / "specs" / "versions.json").is_file() else HERE / "specs")
    decls, syntax, count = check(root)
    if count == 0:
        print(f"check.py: no .bicep files under {root}", file=sys.stderr)
        return 2
    print(table(decls))
    versions = sorted({(d.target, d.api_version) for d in decls if d.kind == "resource"})
    print(f"\n{count} templates, {len(decls)} declarations, {len(versions)} resource type/API version pairs")
    for p in syntax:
        print(f"{p.file}:{p.line}:{p.column}: syntax error: {p.what}", file=sys.stderr)
    if syntax:
        return 1  # pycep cannot read what tree-sitter cannot parse
    problems, account = meaning(root, decls, args.code.resolve(), specs_root.resolve())
    print(account)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def _first(node: tree_sitter.Node, node_type: str) -> tree_sitter.Node | None:
    return next((c for c in node.children if c.type == node_type), None)


def _text(source: bytes, node: tree_sitter.Node | None) -> str:
    return "" if node is None else source[node.start_byte : node.end_byte].decode("utf-8", "replace")


def _snippet(source: bytes, node: tree_sitter.Node) -> str:
    text = _text(source, node).strip().replace("\n", " ")
    return repr(text[:40] + ("..." if len(text) > 40 else "")) if text else "token"


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


if __name__ == "__main__":
    sys.exit(main())

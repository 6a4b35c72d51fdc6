"""Parse every Bicep template under infra/ and print its resources and API versions.

Bicep cannot be compiled on every machine (no az/bicep CLI), but it can be
parsed: this catches syntax errors before a deployment does, and the table
shows at a glance which resource types and API versions the templates pin.

Usage: .venv/bin/python infra/check.py [DIR]   (default: the directory of this script)
Exit 0 when every template parses, 1 on a syntax error or an unreadable
parameters file, 2 on bad usage. `make infra-check` runs it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import tree_sitter
import tree_sitter_bicep

_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


@dataclass(frozen=True)
class Declaration:
    """One `resource` or `module` statement of a template."""

    file: str
    kind: str  # "resource" or "module"
    symbol: str
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
        found.append(Declaration(_rel(path, root), kind, symbol, type_name, api_version, ",".join(flags)))
    return found


def parameter_file_problems(path: Path, root: Path) -> list[SyntaxProblem]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        return [SyntaxProblem(_rel(path, root), exc.lineno, exc.colno, exc.msg)]
    if not isinstance(doc, dict) or not isinstance(doc.get("parameters"), dict):
        return [SyntaxProblem(_rel(path, root), 1, 1, "no 'parameters' object")]
    return []


def check(root: Path) -> tuple[list[Declaration], list[SyntaxProblem], int]:
    templates = sorted(root.rglob("*.bicep"))
    decls: list[Declaration] = []
    problems: list[SyntaxProblem] = []
    for path in templates:
        source = path.read_bytes()
        problems.extend(syntax_problems(path, source, root))
        decls.extend(declarations(path, source, root))
    for path in sorted(root.glob("*.parameters*.json")):
        problems.extend(parameter_file_problems(path, root))
    return decls, problems, len(templates)


def table(decls: list[Declaration]) -> str:
    header = ("file", "kind", "symbol", "type / module", "api version", "flags")
    rows = [(d.file, d.kind, d.symbol, d.target, d.api_version, d.flags) for d in decls]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0] in ("-h", "--help")):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    root = Path(args[0]) if args else Path(__file__).resolve().parent
    if not root.is_dir():
        print(f"check.py: {root} is not a directory", file=sys.stderr)
        return 2
    decls, problems, count = check(root)
    if count == 0:
        print(f"check.py: no .bicep files under {root}", file=sys.stderr)
        return 2
    print(table(decls))
    versions = sorted({(d.target, d.api_version) for d in decls if d.kind == "resource"})
    print(f"\n{count} templates, {len(decls)} declarations, {len(versions)} resource type/API version pairs")
    for p in problems:
        print(f"{p.file}:{p.line}:{p.column}: syntax error: {p.what}", file=sys.stderr)
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

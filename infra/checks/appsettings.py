"""App settings: what the templates set against what the deployed code reads, both directions.

A setting the code reads and no template sets fails in Azure (or silently
takes a local default); a setting a template sets and nothing reads is dead
weight or a typo. The deployed code is function_app.py, functions/ and
shared/ (.funcignore leaves out the rest).

Read by the code means: a string constant `ORGGUARD_...` (OrgGuard's own
namespace) anywhere outside docstrings, a name looked up in `os.environ` /
`os.getenv`, a pydantic-settings field's `validation_alias="NAME"`, a
`%NAME%` binding expression, or `connection="NAME"` (the host then reads
NAME__*). Set by the templates means: the `appSettings` of every
Microsoft.Web/sites, with variables, concat() and [for ...] loops followed; a
name built in a loop ('ORGGUARD_KEY_${...}') stands for every name that
fits it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checks.model import Problem, body

# Set by the templates, read by the Functions host or the platform rather than by OrgGuard's code.
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__accountName": "the Functions host's own storage, through the managed identity",
    "AzureWebJobsStorage__credential": "the Functions host's own storage, through the managed identity",
    "AzureWebJobsStorage__clientId": "the Functions host's own storage, through the managed identity",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "where the Functions host and OrgGuard send telemetry",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Entra ingestion (local auth is off); OrgGuard reads it too",
}

# Read by the code, set on purpose by no template.
LOCAL_ONLY = {
    "ORGGUARD_ADMIN_TOKEN": "bearer token of token mode (the local host); Azure runs ORGGUARD_AUTH=easyauth",
    "USER": "the CLI names its actor after the local user",
    "ORGGUARD_TELEMETRY": "local telemetry (console or a file); Azure uses Application Insights",
    "ORGGUARD_URL": "the CLI's --url: an operator's shell names the OrgGuard API to go through",
    "ORGGUARD_API_SCOPE": "the CLI's Entra scope for --url tokens, on an operator's machine",
}

# Set by a template loop, read through another setting rather than by name.
READ_INDIRECTLY = {
    "ORGGUARD_KEY_": "per-org webhook keys, named in ORGGUARD_ORGS as webhook_key: env:ORGGUARD_KEY_<ORG>",
}

ORGGUARD_NAME = re.compile(r"ORGGUARD_[A-Z0-9_]+")
BINDING = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%")  # a whole-string binding expression
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEPLOYED = ("function_app.py", "functions", "shared")


@dataclass(frozen=True)
class Setting:
    name: str  # a literal name, or a pattern with ${...} parts
    file: str
    line: int

    @property
    def pattern(self) -> re.Pattern[str] | None:
        if "${" not in self.name:
            return None
        parts = re.split(r"\$\{[^}]*\}", self.name)
        return re.compile("[A-Z0-9_]+".join(re.escape(p) for p in parts))


def settings_in_templates(
    templates: dict[str, tuple[dict[str, Any], dict[str, int]]],
) -> tuple[list[Setting], list[Problem]]:
    found: list[Setting] = []
    problems: list[Problem] = []
    for name, (template, lines) in templates.items():
        for symbol, resource in template.get("resources", {}).items():
            if resource["type"].lower() != "microsoft.web/sites" or resource["existing"]:
                continue
            config = body(resource["config"])
            raw = config.get("properties", {}).get("siteConfig", {}).get("appSettings")
            if raw is None:
                continue
            line = lines.get(symbol, 1)
            for entry in _entries(raw, template.get("variables", {})):
                setting = entry.get("name") if isinstance(entry, dict) else None
                if isinstance(setting, str):
                    found.append(Setting(setting, name, line))
                else:
                    problems.append(Problem(name, line, f"{symbol}: cannot read the name of app setting {entry!r}"))
    return found, problems


def _entries(value: Any, variables: dict[str, Any]) -> list[Any]:
    if isinstance(value, str) and value in variables:
        return _entries(variables[value]["value"], variables)
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and "loop_type" in value:
        return [body(value)]
    if isinstance(value, dict) and value.get("function", {}).get("type") == "concat":
        return [e for arg in value["function"]["parameters"].values() for e in _entries(arg, variables)]
    return [value]


def settings_read_by_code(root: Path) -> dict[str, tuple[str, int]]:
    """Setting name -> (file, line) of the first read, across the deployed code."""
    found: dict[str, tuple[str, int]] = {}
    for path in _deployed_files(root):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        docstrings = {id(node) for node in _docstrings(tree)}
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(tree):
            for name in _names_read(node, docstrings):
                found.setdefault(name, (rel, getattr(node, "lineno", 1)))
    return found


def _names_read(node: ast.AST, docstrings: set[int]) -> list[str]:
    names: list[str] = []
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
        if ORGGUARD_NAME.fullmatch(node.value):
            names.append(node.value)
        if binding := BINDING.fullmatch(node.value):
            names.append(binding.group(1))
    if isinstance(node, ast.Call):
        func = ast.unparse(node.func)
        if (func.endswith(("environ.get", "getenv")) and node.args) and isinstance(node.args[0], ast.Constant):
            names.append(str(node.args[0].value))
        for kw in node.keywords:
            if kw.arg == "connection" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                names.append(kw.value.value + "__")
            if kw.arg == "validation_alias" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                names.append(
                    kw.value.value
                )  # shared/config/settings.py: Field(..., validation_alias="AZURE_CLIENT_ID")
    if (
        isinstance(node, ast.Subscript)
        and ast.unparse(node.value).endswith("environ")
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    ):
        names.append(node.slice.value)
    return [n for n in names if ENV_NAME.fullmatch(n)]


def _docstrings(tree: ast.Module) -> list[ast.Constant]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.append(first.value)
    return out


def _deployed_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for part in DEPLOYED:
        path = root / part
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return files


def compare(settings: list[Setting], read: dict[str, tuple[str, int]]) -> list[Problem]:
    problems = []
    literal = {s.name for s in settings if s.pattern is None}
    patterns = [s.pattern for s in settings if s.pattern is not None]

    def is_set(name: str) -> bool:
        if name.endswith("__"):  # connection="X": the host reads X__<property>
            return any(s.startswith(name) for s in literal)
        return name in literal or any(p.fullmatch(name) for p in patterns)

    for name, (file, line) in sorted(read.items()):
        if name not in LOCAL_ONLY and not is_set(name):
            problems.append(Problem(file, line, f"the code reads app setting {name} and no template sets it"))

    def is_read(setting: Setting) -> bool:
        name = setting.name
        if name in PLATFORM_SETTINGS or any(name.startswith(prefix) for prefix in READ_INDIRECTLY):
            return True
        if setting.pattern is not None:
            return any(setting.pattern.fullmatch(r) for r in read)
        return name in read or any(r.endswith("__") and name.startswith(r) for r in read)

    for setting in settings:
        if not is_read(setting):
            problems.append(
                Problem(setting.file, setting.line, f"app setting {setting.name} is set but the code never reads it")
            )
    return problems


def check(templates: dict[str, tuple[dict[str, Any], dict[str, int]]], code_root: Path) -> list[Problem]:
    settings, problems = settings_in_templates(templates)
    if not settings:
        return problems
    read = settings_read_by_code(code_root)
    if not read:
        return [*problems, Problem(str(code_root), 1, "no deployed code found (function_app.py, functions/, shared/)")]
    return problems + compare(settings, read)

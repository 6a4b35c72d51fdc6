"""`make infra-check` checks meaning: each test breaks a copy of infra/ the way a person would and expects
the check to fail, naming the file and what is wrong; the real templates pass.

check.py runs in-process (its module loaded from infra/) so the suite stays fast.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"


def _load_check() -> ModuleType:
    sys.path.insert(0, str(INFRA))  # check.py imports its sibling package `checks`
    spec = importlib.util.spec_from_file_location("infra_check", INFRA / "check.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["infra_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


CHECK = _load_check()


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = CHECK.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.err


@pytest.fixture
def infra_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def copy_code(tmp_path: Path) -> Path:
    """The deployed code (what .funcignore leaves in), to add a module to."""
    root = tmp_path / "code"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "shared", root / "shared", ignore=ignore)
    shutil.copytree(REPO / "functions", root / "functions", ignore=ignore)
    shutil.copy(REPO / "function_app.py", root / "function_app.py")
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_the_templates_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run([], capsys)
    assert code == 0, err


def test_make_infra_check_runs_the_same_checks() -> None:
    run = subprocess.run(
        [sys.executable, str(INFRA / "check.py")], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert run.returncode == 0, run.stderr
    assert "resources checked against" in run.stdout and "vendored API operations" in run.stdout


BREAKAGES: dict[str, tuple[str, str, str, str]] = {
    # name: (file, old, new, what the problem must say)
    "misspelled property": (
        "app/functions.bicep",
        "httpsOnly: true",
        "httpsOnyl: true",
        "app/functions.bicep:{resource functionApp}: functionApp (Microsoft.Web/sites@2024-04-01): "
        "properties.httpsOnyl is not a property of the spec's schema (did you mean 'httpsOnly'?)",
    ),
    "misspelled nested property": (
        "app/functions.bicep",
        "alwaysReady: [",
        "alwaysReddy: [",
        "properties.functionAppConfig.scaleAndConcurrency.alwaysReddy is not a property",
    ),
    "misspelled property in a list item": (
        "app/alerts.bicep",
        "metricName: 'DeadletteredMessages'",
        "metricNmae: 'DeadletteredMessages'",
        "properties.criteria.allOf[0].metricName is required by the spec and missing",
    ),
    "required property left out": (
        "app/identity.bicep",
        "  location: location\n",
        "",
        "identity (Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31): location is required by the spec",
    ),
    "required nested property left out": (
        "rbac.bicep",
        "    principalId: operatorPrincipalId\n",
        "",
        "operatorTables (Microsoft.Authorization/roleAssignments@2022-04-01): properties.principalId is required",
    ),
    "read-only property written": (
        "app/keyvault.bicep",
        "    enableRbacAuthorization: true\n",
        "    enableRbacAuthorization: true\n    hsmPoolResourceId: 'x'\n",
        "properties.hsmPoolResourceId is read-only in the spec",
    ),
    "a boolean where the spec wants a number": (
        "app/servicebus.bicep",
        "maxSizeInMegabytes: 1024",
        "maxSizeInMegabytes: true",
        "properties.maxSizeInMegabytes: a boolean where the spec wants integer",
    ),
    "API version that does not exist": (
        "app/functions.bicep",
        "Microsoft.Web/sites/config@2024-04-01",
        "Microsoft.Web/sites/config@2024-04-02",
        "Microsoft.Web/sites/config@2024-04-02 is not a published API version (published: 2024-04-01)",
    ),
    "preview where a stable version exists": (
        "app/servicebus.bicep",
        "Microsoft.ServiceBus/namespaces@2024-01-01",
        "Microsoft.ServiceBus/namespaces@2022-10-01-preview",
        "Microsoft.ServiceBus/namespaces@2022-10-01-preview is a preview; a stable version exists (newest: 2024-01-01)",
    ),
    "resource type nobody looked up": (
        "app/identity.bicep",
        "Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31",
        "Microsoft.ManagedIdentity/identities@2023-01-31",
        "Microsoft.ManagedIdentity/identities is not in infra/specs/versions.json",
    ),
    "setting read by the code and set by nobody": (
        "app/functions.bicep",
        "    name: 'ORGGUARD_SWEEP_APPLY'\n",
        "    name: 'ORGGUARD_SWEEP_APPLIES'\n",
        "shared/config/settings.py:",
    ),
    "setting set and read by nobody": (
        "app/functions.bicep",
        "    name: 'ORGGUARD_SWEEP_APPLY'\n",
        "    name: 'ORGGUARD_SWEEP_APPLIES'\n",
        "app setting ORGGUARD_SWEEP_APPLIES is set but the code never reads it",
    ),
    "parameter file setting an undeclared parameter": (
        "main.parameters.json",
        '"authClientId": {',
        '"authClientID": {',
        "main.parameters.json:1: sets authClientID, which main.bicep does not declare",
    ),
    "bicepparam leaving a required parameter unset": (
        "main.prod.bicepparam",
        "param authClientId = readEnvironmentVariable('AZURE_AUTH_CLIENT_ID')\n",
        "",
        "main.prod.bicepparam:1: leaves authClientId unset; main.bicep has no default",
    ),
}


@pytest.mark.parametrize("name", BREAKAGES)
def test_a_broken_copy_fails_with_the_reason(name: str, infra_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file, old, new, expected = BREAKAGES[name]
    edit(infra_copy / file, old, new)
    expected = re.sub(r"\{(resource [^}]+)\}", lambda m: str(line_of(infra_copy / file, m.group(1))), expected)
    code, err = run([infra_copy], capsys)
    assert code == 1
    assert expected in err, err


def line_of(path: Path, text: str) -> int:
    """The 1-based line where ``text`` first appears, so expectations follow the templates as they grow."""
    return next(n for n, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


NEW_READS = {
    "os.environ": (
        "newly_read.py",
        'import os\n\nPATIENCE_S = float(os.environ.get("ORGGUARD_SOMEDAY_WAIT_S", "5"))\n'
        'FROM = os.environ.get("ORGGUARD_SOMEDAY_SENDER")\n',
        [
            "newly_read.py:3: the code reads app setting ORGGUARD_SOMEDAY_WAIT_S",
            "newly_read.py:4: the code reads app setting ORGGUARD_SOMEDAY_SENDER",
        ],
    ),
    "a settings field named after its variable": (
        "more_settings.py",
        "from pydantic import Field\nfrom pydantic_settings import BaseSettings\n\n\n"
        "class More(BaseSettings):\n"
        '    region: str = Field(default="", validation_alias="SOMEDAY_REGION")\n',
        ["more_settings.py:6: the code reads app setting SOMEDAY_REGION"],
    ),
}


@pytest.mark.parametrize(("module", "source", "reads"), NEW_READS.values(), ids=NEW_READS.keys())
def test_a_setting_the_code_starts_reading_fails_until_a_template_sets_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], module: str, source: str, reads: list[str]
) -> None:
    code_root = copy_code(tmp_path)
    (code_root / "shared" / module).write_text(source)
    code, err = run(["--code", code_root], capsys)
    assert code == 1
    for read in reads:
        assert f"shared/{read} and no template sets it" in err


def test_a_name_only_mentioned_in_a_docstring_is_not_a_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code_root = copy_code(tmp_path)
    (code_root / "shared" / "notes.py").write_text('"""Set ORGGUARD_SOMEDAY to turn it on, one day."""\n')
    code, err = run(["--code", code_root], capsys)
    assert code == 0, err


def test_a_syntax_error_stops_before_the_meaning_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "main.bicep").write_text("module m './app/x.bicep' = {\n  name: 'm'\n}\n")
    (tmp_path / "app" / "x.bicep").write_text(
        "resource s 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n"
    )
    code, err = run([tmp_path], capsys)
    assert code == 1
    assert "app/x.bicep:" in err and "syntax error" in err


@pytest.mark.parametrize("args", [["--bogus"], ["/no/such/dir"], ["a", "b"]])
def test_bad_usage_exits_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(args, capsys)
    assert code == 2

"""The layers hold because the build checks them: an import across a layer fails `lint-imports`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def copy_of_the_code(tmp_path: Path) -> Path:
    for folder in ("shared", "functions", "sandbox"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(root), "PATH": str(Path(sys.executable).parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("shared/domain/casework.py", "from shared.ledger import sqlite", "the domain imports nothing outside itself"),
        ("shared/domain/model.py", "import httpx", "the domain imports nothing outside itself"),
        ("shared/service/orgguard.py", "from shared.ledger.tables import TableLedger", "never the adapters"),
        ("shared/service/intake.py", "from shared.dataverse.client import DataverseClient", "never the adapters"),
        ("shared/service/dispatch.py", "from shared.bus.servicebus import ServiceBus", "never the adapters"),
        ("shared/service/work.py", "from shared.bus.local import LocalQueue", "never the adapters"),
        ("shared/bus/port.py", "from shared.service import work", "no import cycles"),
        ("shared/bootstrap.py", "import functions.http_api", "never reaches into the entry points"),
        ("shared/config/settings.py", "from shared.service import orgguard", "no import cycles"),
    ],
)
def test_an_import_across_a_layer_breaks_the_build(tmp_path: Path, module: str, line: str, broken: str) -> None:
    root = copy_of_the_code(tmp_path)
    assert lint_imports(root).returncode == 0, "the code as it is keeps every contract"
    target = root / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}  # noqa\n", encoding="utf-8")
    result = lint_imports(root)
    assert result.returncode != 0
    assert broken in result.stdout, result.stdout

"""What the Function App loads: the deployed app never needs the command line or its libraries."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.factories import REPO


def test_the_function_app_loads_no_command_line_code():
    """`.funcignore` leaves shared/cli and functions/console.py out of the package, and typer/rich are
    in requirements-dev.txt only: so `import function_app` (and the app it builds) must never reach them."""
    probe = (
        "import function_app, json, sys; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich') "
        "or m.startswith(('shared.cli', 'functions.console')))))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], cwd=REPO, check=True, capture_output=True,
                                       text=True, timeout=60).stdout)  # fmt: skip
    assert loaded == []
    runtime = (REPO / "requirements.txt").read_text()
    assert "typer" not in runtime and "rich" not in runtime

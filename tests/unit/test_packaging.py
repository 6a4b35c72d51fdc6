"""What the Function App loads: the deployed app never needs the command line or its libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.factories import REPO


def printed(probe: str) -> Any:
    """What the Python code ``probe`` printed last, as JSON, run in a fresh interpreter from the repository."""
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_function_app_loads_no_command_line_code():
    """`.funcignore` leaves shared/cli and functions/console.py out of the package, and typer/rich are
    in requirements-dev.txt only: so `import function_app` (and the app it builds) must never reach them."""
    probe = (
        "import function_app, json, sys; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich') "
        "or m.startswith(('shared.cli', 'functions.console')))))"
    )
    assert printed(probe) == []
    runtime = (REPO / "requirements.txt").read_text()
    assert "typer" not in runtime and "rich" not in runtime


def test_service_bus_stays_off_the_function_apps_import_and_the_containers_build(tmp_path):
    """azure.servicebus loads when a message is first sent or received, never on `import function_app` nor when
    the container is built with Service Bus configured (the gate's cold path builds it)."""
    probe = (
        "import json, os, sys\n"
        "import function_app\n"
        "seen = {'import': sorted(m for m in sys.modules if m.startswith('azure.servicebus'))}\n"
        "from shared import bootstrap\n"
        "from shared.config.settings import Settings\n"
        "from tests.factories import registry\n"
        "env = {'ORGGUARD_BUS': 'servicebus', 'OrgGuardBus__fullyQualifiedNamespace': 'sb-x.servicebus.windows.net',\n"
        "       'ServiceBusConnection__fullyQualifiedNamespace': 'sb-y.servicebus.windows.net',\n"
        "       'ORGGUARD_DECISION_EVENTS': 'servicebus:orgguard-decisions',\n"
        f"       'ORGGUARD_LEDGER': 'sqlite:///{tmp_path}/l.db', 'ORGGUARD_POLICY': '{tmp_path}/none'}}\n"
        "c = bootstrap.build(Settings.from_env(env), orgs=registry())\n"
        "assert c.bus.work is not None and c.bus.inbound is not None and c.bus.events is not None\n"
        "seen['build'] = sorted(m for m in sys.modules if m.startswith('azure.servicebus'))\n"
        "print(json.dumps(seen))\n"
        "os._exit(0)\n"
    )
    assert printed(probe) == {"import": [], "build": []}


def test_the_settings_and_the_policys_validators_wait_for_the_first_use():
    """`import function_app` (the host indexing the functions, every cold start) loads no pydantic-settings and
    builds no policy validator: the container reads the settings when it is built, a policy is built when read."""
    probe = (
        "import function_app, json, sys\n"
        "from shared.domain.policy.schema import Policy\n"
        "seen = {'import': sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic_settings', 'dotenv')),\n"
        "        'policy built': Policy.__pydantic_complete__}\n"
        "from shared.domain.policy import parse_policy\n"
        "parse_policy({'version': 1, 'rules': []})\n"
        "seen['read'] = Policy.__pydantic_complete__\n"
        "print(json.dumps(seen))\n"
    )
    assert printed(probe) == {"import": [], "policy built": False, "read": True}


def test_indexing_the_functions_loads_no_http_framework():
    """The host imports function_app on every cold start, Service Bus and timer instances too: FastAPI and
    Starlette load when the HTTP app is first called (functions/deferred_app.py), not then."""
    probe = (
        "import function_app, json, sys\n"
        "seen = {'import': sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette')),\n"
        "        'built': function_app.app.middleware._app.built}\n"
        "print(json.dumps(seen))\n"
    )
    assert printed(probe) == {"import": [], "built": False}

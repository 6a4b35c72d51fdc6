"""infra/scripts/new-webhook-key.sh: the documented way webhook keys get into Key Vault.

`az` cannot run here, so a stand-in `az` on PATH records its arguments and
standard input; the tests check what the script asks of it and what it tells
the operator: the secret name the app's Key Vault reference reads, a fresh
random key on stdin (never on the command line, never printed), and exit 2 on
bad usage.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "infra" / "scripts" / "new-webhook-key.sh"


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > "$FAKE_AZ_LOG.args"\ncat > "$FAKE_AZ_LOG.stdin"\nexit "${FAKE_AZ_EXIT:-0}"\n'
    )
    azd = bin_dir / "azd"
    azd.write_text('#!/bin/sh\n[ "$1 $2 $3" = "env get-value keyVaultName" ] && echo kv-from-azd\n')
    for tool in (az, azd):
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def run(args: list[str], fake_bin: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}", "FAKE_AZ_LOG": str(tmp_path / "az"), **env}
    return subprocess.run(["sh", str(SCRIPT), *args], capture_output=True, text=True, env=environ, timeout=30)


def test_stores_a_new_random_key_under_the_name_the_app_reads(fake_bin: Path, tmp_path: Path) -> None:
    done = run(["contoso-na", "--vault", "kv-orgguard"], fake_bin, tmp_path)
    assert done.returncode == 0, done.stderr
    args = (tmp_path / "az.args").read_text().split("\n")
    assert args[:3] == ["keyvault", "secret", "set"]
    assert args[args.index("--vault-name") + 1] == "kv-orgguard"
    assert args[args.index("--name") + 1] == "orgguard-key-contoso-na"
    assert args[args.index("--file") + 1] == "/dev/stdin"
    key = (tmp_path / "az.stdin").read_text()
    assert len(key) == 48 and all(ch in "0123456789abcdef" for ch in key)
    assert key not in done.stdout + done.stderr + "\n".join(args), "the key must not show"
    again = run(["contoso-na", "--vault", "kv-orgguard"], fake_bin, tmp_path)
    assert again.returncode == 0 and (tmp_path / "az.stdin").read_text() != key, "a rotation is a new key"


def test_takes_the_vault_from_the_azd_environment(fake_bin: Path, tmp_path: Path) -> None:
    done = run(["contoso-jp"], fake_bin, tmp_path)
    assert done.returncode == 0, done.stderr
    args = (tmp_path / "az.args").read_text().split("\n")
    assert args[args.index("--vault-name") + 1] == "kv-from-azd"


@pytest.mark.parametrize(
    "args",
    [[], ["Contoso-NA"], ["contoso_na"], ["-x"], ["contoso-na", "--vault"], ["contoso-na", "--bogus", "x"]],
)
def test_bad_usage_exits_2_and_calls_nothing(args: list[str], fake_bin: Path, tmp_path: Path) -> None:
    done = run(args, fake_bin, tmp_path)
    assert done.returncode == 2
    assert not (tmp_path / "az.args").exists()


def test_an_az_failure_exits_1(fake_bin: Path, tmp_path: Path) -> None:
    done = run(["contoso-na", "--vault", "kv"], fake_bin, tmp_path, FAKE_AZ_EXIT="1")
    assert done.returncode == 1
    assert "failed" in done.stderr


@pytest.mark.parametrize("script", sorted((REPO / "infra" / "scripts").glob("*.sh")), ids=lambda p: p.name)
def test_every_script_is_executable_posix_sh(script: Path) -> None:
    assert script.stat().st_mode & stat.S_IXUSR
    assert script.read_text().startswith("#!/bin/sh\n")
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0


def test_azure_yaml_deploys_the_function_app_with_its_hooks() -> None:
    import yaml

    doc = yaml.safe_load((REPO / "azure.yaml").read_text())
    assert doc["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert doc["services"] == {"api": {"project": ".", "language": "python", "host": "function"}}
    for hook in ("preprovision", "postprovision"):
        run_path = REPO / doc["hooks"][hook]["posix"]["run"]
        assert run_path.is_file() and run_path.stat().st_mode & stat.S_IXUSR


def test_the_package_leaves_out_local_state_and_keeps_what_the_host_loads() -> None:
    ignored = set((REPO / ".funcignore").read_text().split())
    assert {".azure", ".venv", ".orgguard", "tests", "sandbox", "infra", "local.settings.json"} <= ignored
    assert not ignored & {"shared", "functions", "function_app.py", "host.json", "requirements.txt"}
    # The command line is local: it and typer/rich (requirements-dev.txt) never ship to the Function App.
    assert {"shared/cli", "functions/console.py"} <= ignored

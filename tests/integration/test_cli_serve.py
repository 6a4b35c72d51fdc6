"""`orgguard serve --sandbox` (what `make run` starts) as a new user meets it, in a real process on free ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from sandbox.server import free_port
from tests.factories import REPO

pytestmark = pytest.mark.sandbox


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORGGUARD_")}
    return env | {"PYTHONPATH": str(REPO), "HOME": str(tmp_path), "COLUMNS": "200"} | extra


def orgguard(*args: str) -> list[str]:
    return [sys.executable, "-m", "functions.console", *args]


@contextmanager
def listening() -> Iterator[int]:
    """A port someone else holds (another `make run`, say)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


@pytest.mark.parametrize("taken", ["--port", "--sandbox-port"])
def test_a_taken_port_is_one_line_and_nothing_starts(taken: str, tmp_path: Path):
    with listening() as busy:
        ports = {"--port": str(free_port()), "--sandbox-port": str(free_port())} | {taken: str(busy)}
        args = ["serve", "--sandbox", *[x for pair in ports.items() for x in pair]]
        done = subprocess.run(orgguard(*args), cwd=tmp_path, env=environment(tmp_path), capture_output=True, timeout=60)
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert stderr.count("\n") == 1 and stderr.startswith(f"error: port {busy} on 127.0.0.1 is taken")
    assert f"choose another with {taken} N" in stderr and "make run PORT=" in stderr
    assert done.stdout == b""  # no sandbox, no registration, no banner
    assert not (tmp_path / ".orgguard").exists()  # nothing written either


def test_make_run_passes_its_ports_on():
    shown = subprocess.run(
        ["make", "-n", "run", "PORT=8071", "SANDBOX_PORT=8072"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert "orgguard serve --sandbox --port 8071 --sandbox-port 8072" in shown.stdout


@contextmanager
def local_host(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[str, list[str]]]:
    """`orgguard serve --sandbox` until its banner, then Ctrl-C (SIGINT); (base URL, banner lines)."""
    port, sandbox_port = free_port(), free_port()
    args = orgguard("serve", "--sandbox", "--port", str(port), "--sandbox-port", str(sandbox_port))
    process = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    banner: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 90
        while not banner or banner[-1].strip() != "Ctrl-C stops it.":
            assert time.monotonic() < deadline and process.poll() is None, "".join(banner)
            banner.append(process.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        while True:  # the banner comes just before uvicorn binds
            try:
                httpx.get(f"{url}/api/health")
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        yield url, banner
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()


def test_the_environments_admin_token_wins_and_the_banner_says_so(tmp_path: Path):
    (tmp_path / ".orgguard").mkdir()
    (tmp_path / ".orgguard" / "admin-token").write_text("token-an-earlier-make-run-wrote")
    env = environment(tmp_path, ORGGUARD_ADMIN_TOKEN="the-operators-own-token")
    with local_host(tmp_path, env) as (url, banner):
        text = "".join(banner)
        assert "admin token  from ORGGUARD_ADMIN_TOKEN" in text
        assert "the-operators-own-token" not in text and "token-an-earlier-make-run-wrote" not in text
        answer = httpx.get(f"{url}/api/cases", headers={"Authorization": "Bearer the-operators-own-token"})
        assert answer.status_code == 200
        stale = httpx.get(f"{url}/api/cases", headers={"Authorization": "Bearer token-an-earlier-make-run-wrote"})
        assert stale.status_code == 403
        # the operator's CLI through this host's API, with the same environment
        listed = subprocess.run(
            orgguard("cases", "list", "--url", url, "--json"), cwd=tmp_path, env=env, capture_output=True, timeout=60
        )
        assert listed.returncode == 0 and json.loads(listed.stdout)["items"] == []


def test_without_one_the_token_file_is_used_and_named(tmp_path: Path):
    with local_host(tmp_path, environment(tmp_path)) as (url, banner):
        token = (tmp_path / ".orgguard" / "admin-token").read_text().strip()
        assert any(f"admin token  {token}  (from .orgguard/admin-token" in line for line in banner)
        assert httpx.get(f"{url}/api/cases", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        # and the CLI finds it by itself, from the project folder, for this loopback URL
        env = environment(tmp_path, ORGGUARD_URL=url)
        version = subprocess.run(orgguard("migrations", "list", "--json"), cwd=tmp_path, env=env, capture_output=True)
        assert version.returncode == 0 and json.loads(version.stdout) == {"items": []}

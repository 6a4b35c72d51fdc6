"""Azurite's Table service for the test suites: installed from package.json, started on a free port, stopped.

The suites never skip Table Storage: when Azurite cannot be found or started,
``AzuriteError`` says why and the tests that need it fail.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sandbox.server import free_port

REPO = Path(__file__).resolve().parents[1]
ACCOUNT = "devstoreaccount1"
# The emulator's well-known, public development key (the same in every Azurite and in Microsoft's docs).
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
START_TIMEOUT = 60.0


class AzuriteError(RuntimeError):
    """Azurite could not be installed or started."""


def connection_string(port: int, host: str = "127.0.0.1") -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={DEV_KEY};"
        f"TableEndpoint=http://{host}:{port}/{ACCOUNT};"
    )


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """One ``npm ci`` at a time per checkout (pytest-xdist workers start together)."""
    name = hashlib.sha256(str(REPO).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"orgguard-npm-{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def executable() -> Path:
    """``node_modules/.bin/azurite-table`` at the repo root, running ``npm ci`` once if it is missing."""
    exe = REPO / "node_modules" / ".bin" / "azurite-table"
    if exe.exists():
        return exe
    npm = shutil.which("npm")
    if npm is None:
        raise AzuriteError(
            "Azurite is not installed (node_modules/.bin/azurite-table is missing) and npm is not on PATH: "
            "install Node.js with npm, then run `npm ci` at the repo root (or `make test`, which does it)"
        )
    with _install_lock():
        if not exe.exists():
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            if done.returncode != 0 or not exe.exists():
                raise AzuriteError(
                    f"`npm ci` could not install Azurite (exit {done.returncode}): {done.stderr[-2000:]}"
                )
    return exe


def _answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Azurite:
    """One in-memory Azurite Table service; ``start()`` then ``connection_string``, ``stop()`` at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = workdir / "azurite.log"

    @property
    def connection_string(self) -> str:
        if not self.port:
            raise AzuriteError("Azurite is not started")
        return connection_string(self.port)

    def start(self) -> None:
        exe = executable()
        problem = ""
        for _ in range(3):  # a free port can be taken between choosing it and binding it
            self.port = free_port()
            problem = self._launch(exe)
            if not problem:
                return
        raise AzuriteError(problem)

    def _launch(self, exe: Path) -> str:
        args = [str(exe), "--inMemoryPersistence", "--disableTelemetry", "--silent", "--skipApiVersionCheck",
                "--loose", "--tableHost", "127.0.0.1", "--tablePort", str(self.port)]  # fmt: skip
        with open(self._log, "ab") as log:
            self._proc = subprocess.Popen(args, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return f"Azurite exited with {self._proc.returncode}: {self._tail()}"
            if _answers(self.port):
                return ""
            time.sleep(0.1)
        self.stop()
        return f"Azurite did not answer on port {self.port} within {START_TIMEOUT:.0f} s: {self._tail()}"

    def _tail(self) -> str:
        try:
            return self._log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

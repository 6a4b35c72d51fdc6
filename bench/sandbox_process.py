"""Processes the benchmarks start: the sandbox in a process of its own (its figures must not share the
measured process's GIL), and the waiting until a started server answers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from sandbox.server import free_port

REPO = Path(__file__).resolve().parents[1]


def wait_until_up(url: str, process: subprocess.Popen[bytes], *, timeout: float = 300) -> None:
    """Until ``url`` answers 200; ``RuntimeError`` if the process ends or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.2)


@dataclass(frozen=True)
class Sandbox:
    base: str
    pid: int

    def cpu_s(self) -> float:
        """The CPU time the sandbox's process has used so far (user and system), from ``/proc``."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def sandbox_process(*, mailboxes: int, overlap: float, orgs: int = 3, seed: int = 7) -> Iterator[Sandbox]:
    """``python -m sandbox`` on a free port until the block ends."""
    port = free_port()
    command = [sys.executable, "-m", "sandbox", "--port", str(port), "--mailboxes", str(mailboxes)]
    command += ["--overlap", str(overlap), "--orgs", str(orgs), "--seed", str(seed)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/_sandbox/orgs", process)
        yield Sandbox(base, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()

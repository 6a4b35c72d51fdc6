"""The sandbox in a process of its own, for benchmarks whose figures must not share its GIL."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def sandbox_process(*, mailboxes: int, overlap: float, orgs: int = 3, seed: int = 7) -> Iterator[str]:
    """``python -m sandbox`` on a free port until the block ends; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "sandbox", "--port", str(port), "--mailboxes", str(mailboxes)]
    command += ["--overlap", str(overlap), "--orgs", str(orgs), "--seed", str(seed)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{base}/_sandbox/orgs", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the sandbox did not start") from None
                time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()

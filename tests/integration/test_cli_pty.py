"""The CLI's progress bars in a real terminal: `orgguard` runs in a pseudo-terminal, as in an operator's shell.

rich draws its bars only when stderr is a terminal, so a CliRunner never shows what an
operator sees. Here the command runs in its own session on a pty (``pty.fork``), Ctrl-C
is the ^C byte typed into that terminal (the line discipline turns it into SIGINT for
the foreground process), and the ledger tells what became of the job.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from shared.domain.jobs import JobKind, JobState
from shared.ledger.port import job_ledger
from shared.ledger.sqlite import SqliteLedger
from tests.factories import ADMIN_TOKEN, REPO, orgs_file
from tests.hosting import api_url
from tests.jobs_support import HOLD_EVERY_CLAIM, wired

pytestmark = [pytest.mark.sandbox, pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pty")]

SANDBOX_SEED = {"mailboxes": 400, "overlap": 0.8}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def project(tmp_path: Path, base_url: str) -> dict[str, str]:
    """The environment of an operator's shell: settings pointing at a ledger file and the simulated orgs."""
    (tmp_path / "policy.yaml").write_text(HOLD_EVERY_CLAIM)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORGGUARD_") and k not in ("NO_COLOR", "CI")}
    return env | {
        "ORGGUARD_LEDGER": f"sqlite:///{tmp_path / 'ledger.db'}",
        "ORGGUARD_ORGS": str(orgs_file(tmp_path, base_url)),
        "ORGGUARD_POLICY": str(tmp_path / "policy.yaml"),
        "PYTHONPATH": str(REPO),
        "TERM": "xterm-256color",
        "COLUMNS": "100",
        "HOME": str(tmp_path),
    }


def in_terminal(
    args: list[str], env: dict[str, str], cwd: Path, *, type_ctrl_c_when: Callable[[str], bool] | None = None
) -> tuple[int, str]:
    """Run `orgguard ARGS` on a fresh pty; (exit code, everything the terminal showed, colours removed)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session of its own with the pty as its controlling terminal
        try:
            os.chdir(cwd)
            os.execve(sys.executable, [sys.executable, "-m", "functions.console", *args], env)  # noqa: S606
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    shown, typed = b"", False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            text = ANSI.sub("", shown.decode(errors="replace"))
            if type_ctrl_c_when is not None and not typed and type_ctrl_c_when(text):
                os.write(fd, b"\x03")  # Ctrl-C, as typed
                typed = True
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"`orgguard {' '.join(args)}` did not finish:\n{ANSI.sub('', shown.decode(errors='replace'))}")
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), ANSI.sub("", shown.decode(errors="replace"))


def migrations(tmp_path: Path) -> list:
    ledger = SqliteLedger(tmp_path / "ledger.db")
    try:
        return list(job_ledger(ledger).jobs(JobKind.MIGRATION))
    finally:
        ledger.close()


# Slow enough to stop mid-way: a $batch counts once against the requests (FACTS.md), so the execution time
# each operation costs is what spreads a migration over several seconds.
SLOW = {"budget": 8, "window_s": 1.0, "execution_budget_s": 0.5, "execution_cost_s": 0.02}
MIGRATE = ["migrate", "--from", "contoso-na", "--to", "contoso-eu", "--domain", "contoso.com", "--apply"]


def test_migrate_draws_its_bar_in_a_terminal_and_finishes(sandbox: httpx.Client, project, tmp_path: Path):
    code, shown = in_terminal(MIGRATE, project, tmp_path)
    assert code == 0, shown
    (job,) = migrations(tmp_path)
    assert job.state is JobState.DONE and job.result["moved"] > 0
    total = job.progress["planned"]
    assert "planning" in shown and "0/?" in shown  # the total was not known yet, and said so
    assert f"{total:,}/{total:,}" in shown and "moves settled" in shown
    assert "Traceback" not in shown and f"migration {job.id}  done" in shown


def test_ctrl_c_pauses_a_migration_and_says_how_to_resume(sandbox: httpx.Client, project, tmp_path: Path):
    sandbox.put("/_sandbox/settings", json=SLOW).raise_for_status()  # slow enough to stop
    code, shown = in_terminal(MIGRATE, project, tmp_path, type_ctrl_c_when=lambda text: "moves settled" in text)
    (job,) = migrations(tmp_path)
    assert code == 130, shown
    assert job.state is JobState.PAUSED and job.progress.get("settled", 0) < job.progress["planned"], job
    assert f"migration {job.id} paused; resume it with: orgguard migrate --resume {job.id[:8]}" in shown
    assert "Traceback" not in shown and "KeyboardInterrupt" not in shown

    code, shown = in_terminal(["migrate", "--resume", job.id[:8]], project, tmp_path)
    assert code == 0, shown
    (job,) = migrations(tmp_path)
    assert job.state is JobState.DONE and job.result["moved"] == job.progress["planned"] and job.result["failed"] == 0


def test_ctrl_c_pauses_a_migration_running_in_orgguard(sandbox: httpx.Client, base_url: str, project, tmp_path: Path):
    """Through the API (--url) the job runs in the server: Ctrl-C pauses it there, and --resume --url resumes it."""
    sandbox.put("/_sandbox/settings", json=SLOW).raise_for_status()
    c = wired(tmp_path, base_url)
    jobs = job_ledger(c.ledger)
    env = project | {"ORGGUARD_ADMIN_TOKEN": ADMIN_TOKEN}
    with api_url(c) as url:
        args = [*MIGRATE, "--url", url]
        code, shown = in_terminal(args, env, tmp_path, type_ctrl_c_when=lambda text: "moves settled" in text)
        (job,) = jobs.jobs(JobKind.MIGRATION)
        assert code == 130 and job.state is JobState.PAUSED, shown
        assert f"resume it with: orgguard migrate --resume {job.id[:8]}" in shown and "Traceback" not in shown
        time.sleep(1.5)  # the server's worker stops after the batch in flight
        code, shown = in_terminal(["migrate", "--resume", job.id[:8], "--url", url], env, tmp_path)
        assert code == 0, shown
        (job,) = jobs.jobs(JobKind.MIGRATION)
        assert job.state is JobState.DONE and job.result["moved"] == job.progress["planned"]


def test_a_sweep_draws_rows_and_pages_and_ctrl_c_cancels_it(sandbox: httpx.Client, project, tmp_path: Path):
    code, shown = in_terminal(["sweep"], project, tmp_path)
    assert code == 0, shown
    assert re.search(r"contoso-na\s.*\d+ rows\s+1 pages", shown) and "finding(s) found" in shown

    sandbox.put("/_sandbox/settings", json={"org": "contoso-eu", "latency_ms": 3000}).raise_for_status()
    code, shown = in_terminal(["sweep", "--apply"], project, tmp_path, type_ctrl_c_when=lambda t: "contoso-na" in t)
    assert code == 130, shown
    ledger = SqliteLedger(tmp_path / "ledger.db")
    try:
        sweeps = job_ledger(ledger).jobs(JobKind.SWEEP)
    finally:
        ledger.close()
    assert [s.state for s in sweeps] == [JobState.CANCELLED, JobState.DONE]
    assert f"sweep {sweeps[0].id} cancelled" in shown and "Traceback" not in shown

"""`samvad run` (what `make run` starts) in its own process as a fresh user's shell would start
it: no SAMVAD_ or RAY_ variables, its data in a folder of the test's (tests/readme, tests/security)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from samvad.settings import REPO_ROOT

BIN = Path(sys.executable).parent


class Service:
    def __init__(self, tmp: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SAMVAD_", "RAY_"))}  # a fresh user's shell
        env |= {
            "SAMVAD_DATA_DIR": str(tmp / "var"),
            "SAMVAD_RAG__INDEX_DIR": str(tmp / "var" / "index" / "current"),
            "PATH": f"{BIN}:{env.get('PATH', '')}",
        }
        self.env = env
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [str(BIN / "samvad"), "run"],
            cwd=REPO_ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if text in line:
                    return line
            assert self.proc.poll() is None, "\n".join(self.lines[-40:])
            time.sleep(0.5)
        raise AssertionError(f"no {text!r} within {timeout} s:\n" + "\n".join(self.lines[-40:]))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


@contextmanager
def running(folder: Path) -> Iterator[Service]:
    """`samvad run` up (its data in `folder`) for the block, stopped as Ctrl-C stops it."""
    svc = Service(folder)
    try:
        svc.wait_for("Samvad is up", timeout=600)
        yield svc
    finally:
        svc.stop()

"""The first hour, as a new user meets it: `samvad run` (what `make run` starts) in its own
process on the README's ports, then the README's own commands run as written against it — the
quick-start curl examples, `serve status`, the Ray dashboard's Serve view and /docs in headless
Chromium — and Ctrl-C stops it cleanly, printing only what the user needs."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from samvad.settings import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.own_ray]
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("SAMVAD_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))
DEPLOYMENTS = ("Ingress", "Sessions", "ASR", "LLM", "Retriever", "Translation", "TTS")
# What a clean start and stop may print besides Samvad's own lines: nothing from Ray's internals.
NOISE = re.compile(r"WARNING|Traceback|Error|worker processes|actor is dead|ray\.kill|\(raylet\)|\(ServeController")


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


def _blocks(section: str) -> list[str]:
    text = README.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("first-hour"))
    try:
        svc.wait_for("Samvad is up", timeout=600)
        yield svc
    finally:
        svc.stop()


def test_the_quick_start_commands_work_as_written(service):
    key = re.search(r"development API key \(shown once\): (\S+)", service.wait_for("development API key", 5)).group(1)
    make_run, *asks = _blocks("Quick start")
    assert "make run" in make_run
    script = "\n".join(asks).replace("export KEY=sk_samvad_...", f"export KEY={key}")
    assert f"export KEY={key}" in script  # the README still tells the user where the key goes
    for leftover in ("answer.wav", "turn.json"):
        (REPO_ROOT / leftover).unlink(missing_ok=True)
    try:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=REPO_ROOT,
            env=service.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        answers = re.findall(r"^answer: (.+)$", done.stdout, flags=re.M)
        heard = re.findall(r"^heard:  (.+)$", done.stdout, flags=re.M)
        assert len(answers) == 2 and all("card" in a.lower() for a in answers), done.stdout
        assert heard[0] == "How do I block my lost debit card?", done.stdout  # a text turn's transcript is its text
        assert "card" in heard[1].lower(), done.stdout  # the shipped WAV is understood
        assert len(done.stdout) < 2000  # no base64 in the terminal
        assert (REPO_ROOT / "answer.wav").read_bytes()[:4] == b"RIFF"
    finally:
        for leftover in ("answer.wav", "turn.json"):
            (REPO_ROOT / leftover).unlink(missing_ok=True)


def test_serve_status_lists_every_deployment_healthy(service):
    assert "serve status" in README
    deadline = time.monotonic() + 60
    while True:
        done = subprocess.run(["serve", "status"], env=service.env, capture_output=True, text=True, timeout=60)
        healthy = [d for d in DEPLOYMENTS if re.search(rf"{d}:\s*\n\s*status: HEALTHY", done.stdout)]
        if len(healthy) == len(DEPLOYMENTS) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert done.returncode == 0 and len(healthy) == len(DEPLOYMENTS), done.stdout + done.stderr


def _browser(p):
    return p.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    )


def test_the_dashboard_shows_every_deployment_and_the_docs_render_offline(service):
    from playwright.sync_api import sync_playwright

    assert "http://127.0.0.1:8265" in README and "http://127.0.0.1:8000/docs" in README
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page()
            page.goto("http://127.0.0.1:8265/#/serve", wait_until="domcontentloaded")
            for name in DEPLOYMENTS:
                page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "dashboard-serve.png"), full_page=True)
            assert "Authentication Token Required" not in page.content()
            docs = browser.new_page()
            outside = []
            docs.on(
                "request", lambda r: outside.append(r.url) if not r.url.startswith("http://127.0.0.1:8000") else None
            )
            docs.goto("http://127.0.0.1:8000/docs")
            docs.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
            docs.wait_for_selector("button.authorize", timeout=10_000)  # X-API-Key can be given to "Try it out"
            docs.screenshot(path=str(ARTIFACTS / "docs.png"), full_page=True)
        finally:
            browser.close()
    assert not [u for u in outside if not u.startswith("data:")], outside


def test_a_clean_stop_prints_only_what_the_user_needs(service):
    started = len(service.lines)
    assert service.stop() == 0, "\n".join(service.lines[-40:])
    noisy = [line for line in service.lines if NOISE.search(line)]
    assert not noisy, "\n".join(noisy[:20])
    assert any("shutting down" in line for line in service.lines[started:])

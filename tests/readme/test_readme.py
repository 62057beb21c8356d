"""The first hour, as a new user meets it: `samvad run` (what `make run` starts) in its own
process on the README's ports, then the README's own commands run as written against it — the
quick-start curl examples, `serve status`, the Ray dashboard's Serve view and /docs in headless
Chromium — and Ctrl-C stops it cleanly, printing only what the user needs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from samvad.settings import REPO_ROOT
from tests.first_hour import running

pytestmark = [pytest.mark.e2e, pytest.mark.own_ray]
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("SAMVAD_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))
DEPLOYMENTS = ("Ingress", "Sessions", "ASR", "LLM", "Retriever", "Translation", "TTS")
# What a clean start and stop may print besides Samvad's own lines: nothing from Ray's internals.
NOISE = re.compile(r"WARNING|Traceback|Error|worker processes|actor is dead|ray\.kill|\(raylet\)|\(ServeController")


def _blocks(section: str) -> list[str]:
    text = README.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with running(tmp_path_factory.mktemp("first-hour")) as svc:
        yield svc


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
    # Ray's token auth is on under `samvad run`: the README's command names the mode, and the
    # token is found where Ray keeps it.
    assert "RAY_AUTH_MODE=token serve status" in README
    env = service.env | {"RAY_AUTH_MODE": "token"}
    deadline = time.monotonic() + 60
    while True:
        done = subprocess.run(["serve", "status"], env=env, capture_output=True, text=True, timeout=60)
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
    assert "ray get-auth-token" in README  # where the dashboard's token comes from
    token = subprocess.run(
        ["ray", "get-auth-token"], env=service.env, capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page()
            page.goto("http://127.0.0.1:8265/#/serve", wait_until="domcontentloaded")
            # The dashboard asks for Ray's token once, as the README says.
            page.get_by_placeholder("Enter your authentication token").fill(token)
            page.get_by_role("button", name="Submit").click()
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

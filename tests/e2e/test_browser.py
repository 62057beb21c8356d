"""The demo page in headless Chromium (Debian's package, driven by Playwright) with a fake
microphone fed from a WAV file: the page shows the transcript and the answer and gets audio."""

import os
import shutil
from pathlib import Path

import pytest

from samvad.providers.local.espeak import EspeakTTS
from samvad.settings import REPO_ROOT, load_settings
from testkit.speech import speak_wav
from tests.graph import PORT

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("SAMVAD_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))


def test_demo_page_talks_with_a_fake_microphone(api_key, tmp_path):
    from playwright.sync_api import sync_playwright

    s = load_settings()
    mic = tmp_path / "question.wav"
    # Chromium loops the file: a question, then a long silence so the endpointer closes the utterance.
    mic.write_bytes(
        speak_wav(
            EspeakTTS(s.tts.espeak, s.languages),
            "How can I block my stolen debit card?",
            lead_silence=1.0,
            tail_silence=12.0,
        )
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--autoplay-policy=no-user-gesture-required",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={mic}",
            ],
        )
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{PORT}/#api_key={api_key}")
            address = page.url  # the page moves the key into its form and out of the address bar
            page.click("#start")
            page.wait_for_selector("#conn.on", timeout=30_000)
            page.wait_for_selector("p.you", timeout=60_000)
            page.wait_for_function(
                "document.querySelector('p.bot') && document.querySelector('p.bot').textContent.length > 20",
                timeout=60_000,
            )
            page.wait_for_function("parseInt(document.getElementById('audioin').textContent) > 0", timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "demo-page.png"), full_page=True)
            transcript = page.inner_text("p.you")
            answer = page.inner_text("p.bot")
        finally:
            browser.close()
    assert not errors, errors
    assert api_key not in address and "api_key" not in address, address
    assert "card" in transcript.lower(), transcript
    assert "block" in answer.lower(), answer

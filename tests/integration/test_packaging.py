"""The built wheel, installed into a fresh virtualenv (not editable, not the checkout), answers a
turn: its defaults — configs, the sample corpus, where it writes — come from the package and the
user's data directory, not from a repository checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from samvad.settings import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.models]


def _run(*args, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kw)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_the_wheel_installed_elsewhere_answers_a_turn(tmp_path):
    # Build from a copy: a build in the checkout would leave build/ behind.
    source = tmp_path / "source"
    shutil.copytree(
        REPO_ROOT,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(".venv", "var", ".git", "*.egg-info", "__pycache__", "build", "*.whl"),
    )
    _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", source
    )
    wheel = next((tmp_path / "dist").glob("samvad-*.whl"))
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    _run(venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel)
    # The dependencies: this environment's (its editable Samvad is not visible from here: a .pth
    # file is read only in a site directory, and the checkout is not one).
    site = Path(
        _run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    )
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAMVAD_", "XDG_", "PYTHONPATH"))}
    env |= {"HOME": str(home), "HF_HUB_OFFLINE": "1"}
    where = _run(venv / "bin" / "python", "-c", "import samvad, deployments; print(samvad.__file__)", cwd=work, env=env)
    assert where.stdout.strip().startswith(str(site)), where.stdout
    said = _run(
        venv / "bin" / "samvad",
        "say",
        "--text",
        "How do I block my debit card?",
        "-o",
        work / "a.wav",
        cwd=work,
        env=env,
    )
    assert "cards/debit-card-block.md" in said.stdout, said.stdout[-2000:]
    assert (work / "a.wav").stat().st_size > 44_100
    assert (home / ".local" / "share" / "samvad" / "index").is_dir()  # it wrote where a user's data goes
    assert not (work / "var").exists()
    # `samvad run` finds its deployment options in the package too.
    options = _run(
        venv / "bin" / "python",
        "-c",
        "from samvad.settings import SERVE_CONFIG; from deployments.serve_config import deployment_options; "
        "print(sorted(deployment_options(str(SERVE_CONFIG))))",
        cwd=work,
        env=env,
    )
    assert "Ingress" in options.stdout and "Sessions" in options.stdout, options.stdout

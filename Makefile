# CareLine: `make run` serves the line locally, `make test` runs every test.
# Both create .venv from requirements.txt when it is missing or older than requirements.txt.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
READY := $(VENV)/.installed

.PHONY: run test lint transcripts

$(READY): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(READY)

run: $(READY)
	$(PY) -m ivr

test: $(READY)
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: $(READY)
	$(PY) -m ruff check .

# After a deliberate content change: rewrite the golden call transcripts, then read `git diff tests/transcripts`.
transcripts: $(READY)
	UPDATE_TRANSCRIPTS=1 $(PY) -m pytest -q tests/test_transcripts.py

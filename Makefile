# CareLine: `make run` serves the line locally, `make test` runs every test.
# Both create .venv from requirements.txt when it is missing or older than requirements.txt.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
READY := $(VENV)/.installed

.PHONY: run test lint transcripts call text

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

# The local phone (ivr/phone.py): call or text the line `make run` serves, from a terminal.
# Options go in ARGS, e.g. make call ARGS='--keys "5 * #"'   make call ARGS=--speak   make text ARGS=--in-process
call: $(READY)
	$(PY) -m ivr.phone call $(ARGS)

text: $(READY)
	$(PY) -m ivr.phone text $(ARGS)

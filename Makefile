# CareLine: `make run` serves the line locally, `make test` runs every test.
# Both create .venv from requirements.txt when it is missing or older than requirements.txt.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
READY := $(VENV)/.installed

.PHONY: run test lint

$(READY): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(READY)

# Render every spoken prompt and section part to build/audio/<lang>/*.wav with espeak-ng (150 words a
# minute) and print the longest; needs the Debian packages espeak-ng and sox (.ci/run installs them).
.PHONY: audio content-report
audio: $(READY)
	$(PY) -m ivr.audio build/audio

# Words, seconds, readability, text segments and review dates for every prompt and section.
content-report: $(READY)
	$(PY) -m flask --app ivr content-report

run: $(READY)
	$(PY) -m ivr

test: $(READY)
	$(PY) -m ruff check ivr tests bench
	$(PY) -m pytest

lint: $(READY)
	$(PY) -m ruff check ivr tests bench

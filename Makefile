# CareLine: `make run` serves the line locally, `make test` runs every test.
# Both create .venv from requirements.txt when it is missing or older than requirements.txt.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
READY := $(VENV)/.installed

.PHONY: run test lint transcripts call text serve test-pg bench

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
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest

lint: $(READY)
	$(PY) -m ruff check .
	$(PY) -m mypy

# After a deliberate content change: rewrite the golden call transcripts, then read `git diff tests/transcripts`.
transcripts: $(READY)
	UPDATE_TRANSCRIPTS=1 $(PY) -m pytest -q tests/test_transcripts.py

# The local phone (ivr/phone/): call or text the line `make run` serves, from a terminal.
# Options go in ARGS, e.g. make call ARGS='--keys "5 * #"'   make call ARGS=--speak   make text ARGS=--in-process
call: $(READY)
	$(PY) -m ivr.phone call $(ARGS)

text: $(READY)
	$(PY) -m ivr.phone text $(ARGS)

# Production-style serving: gunicorn with gunicorn.conf.py (HOST, PORT, WEB_CONCURRENCY; see README).
serve: $(READY)
	$(VENV)/bin/gunicorn -c gunicorn.conf.py

# The whole suite with a throwaway PostgreSQL server, as CI runs it (.ci/with-postgres).
test-pg: $(READY)
	bash .ci/with-postgres $(MAKE) test

# Throughput, latency, start-up and memory against the targets (README, "Benchmark"); by hand, never in CI.
bench: $(READY)
	@command -v wrk >/dev/null || { [ "$$(id -u)" -eq 0 ] && apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } \
		|| { echo "bench needs wrk: sudo apt-get install -y wrk"; exit 1; }
	PG_DURABLE=1 bash .ci/with-postgres $(PY) -m bench.run

# Known vulnerabilities in every pinned package (pip-audit over requirements.txt); .ci/run runs it too.
.PHONY: audit
audit: $(READY)
	$(PY) .ci/audit.py

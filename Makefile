# CareLine: `make run` serves the line locally, `make test` runs every test, `make test-fast` the unit tests.
# .venv is created when missing; `make run` installs requirements.txt (what production runs) and `make test`
# requirements-dev.txt too (tools), each again when its file is newer than its stamp.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
RUNTIME := $(VENV)/.installed-runtime
READY := $(VENV)/.installed

.PHONY: run test test-fast lint transcripts call text serve test-pg bench

$(PY):
	$(PYTHON) -m venv $(VENV)

# The line's own dependencies only.
$(RUNTIME): requirements.txt | $(PY)
	$(PIP) -r requirements.txt
	touch $(RUNTIME)

# Everything: runtime and tools (tests, linters, content checks).
$(READY): requirements.txt requirements-dev.txt | $(PY)
	$(PIP) -r requirements-dev.txt
	touch $(RUNTIME) $(READY)

# Render every spoken prompt and section part to build/audio/<lang>/*.wav with espeak-ng (150 words a
# minute) and print the longest; needs the Debian packages espeak-ng and sox (.ci/run installs them).
.PHONY: audio content-report
audio: $(READY)
	$(PY) -m ivr.audio build/audio

# Words, seconds, readability, text segments and review dates for every prompt and section.
content-report: $(READY)
	$(PY) -m flask --app ivr content-report

# Local mode: no Twilio account, unsigned requests from this machine only (LOCAL_MODE=0 make run to serve
# signed requests instead, with TWILIO_AUTH_TOKEN, PUBLIC_BASE_URL and SECRET_KEY set).
LOCAL_MODE ?= 1
run: $(RUNTIME)
	LOCAL_MODE=$(LOCAL_MODE) $(PY) -m ivr

# pytest keeps the test modules it has rewritten (for its assert messages) in __pycache__ (git ignores it):
# where the environment turns bytecode off (PYTHONDONTWRITEBYTECODE, as some containers do) it would
# rewrite and compile every test module again on every run, ~4 s of CPU a process. Empty means unset.
PYTEST := PYTHONDONTWRITEBYTECODE= $(PY) -m pytest

test: $(READY)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PYTEST)

# The unit tests: no server processes, browsers or PostgreSQL, nothing that waits on real time (tests marked
# slow or postgresql are left out; the Twilio stand-in is a thread of the test process), spread over one
# pytest-xdist worker per CPU core; an idle worker takes tests queued for a busy one (worksteal).
test-fast: $(READY)
	$(PYTEST) -q -n auto --dist worksteal -m "not slow and not postgresql"

lint: $(READY)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# After a deliberate content change: rewrite the golden call transcripts, then read `git diff tests/transcripts`.
transcripts: $(READY)
	UPDATE_TRANSCRIPTS=1 $(PY) -m pytest -q tests/test_transcripts.py

# The local phone (ivr/phone/): call or text the line `make run` serves, from a terminal.
# Options go in ARGS, e.g. make call ARGS='--keys "5 * #"'   make call ARGS=--speak   make text ARGS=--in-process
call: $(RUNTIME)
	$(PY) -m ivr.phone call $(ARGS)

text: $(RUNTIME)
	$(PY) -m ivr.phone text $(ARGS)

# Production-style serving: the release step (`flask --app ivr db upgrade`: the line refuses to start on an old
# schema), then gunicorn with gunicorn.conf.py (HOST, PORT, WEB_CONCURRENCY; docs/configuration.md).
serve: $(RUNTIME)
	$(PY) -m flask --app ivr db upgrade
	$(VENV)/bin/gunicorn -c gunicorn.conf.py

# The whole suite with a throwaway PostgreSQL server, as CI runs it (.ci/with-postgres).
test-pg: $(READY)
	bash .ci/with-postgres $(MAKE) test

# Throughput, latency, start-up and memory against the targets (docs/benchmark.md); by hand, never in CI.
bench: $(READY)
	@command -v wrk >/dev/null || { [ "$$(id -u)" -eq 0 ] && apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } \
		|| { echo "bench needs wrk: sudo apt-get install -y wrk"; exit 1; }
	PG_DURABLE=1 bash .ci/with-postgres $(PY) -m bench.run

# Known vulnerabilities in every pinned package (pip-audit over requirements.txt and requirements-dev.txt); .ci/run runs it too.
.PHONY: audit
audit: $(READY)
	$(PY) .ci/audit.py

"""What counting each request for /metrics costs (ivr/metrics.py), in-process: `python -m bench.metrics_overhead`.

Two measures, each over a few thousand requests:
- the counting alone: `RequestTimer` around a WSGI app that does nothing, less that app's own time;
- whole requests through Flask's test client (POST /voice, local mode), counted and not, in turns, so
  the machine's load falls on both alike (the difference is within the noise of a loaded machine).
Times are CPU time (time.process_time): on a machine shared with other work the wall clock mostly
measures the wait for a core (the counting alone is also given by the wall clock, time.perf_counter).
Run with PROMETHEUS_MULTIPROC_DIR=<an empty folder> to measure multiprocess mode (as under gunicorn),
where each count is written to a memory-mapped file.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask

from ivr import create_app, metrics

FORM = {"CallSid": "CA" + "0" * 32, "From": "+15551230001", "To": "+15559870000"}


def counting_alone(rounds: int, clock: Any = time.process_time) -> float:
    """Microseconds per request for the counting alone: RequestTimer around an app that does nothing else."""
    route = type("Rule", (), {"rule": "/voice"})()
    request = type("Request", (), {"url_rule": route})()

    def bare_app(environ: dict[str, object], start_response: Any) -> list[bytes]:
        environ["werkzeug.request"] = request
        start_response("200 OK", [])
        return [b""]

    timed = metrics.RequestTimer(bare_app)
    ignore = lambda *args: None  # noqa: E731
    environ: dict[str, object] = {}
    started = clock()
    for _ in range(rounds):
        timed(environ, ignore)
    counting = clock() - started
    started = clock()
    for _ in range(rounds):
        bare_app(environ, ignore)
    return (counting - (clock() - started)) / rounds * 1e6


def whole_requests(app: Flask, rounds: int) -> float:
    """Microseconds per POST /voice through the test client."""
    client = app.test_client()
    started = time.process_time()
    for _ in range(rounds):
        client.post("/voice", data=FORM)
    return (time.process_time() - started) / rounds * 1e6


def without_counting(app: Flask) -> None:
    """Take the counting out of `app` (ivr.metrics.init_app put it in)."""
    app.wsgi_app = app.wsgi_app.wsgi_app  # type: ignore[attr-defined,method-assign]
    app.after_request_funcs[None].remove(metrics._count_replies)


def main(rounds: int = 3000, turns: int = 5) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = {"LOCAL_MODE": "1", "DATABASE_URL": f"sqlite:///{folder}/bench.sqlite3", "SECRET_KEY": "bench"}
        counted, uncounted = create_app(dict(settings)), create_app(dict(settings))
        without_counting(uncounted)
        whole_requests(counted, 200), whole_requests(uncounted, 200)  # warm up
        alone = [counting_alone(rounds) for _ in range(turns)]
        alone_wall = [counting_alone(rounds, time.perf_counter) for _ in range(turns)]
        pairs = [(whole_requests(counted, rounds), whole_requests(uncounted, rounds)) for _ in range(turns)]
        mode = "multiprocess" if metrics.multiprocess_folder() else "one process"
        print(f"metrics overhead ({mode}, {rounds} requests x {turns} turns, median):")
        print(f"  counting alone:         {statistics.median(alone):7.1f} us CPU per request", end="")
        print(f" ({statistics.median(alone_wall):.1f} us by the wall clock)")
        with_, without = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
        difference = with_ - without
        print(f"  POST /voice counted: {with_:7.1f} us; without: {without:7.1f} us; difference {difference:+.1f} us")


if __name__ == "__main__":
    main()

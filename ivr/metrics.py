"""What the line counts for monitoring: `/metrics` in Prometheus' text format, with `prometheus_client`.

Counted as they happen, in each process:

    careline_request_duration_seconds{route, outcome}   every request but the health pages: its route is
                                                        the URL rule (/voice/section/<topic>), never the path
    careline_texts_sent_total{via}                      texts the line sent: `reply` (a <Message> answering
                                                        a text) or `api` (through Twilio's REST API)
    careline_staff_alerts_failed_total{reason}          staff alert texts that could not be sent (retried):
                                                        `api_error` or `not_configured`

Read when scraped (`LineState`), from the database and the spool folder:

    careline_database_up                                1 when the database answers with the current schema
    careline_open_requests, careline_open_urgent_requests   the staff queue
    careline_staff_alerts_unsent                        alerts not sent yet (waiting, or failed and retried)
    careline_spool_records, careline_spool_oldest_age_seconds   what waits in this machine's spool

No label holds a phone number or anyone's words: routes are the app's own URL rules, outcomes one of
OUTCOMES, `via` one of two words.

Under gunicorn the workers are separate processes: prometheus_client's multiprocess mode keeps each
process's counts in files in PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py sets and cleans it at start, and
drops a dead worker's live values in `child_exit`), and a scrape adds up every worker's. Without that
variable (`make run`, tests in one process) the counts are this process's own.
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, current_app, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ivr import resilience
from ivr.security import is_loopback, is_proxied

#: What became of a request, by its status' first digit: the only values of the `outcome` label.
OUTCOMES = {"2": "ok", "3": "ok", "4": "client_error", "5": "server_error"}

#: Twilio waits 15 s for an answer; a caller hears a pause from about half a second.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)

#: Pages that are not counted: the monitoring pages themselves (scraped and probed every few seconds).
NOT_COUNTED = frozenset({"/metrics", "/healthz", "/readyz"})

# registry=None: not in prometheus_client's global registry; each scrape builds its own (`scrape`).
REQUESTS = Histogram(
    "careline_request_duration_seconds",
    "Requests the line answered, by route (URL rule) and outcome, and how long each took.",
    ["route", "outcome"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
TEXTS_SENT = Counter(
    "careline_texts_sent", "Texts the line sent: a reply to a text (TwiML), or through Twilio's API.", ["via"],
    registry=None,
)  # fmt: skip
# Every metric has labels, so none has a value (nor, in multiprocess mode, a file) until something is
# counted: a `flask` command run with PROMETHEUS_MULTIPROC_DIR set (deploy/careline-flask) writes nothing there.
STAFF_ALERTS_FAILED = Counter(
    "careline_staff_alerts_failed",
    "Staff alert texts that could not be sent (each is tried again): Twilio's API failed, or no credentials or sender.",
    ["reason"],
    registry=None,
)
COUNTED_HERE = (REQUESTS, TEXTS_SENT, STAFF_ALERTS_FAILED)


def multiprocess_folder() -> str:
    """PROMETHEUS_MULTIPROC_DIR, or "" when this process counts on its own."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


# -- counting -----------------------------------------------------------------------------------


def texts_sent(via: str, count: int = 1) -> None:
    """Count `count` texts sent `via` "reply" or "api"."""
    if count:
        TEXTS_SENT.labels(via).inc(count)


def staff_alert_failed(reason: str) -> None:
    """Count a staff alert text that could not be sent: `reason` "api_error" or "not_configured"."""
    STAFF_ALERTS_FAILED.labels(reason).inc()


class RequestTimer:
    """WSGI middleware around the app: times each request and counts it by route and outcome.

    Middleware rather than Flask's before/after-request hooks, measured (bench/metrics_overhead.py): each
    hook's reads of `g` and `request` go through werkzeug's context proxies, and on the loaded 2-core
    machine the hooks cost ~39 us a request where this costs a few. The route comes from the request
    Flask made (werkzeug keeps it in the environ while Flask answers).
    """

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app
        #: One histogram child per (route, outcome): `labels()` takes a lock and checks its values each
        #: time (~9 us measured under load, against ~0.1 us for this dict).
        self._timers: dict[tuple[str, str], Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        started = time.perf_counter()
        answered: list[tuple[str, str]] = []

        def remember_status(status: str, headers: Any, exc_info: Any = None) -> Any:
            # Flask calls this while its request is still in the environ (it takes it out at the end).
            rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
            answered.append((rule.rule if rule is not None else "unmatched", status))
            return start_response(status, headers, exc_info)

        body = self.wsgi_app(environ, remember_status)
        elapsed = time.perf_counter() - started
        if answered and answered[-1][0] not in NOT_COUNTED:
            route, status = answered[-1]
            key = (route, OUTCOMES.get(status[:1], "client_error"))
            timer = self._timers.get(key) or self._timers.setdefault(key, REQUESTS.labels(*key))
            timer.observe(elapsed)
        return body


def _count_replies(response: Response) -> Response:
    """Count the texts a TwiML answer sends, from the answer itself, whichever way it was made (a turn, a
    cached answer, an apology): <Message> is a messaging verb only, never in a voice answer."""
    if response.mimetype == "text/xml" and not response.is_streamed:
        texts_sent("reply", response.get_data().count(b"<Message>"))
    return response


# -- reading at scrape time ---------------------------------------------------------------------


class LineState(Collector):
    """The gauges read when scraped: the staff queue and alerts (database), and the spool (this machine)."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        guard = resilience.guard(self.app)
        storage = guard.storage
        counts = guard.read(storage.open_request_counts, None, "counting open requests for /metrics")
        yield _gauge("careline_database_up", "1 when the database answers with the current schema.", counts is not None)
        if counts is not None:
            open_requests, urgent = counts
            yield _gauge("careline_open_requests", "Call-back requests and voice messages not done yet.", open_requests)
            yield _gauge("careline_open_urgent_requests", "Urgent requests not done yet.", urgent)
            unsent = guard.read(storage.unsent_alerts, None, "counting staff alerts for /metrics")
            if unsent is not None:
                yield _gauge("careline_staff_alerts_unsent", "Staff alerts not sent yet.", unsent)
        records, oldest = spool_backlog(guard.spool.records())
        yield _gauge("careline_spool_records", "Records waiting in this machine's spool for the database.", records)
        yield _gauge("careline_spool_oldest_age_seconds", "Age of the oldest record waiting in the spool.", oldest)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


def spool_backlog(records: list[dict[str, Any]], at: dt.datetime | None = None) -> tuple[int, float]:
    """How many records wait, and the age in seconds of the oldest (0 when none)."""
    times = []
    for record in records:
        try:
            times.append(dt.datetime.fromisoformat(record["at"]))
        except (KeyError, TypeError, ValueError):  # a record without its time still counts
            continue
    if not times:
        return len(records), 0.0
    now = at or dt.datetime.now(dt.UTC)
    return len(records), max(0.0, (now - min(times)).total_seconds())


def scrape(app: Flask) -> bytes:
    """Every metric, in Prometheus' text format: every process's counts, and the line's state now."""
    registry = CollectorRegistry()
    if multiprocess_folder():
        multiprocess.MultiProcessCollector(registry)
    else:
        for metric in COUNTED_HERE:
            registry.register(metric)
    registry.register(LineState(app))
    return generate_latest(registry)


# -- who may read them --------------------------------------------------------------------------


def may_read_metrics() -> bool:
    """From this machine, or with METRICS_TOKEN as a bearer token.

    "This machine" is the real client: behind TRUSTED_PROXY_HOPS proxies, the address they forwarded
    (and the proxy itself must be on this machine too, so a client that reaches gunicorn directly cannot
    name itself 127.0.0.1); without trusted proxies, a request a proxy passed on is never "this machine".
    """
    token = current_app.config.get("METRICS_TOKEN", "")
    given = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return True
    if not current_app.config.get("TRUSTED_PROXY_HOPS"):
        return is_loopback(request.remote_addr) and not is_proxied(request)
    peer = request.environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR", request.remote_addr)
    return is_loopback(request.remote_addr) and is_loopback(peer)


def init_app(app: Flask) -> None:
    """Time and count every request, and the texts answers send (register first: the time includes every hook)."""
    app.wsgi_app = RequestTimer(app.wsgi_app)  # type: ignore[method-assign]
    app.after_request(_count_replies)

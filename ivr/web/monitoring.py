"""GET /readyz and GET /metrics: is this process ready to do all its work, and what has it done.

/healthz (ivr/web/health.py) says the process answers; it touches nothing. /readyz says whether the
line can do everything it is for: the database answers with the current schema (checked within
READY_DATABASE_SECONDS), nothing is stuck in the spool, and the words are clinically approved where
that is required. 200 when ready, 503 when not, with a small JSON body that names no one:

    {"ready": true, "database": "ok", "spool": {"records": 0, "oldest_age_seconds": 0.0},
     "content": {"approved": false, "required": false, "files_not_approved": 22}}

The line answers callers without its database (ivr/resilience.py): use /healthz, not /readyz, for a load
balancer's health check, or a database outage takes every machine out of service at once; /readyz is for
monitoring, alerts and deploy checks. /metrics (ivr/metrics.py) answers this machine, or a bearer token.
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST

from ivr import approval, metrics, resilience
from ivr.resilience import DatabaseGuard
from ivr.services import now, services

bp = Blueprint("monitoring", __name__)

#: How long /readyz waits for the database: a monitor's probe times out after a few seconds.
READY_DATABASE_SECONDS = 2.0

#: A record still in the spool this long after it was kept is stuck (the database refused it, or
#: never came back): records move in on the first request after the database answers again.
READY_SPOOL_SECONDS = 60.0


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """200 when the line can do all its work, 503 when not (see the module docstring)."""
    guard = resilience.guard()
    database = database_state(guard)
    records, oldest = metrics.spool_backlog(guard.spool.records())
    content = content_state()
    ready = database == "ok" and oldest < READY_SPOOL_SECONDS and (content["approved"] or not content["required"])
    body = {
        "ready": ready,
        "database": database,
        "spool": {"records": records, "oldest_age_seconds": round(oldest, 1)},
        "content": content,
    }
    return jsonify(body), 200 if ready else 503


def database_state(guard: DatabaseGuard) -> str:
    """ "ok", "unavailable" (failed, or no answer within READY_DATABASE_SECONDS) or "schema_not_current"."""
    if guard.schema_problem:
        return "schema_not_current"
    if guard.is_down():
        return "unavailable"
    answered: list[bool] = []

    def ping() -> None:
        answered.append(guard.read(guard.storage.ping, False, "checking readiness"))

    # A thread, so a database that does not answer holds the probe READY_DATABASE_SECONDS at most.
    checking = threading.Thread(target=ping, name="careline-readyz", daemon=True)
    checking.start()
    checking.join(READY_DATABASE_SECONDS)
    return "ok" if answered == [True] else "unavailable"


def content_state() -> dict[str, Any]:
    """Whether every prompt file is clinically approved today, whether that is required, how many are not."""
    waiting = approval.unapproved(services().content, now(current_app.config).date())
    required = bool(current_app.config["CONTENT_MUST_BE_APPROVED"])
    return {"approved": not waiting, "required": required, "files_not_approved": len(waiting)}


@bp.get("/metrics")
def metrics_page() -> Response:
    """Prometheus' text format, for this machine or a bearer token (METRICS_TOKEN) only."""
    if not metrics.may_read_metrics():
        abort(403)
    return Response(metrics.scrape(current_app), headers={"Content-Type": CONTENT_TYPE_LATEST})

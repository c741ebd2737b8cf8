"""GET /healthz for load balancers and `make serve` checks: this process is up and answering.

It touches no database and needs no signature: it says nothing about any caller. It also carries the
line's alarms, in its body (the answer stays 200: the line still answers callers, and a load balancer
must not take it away from them): "database-file-replaced" when the SQLite file the line opened was
deleted or replaced under it (issue 15 item 4; what callers leave waits in the spool until a restart).
"""

from __future__ import annotations

from flask import Blueprint, Response

from ivr import resilience

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """200 while the process can answer requests; "ok", then an "alarm:" line for each alarm raised."""
    body = "ok\n"
    if resilience.guard().database_file_replaced():
        body += "alarm: database-file-replaced (restart the line: the spool keeps what callers leave until then)\n"
    return Response(body, mimetype="text/plain")

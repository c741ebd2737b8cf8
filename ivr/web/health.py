"""GET /healthz for load balancers and `make serve` checks: this process is up and answering.

It touches no database and needs no signature: it says nothing about any caller.
"""

from __future__ import annotations

from flask import Blueprint, Response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """200 while the process can answer requests."""
    return Response("ok\n", mimetype="text/plain")

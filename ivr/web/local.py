"""/staff/local: in local mode, what the stand-in for Twilio's REST API was sent (texts the line "sent").

`make run` serves the stand-in (ivr/local_line.py); this page asks it for what it received (GET
/_standin/messages on its loopback address) and lists each text with masked numbers. Signed in, like
every staff page; a 404 outside local mode.
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from flask import Blueprint, abort, current_app, g, render_template

from ivr import local_line
from ivr.security import local_mode
from ivr.web.staff import _require_sign_in, _security_headers

log = logging.getLogger(__name__)

bp = Blueprint("local", __name__, url_prefix="/staff")
bp.before_request(_require_sign_in)
bp.after_request(_security_headers)


@bp.get("/local")
def texts() -> Any:
    """The texts the stand-in received, newest first (numbers masked), or why there are none to show."""
    config = current_app.config
    if not local_mode(config):
        abort(404)
    base_url = config.get("TWILIO_API_BASE_URL") or ""
    received: list[dict[str, str]] | None = None
    if base_url:
        try:
            answer = requests.get(base_url.rstrip("/") + "/_standin/messages", timeout=2)
            answer.raise_for_status()
            received = [local_line.shown(record) for record in answer.json()][::-1]
        except (requests.RequestException, ValueError) as error:
            log.warning("Could not read the Twilio stand-in: %s", type(error).__name__)
    return render_template("staff/local.html", user=g.staff_user, received=received, standin=bool(base_url))

"""The ceiling for the benchmark: a bare Flask app that answers every POST with one constant TwiML menu.

It runs under gunicorn with the line's own gunicorn.conf.py, so the difference between it and the
line is what the line itself costs per request (signature check, dialog step, TwiML, database).
BENCH_CEILING_BODY names a file with the document to answer (the line's real main menu).
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, Response

MENU = Path(os.environ["BENCH_CEILING_BODY"]).read_bytes() if os.environ.get("BENCH_CEILING_BODY") else b"<Response/>"

app = Flask(__name__)


@app.get("/healthz")
def healthz() -> Response:
    """Up and answering."""
    return Response("ok\n", mimetype="text/plain")


@app.post("/", defaults={"path": ""})
@app.post("/<path:path>")
def menu(path: str) -> Response:
    """The same menu for every webhook."""
    return Response(MENU, mimetype="text/xml")

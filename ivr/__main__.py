"""`python -m ivr` (what `make run` starts, with LOCAL_MODE=1): serve the line on this machine, on SQLite.

In local mode with no Twilio account given, it also serves a stand-in for Twilio's REST API and rings a
local staff phone (ivr/local_line.py), so texts, transfers and voice messages all work with no account.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from typing import Any

from ivr import create_app, local_line
from ivr.config import ConfigError
from ivr.phone.transport import DEFAULT_ACCOUNT_SID
from ivr.phone.twilio_standin import twilio_standin
from ivr.release import SchemaNotCurrent


def main() -> None:
    """Serve the line at http://127.0.0.1:5000 (PORT to change) and print where everything is."""
    port = int(os.environ.get("PORT", "5000"))
    with ExitStack() as stack:
        settings: dict[str, Any] = {}
        standin_url = ""
        if local_line.wants_standin(os.environ):
            token = os.environ.get("TWILIO_AUTH_TOKEN") or local_line.LOCAL_AUTH_TOKEN
            standin = stack.enter_context(twilio_standin(DEFAULT_ACCOUNT_SID, token))
            standin.report = local_line.report
            standin_url = standin.base_url
            settings = local_line.local_settings(os.environ, standin_url)
        try:
            app = create_app(settings or None)
        except (ConfigError, SchemaNotCurrent) as error:
            sys.exit(f"CareLine cannot start: {error}")
        print_banner(app.config, port, standin_url)
        app.run(host="127.0.0.1", port=port, debug=False, use_reloader=False)


def print_banner(config: Any, port: int, standin_url: str) -> None:
    """Where the line, its staff page and (in local mode) the stand-in and local staff phone are."""
    base = f"http://127.0.0.1:{port}"
    print(f"CareLine is serving on {base}")
    print(f"  Voice webhook (Twilio: 'A call comes in'):    POST {base}/voice")
    print(f"  SMS webhook   (Twilio: 'A message comes in'): POST {base}/sms")
    print(f"  Staff page: {base}/staff  (make a login first: .venv/bin/flask --app ivr create-staff YOUR.NAME)")
    print(f"  Picture of the line: {base}/staff/line")
    database = config["DATABASE_URL"]
    print(f"  Database: {database.split('///')[-1] if database.startswith('sqlite') else 'from DATABASE_URL'}")
    if standin_url:
        print(f"  Twilio stand-in (no account needed): {standin_url}; what it is sent shows here and at /staff/local")
        staff = ", ".join(config["STAFF_NUMBERS"])
        print(f"  Local staff phone: 0 rings {staff} (STAFF_HOURS {config['STAFF_HOURS']}); the local phone answers")
        print("  Call it: make call    Text it: make text", flush=True)


if __name__ == "__main__":
    main()

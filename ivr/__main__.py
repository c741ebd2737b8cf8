"""`python -m ivr` (what `make run` starts, with LOCAL_MODE=1): serve the line on this machine, on SQLite."""

from __future__ import annotations

import os
import sys

from ivr import create_app
from ivr.config import ConfigError


def main() -> None:
    """Serve the line at http://127.0.0.1:5000 (PORT to change) and print the two webhook URLs."""
    port = int(os.environ.get("PORT", "5000"))
    try:
        app = create_app()
    except ConfigError as error:
        sys.exit(f"CareLine cannot start: {error}")
    base = f"http://127.0.0.1:{port}"
    print(f"CareLine is serving on {base}")
    print(f"  Voice webhook (Twilio: 'A call comes in'):    POST {base}/voice")
    print(f"  SMS webhook   (Twilio: 'A message comes in'): POST {base}/sms")
    database = app.config["DATABASE_URL"]
    print(f"  Database: {database.split('///')[-1] if database.startswith('sqlite') else 'from DATABASE_URL'}")
    app.run(host="127.0.0.1", port=port, debug=False, use_reloader=False)


if __name__ == "__main__":
    main()
